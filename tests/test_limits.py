"""Budgets and rate limits, end to end: scripted runs through `ControlPlane` against a real
store, on every backend.

`record_write` costs $0.01 (see `Toolset`); the scripted models cost nothing unless given
prices. Money in the shared ledger is integer micro-dollars, so sums are compared exactly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from _factories import RawDb, finished_event, started_event
from charter import Agent, Client, Config, ControlPlane, Denied
from charter._contract import load_contract
from charter._identity import create_agent_identity, create_human
from charter._time import utcnow
from charter.engine import Worker, Workflow, agent_loop, replay_run
from charter.exceptions import (
    BudgetExceeded,
    ContractError,
    LeaseLost,
    ModelError,
    RateLimited,
)
from charter.gate import Executor
from charter.models import ScriptedModel, ScriptedTurn
from charter.store import (
    Cap,
    ReleaseRun,
    Reserve,
    Settle,
    SqlStore,
    TakeToken,
    micros,
    open_store,
)
from charter.store._lease import new_owner
from limits_app import CONTRACT_ENV, EFFECTS_FILE, WORKERS_ENV, stamp_workflow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from charter import RunResult
    from charter.engine import Context
    from charter.models import Message, ModelResponse, ToolSpec

HERE = Path(__file__).resolve().parent
call = ScriptedTurn.call
say = ScriptedTurn.say


def calls(n: int, tool: str = "record_write") -> ScriptedTurn:
    """One model turn making `n` calls of `tool`, each on its own item."""
    return ScriptedTurn(calls=tuple((tool, {"item": f"i{k}"}) for k in range(n)))


class Quoted:
    """A model that answers from a script for free, but quotes `quote` dollars for each turn
    before it is asked (None: it has no price). With `fail`, every answer is an error."""

    def __init__(
        self, script: list[ScriptedTurn], *, quote: float | None, fail: bool = False
    ) -> None:
        self._inner = ScriptedModel(script, name="quoted")
        self.quote = quote
        self.fail = fail
        self.asked = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def kind(self) -> Literal["scripted"]:
        return "scripted"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        self.asked += 1
        if self.fail:
            raise ModelError("quoted: the provider is down")
        return self._inner.respond(messages, tools)

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float | None:
        return self.quote


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def build(make_contract, contract_data, toolset) -> Callable[..., Agent]:
    """An agent playing `turns` then 'done' (or `model`), under `CONTRACT` with `top` keys
    replaced (`budget=`, `rate_limits=`, `routing=`, `workflow=` ...)."""

    def build(
        *turns: ScriptedTurn, model: Any = None, small_model: Any = None, **top: Any
    ) -> Agent:
        return Agent.load(
            make_contract({**contract_data, **top}),
            tools=toolset.tools,
            model=model or ScriptedModel([*turns, say("done")]),
            small_model=small_model,
        )

    return build


@pytest.fixture
def run(plane: ControlPlane, creds: dict[str, str]) -> Callable[..., RunResult]:
    """Run an agent for a tenant until it rests, and check that the run's log verifies."""

    def run(agent: Agent, *, tenant: str = "acme", credential: str | None = None) -> RunResult:
        result = plane.run(
            agent, credential=credential or creds[tenant], tenant_id=tenant, task="do it"
        )
        assert [r.ok for r in plane.store.verify(result.run_id)] == [True]
        return result

    return run


@pytest.fixture
def client(tmp_path: Path, database_url: str, store: SqlStore) -> Iterator[Client]:
    """A client on `store`'s database, with its seal key."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "seal.key").write_text(store.seal_key.hex())
    (home / "keyring.json").symlink_to(store.keys.path)
    with Client(Config.from_env({"CHARTER_DATABASE_URL": database_url}, home=home)) as opened:
        yield opened


@pytest.fixture
def decide(client: Client) -> Callable[[str, Literal["approve", "deny"]], None]:
    """Record bob's (an approver's) decision on a request, with his own credential."""
    token = create_human(client.store, name="bob", roles=["approver"]).token

    def decide(request_id: str, decision: Literal["approve", "deny"]) -> None:
        client.decide(request_id, approver="bob", token=token, decision=decision, reason="ok")

    return decide


@pytest.fixture
def nodes(database_url: str, store: SqlStore) -> Iterator[Callable[[], SqlStore]]:
    """Open further nodes on `store`'s database; closed after the test."""
    with ExitStack() as opened:

        def node() -> SqlStore:
            return opened.enter_context(
                closing(open_store(database_url, seal_key=store.seal_key, keys=store.keys))
            )

        yield node


# --- helpers --------------------------------------------------------------------------------------
def _decided(store: SqlStore, run_id: str) -> list[dict[str, Any]]:
    return [e.payload for e in store.events(run_id) if e.kind == "gate.decided"]


def _check(decided: dict[str, Any], name: str) -> dict[str, Any]:
    """The check `name` a gate.decided event recorded."""
    (found,) = [c for c in decided["checks"] if c["check"] == name]
    return found


def _models(store: SqlStore, run_id: str) -> list[tuple[str, str | None]]:
    """(model, route) of each model turn of a run."""
    return [
        (e.payload["model"], e.payload.get("route"))
        for e in store.events(run_id)
        if e.kind == "model.responded"
    ]


def _ledger(store: SqlStore, scope: str) -> list[tuple[float, float]]:
    """(spent, reserved) of each day of a shared cap."""
    return [(r.spent_usd, r.reserved_usd) for r in store.spend(scope=scope)]


def _finished(store: SqlStore, run_id: str) -> dict[str, Any]:
    """The run.finished event's payload."""
    (finished,) = [e.payload for e in store.events(run_id) if e.kind == "run.finished"]
    return finished


def _outcome(store: SqlStore, run_id: str) -> tuple[str, str | None]:
    record = store.get_run(run_id)
    return record.status, record.outcome


# --- 1. per-run budget ----------------------------------------------------------------------------
class TestRunBudgetStop:
    def test_the_call_over_the_cap_is_denied_and_the_run_ends(self, build, run, store, toolset):
        """With `stop`, the call that would pass the cap is denied at budget, the run ends
        failed/budget_exceeded, and no later call is made."""
        result = run(build(calls(4), budget={"per_run_usd": 0.025}))
        assert [d.kind for d in result.decisions] == ["allowed", "allowed", "denied"]
        denied = result.decisions[-1]
        assert isinstance(denied, Denied)
        assert denied.check == "budget"
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")
        assert len(toolset.effects) == 2
        assert round(store.get_run(result.run_id).cost_usd, 6) == 0.02
        budget = _check(_decided(store, result.run_id)[-1], "budget")
        assert (budget["outcome"], budget["detail"]["on_exceeded"]) == ("deny", "stop")

    @pytest.mark.parametrize("fits", [5, 6, 18])
    def test_a_cap_holds_exactly_the_calls_that_fit(self, build, run, toolset, fits):
        """A run cap of n cents holds exactly n one-cent calls (no float drift either way)."""
        result = run(build(calls(fits + 2), budget={"per_run_usd": fits / 100}, max_turns=2))
        assert len(toolset.effects) == fits
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")

    def test_spend_at_the_cap_stops_the_next_priced_model_turn(self, build, run, toolset):
        """Spend that reaches the cap exactly leaves nothing for a model turn that has a price:
        the run stops as any run over its budget does, failed/budget_exceeded."""
        model = Quoted([calls(2), say("done")], quote=0.001)
        result = run(build(model=model, budget={"per_run_usd": 0.02}))
        assert len(toolset.effects) == 2
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")
        assert model.asked == 1


ESCALATE = {"per_run_usd": 0.005, "on_exceeded": "escalate", "escalate_tier": "ops"}
"""A run budget of half a cent that a person may let a run go past (tier ops)."""


def one_write(ctx: Context, task: Any) -> str:
    """A workflow making one `record_write` call; it completes with the decision's kind."""
    return ctx.tool("record_write", {"item": "x"}).kind


class TestRunBudgetEscalate:
    @pytest.fixture
    def held(self, build, store, plane, creds) -> tuple[Workflow, str, str]:
        """A run of `one_write` whose call would pass its half-cent budget, worked until it
        rests: (workflow, run id, approval request id)."""
        workflow = Workflow(agent=build(budget=ESCALATE), fn=one_write)
        run_id = plane.start(workflow, credential=creds["acme"], tenant_id="acme", task=None)
        Worker(plane, [workflow]).run(until_idle=True)
        (request,) = store.list_approvals(run_id=run_id)
        return workflow, run_id, request.request_id

    def test_the_call_over_the_cap_is_held_at_the_escalate_tier(self, held, store, toolset):
        """With `escalate`, the call that would pass the cap waits for an approval at
        `escalate_tier`, held by the budget check; nothing runs meanwhile."""
        _, run_id, request_id = held
        assert _outcome(store, run_id) == ("waiting", "pending")
        (decided,) = _decided(store, run_id)
        assert (decided["decision"], decided["tier"]) == ("needs_approval", "ops")
        budget = _check(decided, "budget")
        assert (budget["outcome"], budget["detail"]["on_exceeded"]) == ("hold", "escalate")
        request = store.get_approval(request_id)
        assert (request.tier, request.tool, request.status) == ("ops", "record_write", "pending")
        assert toolset.effects == []

    def test_approved_the_call_runs_past_the_cap(self, held, store, plane, decide, toolset):
        """Once approved, a worker resumes the run and the call executes, once, past the cap."""
        workflow, run_id, request_id = held
        decide(request_id, "approve")
        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("completed", "resolved")
        assert len(toolset.effects) == 1
        assert round(store.get_run(run_id).cost_usd, 6) == 0.01
        assert [d["decision"] for d in _decided(store, run_id)] == ["needs_approval", "allowed"]

    def test_denied_the_call_never_runs(self, held, store, plane, decide, toolset):
        """Refused by the approver, the call is denied and never executes."""
        workflow, run_id, request_id = held
        decide(request_id, "deny")
        Worker(plane, [workflow]).run(until_idle=True)
        last = _decided(store, run_id)[-1]
        assert (last["decision"], last["check"]) == ("denied", "approval")
        assert _outcome(store, run_id) == ("completed", "resolved")
        assert toolset.effects == []

    def test_an_approved_call_past_a_day_cap_is_still_counted(
        self, build, store, plane, creds, decide, toolset
    ):
        """An approval lets a call past the workflow's day cap, and the ledger counts it: the
        day's spend ends above the cap, with nothing left reserved."""
        budget = {"per_workflow_day_usd": 0.01, "on_exceeded": "escalate", "escalate_tier": "ops"}
        workflow = Workflow(agent=build(budget=budget), fn=one_write)
        worker = Worker(plane, [workflow])
        first, second = (
            plane.start(workflow, credential=creds["acme"], tenant_id="acme", task=None)
            for _ in range(2)
        )
        worker.run(until_idle=True)
        assert _outcome(store, first) == ("completed", "resolved")
        (request,) = store.list_approvals(run_id=second)
        decide(request.request_id, "approve")
        worker.run(until_idle=True)
        assert _outcome(store, second) == ("completed", "resolved")
        assert len(toolset.effects) == 2
        assert _ledger(store, "workflow:testing") == [(0.02, 0.0)]

    @pytest.fixture
    def held_turn(self, build, plane, creds, store) -> tuple[Workflow, Quoted, str, str]:
        """An agent loop whose first model turn (quoted $0.01) would pass its half-cent budget,
        worked until it rests: (workflow, model, run id, approval request id)."""
        model = Quoted([call("record_write"), say("done")], quote=0.01)
        workflow = Workflow(agent=build(model=model, budget=ESCALATE), fn=agent_loop)
        run_id = plane.start(workflow, credential=creds["acme"], tenant_id="acme", task="go")
        Worker(plane, [workflow]).run(until_idle=True)
        (request,) = store.list_approvals(run_id=run_id)
        return workflow, model, run_id, request.request_id

    def test_a_model_turn_over_the_cap_waits_for_an_approval(self, held_turn, store, toolset):
        """With `escalate`, a model turn that would pass the cap is not asked: the run waits
        for an approval at `escalate_tier`, requested for the model call and saying why."""
        _, model, run_id, request_id = held_turn
        assert _outcome(store, run_id) == ("waiting", "pending")
        request = store.get_approval(request_id)
        assert (request.tool, request.tier, request.step) == ("(model)", "ops", 1)
        assert "past the budget" in request.summary
        assert "past its $0.005 budget" in request.summary
        assert model.asked == 0
        assert toolset.effects == []

    def test_approved_the_model_turn_runs_and_each_later_one_asks_again(
        self, held_turn, store, plane, decide, toolset
    ):
        """Approved, the held turn is asked once and the run goes on; the next priced turn is
        past the cap as well and asks again (an approval covers one call). Approving that too,
        the run completes; its log verifies."""
        workflow, model, run_id, first = held_turn
        decide(first, "approve")
        Worker(plane, [workflow]).run(until_idle=True)
        assert model.asked == 1
        # The approved turn asked for record_write ($0.01, past the cap too): held in turn.
        requests = store.list_approvals(run_id=run_id)
        pending = [r for r in requests if r.status == "pending"]
        assert [r.tool for r in pending] == ["record_write"]
        decide(pending[0].request_id, "approve")
        Worker(plane, [workflow]).run(until_idle=True)
        pending = [r for r in store.list_approvals(run_id=run_id) if r.status == "pending"]
        assert [(r.tool, r.step) for r in pending] == [("(model)", 3)]
        decide(pending[0].request_id, "approve")
        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("completed", "resolved")
        assert model.asked == 2
        assert len(toolset.effects) == 1
        assert [r.ok for r in store.verify(run_id)] == [True]

    def test_denied_the_model_turn_is_never_asked(self, held_turn, store, plane, decide):
        """Refused, the model is never asked and the run ends failed/budget_exceeded, naming
        who refused."""
        workflow, model, run_id, request_id = held_turn
        decide(request_id, "deny")
        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("failed", "budget_exceeded")
        finished = _finished(store, run_id)
        assert finished["code"] == "budget_exceeded"
        assert "denied by bob" in finished["reason"]
        assert model.asked == 0

    def test_an_expired_request_ends_the_run_over_budget(self, held_turn, store, plane, clock):
        """A request nobody decides expires (tier ops: 1h, on_expiry deny): the run ends
        failed/budget_exceeded and the model is never asked."""
        workflow, model, run_id, _ = held_turn
        clock.advance(hours=2)
        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("failed", "budget_exceeded")
        assert "expired" in _finished(store, run_id)["reason"]
        assert model.asked == 0

    def test_an_approved_model_turn_past_a_day_cap_is_counted(
        self, build, store, plane, creds, decide
    ):
        """An approval lets a priced turn past the workflow's day cap; the ledger counts what
        it cost (above the cap), with nothing left reserved."""
        budget = {"per_workflow_day_usd": 0.0001, "on_exceeded": "escalate", "escalate_tier": "ops"}
        # 100 tokens quoted at $1/Mtok out = $0.0001 estimate; the answer costs one token.
        model = ScriptedModel([say("done")], name="priced", usd_per_mtok_out=1000, max_tokens=100)
        workflow = Workflow(agent=build(model=model, budget=budget), fn=agent_loop)
        run_id = plane.start(workflow, credential=creds["acme"], tenant_id="acme", task="go")
        Worker(plane, [workflow]).run(until_idle=True)
        (request,) = store.list_approvals(run_id=run_id)
        assert request.tool == "(model)"
        decide(request.request_id, "approve")
        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("completed", "resolved")
        spent = store.get_run(run_id).cost_usd
        assert spent > 0
        assert _ledger(store, "workflow:testing") == [(round(spent, 6), 0.0)]

    def test_replay_of_a_refused_model_turn_stops_at_the_hold(
        self, held_turn, store, plane, decide
    ):
        """Replaying a run whose held turn was refused reports the hold, and never calls the
        model."""
        workflow, model, run_id, request_id = held_turn
        decide(request_id, "deny")
        Worker(plane, [workflow]).run(until_idle=True)
        report = replay_run(store, run_id, [workflow])
        assert "held for an approval to go past the budget" in report.ended
        assert report.ok
        assert model.asked == 0


DEGRADE = [
    pytest.param("per_run_usd", id="run-cap"),
    pytest.param("per_workflow_day_usd", id="day-cap"),
]


class TestRunBudgetDegrade:
    def _agent(self, build, cap: str, small_usd_per_mtok: float) -> Agent:
        # Estimates are max_tokens of answer at the output price: the big model quotes $0.01
        # a turn and answers for $0.0001 (one token).
        script = [call("record_write"), say("done")]
        return build(
            model=ScriptedModel(script, name="big", usd_per_mtok_out=100, max_tokens=100),
            small_model=ScriptedModel(
                script, name="small", usd_per_mtok_out=small_usd_per_mtok, max_tokens=100
            ),
            routing={"small_model": "scripted:small"},
            budget={cap: 0.015, "on_exceeded": "degrade"},
        )

    @pytest.mark.parametrize("cap", DEGRADE)
    def test_a_turn_the_big_model_cannot_afford_goes_to_the_small_one(self, build, run, store, cap):
        """After $0.0101 of a $0.015 cap, the big model's $0.01 quote does not fit: the turn
        goes to the small model ($0.0001), recorded with route 'degraded'."""
        result = run(self._agent(build, cap, small_usd_per_mtok=1))
        assert (result.status, result.outcome) == ("completed", "resolved")
        assert _models(store, result.run_id) == [
            ("scripted:big", None),
            ("scripted:small", "degraded"),
        ]

    @pytest.mark.parametrize("cap", DEGRADE)
    def test_when_even_the_small_model_does_not_fit_the_run_stops(self, build, run, store, cap):
        """When the small model's quote ($0.006) does not fit either, the run stops
        failed/budget_exceeded and neither model is asked again."""
        result = run(self._agent(build, cap, small_usd_per_mtok=60))
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")
        assert _models(store, result.run_id) == [("scripted:big", None)]


# --- 2. a model without a price -------------------------------------------------------------------
class TestUnpricedModel:
    def test_a_budget_refuses_a_model_without_a_price(self, build, run):
        """A model with no price cannot be held to a budget: the run fails closed with
        budget_exceeded, saying so, and the model is never asked."""
        model = Quoted([say("done")], quote=None)
        result = run(build(model=model, budget={"per_run_usd": 1.0}))
        assert (result.status, result.outcome) == ("failed", "budget_exceeded")
        assert "has no price" in result.reason
        assert model.asked == 0

    def test_without_a_budget_an_unpriced_model_runs(self, build, run):
        """With no cap at all, nothing needs a price: the run completes."""
        model = Quoted([say("done")], quote=None)
        result = run(build(model=model, budget={}))
        assert (result.status, result.outcome) == ("completed", "resolved")


# --- 3. shared day caps ---------------------------------------------------------------------------
class TestDayCaps:
    def test_a_workflow_cap_is_shared_by_its_runs(self, build, run, store, toolset):
        """A $0.05 workflow day cap lets exactly five $0.01 calls through across three runs of
        three calls; the ledger shows $0.05 spent and nothing left reserved."""
        agent = build(calls(3), budget={"per_workflow_day_usd": 0.05})
        results = [run(agent) for _ in range(3)]
        assert [r.outcome for r in results] == ["resolved", "budget_exceeded", "budget_exceeded"]
        assert len(toolset.effects) == 5
        assert _ledger(store, "workflow:testing") == [(0.05, 0.0)]
        denied = _decided(store, results[1].run_id)[-1]
        assert (denied["decision"], denied["check"]) == ("denied", "budget")
        assert "workflow:testing" in denied["reason"]

    def test_a_tenant_cap_counts_each_tenant_apart(self, build, run, store, toolset):
        """A $0.03 tenant day cap stops acme's fourth call; globex's calls count against
        globex's own cap."""
        agent = build(calls(2), budget={"per_tenant_day_usd": 0.03})
        acme = [run(agent), run(agent)]
        globex = run(agent, tenant="globex")
        assert [r.outcome for r in acme] == ["resolved", "budget_exceeded"]
        assert (globex.status, globex.outcome) == ("completed", "resolved")
        assert len(toolset.effects) == 5
        assert _ledger(store, "tenant:acme") == [(0.03, 0.0)]
        assert _ledger(store, "tenant:globex") == [(0.02, 0.0)]

    def test_a_tenant_cap_is_shared_by_the_tenants_workflows(
        self, build, run, store, toolset, contract_data
    ):
        """Two workflows of one tenant share its $0.02 day cap: the second workflow gets the
        one call the first left."""
        budget = {"per_tenant_day_usd": 0.02}
        first = build(calls(1), budget=budget)
        second = build(calls(2), budget=budget, workflow="other")
        other = create_agent_identity(store, agent="test-agent", workflow="other", tenant_id="acme")
        assert run(first).outcome == "resolved"
        assert run(second, credential=other.token).outcome == "budget_exceeded"
        assert len(toolset.effects) == 2
        assert _ledger(store, "tenant:acme") == [(0.02, 0.0)]

    def test_a_new_utc_day_starts_a_fresh_cap(self, build, run, store, toolset, clock):
        """A spent day cap allows calls again on the next UTC day, on a ledger line of its own."""
        agent = build(calls(2), budget={"per_workflow_day_usd": 0.01})
        assert run(agent).outcome == "budget_exceeded"
        clock.advance(days=1)
        assert run(agent).outcome == "budget_exceeded"
        assert len(toolset.effects) == 2
        days = [r.day for r in store.spend(scope="workflow:testing")]
        assert len(set(days)) == 2
        assert _ledger(store, "workflow:testing") == [(0.01, 0.0), (0.01, 0.0)]


# --- 4. many runs on many nodes -------------------------------------------------------------------
class TestConcurrentDayCap:
    def test_workers_on_four_nodes_never_overspend_a_shared_cap(
        self, store, nodes, build, creds, toolset
    ):
        """24 runs of two $0.01 calls, worked by four workers on four nodes at once, against a
        $0.10 workflow day cap: exactly ten calls are made, and the ledger agrees with the
        runs' logs to the micro-dollar with nothing left reserved."""
        agent = build(budget={"per_workflow_day_usd": 0.10})

        def two_writes(ctx: Context, task: Any) -> str:
            for n in range(2):
                ctx.tool("record_write", {"item": f"{task}-{n}"})
            return "done"

        workflow = Workflow(agent=agent, fn=two_writes)
        starter = ControlPlane(store)
        runs = [
            starter.start(workflow, credential=creds["acme"], tenant_id="acme", task=f"t{n}")
            for n in range(24)
        ]
        starter.close()

        def work(node: SqlStore) -> None:
            plane = ControlPlane(node, executor=Executor(sleep=lambda s: None))
            try:
                while not all(node.get_run(r).final for r in runs):
                    Worker(plane, [workflow], poll_s=0.001).run(until_idle=True)
            finally:
                plane.close()

        with ThreadPoolExecutor(4, thread_name_prefix="worker") as pool:
            list(pool.map(work, [nodes() for _ in range(4)]))

        assert len(toolset.effects) == len(set(toolset.effects)) == 10
        logged = [
            e.payload["cost_usd"]
            for r in runs
            for e in store.events(r)
            if e.kind == "tool.completed"
        ]
        assert round(sum(logged), 6) == 0.10
        assert _ledger(store, "workflow:testing") == [(0.10, 0.0)]
        outcomes = [_outcome(store, r) for r in runs]
        assert set(outcomes) <= {("completed", "resolved"), ("failed", "budget_exceeded")}
        assert [r.run_id for r in store.verify() if not r.ok] == []


# --- 5. reservations across a crash and a run's end -----------------------------------------------
class TestRetryCosts:
    def test_each_attempt_of_a_retried_call_is_paid_for(
        self, make_contract, contract_data, toolset, run, store
    ):
        """A $0.01 tool that fails twice with a retryable error and then succeeds costs the run
        three attempts ($0.03): recorded on its result, in the run's cost and in the ledger."""
        toolset.flaky_failures = 2
        tools = [
            dataclasses.replace(t, cost_usd=0.01) if t.name == "flaky" else t for t in toolset.tools
        ]
        budget = {"per_run_usd": 1.0, "per_workflow_day_usd": 1.0}
        agent = Agent.load(
            make_contract({**contract_data, "budget": budget}),
            tools=tools,
            model=ScriptedModel([call("flaky"), say("done")]),
        )
        result = run(agent)
        (completed,) = [
            e.payload for e in store.events(result.run_id) if e.kind == "tool.completed"
        ]
        assert (completed["attempts"], completed["cost_usd"]) == (3, 0.03)
        assert round(result.cost_usd, 6) == 0.03
        assert _ledger(store, "workflow:testing") == [(0.03, 0.0)]


class TestReservations:
    def _reserve(self, step: int, amount: float, *, cap: float = 0.05) -> Reserve:
        day = utcnow().strftime("%Y-%m-%d")
        caps = (Cap(scope="workflow:testing", day=day, cap_usd=cap),)
        return Reserve(run_id="run_r", step=step, amount_usd=amount, caps=caps)

    def test_a_reservation_outlives_a_crash_until_its_step_settles(self, store, nodes):
        """A step's reservation, written with its intent, survives the worker (another node
        still sees it) until the step's result settles it at its real cost."""
        store.start_run("run_r", started_event())
        store.append("run_r", [], charges=[self._reserve(2, 0.01)])
        # The worker is gone: its step has an intent and no result. Another node reads on.
        other = nodes()
        assert _ledger(other, "workflow:testing") == [(0.0, 0.01)]
        other.append("run_r", [], charges=[Settle(run_id="run_r", step=2, cost_usd=0.008)])
        assert _ledger(other, "workflow:testing") == [(0.008, 0.0)]

    def test_a_run_that_ends_releases_what_it_holds(self, store):
        """The end of a run (appended with `ReleaseRun`) gives back whatever it still has
        reserved; what it spent stays spent."""
        store.start_run("run_r", started_event())
        store.append("run_r", [], charges=[self._reserve(2, 0.01)])
        store.append("run_r", [], charges=[Settle(run_id="run_r", step=2, cost_usd=0.01)])
        store.append("run_r", [], charges=[self._reserve(4, 0.02), self._reserve(6, 0.01)])
        assert _ledger(store, "workflow:testing") == [(0.01, 0.03)]
        store.append("run_r", [finished_event()], charges=[ReleaseRun(run_id="run_r")])
        assert _ledger(store, "workflow:testing") == [(0.01, 0.0)]

    def test_a_reservation_that_does_not_fit_writes_nothing(self, store):
        """A reservation past the cap raises BudgetExceeded and rolls back its whole append:
        neither its events nor any of its charges are written."""
        store.start_run("run_r", started_event())
        store.append("run_r", [], charges=[self._reserve(2, 0.04)])
        before = store.get_run("run_r").event_count
        with pytest.raises(BudgetExceeded) as raised:
            store.append(
                "run_r",
                [finished_event()],
                charges=[Settle(run_id="run_r", step=2, cost_usd=0.04), self._reserve(4, 0.02)],
            )
        assert raised.value.scope == "workflow:testing"
        assert store.get_run("run_r").event_count == before
        assert _ledger(store, "workflow:testing") == [(0.0, 0.04)]

    def test_a_step_cut_off_after_its_effect_keeps_its_reservation_until_resumed(
        self, store, plane, build, creds, toolset
    ):
        """A worker loses the run right after a tool's effect, before its result is written:
        the step's reservation stays held; the worker that resumes the run redoes the step
        with the same key, and the ledger then shows it spent once, nothing reserved."""
        agent = build(budget={"per_workflow_day_usd": 1.0})
        owner = new_owner()
        stolen: list[object] = []

        def cut_off(args: Any, ctx: Any) -> Any:
            output = toolset.record_write(args, ctx)
            if not stolen:  # as if this worker died here: its lease goes to a dead one
                store.release_run(ctx.run_id, owner=owner)
                stolen.append(
                    store.claim_run(
                        owner="elsewhere/1/gone", workflows=["testing"], now=utcnow(), lease_s=-1
                    )
                )
            return output

        tools = [
            dataclasses.replace(t, run=cut_off) if t.name == "record_write" else t
            for t in toolset.tools
        ]
        agent = dataclasses.replace(agent, tools={t.name: t for t in tools})

        def two_writes(ctx: Context, task: Any) -> str:
            ctx.tool("record_write", {"item": "a"})
            ctx.tool("record_write", {"item": "b"})
            return "done"

        workflow = Workflow(agent=agent, fn=two_writes)
        run_id = plane.start(workflow, credential=creds["acme"], tenant_id="acme", task=None)
        assert store.claim_run(owner=owner, workflows=["testing"], now=utcnow(), lease_s=60)
        with pytest.raises(LeaseLost):
            plane.resume(run_id, workflow, lease_owner=owner)
        assert stolen != [None]
        assert _ledger(store, "workflow:testing") == [(0.0, 0.01)]

        Worker(plane, [workflow]).run(until_idle=True)
        assert _outcome(store, run_id) == ("completed", "resolved")
        first, again, second = (key for _, key in toolset.effects)
        assert first == again != second
        assert _ledger(store, "workflow:testing") == [(0.02, 0.0)]

    def test_a_failed_model_call_gives_its_reservation_back(self, build, run, store):
        """A model call reserves its quote against the day cap; when the call fails and the
        run ends, the plane releases it: nothing spent, nothing reserved."""
        model = Quoted([say("done")], quote=0.05, fail=True)
        result = run(build(model=model, budget={"per_workflow_day_usd": 1.0}))
        assert (result.status, result.outcome) == ("failed", "failed")
        assert model.asked == 1
        assert _ledger(store, "workflow:testing") == [(0.0, 0.0)]


# --- 6. rate limits -------------------------------------------------------------------------------
class TestRateLimits:
    def test_a_call_past_the_burst_is_denied_with_its_retry_time(self, build, run, store, toolset):
        """With burst 2 and `deny`, the third call in a row is denied at rate_limit, and the
        check says when the next token is due. (2/m rather than 2/s: no token can come back
        while a slow machine runs the three calls.)"""
        limits = [{"tool": "record_write", "rate": "2/m", "burst": 2}]
        result = run(build(calls(3), rate_limits=limits))
        assert [d.kind for d in result.decisions] == ["allowed", "allowed", "denied"]
        denied = _decided(store, result.run_id)[-1]
        assert (denied["decision"], denied["check"]) == ("denied", "rate_limit")
        detail = _check(denied, "rate_limit")["detail"]
        assert 0 < detail["retry_after_s"] <= 30
        assert detail["on_limit"] == "deny"
        assert "testing/acme/record_write" in denied["reason"]
        assert len(toolset.effects) == 2
        assert (result.status, result.outcome) == ("completed", "resolved")

    def test_wait_holds_the_call_until_its_token_is_due(self, build, run, plane, toolset):
        """With `wait`, a call finding the bucket empty sleeps until the next token (at
        5/s, at most 0.2 s) and is then allowed: every call of the burst goes through."""
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)  # the store's clock is real: the token must really come

        plane.gate.sleep = sleep
        limits = [
            {"tool": "record_write", "rate": "5/s", "burst": 1, "on_limit": "wait", "max_wait": 2}
        ]
        result = run(build(calls(3), rate_limits=limits))
        assert [d.kind for d in result.decisions] == ["allowed"] * 3
        assert len(toolset.effects) == 3
        assert waits
        assert all(0 < w <= 0.2 + 1e-6 for w in waits), waits
        assert sum(waits) <= 2

    def test_wait_longer_than_max_wait_denies_at_once(self, build, run, plane, store):
        """With `wait`, a token due later than `max_wait` is not waited for: the call is
        denied at once, and nothing sleeps."""
        waits: list[float] = []
        plane.gate.sleep = waits.append
        limits = [
            {
                "tool": "record_write",
                "rate": "1/h",
                "burst": 1,
                "on_limit": "wait",
                "max_wait": "1s",
            }
        ]
        result = run(build(calls(2), rate_limits=limits))
        assert [d.kind for d in result.decisions] == ["allowed", "denied"]
        denied = _decided(store, result.run_id)[-1]
        assert denied["check"] == "rate_limit"
        assert _check(denied, "rate_limit")["detail"]["on_limit"] == "wait"
        assert waits == []

    def test_each_workflow_tenant_and_tool_has_its_own_bucket(self, build, run, store, toolset):
        """A `*` rule of one call an hour gives each (workflow, tenant, tool) its own bucket:
        acme's second record_write is denied, while acme's flaky, globex's record_write and
        the record_write of acme's other workflow are not."""
        limits = [{"tool": "*", "rate": "1/h", "burst": 1}]
        turn = ScriptedTurn(
            calls=(("record_write", {"item": "a"}), ("flaky", {}), ("record_write", {"item": "b"}))
        )
        acme = run(build(turn, rate_limits=limits))
        globex = run(build(call("record_write"), rate_limits=limits), tenant="globex")
        other = build(call("record_write"), rate_limits=limits, workflow="other")
        token = create_agent_identity(store, agent="test-agent", workflow="other", tenant_id="acme")
        elsewhere = run(other, credential=token.token)
        assert [d.kind for d in acme.decisions] == ["allowed", "allowed", "denied"]
        assert [d.kind for d in globex.decisions] == ["allowed"]
        assert [d.kind for d in elsewhere.decisions] == ["allowed"]
        made = [tool for tool, _ in toolset.effects]
        assert made == ["record_write", "flaky", "record_write", "record_write"]


# --- 7. one bucket, two worker processes ----------------------------------------------------------
class TestRateLimitAcrossProcesses:
    RUNS = 12

    def test_two_worker_processes_share_one_bucket(
        self, tmp_path, database_url, store, make_contract, contract_data, creds
    ):
        """Twelve runs of one call each, under a 5/h burst-5 `deny` limit, worked by two
        `charter worker` processes at once (each proven to take tokens): five calls are
        allowed in all, the other seven denied at rate_limit."""
        contract = make_contract(
            {
                **contract_data,
                "tools": {"record_write": {"effect": "write"}},
                "timeouts": {"tool": "60s"},
                "rate_limits": [{"tool": "record_write", "rate": "5/h", "burst": 5}],
            }
        )
        home = tmp_path / "home"
        home.mkdir()
        key_file = tmp_path / "seal.key"
        key_file.write_text(store.seal_key.hex())
        starter = ControlPlane(store)
        workflow = stamp_workflow(contract, home)
        runs = [
            starter.start(workflow, credential=creds["acme"], tenant_id="acme", task=f"t{n}")
            for n in range(self.RUNS)
        ]
        starter.close()

        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
        env |= {
            "CHARTER_DATABASE_URL": database_url,
            "CHARTER_SEAL_KEY_FILE": str(key_file),
            "CHARTER_KEYRING_FILE": str(store.keys.path),
            "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p),
            CONTRACT_ENV: str(contract),
            WORKERS_ENV: "2",
        }
        command = [
            sys.executable,
            "-c",
            "from charter.cli import main; main()",
            "--home",
            str(home),
            "worker",
            "--app",
            "limits_app:workflows",
            "--until-idle",
        ]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err.decode(errors="replace")[-2000:]

        decided = [d for r in runs for d in _decided(store, r)]
        assert [d["decision"] for d in decided].count("allowed") == 5
        denied = [d["check"] for d in decided if d["decision"] == "denied"]
        assert denied == ["rate_limit"] * (self.RUNS - 5)
        effects = (home / EFFECTS_FILE).read_text().split("\n")[:-1]
        assert len(effects) == 5
        assert len({line.split()[0] for line in effects}) == 2, effects
        assert {_outcome(store, r) for r in runs} == {("completed", "resolved")}


# --- 8. contract validation -----------------------------------------------------------------------
INVALID = [
    pytest.param(
        {"budget": {"per_run_usd": 1, "on_exceeded": "degrade"}},
        "budget.on_exceeded 'degrade' needs routing.small_model",
        id="degrade-without-small-model",
    ),
    pytest.param(
        {"budget": {"per_run_usd": 1, "on_exceeded": "escalate"}},
        "budget.on_exceeded 'escalate' needs escalate_tier",
        id="escalate-without-tier",
    ),
    pytest.param(
        {"budget": {"per_run_usd": 1, "on_exceeded": "escalate", "escalate_tier": "board"}},
        "budget.on_exceeded 'escalate' needs escalate_tier",
        id="escalate-to-unknown-tier",
    ),
    pytest.param(
        {"environments": {"prod": {"budget": {"on_exceeded": "degrade"}}}},
        "environments.prod.budget.on_exceeded 'degrade' needs routing.small_model",
        id="environment-degrade-without-small-model",
    ),
    pytest.param(
        {"rate_limits": [{"tool": "teleport", "rate": "1/s"}]},
        "rate_limits names 'teleport', which is not granted",
        id="rate-limit-on-ungranted-tool",
    ),
    pytest.param(
        {"rate_limits": [{"tool": "record_write", "rate": "fast"}]},
        "rate_limits.0.rate",
        id="rate-not-parsed",
    ),
    pytest.param(
        {"rate_limits": [{"tool": "record_write", "rate": "10/w"}]},
        "rate_limits.0.rate",
        id="rate-with-unknown-period",
    ),
]


class TestContractValidation:
    @pytest.mark.parametrize(("top", "names"), INVALID)
    def test_a_bad_limit_is_a_contract_error_naming_the_key(
        self, make_contract, contract_data, top, names
    ):
        """A limit that cannot work is refused on load, with the key that is wrong."""
        path = make_contract({**contract_data, **top})
        with pytest.raises(ContractError, match=re.escape(names)) as raised:
            load_contract(path)
        assert str(path.name) in str(raised.value)


# --- the shared limits' arithmetic, at its edges ----------------------------------------------
DAY = "2026-06-01"


class TestCapsAtTheirEdges:
    """Charges appended straight to the store, with caps of a day of their own."""

    @pytest.fixture
    def charge(self, store: SqlStore) -> Callable[..., None]:
        store.start_run("run_e", started_event())

        def charge(*charges: Any) -> None:
            store.append("run_e", [], charges=list(charges))

        return charge

    def _reserve(self, step: int, amount: float, *caps: Cap, enforce: bool = True) -> Reserve:
        caps = caps or (Cap(scope="workflow:testing", day=DAY, cap_usd=0.05),)
        return Reserve(run_id="run_e", step=step, amount_usd=amount, caps=caps, enforce=enforce)

    def _held(self, store: SqlStore, scope: str = "workflow:testing") -> list[tuple[float, float]]:
        return [(r.spent_usd, r.reserved_usd) for r in store.spend(scope=scope, day=DAY)]

    def test_a_reservation_that_reaches_the_cap_exactly_fits(self, store, charge):
        charge(self._reserve(2, 0.02))
        charge(self._reserve(4, 0.03))
        assert self._held(store) == [(0.0, 0.05)]

    def test_a_reservation_one_micro_dollar_over_does_not(self, store, charge):
        charge(self._reserve(2, 0.02))
        with pytest.raises(BudgetExceeded) as raised:
            charge(self._reserve(4, 0.030001))
        assert raised.value.message == (
            f"workflow:testing has $0.02 of its $0.05 cap for {DAY} spent or reserved; "
            "$0.030001 more does not fit"
        )
        assert (raised.value.cap_usd, raised.value.committed_usd) == (0.05, 0.02)
        assert self._held(store) == [(0.0, 0.02)]

    def test_a_reservation_alone_over_the_cap_never_makes_a_row(self, store, charge):
        with pytest.raises(BudgetExceeded) as raised:
            charge(self._reserve(2, 0.06))
        assert raised.value.committed_usd == 0
        assert self._held(store) == []

    def test_a_step_reserved_again_replaces_its_reservation(self, store, charge):
        """A call judged anew (after an approval) holds its new estimate, not both."""
        charge(self._reserve(2, 0.01))
        charge(self._reserve(2, 0.03))
        assert self._held(store) == [(0.0, 0.03)]

    def test_settling_moves_the_reservation_to_spent_at_the_real_cost(self, store, charge):
        reserved = self._reserve(2, 0.03)
        charge(reserved, self._reserve(4, 0.01))
        charge(Settle(run_id="run_e", step=2, cost_usd=0.025, reserved=reserved))
        assert self._held(store) == [(0.025, 0.01)]
        charge(Settle(run_id="run_e", step=4, cost_usd=0.002))  # read back, as after a crash
        assert self._held(store) == [(0.027, 0.0)]

    def test_settling_a_step_that_reserved_nothing_changes_nothing(self, store, charge):
        charge(self._reserve(2, 0.01))
        charge(Settle(run_id="run_e", step=9, cost_usd=0.5))
        charge(Settle(run_id="run_e", step=8, cost_usd=0.5, reserved=self._reserve(8, 0.01)))
        assert self._held(store) == [(0.0, 0.01)]

    def test_a_settlement_past_the_cap_is_recorded(self, store, charge):
        """The money is spent: the ledger says so, whatever the cap."""
        charge(self._reserve(2, 0.01))
        charge(Settle(run_id="run_e", step=2, cost_usd=0.5))
        assert self._held(store) == [(0.5, 0.0)]

    def test_an_approved_reservation_counts_past_the_cap(self, store, charge):
        charge(self._reserve(2, 0.04))
        charge(self._reserve(4, 0.04, enforce=False))
        assert self._held(store) == [(0.0, 0.08)]

    def test_every_cap_must_fit_and_the_refusal_names_the_one_that_did_not(self, store, charge):
        tenant = Cap(scope="tenant:acme", day=DAY, cap_usd=0.02)
        workflow = Cap(scope="workflow:testing", day=DAY, cap_usd=1.0)
        charge(self._reserve(2, 0.015, workflow, tenant))
        with pytest.raises(BudgetExceeded) as raised:
            charge(self._reserve(4, 0.01, workflow, tenant))
        assert raised.value.scope == "tenant:acme"
        assert self._held(store, "tenant:acme") == [(0.0, 0.015)]
        assert self._held(store) == [(0.0, 0.015)]

    def test_releasing_a_run_gives_back_only_what_it_holds(self, store, charge):
        charge(self._reserve(2, 0.01), self._reserve(4, 0.02))
        charge(Settle(run_id="run_e", step=2, cost_usd=0.01))
        charge(ReleaseRun(run_id="run_e"))
        assert self._held(store) == [(0.01, 0.0)]


class TestBucketsAtTheirEdges:
    """A bucket of 2 tokens refilled at one a second, on a clock the test sets."""

    @pytest.fixture
    def take(self, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
        store.start_run("run_b", started_event())
        now = [1000.0]
        monkeypatch.setattr(store, "_clock", lambda db: now[0])

        def take(at: float, key: str = "w/acme/t") -> None:
            now[0] = at
            store.append("run_b", [], charges=[TakeToken(key=key, per_second=1.0, capacity=2.0)])

        return take

    def _refused(self, take: Callable[..., None], at: float) -> float:
        with pytest.raises(RateLimited) as raised:
            take(at)
        assert raised.value.scope == "w/acme/t"
        return raised.value.retry_after_s

    def test_a_full_bucket_gives_its_capacity_then_says_when(self, take):
        take(1000.0)
        take(1000.0)
        assert self._refused(take, 1000.0) == 1.0
        assert self._refused(take, 1000.25) == 0.75

    def test_tokens_come_back_at_the_rate(self, take):
        take(1000.0)
        take(1000.0)
        take(1001.0)
        assert self._refused(take, 1001.5) == 0.5

    def test_an_idle_bucket_refills_to_its_capacity_and_no_more(self, take):
        take(1000.0)
        take(5000.0)
        take(5000.0)
        assert self._refused(take, 5000.0) == 1.0

    def test_a_clock_that_goes_back_refills_nothing(self, take):
        take(1000.0)
        take(1000.0)
        assert self._refused(take, 990.0) == 1.0

    def test_each_key_has_its_own_bucket(self, take):
        take(1000.0)
        take(1000.0)
        take(1000.0, key="w/globex/t")
        assert self._refused(take, 1000.0) == 1.0


def test_amounts_are_charged_in_whole_micro_dollars_rounded_up():
    """Float noise below a millionth of a micro-dollar is not a micro-dollar; any fraction the
    amount really has is one more, so no cap is passed by rounding down."""
    assert micros(0.07) == 70_000  # 0.07 * 1e6 is 70000.00000000001 in floating point
    assert micros(0.0000010000004) == 1
    assert micros(0.0000014) == 2
    assert micros(0.0) == 0


def test_a_days_spend_reads_as_json(store):
    store.start_run("run_j", started_event())
    cap = Cap(scope="tenant:acme", day=DAY, cap_usd=1.0)
    store.append(
        "run_j", [], charges=[Reserve(run_id="run_j", step=2, amount_usd=0.25, caps=(cap,))]
    )
    (record,) = store.spend(scope="tenant:acme", day=DAY)
    assert record.to_dict() == {
        "scope": "tenant:acme",
        "day": DAY,
        "spent_usd": 0.0,
        "reserved_usd": 0.25,
    }


def test_a_held_call_takes_no_token_and_reserves_nothing(build, run, store):
    """Its charges wait for the approval: a call nobody may run yet spends no one's limits."""
    limits = [{"tool": "record_write", "rate": "1/m", "burst": 1}]
    agent = build(
        call("record_write"),
        autonomy="suggest",
        budget={"per_tenant_day_usd": 1.0},
        rate_limits=limits,
    )
    result = run(agent)
    assert result.status == "waiting"
    assert _ledger(store, "tenant:acme") == []
    raw = RawDb(store)
    try:
        assert raw.execute("SELECT count(*) FROM rate_buckets").fetchone()[0] == 0
    finally:
        raw.close()
