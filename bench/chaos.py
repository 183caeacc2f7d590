"""Chaos at scale: 1,000 billing runs while workers are killed with SIGKILL at random.

The scenario is the chaos test's (`tests/chaos_app.py`), with more runs: worker subprocesses
(three at once on one SQLite file, or on one PostgreSQL database with `--database-url`) run a
deterministic refund-and-reply workflow; each worker's `refund` and `send_macro` may kill it
between the sandbox effect and its record, and the driver kills workers from outside at random
moments, restarting them until every run is final. Then every run's log is checked against
the sandboxes' ledgers, and every hash chain is verified.

Run `python -m bench.chaos [--runs 1000] [--seed N] [--database-url URL]` from the repository
root. It prints a Markdown table for BENCHMARKS.md and exits 1 if any invariant fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench._report import machine

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the scenario's one copy lives beside the test that runs it

from chaos_app import Report, Scenario  # noqa: E402


def table(report: Report, scenario: Scenario) -> list[str]:
    """The figures, as Markdown rows."""
    rate = report.runs / report.work_s if report.work_s else 0.0
    rows = [
        ("Runs started", report.runs),
        ("Runs completed (resolved)", report.completed),
        ("Worker processes (rounds x workers at once)", f"{report.rounds} x {scenario.workers}"),
        ("SIGKILLs from outside, at a random moment", report.external_kills),
        ("SIGKILLs in a tool, between effect and record", report.tool_kills),
        ("... of which a later worker finished with the same key", report.tool_kills_finished),
        ("Runs resumed after their worker died", report.resumed_runs),
        ("... of which after an outside kill", report.resumed_after_external_kill),
        ("Steps re-executed (intent recorded, result not)", report.interrupted_steps),
        (
            "Duplicate effects (refunds + macros)",
            report.duplicate_refunds + report.duplicate_messages,
        ),
        ("Missing effects (refunds + macros)", report.missing_refunds + report.missing_messages),
        ("Recorded refunds that are not the ledger's", report.mismatched_results),
        ("Hash chains verified", f"{report.chains_ok} of {report.runs}"),
        ("Wall time: seed, start, work under fire, check", f"{report.wall_s:.1f} s"),
        ("Work time: first worker spawned to last run final", f"{report.work_s:.1f} s"),
        ("Runs per second of work time, kills and restarts included", f"{rate:.1f}"),
    ]
    return ["| Measure | Value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)]


def failures(report: Report) -> list[str]:
    """Every invariant the run broke (empty when exactly-once held)."""
    broken = [
        f"{name}: {value}"
        for name, value, ok in (
            ("completed", report.completed, report.completed == report.runs),
            ("duplicate refunds", report.duplicate_refunds, report.duplicate_refunds == 0),
            ("missing refunds", report.missing_refunds, report.missing_refunds == 0),
            ("duplicate messages", report.duplicate_messages, report.duplicate_messages == 0),
            ("missing messages", report.missing_messages, report.missing_messages == 0),
            ("mismatched results", report.mismatched_results, report.mismatched_results == 0),
            ("broken chains", report.chains_broken, report.chains_broken == 0),
            (
                "tool kills whose step was not finished",
                report.tool_kills - report.tool_kills_finished,
                report.tool_kills == report.tool_kills_finished,
            ),
        )
        if not ok
    ]
    return broken + report.problems


def main(argv: list[str] | None = None) -> int:
    """Run the scenario in a temporary home and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="runs to start (default 1000)")
    parser.add_argument("--seed", type=int, default=20261124, help="the kill schedule's seed")
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database or schema to run on (default: SQLite in a temp home)",
    )
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="charter-chaos-") as tmp:
        scenario = Scenario(
            home=Path(tmp),
            runs=options.runs,
            seed=options.seed,
            max_rounds=max(100, options.runs // 2),
            hang_s=600.0,
            database_url=options.database_url,
            # PostgreSQL workers take longer to start; see tests/test_chaos.py.
            kill_window=(0.5, 2.0) if options.database_url else (0.25, 1.0),
        )
        report = scenario.run()
    lines = [
        *machine(),
        f"- Command: `.venv/bin/python -m bench.chaos --runs {options.runs} --seed {options.seed}"
        + (" --database-url postgresql://...`" if options.database_url else "`"),
        f"- Store: {'PostgreSQL' if options.database_url else 'SQLite'}",
        (
            f"- Kill odds: {scenario.tool_kill_p:g} per refund or macro in the tool; "
            f"{scenario.external_kill_p:g} per worker from outside, "
            f"{scenario.kill_window[0]:g}-{scenario.kill_window[1]:g} s after spawn"
        ),
        "",
        *table(report, scenario),
    ]
    print("\n".join(lines))
    broken = failures(report)
    for problem in broken:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
