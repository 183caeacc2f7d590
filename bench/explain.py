"""The incident query on a big store: `charter explain` on a store of 1,000,000 events, and
chain verification over all of them.

The store is built in two parts. First, template runs go through the real plane: each is a
workflow of `STEPS` governed tool calls, with the gate, Cedar, the vault and the chain, exactly
as production writes them. Then the templates are copied under new run ids until the store
holds `EVENTS` events; every copy's chain is recomputed with the store's own `event_hash` and
its head sealed with `seal`, so `store.verify` accepts every run. (Copies carry no raw
payloads: explain and verify read events only, and a raw payload is bound to its own run.)
Seeding runs with `synchronous=OFF`; the store is then reopened with its own settings.

Measured on the reopened store: what `charter explain RUN` does (read the run's events, fold
them, answer the four questions for every step) for runs picked at random, p50 and p95 over
`QUERIES` queries; the same for a single step (`--step N`); and `store.verify()` of every run,
in events per second.

Run `python -m bench.explain`; `--write` also rewrites the explain section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._report import REPORT, machine, percentile, write_section
from bench.peers._charter import agent, open_node, run_inline, steps_workflow
from charter._explain import explain
from charter.store import SqliteStore
from charter.store._chain import GENESIS, event_hash, seal
from charter.store._sqlite import _record_from_row

EVENTS = 1_000_000
TEMPLATES = 50
STEPS = 10
"""Tool steps per template run: 3 events each, plus the run's start and finish."""
QUERIES = 1000
REPETITIONS = 5
GOAL_P95_MS = 20.0
GOAL_VERIFY_RATE = 200_000

START, END = "<!-- bench:explain:start -->", "<!-- bench:explain:end -->"
COMMAND = "`.venv/bin/python -m bench.explain --write` (`python -m bench.explain` only prints)"


def seed(home: Path, events: int) -> tuple[list[str], int]:
    """Template runs through the plane, then sealed copies; the run ids and the event count."""
    node = open_node(home)
    workflow = steps_workflow(agent(home), STEPS)
    for _ in range(TEMPLATES):
        run_inline(node, workflow)
    key = node.store.seal_key
    node.close()
    db = sqlite3.connect(home / "charter.db", isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA synchronous=OFF")  # seeding only; measured on a normal reopen
    templates = [dict(r) for r in db.execute("SELECT * FROM runs")]
    rows = {
        t["run_id"]: db.execute(
            "SELECT * FROM events WHERE run_id = ? ORDER BY seq", (t["run_id"],)
        ).fetchall()
        for t in templates
    }
    total = sum(len(r) for r in rows.values())
    copies = 0
    db.execute("BEGIN")
    while total < events:
        template = templates[copies % len(templates)]
        total += copy_run(db, template, rows[template["run_id"]], key)
        copies += 1
        if copies % 5000 == 0:
            db.execute("COMMIT")
            db.execute("BEGIN")
            progress(f"{total:,} events")
    db.execute("COMMIT")
    run_ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
    counted = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return run_ids, counted


def copy_run(
    db: sqlite3.Connection, template: dict[str, object], rows: list[sqlite3.Row], key: bytes
) -> int:
    """One copy of a template run under a fresh id, re-chained and re-sealed; its event count."""
    old, new = str(template["run_id"]), f"run_{secrets.token_hex(8)}"
    prev = GENESIS
    copied = []
    for row in rows:
        payload = row["payload"].replace(old, new)
        digest = event_hash(
            prev_hash=prev,
            run_id=new,
            seq=row["seq"],
            ts=row["ts"],
            kind=row["kind"],
            payload=payload,
        )
        copied.append((new, row["seq"], row["ts"], row["kind"], payload, prev, digest, row["step"]))
        prev = digest
    run = {**template, "run_id": new, "head_hash": prev}
    record = _record_from_row(run)  # type: ignore[arg-type]
    run["head_mac"] = seal(
        key, run_id=new, seq=int(run["head_seq"]), head_hash=prev, summary=record.sealed_summary()
    )
    columns = ", ".join(run)
    marks = ", ".join("?" for _ in run)
    db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", list(run.values()))
    db.executemany(
        "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        copied,
    )
    return len(copied)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def query_ms(store: SqliteStore, run_ids: list[str], step: int | None) -> list[float]:
    """ms per explain query, `QUERIES` runs picked at random (seeded: the same runs each time)."""
    picked = random.Random(step or 0).choices(run_ids, k=QUERIES)
    timings: list[float] = []
    for run_id in picked:
        started = time.perf_counter_ns()
        report = explain(store.events(run_id), step=step)
        timings.append((time.perf_counter_ns() - started) / 1e6)
        if len(report["steps"]) != (1 if step else STEPS):
            raise RuntimeError(f"explain of {run_id} gave {len(report['steps'])} steps")
    return timings


def measure(home: Path) -> list[str]:
    progress("seeding...")
    started = time.perf_counter()
    run_ids, events = seed(home, EVENTS)
    seeded_s = time.perf_counter() - started
    store = SqliteStore(home / "charter.db", seal_key=(home / "seal.key").read_bytes())
    rows: list[tuple[str, list[float], list[float]]] = []
    for label, step in (("`explain RUN`: every step", None), ("`explain RUN --step 5`", 5)):
        p50s, p95s = [], []
        for _ in range(REPETITIONS):
            ordered = sorted(query_ms(store, run_ids, step))
            p50s.append(percentile(ordered, 50))  # type: ignore[arg-type]
            p95s.append(percentile(ordered, 95))  # type: ignore[arg-type]
        rows.append((label, p50s, p95s))
    progress("verifying every run...")
    started = time.perf_counter()
    reports = store.verify()
    verify_s = time.perf_counter() - started
    checked = sum(r.events_checked for r in reports)
    broken = [r.run_id for r in reports if not r.ok]
    store.close()
    if broken or checked != events:
        raise RuntimeError(f"{len(broken)} runs do not verify; {checked} of {events} checked")
    return report(
        rows,
        events=events,
        runs=len(run_ids),
        seeded_s=seeded_s,
        rate=checked / verify_s,
        verify_s=verify_s,
    )


def report(
    rows: list[tuple[str, list[float], list[float]]],
    *,
    events: int,
    runs: int,
    seeded_s: float,
    rate: float,
    verify_s: float,
) -> list[str]:
    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    p95 = statistics.median(rows[0][2])
    return [
        "## Results",
        "",
        *machine(),
        f"- Command: {COMMAND}",
        (
            f"- Store: {events:,} events in {runs:,} runs of {STEPS} tool steps "
            f"({TEMPLATES} through the plane, the rest sealed copies), seeded in {seeded_s:.0f} s"
        ),
        (
            f"- Method: {REPETITIONS} repetitions of {QUERIES} queries on runs picked at random; "
            "shown: the median over repetitions of each one's p50 and p95, with the min-max."
        ),
        "",
        "| Query | p50 ms (min-max) | p95 ms (min-max) |",
        "|---|---:|---:|",
        *(f"| {label} | {spread(p50s)} | {spread(p95s)} |" for label, p50s, p95s in rows),
        "",
        (
            f"- Goal: the four-question query p95 ≤ {GOAL_P95_MS:.0f} ms on 1M events: "
            f"{p95:.2f} ms, **{'met' if p95 <= GOAL_P95_MS else 'missed'}**"
        ),
        (
            f"- Chain verification of every run (`store.verify()`): {events:,} events in "
            f"{verify_s:.1f} s, {rate:,.0f} events/s; goal ≥ {GOAL_VERIFY_RATE:,}: "
            f"**{'met' if rate >= GOAL_VERIFY_RATE else 'missed'}**"
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Build the store, measure, print, and with --write store the section in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="charter-explain-") as home:
        section = measure(Path(home))
    print("\n".join(section))
    if options.write:
        write_section(section, start=START, end=END)
        print(f"\nwrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
