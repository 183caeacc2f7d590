"""A gate decision against a raw cedarpy decision on the same policy and request.

The subject is the billing example's `refund` of acme's $19.99 charge: a call every stage
passes (kill switch, principal, grant, schema, policy, budget, verifiers, approval), with one
Cedar evaluation. Four things are timed, interleaved repetition by repetition:

* `Gate.decide` on the real tool, whose `facts()` reads the charge from the payments sandbox;
* `Gate.decide` on a copy of the tool whose facts are precomputed, so that what remains on top
  of Cedar is Charter's own work;
* `cedarpy.is_authorized` on the exact request the gate builds, with a pre-parsed `PolicySet`
  and `Schema` (the fastest raw use, and the baseline of the ratios);
* `cedarpy.is_authorized` with the policy text and no schema (the naive raw use, for reference).

Run `python -m bench.gate` (or `make bench`); `--write` also rewrites the results section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import cedarpy

from bench._report import CHARTER_DIR, REPORT, machine, percentile, where, write_section
from charter._agent import Agent
from charter._events import CheckName, ToolCallSpec
from charter._identity import create_agent_identity
from charter._time import utcnow
from charter._tools import Facts, Tool, ToolContext
from charter.examples import BILLING, payments_tools, support_tools
from charter.gate import Call, Controls, Gate, RunState, idempotency_key
from charter.models import ScriptedModel
from charter.policy import CedarPolicy, PolicyRequest, build_request
from charter.policy._cedar import _to_cedar
from charter.privacy import Vault
from charter.sandbox import PaymentsSandbox, SupportSandbox
from charter.store import SqliteStore

if TYPE_CHECKING:
    from collections.abc import Iterator

WARMUP = 500
"""Untimed calls of each subject before the first repetition."""
REPETITIONS = 7
ITERATIONS = 3000
"""Timed calls per subject and repetition."""
GOAL = 1.15
"""The project's goal: a gate decision costs at most 1.15x a raw cedarpy decision."""
PROFILED_CALLS = 3000
"""Calls of `decide` under cProfile, on variant (b): Charter's own work, without the sandbox."""
TOP = 8

TENANT = "acme"
CHARGE_ID = "ch_acme_1001"
ARGUMENTS: dict[str, Any] = {
    "charge_id": CHARGE_ID,
    "amount_minor": 1999,
    "reason": "duplicate charge",
}
STAGES = get_args(CheckName)[:8]
"""The decision stages, in gate order (execute, output and record follow)."""

START, END = "<!-- bench:gate:start -->", "<!-- bench:gate:end -->"
COMMAND = "`make bench` (prints) or `.venv/bin/python -m bench.gate --write` (also writes here)"

Thunk = Callable[[], object]
Subject = Callable[[int], Thunk]
"""Given a fresh sequence number, the zero-argument call to time (built outside the timing)."""


# --- set-up -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fixture:
    """Everything the measurements share, built once."""

    store: SqliteStore
    gate: Gate
    run: RunState
    """A run of the billing agent as shipped: `refund` reads its facts from the sandbox."""
    run_fixed: RunState
    """The same agent with `refund`'s facts precomputed."""
    refund: Tool[Any, Any]
    facts: Facts
    policy: CedarPolicy
    request: PolicyRequest
    cedar_request: dict[str, Any]
    entities: list[dict[str, Any]]
    policy_text: str
    policy_set: Any
    schema: Any


def _agent(tools: list[Tool[Any, Any]], policy: CedarPolicy) -> Agent:
    return Agent.load(
        BILLING / "contract.yaml", tools=tools, model=ScriptedModel([]), policy=policy
    )


@contextmanager
def fixture() -> Iterator[Fixture]:
    """A store, seeded sandboxes, the billing agent, an acme identity and a gate, in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="charter-bench-") as tmp:
        home = Path(tmp)
        store = SqliteStore(home / "charter.db", seal_key=secrets.token_bytes(32))
        payments = PaymentsSandbox(home / "sandbox" / "payments.db")
        support = SupportSandbox(home / "sandbox" / "support.db")
        payments.create_charge(
            tenant_id=TENANT,
            customer_id="cus_1001",
            customer_email="maria@acme-customer.example",
            amount_minor=1999,
            currency="USD",
            charge_id=CHARGE_ID,
        )
        tools = [*payments_tools(payments), *support_tools(support)]
        policy = CedarPolicy.from_files(
            policies=BILLING / "policies.cedar", schema=BILLING / "schema.cedarschema"
        )
        agent = _agent(tools, policy)
        contract = agent.contract
        issued = create_agent_identity(
            store,
            agent=contract.agent,
            workflow=contract.workflow,
            tenant_id=TENANT,
            environment=contract.environment.value,
        )

        refund = agent.tools["refund"]
        ctx = ToolContext(
            run_id="run_setup",
            step=0,
            tenant_id=TENANT,
            idempotency_key=idempotency_key("run_setup", 0),
        )
        if refund.facts is None:
            raise RuntimeError("the billing refund tool has no facts() to benchmark")
        facts = refund.facts(refund.input_model.model_validate(ARGUMENTS), ctx)
        fixed = dataclasses.replace(refund, facts=lambda _args, _ctx: facts)
        agent_fixed = _agent([fixed if t.name == "refund" else t for t in tools], policy)

        request = build_request(
            principal_id=issued.identity.id,
            agent=contract.agent,
            workflow=contract.workflow,
            tenant_id=TENANT,
            environment=contract.environment.value,
            action="refund",
            facts=facts,
            approvals_granted=0,
            now=datetime.now(UTC),
        )
        cedar_request, entities = _to_cedar(request)
        policy_text = (BILLING / "policies.cedar").read_text(encoding="utf-8")
        schema_text = (BILLING / "schema.cedarschema").read_text(encoding="utf-8")
        gate = Gate(store, clock=utcnow, vault=Vault.for_store(store))
        try:
            yield Fixture(
                store=store,
                gate=gate,
                run=RunState(
                    run_id="run_bench",
                    agent=agent,
                    tenant_id=TENANT,
                    principal_id=issued.identity.id,
                ),
                run_fixed=RunState(
                    run_id="run_bench_fixed",
                    agent=agent_fixed,
                    tenant_id=TENANT,
                    principal_id=issued.identity.id,
                ),
                refund=refund,
                facts=facts,
                policy=policy,
                request=request,
                cedar_request=cedar_request,
                entities=entities,
                policy_text=policy_text,
                policy_set=cedarpy.PolicySet.from_str(policy_text),
                schema=cedarpy.Schema.from_str(schema_text),
            )
        finally:
            gate.close()
            payments.close()
            support.close()
            store.close()


def new_call(run: RunState, step: int) -> Call:
    """A fresh refund call, as `Gate.submit` would build it for this step."""
    spec = ToolCallSpec(call_id=f"call_{step}", tool="refund", arguments=dict(ARGUMENTS))
    return Call(run=run, step=step, spec=spec, idempotency_key=idempotency_key(run.run_id, step))


def check(fx: Fixture) -> None:
    """Refuse to time anything unless gate and raw Cedar decide the same request the same way."""
    for run in (fx.run, fx.run_fixed):
        call = new_call(run, 0)
        checks, _ = fx.gate.decide(call)
        seen = [(c.check, c.outcome) for c in checks]
        if seen != [(name, "pass") for name in STAGES]:
            raise RuntimeError(f"{run.run_id}: expected every stage to pass, got {seen}")
        policy_check = checks[STAGES.index("policy")]
        gate_context = dict(policy_check.detail["context"])  # type: ignore[arg-type]
        if call.facts != fx.facts or gate_context != fx.request.context:
            raise RuntimeError(f"{run.run_id}: the gate built another request than the raw one")
        gate_ids = call.policy.policy_ids if call.policy else ()
    raw = cedarpy.is_authorized(fx.cedar_request, fx.policy_set, fx.entities, schema=fx.schema)
    if raw.decision is not cedarpy.Decision.Allow or raw.diagnostics.errors:
        raise RuntimeError(f"raw cedarpy did not allow: {raw.decision} {raw.diagnostics.errors}")
    naive = cedarpy.is_authorized(fx.cedar_request, fx.policy_text, fx.entities)
    if naive.decision is not cedarpy.Decision.Allow:
        raise RuntimeError(f"naive cedarpy did not allow: {naive.decision}")
    if len(raw.diagnostics.reasons) != len(gate_ids):
        raise RuntimeError(f"gate policy ids {gate_ids} vs raw {raw.diagnostics.reasons}")


# --- timing -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Summary:
    """Per-repetition p50 and p99 of one subject, in nanoseconds."""

    label: str
    p50s: list[float]
    p99s: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.p50s)

    @property
    def p99(self) -> float:
        return statistics.median(self.p99s)


def sample(subject: Subject, first: int, count: int) -> list[int]:
    """Time `count` calls, each on its own, with `perf_counter_ns`."""
    clock = time.perf_counter_ns
    out: list[int] = []
    for n in range(first, first + count):
        thunk = subject(n)
        started = clock()
        thunk()
        out.append(clock() - started)
    return out


def measure(
    subjects: dict[str, Subject], *, warmup: int, repetitions: int, iterations: int
) -> dict[str, Summary]:
    """Warm every subject up, then run the repetitions interleaved so drift hits all alike."""
    for subject in subjects.values():
        sample(subject, 1, warmup)
    p50s: dict[str, list[float]] = {name: [] for name in subjects}
    p99s: dict[str, list[float]] = {name: [] for name in subjects}
    for rep in range(repetitions):
        first = warmup + 1 + rep * iterations
        for name, subject in subjects.items():
            gc.collect()  # each subject pays for its own garbage, not the previous one's
            ordered = sorted(sample(subject, first, iterations))
            p50s[name].append(percentile(ordered, 50))
            p99s[name].append(percentile(ordered, 99))
    return {name: Summary(name, p50s[name], p99s[name]) for name in subjects}


def subjects(fx: Fixture) -> dict[str, Subject]:
    """The four measured calls, keyed by the label they get in the table."""
    raw = partial(
        cedarpy.is_authorized, fx.cedar_request, fx.policy_set, fx.entities, schema=fx.schema
    )
    naive = partial(cedarpy.is_authorized, fx.cedar_request, fx.policy_text, fx.entities)
    return {
        "Gate `decide`, refund, facts read from the sandbox (a)": lambda n: partial(
            fx.gate.decide, new_call(fx.run, n)
        ),
        "Gate `decide`, refund, facts precomputed (b)": lambda n: partial(
            fx.gate.decide, new_call(fx.run_fixed, n)
        ),
        "Raw `cedarpy.is_authorized`, pre-parsed PolicySet + Schema": lambda _n: raw,
        "Raw `cedarpy.is_authorized`, policy text, no schema (naive)": lambda _n: naive,
    }


def stage_breakdown(fx: Fixture, run: RunState, iterations: int) -> dict[str, float]:
    """Median ns of each decision stage and of the per-call control refresh, run as `decide` does.

    `Gate.decide` refreshes its controls (one SQLite read) and then runs the stages; the refresh
    is timed here on a separate `Controls` over the same store.
    """
    controls = Controls(fx.store)
    clock = time.perf_counter_ns
    times: dict[str, list[int]] = {"controls refresh": [], **{name: [] for name in STAGES}}
    for n in range(1, WARMUP + iterations + 1):
        call = new_call(run, n)
        started = clock()
        controls.refresh()
        times["controls refresh"].append(clock() - started)
        for name, stage in zip(STAGES, fx.gate.stages, strict=True):
            started = clock()
            stage(call)
            times[name].append(clock() - started)
    return {name: statistics.median(values[WARMUP:]) for name, values in times.items()}


def policy_breakdown(fx: Fixture, iterations: int) -> dict[str, float]:
    """Median ns of the pieces of the policy stage, each timed on its own."""
    args = fx.refund.input_model.model_validate(ARGUMENTS)
    ctx = ToolContext(run_id="run_bench", step=1, tenant_id=TENANT, idempotency_key="chk_bench")
    if fx.refund.facts is None:
        raise RuntimeError("the billing refund tool has no facts() to benchmark")
    request = fx.request
    pieces: dict[str, Thunk] = {
        "refund `facts()` (sandbox read)": partial(fx.refund.facts, args, ctx),
        "`build_request`": lambda: build_request(
            principal_id=request.principal.id,
            agent=str(request.principal.attrs["agent"]),
            workflow=str(request.principal.attrs["workflow"]),
            tenant_id=TENANT,
            environment=str(request.principal.attrs["environment"]),
            action="refund",
            facts=fx.facts,
            approvals_granted=0,
            now=datetime.now(UTC),
        ),
        "`_to_cedar`": partial(_to_cedar, request),
        "`CedarPolicy.evaluate` (incl. `_to_cedar` + `is_authorized`)": partial(
            fx.policy.evaluate, request
        ),
    }
    out: dict[str, float] = {}
    for name, thunk in pieces.items():
        sample(lambda _n, t=thunk: t, 1, WARMUP)
        out[name] = statistics.median(sample(lambda _n, t=thunk: t, 1, iterations))
    return out


# --- profile ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProfileRow:
    """One function of a cProfile run: where it is, its calls and cumulative share."""

    where: str
    calls: int
    cumulative_s: float
    share: float


def profile(fx: Fixture, run: RunState, calls: int) -> tuple[list[ProfileRow], list[ProfileRow]]:
    """Profile `decide`; the top Charter-owned functions by cumulative time, and the top others.

    Shares are of `decide`'s cumulative time. Cumulative times nest, so they do not add up;
    cProfile's own overhead inflates Python-heavy code against C calls.
    """
    for n in range(1, WARMUP + 1):
        fx.gate.decide(new_call(run, n))
    calls_made = [new_call(run, WARMUP + n) for n in range(1, calls + 1)]
    profiler = cProfile.Profile()
    profiler.enable()
    for call in calls_made:
        fx.gate.decide(call)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    total = 0.0
    for (filename, line, func), (_, ncalls, _, cumulative, _) in stats.items():
        if filename == __file__:
            continue
        owned = filename.startswith(CHARTER_DIR)
        place = where(filename, line, func)
        if owned and func == "decide":
            total = cumulative
            continue
        rows.append((owned, ProfileRow(place, ncalls, cumulative, 0.0)))
    rows.sort(key=lambda r: r[1].cumulative_s, reverse=True)
    owned_rows = [
        dataclasses.replace(r, share=r.cumulative_s / total) for owned, r in rows if owned
    ][:TOP]
    others = [
        dataclasses.replace(r, share=r.cumulative_s / total)
        for owned, r in rows
        if not owned and r.cumulative_s <= total
    ][:TOP]
    return owned_rows, others


# --- report -------------------------------------------------------------------------------


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def results_table(results: dict[str, Summary]) -> list[str]:
    """The Markdown table: medians of the per-repetition percentiles, ranges and ratios."""
    baseline = list(results.values())[2]
    lines = [
        "| Measurement | p50 µs (min-max) | p99 µs (min-max) | p50 / raw | p99 / raw |",
        "|---|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {s.label} "
        f"| {_us(s.p50)} ({_us(min(s.p50s))}-{_us(max(s.p50s))}) "
        f"| {_us(s.p99)} ({_us(min(s.p99s))}-{_us(max(s.p99s))}) "
        f"| {s.p50 / baseline.p50:.2f}x | {s.p99 / baseline.p99:.2f}x |"
        for s in results.values()
    )
    return lines


def verdict(results: dict[str, Summary]) -> list[str]:
    """Whether each gate variant meets the goal, and by how much it misses or clears it."""
    gate_a, gate_b, raw, _ = results.values()
    lines = [
        (
            f"Goal: a gate decision costs at most {GOAL:.2f}x a raw cedarpy decision on the "
            "same policy and request."
        ),
        "",
    ]
    for variant, s in (("(a)", gate_a), ("(b)", gate_b)):
        for name, gate_ns, raw_ns in (("p50", s.p50, raw.p50), ("p99", s.p99, raw.p99)):
            ratio = gate_ns / raw_ns
            budget = GOAL * raw_ns
            if ratio <= GOAL:
                state = f"**met**, {_us(budget - gate_ns)} µs under the {_us(budget)} µs budget"
            else:
                state = (
                    f"**missed**: {_us(gate_ns)} µs against a budget of {_us(budget)} µs "
                    f"({GOAL:.2f}x raw), {_us(gate_ns - budget)} µs over, {ratio / GOAL:.2f}x "
                    "the budget"
                )
            lines.append(f"- Gate {variant} {name}: {ratio:.2f}x raw, {state}")
    return lines


def breakdown_table(stages: dict[str, dict[str, float]], pieces: dict[str, float]) -> list[str]:
    """Median cost of each part of `decide`, for both variants, and of the policy stage's parts."""
    a, b = stages.values()
    lines = [
        "| Part of `decide` | (a) p50 µs | (b) p50 µs |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {_us(a[name])} | {_us(b[name])} |" for name in a]
    lines += [
        f"| sum of the parts | {_us(sum(a.values()))} | {_us(sum(b.values()))} |",
        "",
        "| Inside the policy stage, timed alone | p50 µs |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {_us(ns)} |" for name, ns in pieces.items()]
    return lines


def profile_table(rows: list[ProfileRow]) -> list[str]:
    """cProfile rows as Markdown."""
    lines = ["| Function | calls | cumulative s | share of `decide` |", "|---|---:|---:|---:|"]
    lines += [f"| {r.where} | {r.calls} | {r.cumulative_s:.3f} | {r.share:.0%} |" for r in rows]
    return lines


def report(
    results: dict[str, Summary],
    stages: dict[str, dict[str, float]],
    pieces: dict[str, float],
    profiled: tuple[list[ProfileRow], list[ProfileRow]],
) -> list[str]:
    """The generated results section of BENCHMARKS.md."""
    owned, others = profiled
    return [
        "## Results",
        "",
        *machine(),
        f"- Command: {COMMAND}",
        (
            f"- Method: {WARMUP} warm-up calls per subject, then {REPETITIONS} repetitions of "
            f"{ITERATIONS} calls each, interleaved; every call timed alone with "
            "`time.perf_counter_ns`, garbage collector on. Shown: the median over repetitions "
            "of each repetition's p50 and p99, with the min-max across repetitions. Ratios "
            "divide by the pre-parsed raw row."
        ),
        "",
        *results_table(results),
        "",
        *verdict(results),
        "",
        "### Where a decision's time goes",
        "",
        f"Each part timed alone (median of {ITERATIONS} calls), in the order `decide` runs them:",
        "",
        *breakdown_table(stages, pieces),
        "",
        f"### cProfile of variant (b), {PROFILED_CALLS} calls of `decide`",
        "",
        (
            f"Top {TOP} Charter-owned functions by cumulative time (shares are of `decide`'s "
            "cumulative time; they nest, so they do not add up, and profiling inflates Python "
            "code against C):"
        ),
        "",
        *profile_table(owned),
        "",
        f"Top {TOP} functions outside Charter by cumulative time:",
        "",
        *profile_table(others),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the report, and with --write store it in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's results")
    options = parser.parse_args(argv)
    with fixture() as fx:
        check(fx)
        print("timing...", file=sys.stderr)
        results = measure(
            subjects(fx), warmup=WARMUP, repetitions=REPETITIONS, iterations=ITERATIONS
        )
        print("breaking down...", file=sys.stderr)
        stages = {
            "(a)": stage_breakdown(fx, fx.run, ITERATIONS),
            "(b)": stage_breakdown(fx, fx.run_fixed, ITERATIONS),
        }
        pieces = policy_breakdown(fx, ITERATIONS)
        print("profiling...", file=sys.stderr)
        profiled = profile(fx, fx.run_fixed, PROFILED_CALLS)
    section = report(results, stages, pieces, profiled)
    print("\n".join(section))
    if options.write:
        write_section(section, start=START, end=END)
        print(f"\nwrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
