"""The physical reference: a raw hash-chained SQLite append, one transaction per event.

The same durability as Charter's store (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`), and the
least a durable step can write: one event, chained to the one before by SHA-256, committed
alone. No policy, no schema, no recovery: it bounds from below what any durable system on
SQLite can do per step on this disk, so Charter's ratio to it is the price of everything else.
Concurrent runs share one connection behind a lock, as Charter's store does.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from bench.durable import RawLog
from bench.peers._common import Measured, decide

if TYPE_CHECKING:
    from pathlib import Path

WARMUP_STEPS = 100
PAYLOAD = '{"kind":"tool.completed","step":%d,"tool":"record","output":{"item":"item-%d"}}'


def extra() -> dict[str, object]:
    return {"store": "SQLite, WAL, synchronous=FULL, one event per transaction, SHA-256 chain"}


class RawAdapter:
    """The `Adapter` for the raw append; it has no recovery to measure."""

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        log = RawLog(home / "raw.db")
        for n in range(WARMUP_STEPS):
            log.append([PAYLOAD % (n, n)])
        values: list[float] = []
        for _ in range(repetitions):
            started = time.perf_counter_ns()
            for n in range(steps):
                if policy:
                    decide(n)
                log.append([PAYLOAD % (n, n)])
            values.append((time.perf_counter_ns() - started) / 1e3 / steps)
        log.close()
        return Measured(values=values, extra=extra())

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        log = RawLog(home / "raw.db")
        lock = threading.Lock()

        def one(barrier: threading.Barrier) -> None:
            barrier.wait()
            for n in range(steps):
                if policy:
                    decide(n)
                with lock:
                    log.append([PAYLOAD % (n, n)])

        values: list[float] = []
        with ThreadPoolExecutor(max_workers=runs) as pool:
            for _ in range(repetitions):
                barrier = threading.Barrier(runs + 1)
                futures = [pool.submit(one, barrier) for _ in range(runs)]
                barrier.wait()
                started = time.perf_counter_ns()
                for future in futures:
                    future.result()
                values.append(runs * steps / ((time.perf_counter_ns() - started) / 1e9))
        log.close()
        return Measured(values=values, extra=extra())

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        raise NotImplementedError("a raw append has no workflow to resume")

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        raise NotImplementedError("a raw append has no workflow to resume")

    def effects_prepare(self, home: Path) -> None:
        raise NotImplementedError("a raw append runs no effects")

    def effects_recover(self, home: Path) -> Measured:
        raise NotImplementedError("a raw append runs no effects")


def adapter(variant: str) -> RawAdapter:
    """The raw append's adapter (SQLite only)."""
    if variant != "sqlite":
        raise ValueError(f"no raw variant {variant!r}")
    return RawAdapter()
