"""Scale-out: governed durable steps per second with 1, 2 and 4 worker processes on PostgreSQL,
and with 1 on SQLite, serving 64 runs of 50 steps started at once.

Every step is bench/durable.py's governed `record` call: the whole gate with one Cedar
decision, its intent durable before the tool runs, its result committed with the next append.
Each measurement is a fresh store (a new SQLite file, or a new PostgreSQL schema) and fresh
`Worker` processes that warm up on a run of their own; the clock runs from the moment they
are told to go, while the parent starts the 64 runs, until every run has completed. The
configurations are measured in turn, repetition by repetition, so a slow minute of the machine
lands on all of them.

CPU is counted too, to say what limits the figure: the worker processes' own CPU from the go
to their exit (each reports its `process_time`), and the PostgreSQL server's (every `postgres`
process's CPU, plus what the postmaster has reaped from exited backends), per step.

Run `python -m bench.scale [--repetitions 3] [--write]` from the repository root. PostgreSQL is
the server at 127.0.0.1:5432 when it answers, else a throwaway cluster (tests/pg.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._report import ROOT, machine, write_section
from bench.peers._charter import open_warm
from bench.peers._common import TENANT
from charter.engine import Worker

TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))  # the PostgreSQL helper the tests use

import pg  # noqa: E402

RUNS = 64
STEPS = 50
CONFIGS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 4))
GOAL = 1500.0
"""Issue 5: PostgreSQL with 2 workers, steps per second."""
START, END = "<!-- bench:scale:start -->", "<!-- bench:scale:end -->"
CLOCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One measurement of one configuration."""

    steps_per_s: float
    worker_cpu_us: float
    """Worker processes' CPU per step."""
    server_cpu_us: float
    """PostgreSQL's CPU per step (0 for SQLite, which runs inside the workers)."""
    wal_bytes: float
    """PostgreSQL's WAL written per step (0 for SQLite)."""


@dataclass
class Config:
    """A backend and a number of worker processes, with its samples."""

    backend: str
    workers: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def label(self) -> str:
        return (
            f"{'PostgreSQL' if self.backend == 'postgres' else 'SQLite'}, {self.workers} worker"
            + ("s" if self.workers > 1 else "")
        )

    def median(self, name: str) -> float:
        return statistics.median(getattr(s, name) for s in self.samples)


# --- a worker process -----------------------------------------------------------------------
def serve(home: Path, url: str | None, target: int) -> None:
    """One worker: warm up, say so, wait for the go, then claim and run until `target` runs
    completed. Between claims it waits on the store's wake-up (NOTIFY on PostgreSQL)."""
    node, workflow = open_warm(home, STEPS, url)
    (home / f"ready-{os.getpid()}").touch()
    while not (home / "go").exists():
        time.sleep(0.001)
    cpu = time.process_time()
    worker = Worker(node.plane, [workflow])
    while True:
        if worker.step() is not None:
            continue
        if completed(node.store) >= target:
            break
        node.store.wait_for_work(0.005)
    (home / f"cpu-{os.getpid()}").write_text(str(time.process_time() - cpu))
    node.close()


def completed(store: object) -> int:
    """Runs completed in the store."""
    with store._reading() as db:  # type: ignore[attr-defined]  # noqa: SLF001
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0])


# --- the driver -----------------------------------------------------------------------------
def measure(config: Config) -> Sample:
    """One fresh store, `config.workers` fresh worker processes, 64 runs; the sample."""
    schema, url = pg.new_schema() if config.backend == "postgres" else (None, None)
    try:
        with tempfile.TemporaryDirectory(prefix="charter-scale-") as tmp:
            return _measure(Path(tmp), url, config.workers)
    finally:
        if schema is not None:
            pg.drop_schema(schema)


def _measure(home: Path, url: str | None, workers: int) -> Sample:
    node, workflow = open_warm(home, STEPS, url)
    target = completed(node.store) + workers + RUNS  # every worker warms up on a run of its own
    command = [sys.executable, "-m", "bench.scale", "worker", str(home), str(target)]
    command += [url] if url else []
    logs = [home / f"worker-{n}.log" for n in range(workers)]
    children = [
        subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
        for log in logs
    ]
    try:
        while len(list(home.glob("ready-*"))) < workers:
            if any(c.poll() is not None for c in children):
                raise RuntimeError(f"a worker died warming up: {_tails(logs)}")
            time.sleep(0.005)
        server_before = _server_cpu() if url else 0.0
        wal_before = _wal_lsn() if url else 0
        (home / "go").touch()
        started = time.perf_counter()
        for _ in range(RUNS):
            node.plane.start(workflow, credential=node.credential, tenant_id=TENANT, task="")
        for child in children:
            if child.wait() != 0:
                raise RuntimeError(f"a worker exited {child.returncode}: {_tails(logs)}")
        elapsed = time.perf_counter() - started
        worker_cpu = sum(float(f.read_text()) for f in home.glob("cpu-*"))
        server_cpu = (_server_cpu() - server_before) if url else 0.0
        wal = (_wal_lsn() - wal_before) if url else 0
    finally:
        for child in children:
            child.kill()
            child.wait()
        node.close()
    steps = RUNS * STEPS
    return Sample(
        steps_per_s=steps / elapsed,
        worker_cpu_us=worker_cpu / steps * 1e6,
        server_cpu_us=server_cpu / steps * 1e6,
        wal_bytes=wal / steps,
    )


def _tails(logs: list[Path]) -> str:
    return " | ".join(log.read_text(errors="replace").strip()[-400:] for log in logs)


def _server_cpu() -> float:
    """CPU seconds of every `postgres` process, plus the backends they have reaped."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name != "postgres" and not name.startswith("postgres:"):
            continue
        fields = text[text.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime: fields 14-17 of /proc/PID/stat (11-14 after the name).
        total += sum(int(f) for f in fields[11:15]) / CLOCK
    return total


def _wal_lsn() -> int:
    """The server's WAL position, in bytes (the whole server: other databases count too)."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(pg.server()) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0


def propagation_ms(samples: int = 50) -> list[float]:
    """Milliseconds from a kill switch's commit on one node until another node's idle worker
    is woken by its NOTIFY, `samples` times (engaged and released in turn)."""
    from charter.privacy import MemoryKeyring  # noqa: PLC0415
    from charter.store import KillSwitch, open_store  # noqa: PLC0415

    schema, url = pg.new_schema()
    key = os.urandom(32)
    keys = MemoryKeyring()
    first = open_store(url, seal_key=key, keys=keys)
    second = open_store(url, seal_key=key, keys=keys)
    try:
        second.control_version()  # starts its listener
        second.wait_for_work(0)
        switch = KillSwitch(workflow="bench", reason="drill", created_by="sre", created_at="now")
        taken: list[float] = []
        for n in range(samples):
            second.wait_for_work(0)
            started = time.perf_counter()
            if n % 2 == 0:
                first.engage_kill_switch(switch)
            else:
                first.release_kill_switch(switch.key)
            if not second.wait_for_work(10.0):
                raise RuntimeError("a notification never arrived")
            taken.append((time.perf_counter() - started) * 1e3)
        return sorted(taken)
    finally:
        first.close()
        second.close()
        pg.drop_schema(schema)


def server_settings() -> str:
    """The PostgreSQL settings that decide a commit's cost."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(pg.server()) as conn:
        rows = [
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "wal_sync_method",
                "shared_buffers",
            )
        ]
    return ", ".join(rows)


def report(configs: list[Config], repetitions: int) -> list[str]:
    """The section for BENCHMARKS.md."""
    by = {(c.backend, c.workers): c for c in configs}
    pg2 = by[("postgres", 2)].median("steps_per_s")
    cores = os.cpu_count() or 1
    header = (
        "| Store, workers | Steps/s | Worker CPU per step | PostgreSQL CPU per step "
        f"| PostgreSQL WAL per step | CPU ceiling on {cores} cores |"
    )
    lines = [
        *machine(),
        f"- Command: `.venv/bin/python -m bench.scale --repetitions {repetitions} --write`",
        f"- PostgreSQL: {server_settings()}; on this machine, over TCP to 127.0.0.1",
        (
            f"- Workload: {RUNS} runs of {STEPS} governed steps started at once; each "
            f"configuration {repetitions} times, interleaved; medians (min-max)"
        ),
        (
            "- CPU ceiling: the steps/s the cores would give if CPU were all that limited it, "
            "cores / (worker + server CPU per step)"
        ),
        "",
        header,
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in configs:
        rate = [s.steps_per_s for s in c.samples]
        worker, server = c.median("worker_cpu_us"), c.median("server_cpu_us")
        on_pg = c.backend == "postgres"
        shown = f"{server:,.0f} µs" if on_pg else "in the worker"
        wal = f"{c.median('wal_bytes') / 1024:,.1f} KiB" if on_pg else "-"
        lines.append(
            f"| {c.label} | {c.median('steps_per_s'):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) "
            f"| {worker:,.0f} µs | {shown} | {wal} | {cores / (worker + server) * 1e6:,.0f} |"
        )
    verdict = "met" if pg2 >= GOAL else f"missed ({GOAL / pg2:.1f}x short)"
    lines += ["", f"Goal: PostgreSQL with 2 workers >= {GOAL:,.0f} steps/s: {pg2:,.0f}, {verdict}."]
    taken = propagation_ms()
    p95 = taken[int(len(taken) * 0.95) - 1]
    lines += [
        "",
        (
            f"Propagation: a kill switch committed on one node woke another node's listener in "
            f"{statistics.median(taken):.2f} ms (median of {len(taken)}; p95 {p95:.2f} ms, "
            f"max {taken[-1]:.2f} ms). The commit itself is included: the clock starts before "
            "`engage_kill_switch`."
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Measure every configuration, print the table, and write it into BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    options = parser.parse_args(argv)
    configs = [Config(backend, workers) for backend, workers in CONFIGS]
    for repetition in range(options.repetitions):
        for config in configs:
            sample = measure(config)
            config.samples.append(sample)
            print(
                f"[{repetition + 1}/{options.repetitions}] {config.label}: {sample}",
                file=sys.stderr,
            )
    lines = report(configs, options.repetitions)
    print("\n".join(lines))
    if options.write:
        write_section(lines, start=START, end=END)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        serve(Path(sys.argv[2]), sys.argv[4] if len(sys.argv) > 4 else None, int(sys.argv[3]))
    else:
        sys.exit(main())
