"""The comparison benchmark's harness, on Charter itself (the peers live in .venv-bench).

The harness's verdicts are only as good as its plumbing: a kill that does not land where the
adapter says, or a ratio taken the wrong way round, would put a wrong number in
BENCHMARKS.md. These run the real measuring processes at small sizes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench import tamper
from bench.compare import (
    CHARTER,
    Outcome,
    Results,
    Sizes,
    goals,
    keyed_duplicates,
    pair_ratios,
    workloads,
)

ROOT = Path(__file__).resolve().parent.parent


def peer(system: str, measure: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench.peers", system, measure, "--home", str(home), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def reported(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_kill_between_effect_and_record_repeats_the_effect_under_one_key(tmp_path):
    """Charter re-executes the interrupted step once, with the key of the first attempt."""
    died = peer("charter-sqlite", "effects-prepare", tmp_path)
    assert died.returncode == -9, died.stderr
    extra = reported(peer("charter-sqlite", "effects-recover", tmp_path))["extra"]
    assert (extra["executions"], extra["distinct_keys"]) == (2, 1)


@pytest.mark.slow
def test_recovery_after_a_kill_finishes_the_run(tmp_path):
    """A fresh process's worker completes a run whose process died mid-step."""
    died = peer("charter-sqlite", "resume-prepare", tmp_path, "--steps", "20")
    assert died.returncode == -9, died.stderr
    values = reported(peer("charter-sqlite", "resume-recover", tmp_path, "--steps", "20"))
    assert len(values["values"]) == 1
    assert values["values"][0] > 0


def test_sequential_reports_one_value_per_repetition(tmp_path):
    got = reported(
        peer("raw-sqlite", "sequential", tmp_path, "--steps", "20", "--repetitions", "3")
    )
    assert len(got["values"]) == 3
    assert all(v > 0 for v in got["values"])


def test_ratios_say_how_many_times_faster_charter_is_for_either_unit():
    assert pair_ratios([100.0, 200.0], [300.0, 800.0], "µs/step") == [3.0, 4.0]
    assert pair_ratios([3000.0, 2000.0], [1000.0, 500.0], "steps/s") == [3.0, 4.0]


def test_duplicates_count_keys_past_the_first():
    assert keyed_duplicates(Outcome(extra={"executions": 2, "distinct_keys": 1})) == 0
    assert keyed_duplicates(Outcome(extra={"executions": 2, "distinct_keys": 2})) == 1


def test_goals_are_judged_on_the_medians_and_pair_ratios():
    sizes = Sizes(repetitions=3)
    table = {w.key: {} for w in workloads(sizes)}
    table["seq-cedar"] = {
        CHARTER: Outcome(values=[400.0, 450.0, 600.0]),
        "langgraph-sqlite": Outcome(values=[700.0, 1000.0, 1500.0]),
    }
    results = Results(
        sizes=sizes,
        table=table,
        resume={CHARTER: Outcome(values=[60.0, 40.0, 45.0])},
        effects={CHARTER: Outcome(extra={"executions": 2, "distinct_keys": 1})},
        cedar_us=[50.0],
        skipped={},
    )
    verdicts = {g.text: (g.measured, g.met) for g in goals(results)}
    assert verdicts["Sequential governed durable step ≤ 500 µs"] == ("450 µs", True)
    # Pair by pair: 700/400, 1000/450, 1500/600 -> 1.75, 2.22, 2.5; median 2.22.
    assert verdicts["... ≥ 2x faster than LangGraph, Cedar per step"] == ("2.22x", True)
    assert verdicts["... ≥ 100x faster than Temporal, Cedar per step"] == ("-", None)
    assert verdicts["Recovery of a run with 1,000 completed steps ≤ 50 ms"] == ("45 ms", True)
    assert verdicts["Zero duplicate effects after a kill"] == ("0", True)


def test_tamper_detects_one_of_every_kind_on_sqlite(capsys):
    """The tamper benchmark at its smallest: every kind once, all detected, none crashing."""
    n = len(tamper.KINDS)
    assert tamper.main(["--n", str(n), "--seed", "7"]) == 0
    table = capsys.readouterr().out
    assert f"| **total** | {n} kinds | **{n}** | **{n}** | **0** |" in table
    assert "untouched copies verified: 1 of 1" in table
