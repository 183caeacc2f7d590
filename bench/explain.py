"""The incident query on a big store: `charter explain` on a store of 1,000,000 events, and
the whole-store audit over all of them.

The store is built in two parts. First, template runs go through the real plane: each is a
workflow of `STEPS` governed tool calls, with the gate, Cedar, the vault and the chain, exactly
as production writes them. Then the templates are copied under new run ids until the store
holds `EVENTS` events; every copy's chain is recomputed with the store's own `payload_digest`
and `event_hash`, its head sealed with `seal`, and its milestones claimed on the store's
ledger where its template's were (start, each write intent, end), so `store.audit` accepts
every run. (Copies carry no raw payloads: explain and the audit read events only, and a raw
payload is bound to its own run.) Seeding runs with `synchronous=OFF`; the store is then
reopened with its own settings.

Measured on the reopened store: what `charter explain RUN` does (read the run's events, fold
them, answer the four questions for every step) for runs picked at random, p50 and p95 over
`QUERIES` queries; the same for a single step (`--step N`); and `store.audit()` (what
`charter audit verify` runs: every run's chain, seal and ledger claims, the ledger itself, the
control log, the identities), in events per second, `AUDITS` times after one untimed audit.

Run `python -m bench.explain`; `--write` also rewrites the explain section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
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
from charter.store._chain import GENESIS, event_hash, payload_digest, seal
from charter.store._ledger import Claim, append_claims
from charter.store._rows import record_from_row

EVENTS = 1_000_000
TEMPLATES = 50
STEPS = 10
"""Tool steps per template run: 3 events each, plus the run's start and finish."""
QUERIES = 1000
REPETITIONS = 5
AUDITS = 5
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
    # Each copy is claimed on the ledger where its template was (start, each write intent,
    # end), as the plane would have claimed it: `store.audit` accepts no unclaimed run.
    milestones: dict[str, list[tuple[int, str]]] = {t["run_id"]: [] for t in templates}
    for r in db.execute("SELECT subject, head_seq, detail FROM ledger WHERE kind = 'run'"):
        milestones[r[0]].append((r[1], r[2]))
    total = sum(len(r) for r in rows.values())
    copies = 0
    claims: list[Claim] = []
    db.execute("BEGIN")
    while total < events:
        template = templates[copies % len(templates)]
        hashes = copy_run(db, template, rows[template["run_id"]], key)
        claims += [
            Claim("run", hashes[0], seq, hashes[seq], detail)
            for seq, detail in milestones[template["run_id"]]
        ]
        total += len(hashes) - 1
        copies += 1
        if copies % 5000 == 0:
            append_claims(db, key, claims, ts=str(template["updated_at"]))  # type: ignore[arg-type]
            claims = []
            db.execute("COMMIT")
            db.execute("BEGIN")
            progress(f"{total:,} events")
    append_claims(db, key, claims, ts=str(templates[0]["updated_at"]))  # type: ignore[arg-type]
    db.execute("COMMIT")
    run_ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
    counted = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return run_ids, counted


def copy_run(
    db: sqlite3.Connection, template: dict[str, object], rows: list[sqlite3.Row], key: bytes
) -> list[str]:
    """One copy of a template run under a fresh id, re-chained and re-sealed.

    Returns the new run id, then each event's hash (index = sequence number).
    """
    old, new = str(template["run_id"]), f"run_{secrets.token_hex(8)}"
    prev = GENESIS
    copied = []
    hashes = [new]
    for row in rows:
        payload = row["payload"].replace(old, new)
        covered = payload_digest(payload)
        digest = event_hash(
            prev_hash=prev,
            run_id=new,
            seq=row["seq"],
            ts=row["ts"],
            kind=row["kind"],
            payload=covered,
        )
        copied.append(
            (new, row["seq"], row["ts"], row["kind"], payload, prev, digest, row["step"], covered)
        )
        hashes.append(digest)
        prev = digest
    run = {**template, "run_id": new, "head_hash": prev}
    record = record_from_row(run)  # type: ignore[arg-type]
    run["head_mac"] = seal(
        key, run_id=new, seq=int(run["head_seq"]), head_hash=prev, summary=record.sealed_summary()
    )
    columns = ", ".join(run)
    marks = ", ".join("?" for _ in run)
    db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", list(run.values()))
    db.executemany(
        "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step, digest) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        copied,
    )
    return hashes


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
    progress("auditing the store...")
    load = os.getloadavg()[0]
    store.audit()  # untimed: the first read of the whole file warms the page cache
    audits: list[float] = []
    for _ in range(AUDITS):
        started = time.perf_counter()
        found = store.audit()
        audits.append(time.perf_counter() - started)
        checked = sum(r.events_checked for r in found.runs)
        if not found.ok or checked != events:
            raise RuntimeError(f"the store does not verify, or {checked} of {events} checked")
    processes = len(store._parts(None))  # noqa: SLF001 - how many processes the audit used
    store.close()
    return report(
        rows,
        events=events,
        runs=len(run_ids),
        seeded_s=seeded_s,
        audits=audits,
        processes=processes,
        load=load,
    )


def report(
    rows: list[tuple[str, list[float], list[float]]],
    *,
    events: int,
    runs: int,
    seeded_s: float,
    audits: list[float],
    processes: int,
    load: float,
) -> list[str]:
    def spread(values: list[float], digits: int = 2) -> str:
        return (
            f"{statistics.median(values):,.{digits}f} "
            f"({min(values):,.{digits}f}-{max(values):,.{digits}f})"
        )

    p95 = statistics.median(rows[0][2])
    rates = [events / s for s in audits]
    rate = statistics.median(rates)
    return [
        "## Results",
        "",
        *machine(),
        f"- Command: {COMMAND}",
        (
            f"- Store: {events:,} events in {runs:,} runs of {STEPS} tool steps "
            f"({TEMPLATES} through the plane, the rest sealed copies claimed on the ledger), "
            f"seeded in {seeded_s:.0f} s"
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
            f"- Whole-store audit (`store.audit()`, what `charter audit verify` runs: every "
            f"run's chain, seal and ledger claims, the ledger, the control log, the identities) "
            f"of {events:,} events, {AUDITS} times after one untimed: {spread(audits)} s, "
            f"**{rate:,.0f} events/s** (median; {min(rates):,.0f}-{max(rates):,.0f}), in "
            f"{processes} process{'es' if processes > 1 else ''} (1-minute load average "
            f"{load:.2f} as they began, this benchmark's own process included); "
            f"goal ≥ {GOAL_VERIFY_RATE:,}: "
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
