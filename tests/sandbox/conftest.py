"""Fixtures for the sandbox services: real SQLite files under tmp_path, a fixed clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from charter.sandbox import DeploysSandbox, PaymentsSandbox, SandboxError, SupportSandbox

FIXED_NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)

RunTogether = Callable[[int, Callable[[int], Any]], list[Any]]


@pytest.fixture
def clock() -> Callable[[], datetime]:
    return lambda: FIXED_NOW


@pytest.fixture
def payments(tmp_path, clock) -> Iterator[PaymentsSandbox]:
    with PaymentsSandbox(tmp_path / "payments.db", clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
def support(tmp_path, clock) -> Iterator[SupportSandbox]:
    with SupportSandbox(tmp_path / "support.db", clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
def deploys(tmp_path, clock) -> Iterator[DeploysSandbox]:
    with DeploysSandbox(tmp_path / "deploys.db", clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
def run_together() -> RunTogether:
    """Run `work(i)` for i in range(n) on n threads released at the same instant.

    Returns each call's result, or the `SandboxError` it raised; anything else propagates.
    """

    def run(n: int, work: Callable[[int], Any]) -> list[Any]:
        barrier = threading.Barrier(n)

        def task(i: int) -> Any:
            # A timeout, so a broken test fails instead of hanging the suite.
            barrier.wait(timeout=30)
            try:
                return work(i)
            except SandboxError as error:
                return error

        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(task, range(n)))

    return run
