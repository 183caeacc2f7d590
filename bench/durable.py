"""Durable runs: a governed step, a resume of 1,000 steps, and 10,000 runs waiting on approval.

Everything runs against a real SQLite file in a temporary directory, with the store's own
settings (WAL, `synchronous=FULL`). Three figures, each with the goal the project sets for it:

1. A sequential governed durable step: a workflow does 1,000 `ctx.tool("record", ...)` calls of
   a trivial idempotent write tool; each passes the whole gate (one Cedar decision) and appends
   its intent and its result durably. Baselines, timed the same way and interleaved with it: a
   raw hash-chained SQLite append (one transaction per event, two and one events per step, and
   Charter's 14 rows per step in two transactions) and a raw `cedarpy.is_authorized` on the
   same request.
2. `ControlPlane.resume` of a run that completed those 1,000 steps and sleeps: it replays every
   step from the log and suspends again at the timer. With it, `store.verify`'s rate.
3. The resident memory a fresh worker process gains while it polls a store holding 10,000 runs
   that wait for an approval.

Run `python -m bench.durable`; `--write` also rewrites the durable section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cedarpy
import yaml
from pydantic import BaseModel

from bench._report import (
    REPORT,
    ROOT,
    machine,
    percentile,
    profile,
    profile_section,
    write_section,
)
from bench.peers._common import POLICIES, SCHEMA
from charter import Agent, Allowed, ControlPlane, Effect, Facts, RunResult, Tool
from charter._identity import create_agent_identity
from charter.engine import History, Worker, Workflow
from charter.models import ScriptedModel
from charter.policy import build_request
from charter.policy._cedar import _to_cedar
from charter.store import GENESIS, SqliteStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from charter import ToolContext
    from charter._events import Event
    from charter.engine import Context
    from charter.store import StoredEvent

STEPS = 1000
"""Tool steps per timed run, and completed steps in the resumed run."""
WARMUP_STEPS = 100
REPETITIONS = 9
RESUMES = 9
WAITING_RUNS = 10_000
POLLS = 300
"""Worker polling iterations (`expire_due` + `step`) in the memory measurement."""

GOAL_STEP_US = 500.0
GOAL_RESUME_MS = 50.0
GOAL_GROWTH_MB = 20.0

TENANT = "acme"
START, END = "<!-- bench:durable:start -->", "<!-- bench:durable:end -->"
COMMAND = "`.venv/bin/python -m bench.durable --write` (`python -m bench.durable` only prints)"

# --- the agent: a minimal contract in the shape of tests/conftest.py -------------------------

CONTRACT: dict[str, Any] = {
    "charter": 1,
    "agent": "bench-agent",
    "version": "1.0",
    "workflow": "bench",
    "tenants": [TENANT],
    "autonomy": "autonomous",
    "policy": {"policies": "policies.cedar", "schema": "schema.cedarschema"},
    "approval_tiers": {"ops": {"approvers": 1, "expires_after": "1h"}},
    "tools": {
        "record": {"effect": "write"},
        "launch": {"effect": "irreversible", "approval": "ops"},
    },
}


class ItemIn(BaseModel):
    item: str


class Receipt(BaseModel):
    item: str


def item_facts(args: ItemIn, ctx: ToolContext) -> Facts:
    return Facts(resource_type="Item", resource_id=args.item, resource_tenant=ctx.tenant_id)


def receipt(args: ItemIn, _ctx: ToolContext) -> Receipt:
    return Receipt(item=args.item)


def write_agent(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policies.cedar").write_text(POLICIES, encoding="utf-8")
    (folder / "schema.cedarschema").write_text(SCHEMA, encoding="utf-8")
    (folder / "contract.yaml").write_text(yaml.safe_dump(CONTRACT), encoding="utf-8")


def load_agent(folder: Path, run: Callable[[ItemIn, ToolContext], Receipt] = receipt) -> Agent:
    """`record` (write) and `launch` (irreversible, always held for the `ops` tier), both
    answering with `run`."""
    tools = [
        Tool(
            name=name,
            description=f"bench tool {name}",
            input_model=ItemIn,
            output_model=Receipt,
            effect=effect,
            run=run,
            facts=item_facts,
            idempotent=True,
        )
        for name, effect in (("record", Effect.WRITE), ("launch", Effect.IRREVERSIBLE))
    ]
    return Agent.load(folder / "contract.yaml", tools=tools, model=ScriptedModel([]))


def stepping(agent: Agent, steps: int, timings: list[int]) -> Workflow:
    """`steps` sequential `record` calls, each timed alone, then a one-hour durable sleep."""

    def fn(ctx: Context, _task: object) -> None:
        clock = time.perf_counter_ns
        for n in range(steps):
            started = clock()
            ctx.tool("record", {"item": f"item-{n}"})
            timings.append(clock() - started)
        ctx.sleep(3600)

    return Workflow(agent=agent, fn=fn)


def launching(agent: Agent) -> Workflow:
    """One irreversible call: the gate holds it and the run suspends, waiting for approval."""

    def fn(ctx: Context, _task: object) -> None:
        ctx.tool("launch", {"item": "rocket"})

    return Workflow(agent=agent, fn=fn)


class TimedStore(SqliteStore):
    """The store, timing `append` (the durable writes) and its commits, for the breakdown."""

    append_ns = 0
    appends = 0
    commit_ns = 0
    commits = 0

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
    ) -> list[StoredEvent]:
        started = time.perf_counter_ns()
        self.appends += 1
        try:
            return super().append(run_id, events, raw=raw, owner=owner)
        finally:
            self.append_ns += time.perf_counter_ns() - started

    def reset(self) -> None:
        self.append_ns = self.appends = self.commit_ns = self.commits = 0

    # Instrumentation only: the store opens every write transaction here, and its exit is the
    # COMMIT (the fsync). If the store stops using `_write`, `commits` stays 0 and the report
    # leaves the commit split out rather than guess.
    def _write(self):  # type: ignore[override]
        return _TimedCommit(super()._write(), self)


class _TimedCommit:
    """Wraps one of the store's transactions; times its exit."""

    def __init__(self, inner: Any, store: TimedStore) -> None:
        self._inner = inner
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        return self._inner.__enter__()

    def __exit__(self, *exc: object) -> None:
        started = time.perf_counter_ns()
        try:
            self._inner.__exit__(*exc)
        finally:
            self._store.commit_ns += time.perf_counter_ns() - started
            self._store.commits += 1


# --- baselines --------------------------------------------------------------------------------


class RawLog:
    """A hash-chained event table on its own SQLite file, with the store's durability settings."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        self._seq = 0
        self._prev = GENESIS

    def append(self, payloads: Sequence[str]) -> None:
        """One `BEGIN IMMEDIATE` transaction holding `payloads`, each chained to the one before."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        for payload in payloads:
            self._seq += 1
            digest = hashlib.sha256(f"{self._prev}\n{self._seq}\n{payload}".encode()).hexdigest()
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?)", (self._seq, payload, self._prev, digest)
            )
            self._prev = digest
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def map_append(log: RawLog, transactions: list[list[str]]) -> None:
    """One raw step: each transaction appended in turn."""
    for payloads in transactions:
        log.append(payloads)


def per_call(call: Callable[[], object], calls: int) -> float:
    """ns per call of `calls` calls in a loop, timed as a whole."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / calls


# --- measurements -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Series:
    """One measurement's value per repetition (per-step ns, or ms), and per-step percentiles."""

    label: str
    values: list[float]
    p50s: list[float] = dataclasses.field(default_factory=list)
    p99s: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclasses.dataclass
class Plane:
    """A plane over a timed store in a temp dir, an agent identity, and the bench agent."""

    store: TimedStore
    plane: ControlPlane
    agent: Agent
    principal_id: str
    credential: str

    def run(self, workflow: Workflow) -> tuple[str, RunResult]:
        run_id = self.plane.start(workflow, credential=self.credential, tenant_id=TENANT, task="")
        return run_id, self.plane.resume(run_id, workflow)


def open_plane(home: Path, name: str) -> Plane:
    write_agent(home / "agent")
    store = TimedStore(home / name, seal_key=secrets.token_bytes(32))
    issued = create_agent_identity(
        store, agent=CONTRACT["agent"], workflow=CONTRACT["workflow"], tenant_id=TENANT
    )
    return Plane(
        store=store,
        plane=ControlPlane(store),
        agent=load_agent(home / "agent"),
        principal_id=issued.identity.id,
        credential=issued.token,
    )


def step_payloads(p: Plane, run_id: str) -> tuple[list[str], list[str]]:
    """Step 1's stored events as JSON text, split into its intent and its result appends."""
    rows = [e for e in p.store.events(run_id) if e.payload.get("step") == 1]
    kinds = [e.kind for e in rows]
    cut = kinds.index("gate.decided") + 1
    texts = [json.dumps(e.payload, sort_keys=True, separators=(",", ":")) for e in rows]
    if kinds[0] != "tool.proposed" or kinds[-1] != "tool.completed":
        raise RuntimeError(f"unexpected events for step 1: {kinds}")
    return texts[:cut], texts[cut:]


def cedar_call(p: Plane, run_id: str) -> Callable[[], object]:
    """Raw cedarpy on the request the gate builds for `record`; checked to decide as it did."""
    facts = Facts(resource_type="Item", resource_id="item-0", resource_tenant=TENANT)
    contract = p.agent.contract
    request = build_request(
        principal_id=p.principal_id,
        agent=contract.agent,
        workflow=contract.workflow,
        tenant_id=TENANT,
        environment=contract.environment.value,
        action="record",
        facts=facts,
        approvals_granted=0,
        now=datetime.now(UTC),
    )
    cedar_request, entities = _to_cedar(request)
    policy_set = cedarpy.PolicySet.from_str(POLICIES)
    schema = cedarpy.Schema.from_str(SCHEMA)
    answer = cedarpy.is_authorized(cedar_request, policy_set, entities, schema=schema)
    decided = next(e.payload for e in p.store.events(run_id) if e.kind == "gate.decided")
    if answer.decision is not cedarpy.Decision.Allow or answer.diagnostics.errors:
        raise RuntimeError(f"raw cedarpy did not allow: {answer.decision}")
    if len(answer.diagnostics.reasons) != len(decided["policy_ids"]):
        raise RuntimeError(f"raw {answer.diagnostics.reasons} vs gate {decided['policy_ids']}")
    return lambda: cedarpy.is_authorized(cedar_request, policy_set, entities, schema=schema)


def governed_run(p: Plane, steps: int) -> tuple[str, float, list[int]]:
    """One run of `steps` steps: its id, ns per step over the run, and each step's ns."""
    timings: list[int] = []
    workflow = stepping(p.agent, steps, timings)
    run_id, result = p.run(workflow)
    allowed = [d for d in result.decisions if isinstance(d, Allowed)]
    if result.waiting_on != ["timer"] or len(allowed) != steps:
        raise RuntimeError(f"{run_id}: {result.status} {result.reason}, {len(allowed)} allowed")
    return run_id, sum(timings) / steps, timings


@dataclasses.dataclass(frozen=True)
class StepResults:
    series: list[Series]
    run_id: str
    events_per_step: tuple[int, int]
    breakdown: dict[str, float]
    """ns per step of a step's parts (`step_breakdown`); the whole step first."""


def measure_steps(p: Plane, raw_dir: Path) -> StepResults:
    """The governed step and its baselines, repetition by repetition, interleaved."""
    warm_id, _, _ = governed_run(p, WARMUP_STEPS)
    intent, result = step_payloads(p, warm_id)
    cedar = cedar_call(p, warm_id)
    baselines: dict[str, tuple[RawLog, list[list[str]]]] = {
        "Raw SQLite append, 2 events/step (intent + result), one transaction each": (
            RawLog(raw_dir / "two.db"),
            [[intent[0]], [result[-1]]],
        ),
        "Raw SQLite append, 1 event/step, one transaction": (
            RawLog(raw_dir / "one.db"),
            [[result[-1]]],
        ),
        (f"Raw SQLite append, Charter's {len(intent) + len(result)} rows/step in 1 transaction"): (
            RawLog(raw_dir / "rows.db"),
            [intent + result],
        ),
    }
    charter = Series("Charter durable step, full gate, intent + result appended", [])
    raws = {label: Series(label, []) for label in baselines}
    cedar_series = Series("Raw `cedarpy.is_authorized`, pre-parsed, same request", [])
    run_id = warm_id
    for _ in range(REPETITIONS):
        gc.collect()
        run_id, per_step, timings = governed_run(p, STEPS)
        ordered = sorted(timings)
        charter.values.append(per_step)
        charter.p50s.append(percentile(ordered, 50))
        charter.p99s.append(percentile(ordered, 99))
        for label, (log, transactions) in baselines.items():
            step = partial(map_append, log, transactions)
            raws[label].values.append(per_call(step, STEPS))
        cedar_series.values.append(per_call(cedar, STEPS))
    for log, _ in baselines.values():
        log.close()
    return StepResults(
        series=[charter, *raws.values(), cedar_series],
        run_id=run_id,
        events_per_step=(len(intent), len(result)),
        breakdown=step_breakdown(p),
    )


def step_breakdown(p: Plane) -> dict[str, float]:
    """ns per step of the parts of one more run: appends, their COMMITs, everything else."""
    store = p.store
    store.reset()
    with GcTimer() as collector:
        started = time.perf_counter_ns()
        governed_run(p, STEPS)
        total = time.perf_counter_ns() - started
    parts = {
        "the whole step (this run)": total,
        f"`store.append`, {store.appends / STEPS:.0f} per step": store.append_ns,
        f"of which COMMIT, {store.commits / STEPS:.0f} per step (fsync of the WAL)": (
            store.commit_ns
        ),
        "of which the rest of `append` (serialise, hash, insert, project, seal, read back)": (
            store.append_ns - store.commit_ns
        ),
        "everything outside `store.append` (gate stages, tool thread, events, vault)": (
            total - store.append_ns
        ),
        "Charter's own work: the whole step but the COMMITs": total - store.commit_ns,
        "garbage collection, wherever it struck (`gc.callbacks`)": collector.ns,
    }
    return {k: ns / STEPS for k, ns in parts.items() if store.commits or "COMMIT" not in k}


def measure_resume(p: Plane, run_id: str) -> tuple[list[Series], int]:
    """`plane.resume` (replay + suspend), its main parts and `verify`, each in its own loop (ms).

    Nothing else large is alive while `resume` is timed: the collector's full passes walk every
    live object, so a log held by the benchmark would be charged to `resume`.
    """
    workflow = stepping(p.agent, STEPS, [])
    result = p.plane.resume(run_id, workflow)
    if result.waiting_on != ["timer"] or len(result.decisions) != STEPS:
        raise RuntimeError(f"resume of {run_id} ended {result.status}: {result.reason}")
    reports = p.store.verify(run_id)
    if not reports[0].ok:
        raise RuntimeError(f"{run_id} does not verify: {reports[0].problem}")
    del result, reports
    resume = repeat(partial(p.plane.resume, run_id, workflow), p.store)
    series = [
        Series(f"`plane.resume`: replay {STEPS} steps, suspend again at the timer", resume[0]),
        Series("part of it: garbage collection (`gc.callbacks`)", resume[2]),
    ]
    if p.store.commits:
        series.append(Series("part of it: the COMMIT of its `run.suspended` append", resume[1]))
    alone = "part of it, timed alone:"
    series.append(
        Series(f"{alone} `store.events` (read + parse)", repeat(partial(p.store.events, run_id))[0])
    )
    events = p.store.events(run_id)
    folded = repeat(partial(History.from_events, events))[0]
    del events
    series += [
        Series(f"{alone} `History.from_events` (fold into steps)", folded),
        Series(f"{alone} `store.raw_payloads`", repeat(partial(p.store.raw_payloads, run_id))[0]),
        Series(
            "`store.verify(run_id)`: hash chain + head seal",
            repeat(partial(p.store.verify, run_id))[0],
        ),
    ]
    return series, p.store.verify(run_id)[0].events_checked


class GcTimer:
    """Sums the time the cyclic garbage collector runs, through `gc.callbacks`."""

    def __init__(self) -> None:
        self.ns = 0
        self._started = 0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.ns += time.perf_counter_ns() - self._started

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def repeat(
    call: Callable[[], object], store: TimedStore | None = None
) -> tuple[list[float], list[float], list[float]]:
    """ms of `RESUMES` calls, and of the COMMITs and garbage collection inside each."""
    walls: list[float] = []
    commits: list[float] = []
    collections: list[float] = []
    for _ in range(RESUMES):
        gc.collect()
        if store is not None:
            store.reset()
        with GcTimer() as collector:
            started = time.perf_counter_ns()
            call()
            walls.append((time.perf_counter_ns() - started) / 1e6)
        commits.append(store.commit_ns / 1e6 if store is not None else 0.0)
        collections.append(collector.ns / 1e6)
    return walls, commits, collections


# --- memory: a worker polling 10,000 waiting runs, in its own process ---------------------------


def create_waiting(home: Path) -> dict[str, float]:
    """10,000 runs waiting on an approval, in their own store; then the worker's figures."""
    p = open_plane(home, "waiting.db")
    workflow = launching(p.agent)
    started = time.perf_counter()
    for _ in range(WAITING_RUNS):
        run_id, result = p.run(workflow)
        if result.status != "waiting" or not result.waiting_on[0].startswith("apr_"):
            raise RuntimeError(f"{run_id} did not wait for approval: {result.status}")
    elapsed = time.perf_counter() - started
    pending = len(p.store.list_approvals(status="pending"))
    p.plane.close()
    p.store.close()
    if pending != WAITING_RUNS:
        raise RuntimeError(f"{pending} pending approvals, expected {WAITING_RUNS}")
    db, agent, key = str(home / "waiting.db"), str(home / "agent"), p.store.seal_key.hex()
    command = [sys.executable, "-m", "bench.durable", "--poll-child", db, agent, key]
    # This interpreter and this module with fixed arguments: nothing untrusted reaches it.
    child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)  # noqa: S603
    figures: dict[str, float] = json.loads(child.stdout)
    db_bytes = sum(f.stat().st_size for f in home.glob("waiting.db*"))
    return {**figures, "create_s": elapsed, "db_mb": db_bytes / 2**20}


def status_kb(field: str) -> int:
    """A `/proc/self/status` figure in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def poll_child(db: str, agent_dir: str, key_hex: str) -> dict[str, float]:
    """In a fresh process: RSS before the store is opened, after, and after `POLLS` polls."""
    workflow = launching(load_agent(Path(agent_dir)))
    before = status_kb("VmRSS")
    store = SqliteStore(db, seal_key=bytes.fromhex(key_hex))
    plane = ControlPlane(store)
    worker = Worker(plane, [workflow])
    opened = status_kb("VmRSS")
    durations: list[int] = []
    first = 0
    for n in range(POLLS):
        started = time.perf_counter_ns()
        worker.expire_due()
        if worker.step() is not None:
            raise RuntimeError("a run was runnable; every run should wait for its approval")
        durations.append(time.perf_counter_ns() - started)
        if n == 0:
            first = status_kb("VmRSS")
    after = status_kb("VmRSS")
    plane.close()
    store.close()
    return {
        "before_kb": before,
        "opened_kb": opened,
        "first_kb": first,
        "after_kb": after,
        "peak_kb": status_kb("VmHWM"),
        "poll_us": statistics.median(durations) / 1000,
    }


# --- report -------------------------------------------------------------------------------------


def _range(values: list[float], scale: float, fmt: str = ".1f") -> str:
    mid, lo, hi = (v / scale for v in (statistics.median(values), min(values), max(values)))
    return f"{mid:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def ratio_of(a: Series, b: Series) -> float:
    """Median over repetitions of a's value / b's value in the same repetition."""
    return statistics.median(x / y for x, y in zip(a.values, b.values, strict=True))


def goal(label: str, value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return f"- {label}: {value:.1f} {unit}, goal <= {limit:g} {unit}: **met**"
    return (
        f"- {label}: {value:.1f} {unit}, goal <= {limit:g} {unit}: **missed** by "
        f"{value - limit:.1f} {unit} ({value / limit:.2f}x the goal)"
    )


def step_section(r: StepResults) -> list[str]:
    charter, two, *_, cedar = r.series
    intent, result = r.events_per_step
    lines = [
        f"### 1. Sequential governed durable step ({STEPS} steps per run, {REPETITIONS} runs)",
        "",
        (
            "| Measurement | µs/step, median (min-max) | per-step p50 µs | per-step p99 µs "
            "| Charter / this |"
        ),
        "|---|---:|---:|---:|---:|",
    ]
    for s in r.series:
        p50 = _range(s.p50s, 1000) if s.p50s else ""
        p99 = _range(s.p99s, 1000) if s.p99s else ""
        ratio = ratio_of(charter, s)
        lines.append(f"| {s.label} | {_range(s.values, 1000)} | {p50} | {p99} | {ratio:.2f}x |")
    step_us = charter.median / 1000
    whole = next(iter(r.breakdown.values()))
    return [
        *lines,
        "",
        f"- Ratio, Charter step / raw SQLite append (2 events): {ratio_of(charter, two):.2f}x",
        f"- Ratio, Charter step / raw cedarpy decision: {ratio_of(charter, cedar):.2f}x",
        (
            f"- Ratios are the median of the per-repetition ratios (Charter's run against the "
            f"baselines timed right after it), so that drift in fsync latency hits both sides; "
            f"ratio of the medians instead: {charter.median / two.median:.2f}x and "
            f"{charter.median / cedar.median:.2f}x."
        ),
        (
            f"- Charter writes {intent + result} events per step in one durable append "
            "(group commit): the step's intent (tool.proposed, and gate.decided carrying the "
            "checks of stages 1-8) together with the previous step's result (tool.completed "
            "with the execute, output and record checks); see `RunState.defer`."
        ),
        goal("Goal, governed durable step (median)", step_us, GOAL_STEP_US, "µs"),
        "",
        (
            f"Where a step's time goes: one more {STEPS}-step run on a store subclass that times "
            "`append` and its COMMIT:"
        ),
        "",
        "| Part of a step | µs/step | share |",
        "|---|---:|---:|",
        *[f"| {k} | {ns / 1000:.0f} | {ns / whole:.0%} |" for k, ns in r.breakdown.items()],
    ]


def resume_section(series: list[Series], checked: int) -> list[str]:
    resume, *_, verify = series
    lines = [
        f"### 2. Resume of a run with {STEPS} completed steps ({RESUMES} resumes)",
        "",
        "| Measurement | ms, median (min-max) |",
        "|---|---:|",
    ]
    lines += [f"| {s.label} | {_range(s.values, 1, '.2f')} |" for s in series]
    rate = checked / (verify.median / 1000)
    return [
        *lines,
        "",
        f"- `store.verify`: {checked} events in {verify.median:.1f} ms, {rate:,.0f} events/s.",
        goal("Goal, resume (median)", resume.median, GOAL_RESUME_MS, "ms"),
    ]


def memory_section(m: dict[str, float]) -> list[str]:
    growth = (m["after_kb"] - m["before_kb"]) / 1024
    rows = [
        ("RSS before the store is opened (imports + agent loaded)", m["before_kb"]),
        ("RSS after `SqliteStore` + `ControlPlane` + `Worker` are built", m["opened_kb"]),
        ("RSS after the first poll", m["first_kb"]),
        (f"RSS after {POLLS} polls", m["after_kb"]),
        ("Peak RSS (VmHWM)", m["peak_kb"]),
    ]
    return [
        f"### 3. {WAITING_RUNS:,} runs waiting on approval: a worker's memory",
        "",
        (
            f"Set-up: {WAITING_RUNS:,} runs created with `plane.start` + `plane.resume` in "
            f"{m['create_s']:.1f} s ({WAITING_RUNS / m['create_s']:,.0f} runs/s); store "
            f"{m['db_mb']:.1f} MB on disk. Measured in a fresh `python -m bench.durable "
            "--poll-child` process; one poll is `worker.expire_due()` + `worker.step()` (None)."
        ),
        "",
        "| Measurement | MB |",
        "|---|---:|",
        *[f"| {label} | {kb / 1024:.1f} |" for label, kb in rows],
        f"| Growth: after the polls minus before the store | {growth:.1f} |",
        "",
        f"- One poll: {m['poll_us']:.0f} µs (median of {POLLS}).",
        goal("Goal, worker memory growth", growth, GOAL_GROWTH_MB, "MB"),
    ]


def measure_all() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="charter-durable-") as tmp:
        home = Path(tmp)
        p = open_plane(home / "steps", "charter.db")
        print("1/3 governed steps...", file=sys.stderr)
        steps = measure_steps(p, home / "steps")
        print("2/3 resume and verify...", file=sys.stderr)
        resumed, checked = measure_resume(p, steps.run_id)
        profiles: list[str] = []
        if steps.series[0].median / 1000 > GOAL_STEP_US:
            run = profile(lambda: governed_run(p, STEPS))
            profiles += ["", *profile_section(f"one {STEPS}-step run", run)]
        if resumed[0].median > GOAL_RESUME_MS:
            workflow = stepping(p.agent, STEPS, [])
            run = profile(lambda: p.plane.resume(steps.run_id, workflow))
            profiles += ["", *profile_section(f"one resume of {STEPS} steps", run)]
        p.plane.close()
        p.store.close()
        print(f"3/3 {WAITING_RUNS:,} waiting runs and a polling worker...", file=sys.stderr)
        memory = create_waiting(home / "waiting")
    return [
        "### Results",
        "",
        *machine(),
        f"- Command: {COMMAND}",
        (
            "- Store: `SqliteStore` on a file in a temporary directory (WAL, `synchronous=FULL`); "
            "the raw SQLite baselines use their own files with the same pragmas."
        ),
        (
            "- Method, steps: per repetition, the run's time per step is the sum of each "
            "`ctx.tool` call's `perf_counter_ns` over the run / steps (step 1 includes the run's "
            "`run.resumed` append); baselines are loops of the same length timed as a whole / "
            "steps. Repetitions interleave Charter and the baselines; one untimed "
            f"{WARMUP_STEPS}-step run first. Garbage collector on."
        ),
        "",
        *step_section(steps),
        "",
        *resume_section(resumed, checked),
        "",
        *memory_section(memory),
        *profiles,
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the report, and with --write store it in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.durable", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    parser.add_argument("--poll-child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.poll_child:
        print(json.dumps(poll_child(*options.poll_child)))
        return 0
    started = time.perf_counter()
    section = measure_all()
    print("\n".join(section))
    print(f"\n(took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if options.write:
        write_section(section, start=START, end=END)
        print(f"wrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
