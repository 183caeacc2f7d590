"""Charter as it is deployed: `charter worker` processes sharing one store, here two, one per
core, serving the concurrent workload.

A worker runs one run at a time, so 64 runs started at once are served two at a time, and the
figure is steps/s across both processes. The parent starts the workers, waits until each has
warmed up (one run of its own), then starts the runs and stops the clock when both workers
have seen every run finish. Only `concurrent` differs from `_charter`; the other measures are
the same as one process's.

Run as a module, this file is one worker: `python -m bench.peers._charter_workers HOME N`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._report import ROOT
from bench.peers._charter import CharterAdapter, Node, extra, open_warm
from bench.peers._common import TENANT, Measured
from charter.engine import Worker

if TYPE_CHECKING:
    from charter.engine import Workflow

WORKERS = 2


def completed(home: Path) -> int:
    """Runs completed so far, read on a connection of its own (the store's is busy)."""
    with sqlite3.connect(home / "charter.db", timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0])


def serve(home: Path, target: int, steps: int) -> None:
    """One worker: warm up, say so, wait for the go, then work until `target` runs completed."""
    node, workflow = open_warm(home, steps)
    (home / f"ready-{os.getpid()}").touch()
    while not (home / "go").exists():
        time.sleep(0.001)
    worker = Worker(node.plane, [workflow], poll_s=0.001)
    while completed(home) < target:
        if worker.step() is None:
            time.sleep(0.001)
    node.close()


class WorkersAdapter(CharterAdapter):
    """Charter with `WORKERS` worker processes for the concurrent workload."""

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        del policy
        node, workflow = open_warm(home, steps)
        values: list[float] = []
        for _ in range(repetitions):
            for marker in [*home.glob("ready-*"), home / "go"]:
                marker.unlink(missing_ok=True)
            # Every run before this batch is completed: the parent's and each worker's warm-up.
            target = completed(home) + WORKERS + runs
            command = [sys.executable, "-m", "bench.peers._charter_workers", str(home)]
            command += [str(target), str(steps)]
            logs = [home / f"worker-{n}.log" for n in range(WORKERS)]
            # This interpreter and this module with arguments built here; each worker's output
            # goes to a file, so a worker that dies says why in the error below.
            children = [
                subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
                for log in logs
            ]
            try:
                elapsed_ns = self._run_batch(home, node, workflow, runs, (children, logs))
            finally:
                for child in children:
                    child.kill()
                    child.wait()
            values.append(runs * steps / (elapsed_ns / 1e9))
        node.close()
        return Measured(
            values=values,
            extra=extra(
                workers=f"{WORKERS} worker processes, one run at a time each, one store",
            ),
        )

    @staticmethod
    def _run_batch(
        home: Path,
        node: Node,
        workflow: Workflow,
        runs: int,
        workers: tuple[list[subprocess.Popen[bytes]], list[Path]],
    ) -> int:
        """Wait for the workers' warm-up, start the runs, wait for the workers; ns taken."""
        children, logs = workers

        def died(when: str) -> RuntimeError:
            tails = [log.read_text(errors="replace").strip()[-400:] for log in logs]
            return RuntimeError(f"a worker died {when}: {' | '.join(t for t in tails if t)}")

        while len(list(home.glob("ready-*"))) < WORKERS:
            if any(c.poll() is not None for c in children):
                raise died("while warming up")
            time.sleep(0.005)
        (home / "go").touch()
        started = time.perf_counter_ns()
        for _ in range(runs):
            node.plane.start(workflow, credential=node.credential, tenant_id=TENANT, task="")
        for child in children:
            if child.wait() != 0:
                raise died(f"with exit code {child.returncode}")
        return time.perf_counter_ns() - started


def adapter(variant: str) -> WorkersAdapter:
    """Charter with worker processes; SQLite only."""
    if variant != "sqlite":
        raise ValueError(f"no Charter store {variant!r} yet")
    return WorkersAdapter()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
