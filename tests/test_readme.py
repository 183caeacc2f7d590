"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_examples_run(
    index: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each example prints what the comment on its `print` line says, twice in one folder."""
    block = _python_blocks()[index]
    printed = next(line for line in block.splitlines() if line.startswith("print("))
    expected = printed.split("#", 1)[1].strip()
    monkeypatch.chdir(tmp_path)
    for _ in (1, 2):
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own code
        assert capsys.readouterr().out.strip() == expected


def test_readme_has_both_examples() -> None:
    assert len(_python_blocks()) == 2


def test_readme_starts_with_the_two_commands() -> None:
    """The first code block is `make demo` and `make test`."""
    first = re.search(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
