"""The public surface: every package's `__all__` is sorted and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "charter",
    "charter.examples",
    "charter.gate",
    "charter.models",
    "charter.policy",
    "charter.privacy",
    "charter.sandbox",
    "charter.store",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolvable(name: str) -> None:
    """`__all__` is sorted (ruff style) and names only attributes the package has."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_have_docstrings(name: str) -> None:
    """Every exported class and function is documented."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        value = getattr(module, attr)
        if callable(value) and not isinstance(value, type(list[int])):
            assert value.__doc__, f"{name}.{attr} has no docstring"
