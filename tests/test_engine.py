"""The durable engine: resume from the log, exactly-once after a crash, timers, determinism,
leases, cancellation, replay that calls nothing, raw payloads never in clear."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from charter import Agent, Config, ControlPlane
from charter._decision import Allowed, Denied, Failed
from charter._identity import create_human
from charter.engine import Finish, Worker, Workflow, agent_loop, load_workflows, replay_run
from charter.exceptions import ApprovalRefused, ConfigError, LeaseLost
from charter.gate import Executor, idempotency_key
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.store._lease import new_owner

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.engine import Context


class Crash(BaseException):
    """Stands in for the process dying: nothing in Charter may catch it."""


@pytest.fixture
def agent(make_contract, toolset) -> Agent:
    return Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))


def _start(plane, cred, fn: Callable[[Context, Any], Any], agent: Agent, task: Any = None) -> str:
    return plane.start(
        Workflow(agent=agent, fn=fn), credential=cred.token, tenant_id="acme", task=task
    )


def _kinds(store, run_id: str) -> list[str]:
    return [e.kind for e in store.events(run_id)]


def write_sleep_write(ctx: Context, task: Any) -> str:
    first = ctx.tool("record_write", {"item": "first"})
    ctx.sleep(60)
    second = ctx.tool("record_write", {"item": "second"})
    assert isinstance(first, Allowed)
    assert isinstance(second, Allowed)
    return f"{first.output['item']} then {second.output['item']}"


class TestResume:
    def test_timer_suspends_and_completed_steps_are_not_repeated(
        self, plane, cred, agent, toolset, clock
    ):
        """A run sleeping holds nothing; on resume its first write is answered from the log."""
        workflow = Workflow(agent=agent, fn=write_sleep_write)
        run_id = _start(plane, cred, write_sleep_write, agent)
        waiting = plane.resume(run_id, workflow)
        assert (waiting.status, waiting.waiting_on) == ("waiting", ["timer"])
        assert [tool for tool, _ in toolset.effects] == ["record_write"]

        early = plane.resume(run_id, workflow)
        assert early.status == "waiting"
        clock.advance(seconds=61)
        done = plane.resume(run_id, workflow)

        assert (done.status, done.outcome, done.reason) == (
            "completed",
            "resolved",
            "first then second",
        )
        assert toolset.effects == [
            ("record_write", idempotency_key(run_id, 1)),
            ("record_write", idempotency_key(run_id, 3)),
        ]
        resumed = [e.payload for e in plane.store.events(run_id) if e.kind == "run.resumed"]
        assert [r["replayed_steps"] for r in resumed] == [0, 2]
        assert all(r.ok for r in plane.store.verify(run_id))

    def test_a_timer_run_is_claimable_only_once_due(self, plane, cred, agent, clock):
        run_id = _start(plane, cred, write_sleep_write, agent)
        plane.resume(run_id, Workflow(agent=agent, fn=write_sleep_write))
        owner = new_owner()
        store = plane.store
        assert store.claim_run(owner=owner, workflows=["testing"], now=clock(), lease_s=30) is None
        clock.advance(minutes=2)
        lease = store.claim_run(owner=owner, workflows=["testing"], now=clock(), lease_s=30)
        assert lease is not None
        assert lease.run_id == run_id

    def test_crash_between_effect_and_record_reexecutes_with_the_same_key(
        self, plane, cred, agent, toolset
    ):
        """The intent is durable, the result is not: the retry presents the same key."""
        ledger: dict[str, int] = {}
        crash = {"armed": True}

        def pay(args, ctx):
            ledger[ctx.idempotency_key] = ledger.get(ctx.idempotency_key, 0) + 1
            if crash["armed"]:
                crash["armed"] = False
                raise Crash
            return {"item": args.item}

        tools = [
            dataclasses.replace(t, run=pay) if t.name == "record_write" else t
            for t in toolset.tools
        ]
        paying = dataclasses.replace(agent, tools={t.name: t for t in tools})
        workflow = Workflow(agent=paying, fn=lambda ctx, task: ctx.tool("record_write", {}))
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)

        with pytest.raises(Crash):
            plane.resume(run_id, workflow)
        assert _kinds(plane.store, run_id)[-1] == "gate.decided"

        done = plane.resume(run_id, workflow)

        assert done.status == "completed"
        assert ledger == {idempotency_key(run_id, 1): 2}
        kinds = _kinds(plane.store, run_id)
        assert kinds.count("tool.completed") == 1
        assert kinds.count("gate.decided") == 1
        assert all(r.ok for r in plane.store.verify(run_id))

    def test_workflow_catching_everything_still_suspends(self, plane, cred, agent):
        def greedy(ctx: Context, task: Any) -> str:
            try:
                ctx.sleep(30)
            except Exception:  # noqa: BLE001 - the point of the test
                return "swallowed"
            return "slept"

        run_id = _start(plane, cred, greedy, agent)
        assert plane.resume(run_id, Workflow(agent=agent, fn=greedy)).status == "waiting"

    def test_workflow_exception_fails_the_run_on_record(self, plane, cred, agent):
        def broken(ctx: Context, task: Any) -> None:
            raise ValueError("bad input from maria@example.com")

        run_id = _start(plane, cred, broken, agent)
        result = plane.resume(run_id, Workflow(agent=agent, fn=broken))
        assert (result.status, result.outcome) == ("failed", "failed")
        assert "ValueError" in result.reason
        assert "maria@example.com" not in result.reason

    def test_finish_sets_status_and_outcome(self, plane, cred, agent):
        def escalate(ctx: Context, task: Any) -> Finish:
            return Finish(outcome="escalated", reason="needs a human")

        run_id = _start(plane, cred, escalate, agent)
        result = plane.resume(run_id, Workflow(agent=agent, fn=escalate))
        assert (result.status, result.outcome, result.reason) == (
            "completed",
            "escalated",
            "needs a human",
        )


class TestDeterminism:
    def _suspended(self, plane, cred, agent) -> str:
        run_id = _start(plane, cred, write_sleep_write, agent)
        plane.resume(run_id, Workflow(agent=agent, fn=write_sleep_write))
        return run_id

    @pytest.mark.parametrize(
        ("changed", "words"),
        [
            (lambda ctx, task: ctx.tool("record_write", {"item": "other"}), "other arguments"),
            (lambda ctx, task: ctx.tool("flaky", {"item": "first"}), "called flaky"),
            (lambda ctx, task: ctx.sleep(5), "asked for sleep"),
        ],
    )
    def test_changed_workflow_fails_loudly_naming_the_step(
        self, plane, cred, agent, clock, changed, words
    ):
        run_id = self._suspended(plane, cred, agent)
        clock.advance(minutes=5)
        result = plane.resume(run_id, Workflow(agent=agent, fn=changed))
        assert (result.status, result.outcome) == ("failed", "failed")
        assert "step 1" in result.reason
        assert words in result.reason
        finished = plane.store.events(run_id)[-1].payload
        assert finished["code"] == "nondeterminism"


class TestWorkers:
    def test_leased_run_is_not_claimed_by_another_worker(self, plane, cred, agent, clock):
        run_id = _start(plane, cred, write_sleep_write, agent)
        store = plane.store
        first = store.claim_run(owner=new_owner(), workflows=["testing"], now=clock(), lease_s=30)
        assert first is not None
        assert first.run_id == run_id
        assert (
            store.claim_run(owner=new_owner(), workflows=["testing"], now=clock(), lease_s=30)
            is None
        )

    def test_lease_of_a_dead_local_process_is_reclaimed_at_once(self, plane, cred, agent, clock):
        run_id = _start(plane, cred, write_sleep_write, agent)
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        dead_owner = f"{new_owner().split('/')[0]}/{gone.stdout.strip()}/dead"
        store = plane.store
        assert store.claim_run(owner=dead_owner, workflows=["testing"], now=clock(), lease_s=300)
        lease = store.claim_run(owner=new_owner(), workflows=["testing"], now=clock(), lease_s=30)
        assert lease is not None
        assert lease.run_id == run_id

    def test_worker_only_claims_its_workflows(self, plane, cred, agent, clock):
        _start(plane, cred, write_sleep_write, agent)
        assert (
            plane.store.claim_run(owner=new_owner(), workflows=["other"], now=clock(), lease_s=30)
            is None
        )

    def test_worker_runs_until_idle_and_leaves_waiting_runs(self, plane, cred, agent, toolset):
        workflow = Workflow(agent=agent, fn=write_sleep_write)
        runs = [_start(plane, cred, write_sleep_write, agent) for _ in range(3)]
        stats = Worker(plane, [workflow]).run(until_idle=True)
        assert (stats.resumed, stats.waiting) == (3, 3)
        assert len(toolset.effects) == 3
        assert {plane.store.get_run(r).status for r in runs} == {"waiting"}


class TestCancel:
    def test_cancel_flag_stops_a_held_run_at_its_next_step(
        self, plane, cred, agent, toolset, clock
    ):
        workflow = Workflow(agent=agent, fn=write_sleep_write)
        run_id = _start(plane, cred, write_sleep_write, agent)
        owner = new_owner()
        assert plane.store.claim_run(owner=owner, workflows=["testing"], now=clock(), lease_s=30)

        record = plane.store.cancel_run(run_id, by="sre", reason="bad deploy")
        assert record.status == "running"  # held by a live worker: flagged, not ended

        result = plane.resume(run_id, workflow, worker=owner)
        assert (result.status, result.outcome) == ("cancelled", "abandoned")
        assert result.reason == "cancelled by sre: bad deploy"
        assert toolset.effects == []

    def test_cancel_of_a_waiting_run_ends_it_at_once(self, plane, cred, agent):
        run_id = _start(plane, cred, write_sleep_write, agent)
        plane.resume(run_id, Workflow(agent=agent, fn=write_sleep_write))
        record = plane.store.cancel_run(run_id, by="sre", reason="not needed")
        assert (record.status, record.outcome) == ("cancelled", "abandoned")
        assert "sre" in (record.reason or "")

    def test_a_crashed_run_settles_its_step_before_it_stops(self, plane, cred, agent, toolset):
        """Cancelling a run that died between effect and record still records the effect."""
        ledger: dict[str, int] = {}
        crash = {"armed": True}

        def pay(args, ctx):
            ledger[ctx.idempotency_key] = ledger.get(ctx.idempotency_key, 0) + 1
            if crash["armed"]:
                crash["armed"] = False
                raise Crash
            return {"item": args.item}

        tools = {
            name: dataclasses.replace(t, run=pay) if name == "record_write" else t
            for name, t in agent.tools.items()
        }
        workflow = Workflow(agent=dataclasses.replace(agent, tools=tools), fn=write_sleep_write)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        with pytest.raises(Crash):
            plane.resume(run_id, workflow)

        flagged = plane.store.cancel_run(run_id, by="sre", reason="stop it")
        assert flagged.status == "running"  # not ended: its step has an intent and no result

        result = plane.resume(run_id, workflow)
        assert (result.status, result.reason) == ("cancelled", "cancelled by sre: stop it")
        assert ledger == {idempotency_key(run_id, 1): 2}
        assert _kinds(plane.store, run_id).count("tool.completed") == 1


class TestReplay:
    def _finished_run(self, plane, cred, toolset, make_contract) -> tuple[str, Agent]:
        model = ScriptedModel(
            [
                ScriptedTurn.call("record_write", item="a", amount=2),
                ScriptedTurn.call("read_notes", item="a"),
                ScriptedTurn.say("done"),
            ]
        )
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="write then read")
        assert result.status == "completed"
        return result.run_id, agent

    def test_replay_calls_no_tool_and_no_model(self, plane, cred, toolset, make_contract):
        run_id, agent = self._finished_run(plane, cred, toolset, make_contract)

        def refuse(args, ctx):
            raise AssertionError("replay called a real tool")

        silent = ScriptedModel(lambda messages: pytest.fail("replay called the model"))
        tripwired = dataclasses.replace(
            agent,
            tools={name: dataclasses.replace(t, run=refuse) for name, t in agent.tools.items()},
            model=silent,
        )
        report = replay_run(plane.store, run_id, [Workflow(agent=tripwired, fn=agent_loop)])

        assert report.ok, report.lines()
        assert [(s.step, s.kind, s.verdict) for s in report.steps] == [
            (1, "model", "match"),
            (2, "tool", "match"),
            (3, "model", "match"),
            (4, "tool", "match"),
            (5, "model", "match"),
        ]

    def test_replay_reports_divergence_step_by_step(self, plane, cred, toolset, make_contract):
        run_id, agent = self._finished_run(plane, cred, toolset, make_contract)

        def different(ctx: Context, task: Any) -> None:
            ctx.tool("record_write", {"item": "b", "amount": 2})

        report = replay_run(plane.store, run_id, [Workflow(agent=agent, fn=different)])

        assert not report.ok
        verdicts = {s.step: s.verdict for s in report.steps}
        assert verdicts[1] == "diverged"  # a tool call where the log has a model call
        assert set(verdicts) == {1, 2, 3, 4, 5}
        assert {verdicts[n] for n in (2, 3, 4, 5)} == {"unreached"}


class TestRawPayloads:
    def test_raw_arguments_and_outputs_are_never_in_clear(
        self, plane, cred, make_contract, toolset, store, raw_db
    ):
        email = "maria.gonzalez@example.com"
        model = ScriptedModel(
            [ScriptedTurn.call("record_write", item=email), ScriptedTurn.say("ok")]
        )
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task=f"mail {email}")
        assert result.status == "completed"
        # The output the workflow saw is the raw one, from the encrypted copy.
        decision = result.decisions[0]
        assert isinstance(decision, Allowed)
        assert decision.output == {"item": email}
        assert email.encode() not in stored_bytes(store, raw_db)


def stored_bytes(store, raw_db) -> bytes:
    """Everything the store wrote: the SQLite file and its WAL, or every PostgreSQL row."""
    if raw_db.backend == "sqlite":
        base = Path(store.path)
        files = [p for p in (base, base.with_name(base.name + "-wal")) if p.exists()]
        return b"".join(path.read_bytes() for path in files)
    tables = raw_db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    values = [
        v for (table,) in tables for row in raw_db.execute(f"SELECT * FROM {table}") for v in row
    ]
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for v in values)


class TestAutonomyInTheLog:
    @pytest.mark.parametrize(
        ("stage", "decision"),
        [("draft", "proposed"), ("suggest", "needs_approval"), ("autonomous", "allowed")],
    )
    def test_every_approval_check_names_the_stage_that_applied(
        self, plane, cred, make_contract, contract_data, toolset, stage, decision
    ):
        model = ScriptedModel([ScriptedTurn.call("flaky", item="x"), ScriptedTurn.say("done")])
        data = {**contract_data, "autonomy": stage}
        data["tools"]["flaky"] = {"effect": "write", "approval": "ops"}
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=model)
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
        events = plane.store.events(result.run_id)
        checks = [c for e in events for c in e.payload.get("checks", [])]
        approval = next(c for c in checks if c["check"] == "approval")
        decided = next(e.payload for e in events if e.kind == "gate.decided")
        assert approval["detail"]["autonomy"] == stage
        assert decided["decision"] == decision
        assert (toolset.effects != []) == (stage == "autonomous")


class TestFailedStepsReplay:
    def test_a_failed_step_is_answered_from_the_log_on_resume(self, plane, cred, agent, clock):
        """A step whose tool failed has no output to open; resume replays its failure."""

        def fail_then_sleep(ctx: Context, task: Any) -> str:
            failed = ctx.tool("broken", {})
            ctx.sleep(60)
            return failed.kind

        workflow = Workflow(agent=agent, fn=fail_then_sleep)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        assert plane.resume(run_id, workflow).status == "waiting"
        clock.advance(minutes=2)
        done = plane.resume(run_id, workflow)
        assert (done.status, done.reason) == ("completed", "failed")
        report = replay_run(plane.store, run_id, [workflow])
        assert report.ok, report.lines()


class TestLogsWithoutTheStepColumn:
    @pytest.mark.backends("sqlite")  # PostgreSQL logs have had the column from the start
    def test_resume_reads_events_written_before_the_step_column(
        self, plane, cred, agent, toolset, clock
    ):
        """Rows from before migration 3 carry no step: resume types them to place them."""
        workflow = Workflow(agent=agent, fn=write_sleep_write)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        plane.resume(run_id, workflow)
        with closing(sqlite3.connect(plane.store.path, isolation_level=None)) as db:
            db.execute("DROP TRIGGER events_append_only_update")
            db.execute("UPDATE events SET step = NULL")
        clock.advance(minutes=2)
        done = plane.resume(run_id, workflow)
        assert (done.status, done.reason) == ("completed", "first then second")
        assert len(toolset.effects) == 2
        assert replay_run(plane.store, run_id, [workflow]).ok


class TestFencing:
    def test_a_worker_whose_lease_ran_out_writes_nothing(self, plane, cred, agent, toolset, clock):
        """Worker A's lease expired and B claimed the run: A's next append is refused."""
        workflow = Workflow(agent=agent, fn=write_sleep_write)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        store = plane.store
        slow, fast = new_owner(), new_owner()
        assert store.claim_run(owner=slow, workflows=["testing"], now=clock(), lease_s=-1)
        assert store.claim_run(owner=fast, workflows=["testing"], now=clock(), lease_s=30)
        before = len(store.events(run_id))

        with pytest.raises(LeaseLost):
            plane.resume(run_id, workflow, worker=slow, lease_owner=slow)

        assert len(store.events(run_id)) == before
        assert toolset.effects == []
        result = plane.resume(run_id, workflow, worker=fast, lease_owner=fast)
        assert result.status == "waiting"
        assert len(toolset.effects) == 1

    def test_worker_that_loses_its_lease_mid_run_stops_and_counts_it(
        self, plane, cred, agent, clock
    ):
        thief = new_owner()

        def stolen(args, ctx):
            # While the tool runs, the worker's (already expired) lease is claimed by another.
            assert plane.store.claim_run(
                owner=thief, workflows=["testing"], now=clock(), lease_s=30
            )
            return {"item": args.item}

        tools = {
            name: dataclasses.replace(t, run=stolen) if name == "record_write" else t
            for name, t in agent.tools.items()
        }
        workflow = Workflow(agent=dataclasses.replace(agent, tools=tools), fn=write_sleep_write)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        worker = Worker(plane, [workflow], lease_s=-1)  # every claim has run out already

        result = worker.step()

        assert result is not None
        assert result.reason.startswith("lease lost")
        assert worker.stats.lost == 1
        # The result waited for the next append, which the fence refused: the thief re-executes
        # the step with the same key.
        assert "tool.completed" not in _kinds(plane.store, run_id)


class TestModelTimeout:
    def test_a_model_that_does_not_answer_fails_the_run_at_its_timeout(
        self, plane, cred, make_contract, contract_data, toolset
    ):
        released = threading.Event()

        def hang(messages):
            released.wait()
            return ScriptedTurn.say("too late")

        data = {**contract_data, "timeouts": {"tool": "5s", "model": 0.05}}
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel(hang))
        try:
            result = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
        finally:
            released.set()
        assert (result.status, result.outcome) == ("failed", "failed")
        assert plane.store.events(result.run_id)[-1].payload["code"] == "model_timeout"


class TestRaces:
    def test_an_inline_run_is_not_claimed_by_a_worker_meanwhile(
        self, plane, cred, make_contract, toolset, clock
    ):
        claimed: list[object] = []

        def peek(args, ctx):
            claimed.append(
                plane.store.claim_run(
                    owner=new_owner(), workflows=["testing"], now=clock(), lease_s=30
                )
            )
            return {"item": args.item}

        tools = [
            dataclasses.replace(t, run=peek) if t.name == "record_write" else t
            for t in toolset.tools
        ]
        model = ScriptedModel([ScriptedTurn.call("record_write", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(), tools=tools, model=model)
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
        assert result.status == "completed"
        assert claimed == [None]

    def test_a_decision_landing_before_the_suspension_leaves_the_run_runnable(
        self, plane, cred, make_contract, toolset, store, clock
    ):
        """The hold and the suspension are two appends; an approval between them must count."""
        approver = create_human(store, name="ann", roles=["approver"])
        model = ScriptedModel([ScriptedTurn.call("launch", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        suspend = plane._suspend

        def approve_first(ctx, wait):
            (request,) = wait.waiting_on
            store.decide_approval(
                request,
                approver=approver.identity,
                decision="approve",
                reason="fine",
                now=clock(),
            )
            return suspend(ctx, wait)

        plane._suspend = approve_first
        waiting = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
        plane._suspend = suspend

        assert waiting.status == "waiting"
        assert store.get_run(waiting.run_id).runnable
        stats = Worker(plane, [Workflow(agent=agent, fn=agent_loop)]).run(until_idle=True)
        assert stats.completed == 1
        assert [tool for tool, _ in toolset.effects] == ["launch"]


class TestReviewedEdges:
    def test_replay_of_a_finished_run_flags_extra_calls(self, plane, cred, toolset, make_contract):
        model = ScriptedModel([ScriptedTurn.call("read_notes", item="a"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        run_id = plane.run(agent, credential=cred.token, tenant_id="acme", task="t").run_id

        def more(ctx: Context, task: Any) -> Finish:
            agent_loop(ctx, task)
            ctx.tool("read_notes", {"item": "b"})
            return Finish()

        report = replay_run(plane.store, run_id, [Workflow(agent=agent, fn=more)])
        assert not report.ok
        assert report.steps[-1].verdict == "diverged"

    def test_one_person_counts_once_across_credentials(
        self, plane, cred, make_contract, contract_data, toolset, store, clock
    ):
        contract_data["approval_tiers"] = {"ops": {"approvers": 2, "expires_after": "1h"}}
        model = ScriptedModel([ScriptedTurn.call("launch", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(contract_data), tools=toolset.tools, model=model)
        waiting = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
        (request,) = waiting.waiting_on
        """A person's second credential (the first revoked, a new one issued) is still them:
        their second approval is refused."""
        first = create_human(store, name="mallory", roles=["approver"])
        store.decide_approval(
            request, approver=first.identity, decision="approve", reason="ok", now=clock()
        )
        store.revoke_identity(first.identity.id)
        second = create_human(store, name="Mallory ", roles=["approver"])
        with pytest.raises(ApprovalRefused, match="counts once"):
            store.decide_approval(
                request, approver=second.identity, decision="approve", reason="ok", now=clock()
            )

    def test_a_tool_call_still_queued_at_its_timeout_never_runs(
        self, store, cred, make_contract, contract_data, toolset
    ):
        """Recorded as timed out, a queued call must not start later and do its effect."""
        executor = Executor(workers=1, sleep=lambda s: None)
        busy = threading.Event()
        blocker = executor._pool.submit(busy.wait)  # the only tool thread is taken
        contract_data["timeouts"] = {"tool": 0.05}
        model = ScriptedModel([ScriptedTurn.call("flaky", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(contract_data), tools=toolset.tools, model=model)
        control = ControlPlane(store, executor=executor)
        try:
            result = control.run(agent, credential=cred.token, tenant_id="acme", task="go")
        finally:
            busy.set()
            blocker.result(timeout=5)
            # One worker, first in first out: once this ran, any call left queued has run too.
            executor._pool.submit(lambda: None).result(timeout=5)
            control.close()
        failed = result.decisions[0]
        assert isinstance(failed, Failed)
        assert failed.code == "tool_timeout"
        assert toolset.attempts == []


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


class TestOversizedArguments:
    @pytest.fixture
    def small(self, make_contract, toolset) -> Callable[..., Agent]:
        """An agent whose calls may weigh 64 bytes, playing `turns`."""

        def small(*turns: ScriptedTurn) -> Agent:
            contract = make_contract(max_argument_bytes=64)
            return Agent.load(contract, tools=toolset.tools, model=ScriptedModel(list(turns)))

        return small

    def _settle(self, plane, cred, agent: Agent, fn: Callable[[Context, Any], Any], clock) -> Any:
        """Start `fn`, let it sleep, resume it to the end; the finished run's result."""
        workflow = Workflow(agent=agent, fn=fn)
        run_id = _start(plane, cred, fn, agent)
        assert plane.resume(run_id, workflow).status == "waiting"
        clock.advance(seconds=61)
        done = plane.resume(run_id, workflow)
        assert replay_run(plane.store, run_id, [workflow]).ok
        return done

    def test_a_direct_call_is_denied_and_its_run_resumes(self, plane, cred, small, clock):
        """`ctx.tool` with arguments over the limit is denied at input_size; resumed after a
        sleep, the step answers from the log as the same call, and replay matches."""

        def oversized(ctx: Context, task: Any) -> str:
            decision = ctx.tool("record_write", {"item": "x" * 1000})
            ctx.sleep(60)
            return f"{decision.kind} at {getattr(decision, 'check', None)}"

        done = self._settle(plane, cred, small(), oversized, clock)
        assert (done.status, done.reason) == ("completed", "denied at input_size")

    def test_the_workflow_sees_the_same_stand_in_on_resume(self, plane, cred, small, clock):
        """A model's oversized call reaches the workflow as its stand-in, the same on resume
        and on replay."""
        seen: list[Any] = []

        def asks(ctx: Context, task: Any) -> str:
            (proposed,) = ctx.model([Message(role="user", content="go")]).tool_calls
            seen.append(proposed.arguments)
            ctx.sleep(60)
            return ctx.tool(proposed.tool, proposed.arguments).kind

        agent = small(ScriptedTurn.call("record_write", item="x" * 1000))
        done = self._settle(plane, cred, agent, asks, clock)
        stand_in = {"(oversized)": {"limit_bytes": 64, "at_least_bytes": 1010}}
        assert (done.reason, seen) == ("denied", [stand_in] * 3)  # run, resume, replay

    def test_arguments_nested_too_deep_are_denied(self, plane, cred, agent, clock):
        """Arguments nested deeper than 64 levels are denied at input_size, whatever their size."""

        def deep(ctx: Context, task: Any) -> str:
            decision = ctx.tool("record_write", {"item": _nested(5000)})
            ctx.sleep(60)
            assert isinstance(decision, Denied)
            return decision.reason

        done = self._settle(plane, cred, agent, deep, clock)
        assert done.reason == "arguments nest deeper than 64 levels"


LEAKED = "sk_live_" + "Pl4ntedKey0123456789abcd"


def raising_app(config: Any) -> list[Workflow]:
    """An app factory that fails with a secret in its message."""
    msg = f"cannot reach the payments API with {LEAKED}"
    raise RuntimeError(msg)


def empty_app(config: Any) -> list[Workflow]:
    """An app factory that provides no workflow."""
    return []


class TestLoadWorkflows:
    def _error(self, target: str, tmp_path: Path) -> str:
        with pytest.raises(ConfigError) as caught:
            load_workflows(target, Config.from_env({}, home=tmp_path))
        return caught.value.message

    def test_a_builtin_is_refused_without_being_called(self, tmp_path):
        """`os:system` is no workflow factory: refused by its kind, never called."""
        assert self._error("os:system", tmp_path) == (
            "os:system is a builtin_function_or_method, not a workflow factory"
        )

    def test_something_not_callable_is_refused(self, tmp_path):
        """An attribute that is not callable is refused as such."""
        assert "is a str, not a workflow factory" in self._error("charter:__version__", tmp_path)

    def test_a_raising_factory_is_a_config_error_naming_it(self, tmp_path):
        """A factory's exception becomes a ConfigError naming the target, the exception's type
        and its message, redacted."""
        message = self._error("test_engine:raising_app", tmp_path)
        assert message.startswith("test_engine:raising_app raised RuntimeError: cannot reach")
        assert LEAKED not in message

    def test_a_factory_without_workflows_is_refused(self, tmp_path):
        """A factory that provides no Workflow is refused, naming what it returned."""
        assert "got list" in self._error("test_engine:empty_app", tmp_path)

    def test_a_module_that_does_not_import_is_refused(self, tmp_path):
        """A target whose module does not import is a ConfigError."""
        assert "cannot load no_such_module_here:x" in self._error("no_such_module_here:x", tmp_path)
