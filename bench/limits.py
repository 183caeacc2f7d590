"""What the shared budget and rate limit add to a governed call.

Both limits decide in memory and charge the store inside the append the step makes anyway
(the intent carries the reservation and the token; the result carries the settlement). So the
overhead of a call under both limits is:

* the two stages' own time (`rate_limit` and `budget`), as the gate records it per check;
* the charges' SQL inside the already-open transaction: taking a token and reserving against
  two day caps with the intent, settling with the result.

Both are timed here on the embedded SQLite store, the second by applying the charges inside a
transaction that is rolled back, so that no fsync, which the step pays anyway, hides them. The
end-to-end time of a step with and without the limits is reported too, interleaved, for
context: it moves with the disk more than with the limits.

Run `python -m bench.limits` (or `make bench`); `--write` rewrites BENCHMARKS.md's section.
"""

from __future__ import annotations

import argparse
import gc
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench._report import machine, write_section
from bench.durable import CONTRACT, load_agent, write_agent
from bench.peers._common import TENANT
from charter import ControlPlane
from charter._identity import create_agent_identity
from charter.engine import Workflow
from charter.store import Cap, Reserve, Settle, SqliteStore, TakeToken
from charter.store._limits import apply_charges

if TYPE_CHECKING:
    from charter._agent import Agent
    from charter.engine import Context

GOAL_US = 25.0
"""The goal: budget and rate-limit checks together add at most 25 µs to a call."""
STEPS = 200
REPETITIONS = 7
CHARGES = 2000
"""Charge applications timed per repetition."""

LIMITS: dict[str, Any] = {
    "budget": {"per_workflow_day_usd": 1_000_000.0, "per_tenant_day_usd": 1_000_000.0},
    "rate_limits": [{"tool": "record", "rate": "1000000/s"}],
}
"""Caps no step reaches: every call is judged, charged and passes."""

START, END = "<!-- bench:limits:start -->", "<!-- bench:limits:end -->"
COMMAND = "`make bench` (prints) or `.venv/bin/python -m bench.limits --write` (also writes here)"


def _agent(folder: Path, *, limited: bool) -> Agent:
    write_agent(folder)
    contract = dict(CONTRACT)
    if limited:
        contract |= LIMITS
    # Every call costs something, so it reserves against the caps and settles.
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract), encoding="utf-8")
    agent = load_agent(folder)
    for tool in agent.tools.values():
        object.__setattr__(tool, "cost_usd", 0.001)
    return agent


def _workflow(agent: Agent, steps: int) -> Workflow:
    def fn(ctx: Context, _task: object) -> int:
        for n in range(steps):
            ctx.tool("record", {"item": f"item-{n}"})
        return steps

    return Workflow(agent=agent, fn=fn)


def _run(plane: ControlPlane, workflow: Workflow, token: str) -> float:
    """Seconds per step of one run of `workflow`."""
    run_id = plane.start(workflow, credential=token, tenant_id=TENANT, task="")
    started = time.perf_counter()
    result = plane.resume(run_id, workflow)
    elapsed = time.perf_counter() - started
    if result.status != "completed":
        raise RuntimeError(f"{run_id} ended {result.status}: {result.reason}")
    return elapsed / STEPS


def _stage_us(store: SqliteStore) -> dict[str, float]:
    """Median recorded duration of the two limit stages over every limited call."""
    durations: dict[str, list[int]] = {"rate_limit": [], "budget": []}
    for run in store.list_runs(limit=10_000):
        for event in store.events(run.run_id):
            if event.kind != "gate.decided":
                continue
            for check in event.payload["checks"]:
                if check["check"] in durations:
                    durations[check["check"]].append(check["duration_us"])
    return {name: statistics.median(values) for name, values in durations.items() if values}


def _charge_us(store: SqliteStore) -> dict[str, float]:
    """Per-call time of the charges' SQL inside an open transaction (rolled back)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    caps = (
        Cap(scope="workflow:bench", day=day, cap_usd=1e6),
        Cap(scope=f"tenant:{TENANT}", day=day, cap_usd=1e6),
    )
    timings: dict[str, list[float]] = {"intent": [], "result": [], "bare": []}
    with store._transaction() as db:  # noqa: SLF001 - the bench times the store's own SQL
        for n in range(CHARGES):
            reserve = Reserve(run_id="run_bench", step=n, amount_usd=0.001, caps=caps)
            intent = [
                TakeToken(key=f"bench/{TENANT}/record", per_second=1e6, capacity=1e6),
                reserve,
            ]
            # As the gate settles: it holds the reservation its intent committed.
            settle = Settle(run_id="run_bench", step=n, cost_usd=0.001, reserved=reserve)
            started = time.perf_counter_ns()
            apply_charges(db, intent, now=time.time(), for_update="")
            middle = time.perf_counter_ns()
            apply_charges(db, [settle], now=0.0, for_update="")
            ended = time.perf_counter_ns()
            # The baseline: one bare single-row UPDATE through the same connection, which is
            # what the machine makes of the smallest statement a charge could be.
            db.execute(_BARE, ("workflow:bench", day))
            bare = time.perf_counter_ns()
            timings["intent"].append((middle - started) / 1000)
            timings["result"].append((ended - middle) / 1000)
            timings["bare"].append((bare - ended) / 1000)
        db.execute("ROLLBACK")
        db.execute("BEGIN")
    return {name: statistics.median(values) for name, values in timings.items()}


_BARE = "UPDATE spend SET spent = spent + 0 WHERE scope = ? AND day = ?"


def measure(repetitions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="charter-limits-") as tmp:
        home = Path(tmp)
        store = SqliteStore(home / "charter.db", seal_key=secrets.token_bytes(32))
        plane = ControlPlane(store)
        token = create_agent_identity(
            store, agent=CONTRACT["agent"], workflow=CONTRACT["workflow"], tenant_id=TENANT
        ).token
        subjects = {
            "without": _workflow(_agent(home / "plain", limited=False), STEPS),
            "with": _workflow(_agent(home / "limited", limited=True), STEPS),
        }
        for workflow in subjects.values():
            _run(plane, workflow, token)  # warm-up
        per_step: dict[str, list[float]] = {name: [] for name in subjects}
        charges: list[dict[str, float]] = []
        gc.collect()
        for _ in range(repetitions):
            for name, workflow in subjects.items():
                per_step[name].append(_run(plane, workflow, token) * 1e6)
            charges.append(_charge_us(store))
        stages = _stage_us(store)
        plane.close()
        store.close()
    return {
        "step_us": {name: statistics.median(v) for name, v in per_step.items()},
        "stages_us": stages,
        "charges_us": {k: statistics.median(c[k] for c in charges) for k in ("intent", "result")},
        "bare_us": statistics.median(c["bare"] for c in charges),
    }


def report(result: dict[str, Any], repetitions: int) -> list[str]:
    stages, charges, steps = result["stages_us"], result["charges_us"], result["step_us"]
    total = sum(stages.values()) + sum(charges.values())
    verdict = "met" if total <= GOAL_US else "MISSED"
    return [
        "## Budget and rate-limit overhead per call",
        "",
        (
            f"Measured with {COMMAND}: {repetitions} repetitions, medians; each repetition runs "
            f"a {STEPS}-step run with and without the limits (interleaved) and applies "
            f"{CHARGES} charge sets inside a rolled-back transaction."
        ),
        "",
        *machine(),
        "",
        "| Part | Median per call |",
        "|---|---:|",
        f"| `rate_limit` stage (in memory) | {stages.get('rate_limit', 0):.1f} µs |",
        f"| `budget` stage (in memory) | {stages.get('budget', 0):.1f} µs |",
        (
            f"| charges with the intent: token + reservation on 2 day caps | "
            f"{charges['intent']:.1f} µs |"
        ),
        f"| charge with the result: settlement | {charges['result']:.1f} µs |",
        f"| **total** | **{total:.1f} µs** |",
        "",
        f"Goal: at most {GOAL_US:.0f} µs together per call: **{verdict}** ({total:.1f} µs).",
        "",
        (
            f"Baseline, same run: one bare single-row `UPDATE` through the same connection took "
            f"{result['bare_us']:.1f} µs, so the charges cost "
            f"{sum(charges.values()) / result['bare_us']:.1f} bare statements and the whole "
            f"overhead {total / result['bare_us']:.1f}. Compare machines by these ratios: "
            "absolute times move with the CPU (the same code measures several times slower "
            "on a busy virtual machine)."
        ),
        "",
        (
            f"For context, a whole governed step on SQLite (`synchronous=FULL`) took "
            f"{steps['without']:.0f} µs without the limits and {steps['with']:.0f} µs with them "
            f"(median of {repetitions} runs each); that difference moves with the disk's fsync "
            "time more than with the limits."
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    result = measure(args.repetitions)
    section = report(result, args.repetitions)
    print("\n".join(section))
    if args.write:
        write_section(section, start=START, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
