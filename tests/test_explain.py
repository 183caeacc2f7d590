"""`explain`: the four incident questions per step, from real runs through `ControlPlane`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from rich.text import Text

from charter import Agent
from charter._explain import explain, render
from charter._identity import create_human
from charter._time import utcnow
from charter.engine import Workflow, agent_loop
from charter.exceptions import NotFoundError
from charter.gate import idempotency_key
from charter.models import ScriptedModel, ScriptedTurn
from charter.privacy import Redactor

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter import RunResult

call = ScriptedTurn.call


@pytest.fixture
def build(make_contract, toolset) -> Callable[..., Agent]:
    """An agent playing `turns` then 'done' under the test contract."""

    def build(*turns: ScriptedTurn, **contract: Any) -> Agent:
        model = ScriptedModel([*turns, ScriptedTurn.say("done")])
        return Agent.load(make_contract(None, **contract), tools=toolset.tools, model=model)

    return build


@pytest.fixture
def run(plane, cred) -> Callable[..., RunResult]:
    def run(agent: Agent, *, task: str = "do it") -> RunResult:
        return plane.run(agent, credential=cred.token, tenant_id="acme", task=task)

    return run


@pytest.fixture
def report(store) -> Callable[..., dict[str, Any]]:
    """The explain report of a run, optionally for one step."""

    def report(result: RunResult, step: int | None = None) -> dict[str, Any]:
        return explain(store.events(result.run_id), step=step)

    return report


def _payloads(store, run_id: str, kind: str, step: int) -> list[dict[str, Any]]:
    return [e.payload for e in store.events(run_id) if e.kind == kind and e.payload["step"] == step]


def _steps(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {s["step"]: s for s in report["steps"]}


class TestAllowedStep:
    def test_context_is_the_model_step_that_proposed_it(self, build, run, report, store):
        """context names the model step before the call and carries its request hash."""
        result = run(build(call("record_write", item="x")))
        context = _steps(report(result))[2]["context"]
        (responded,) = _payloads(store, result.run_id, "model.responded", 1)
        assert context["model_step"] == 1
        assert context["request_hash"] == responded["request_hash"]
        assert context["response_hash"] == responded["response_hash"]
        assert context["arguments"] == {"item": "x"}

    def test_policy_ids_match_the_gate_decision(self, build, run, report, store):
        """policy.policy_ids are the gate.decided's, and the Cedar context is shown."""
        result = run(build(call("record_write", amount=7)))
        policy = _steps(report(result))[2]["policy"]
        (decided,) = _payloads(store, result.run_id, "gate.decided", 2)
        assert policy["policy_ids"] == decided["policy_ids"] == ["allow-tools"]
        assert (policy["reached"], policy["outcome"]) == (True, "pass")
        assert policy["context"]["context"]["amount_minor"] == 7

    def test_execution_carries_key_and_input_hash(self, build, run, report, store):
        """execution has the step's idempotency key and the proposal's input hash."""
        result = run(build(call("record_write", item="x")))
        step = _steps(report(result))[2]
        (proposed,) = _payloads(store, result.run_id, "tool.proposed", 2)
        execution = step["execution"]
        assert execution["idempotency_key"] == idempotency_key(result.run_id, 2)
        assert execution["input_hash"] == proposed["input_hash"]
        assert (execution["status"], execution["output"]) == ("ok", {"item": "x"})

    def test_verdict_is_none_when_every_check_passed(self, build, run, report):
        """An allowed, executed step has no verdict and the decision allowed."""
        step = _steps(report(run(build(call("record_write")))))[2]
        assert (step["decision"], step["verdict"], step["approvals"]) == ("allowed", None, [])


class TestVerdict:
    def test_policy_denial(self, build, run, report):
        """A call denied by policy names the policy check and never executed."""
        step = _steps(report(run(build(call("record_write", owner="globex")))))[2]
        assert step["decision"] == "denied"
        assert (step["verdict"]["check"], step["verdict"]["outcome"]) == ("policy", "deny")
        assert step["verdict"]["source"] == "tenant-isolation"
        assert step["execution"] is None

    def test_denied_before_policy_did_not_reach_it(self, build, run, report):
        """A call denied at grant shows the policy stage as not reached."""
        step = _steps(report(run(build(call("teleport")))))[2]
        assert step["verdict"]["check"] == "grant"
        assert step["policy"]["reached"] is False
        assert step["policy"]["outcome"] is None

    def test_policy_hold_lists_the_approval_request(self, build, run, report, store):
        """A held call is needs_approval, held at policy, with its approval request listed."""
        result = run(build(call("record_write", amount=75)))
        step = _steps(report(result))[2]
        (request,) = store.list_approvals()
        assert step["decision"] == "needs_approval"
        assert (step["verdict"]["check"], step["verdict"]["outcome"]) == ("policy", "hold")
        (approval,) = step["approvals"]
        assert approval["request_id"] == request.request_id
        assert (approval["tier"], approval["needed"], approval["status"]) == ("ops", 1, "pending")
        assert step["execution"] is None

    def test_irreversible_hold_names_the_approval_check(self, build, run, report):
        """An irreversible call is held at the approval check although policy passed."""
        step = _steps(report(run(build(call("launch")))))[2]
        assert step["policy"]["outcome"] == "pass"
        assert (step["verdict"]["check"], step["verdict"]["outcome"]) == ("approval", "hold")

    def test_approved_step_is_decided_again(self, build, run, report, plane, store):
        """After approval the latest decision counts: allowed, executed, no verdict."""
        agent = build(call("launch"))
        result = run(agent)
        (request,) = store.list_approvals()
        alice = create_human(store, name="alice", roles=["approver"]).identity
        store.decide_approval(
            request.request_id, approver=alice, decision="approve", reason="ok", now=utcnow()
        )
        plane.resume(result.run_id, Workflow(agent=agent, fn=agent_loop))
        explained = report(result)
        step = _steps(explained)[2]
        assert (step["decision"], step["verdict"]) == ("allowed", None)
        assert step["execution"]["status"] == "ok"
        (approval,) = step["approvals"]
        assert approval["status"] == "approved"
        assert approval["decisions"] == [
            {"approver": "alice", "decision": "approve", "reason": "ok"}
        ]
        assert explained["status"] == "completed"

    def test_refused_step_is_denied_at_approval(self, build, run, report, plane, store):
        """An approver's refusal is the verdict, not the earlier hold."""
        agent = build(call("launch"))
        result = run(agent)
        (request,) = store.list_approvals()
        bob = create_human(store, name="bob", roles=["approver"]).identity
        store.decide_approval(
            request.request_id, approver=bob, decision="deny", reason="no", now=utcnow()
        )
        plane.resume(result.run_id, Workflow(agent=agent, fn=agent_loop))
        step = _steps(report(result))[2]
        assert step["decision"] == "denied"
        assert (step["verdict"]["check"], step["verdict"]["outcome"]) == ("approval", "deny")
        assert step["verdict"]["source"] == request.request_id
        assert step["execution"] is None

    def test_execution_failure(self, build, run, report):
        """A tool that fails has an execution with its error and the execute check as verdict."""
        step = _steps(report(run(build(call("broken")))))[2]
        assert (step["verdict"]["check"], step["verdict"]["outcome"]) == ("execute", "fail")
        assert (step["execution"]["status"], step["execution"]["error_code"]) == (
            "error",
            "tool_permanent",
        )


class TestSources:
    def test_later_step_read_the_earlier_one(self, build, run, report, store):
        """A tool step proposed after an earlier tool step completed lists it as a source."""
        result = run(build(call("read_notes", item="n"), call("record_write")))
        steps = _steps(report(result))
        (completed,) = _payloads(store, result.run_id, "tool.completed", 2)
        assert steps[4]["context"]["model_step"] == 3
        assert steps[4]["context"]["sources"] == [
            {"step": 2, "tool": "read_notes", "output_hash": completed["output_hash"]}
        ]
        assert steps[2]["context"]["sources"] == []

    def test_calls_of_one_turn_share_what_it_saw(self, build, run, report):
        """Two calls from one model turn point at that turn; neither read the other."""
        turn = ScriptedTurn(calls=(("read_notes", {}), ("record_write", {})))
        steps = _steps(report(run(build(turn))))
        assert [steps[n]["context"]["model_step"] for n in (2, 3)] == [1, 1]
        assert steps[3]["context"]["sources"] == []


class TestWorkflowSteps:
    @pytest.fixture
    def result(self, build, plane, cred) -> RunResult:
        """A workflow calling two tools itself, with no model, then sleeping a minute."""

        def fn(ctx, task):
            ctx.tool("read_notes", {"item": "n"})
            ctx.tool("record_write", {"item": "x"})
            ctx.sleep(60)

        workflow = Workflow(agent=build(), fn=fn)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="t")
        return plane.resume(run_id, workflow)

    def test_call_without_a_model_turn(self, result, report):
        """A call no model asked for has no model step; earlier tool steps are its sources."""
        steps = _steps(report(result))
        assert (steps[1]["context"]["model_step"], steps[1]["context"]["request_hash"]) == (
            None,
            None,
        )
        assert [s["step"] for s in steps[2]["context"]["sources"]] == [1]

    def test_timer_step(self, result, report):
        """A durable sleep is a timer step, and the sleeping run is waiting."""
        explained = report(result)
        timer = _steps(explained)[3]
        assert (timer["kind"], timer["seconds"]) == ("timer", 60)
        assert explained["status"] == "waiting"

    def test_render_handles_timers_and_modelless_calls(self, result, report):
        """render() shows the timer and says the call had no model turn."""
        text = "\n".join(render(report(result)))
        assert "step 3[/] timer: sleeps 60s" in text
        assert "no model turn" in text


class TestReport:
    def test_run_header(self, build, run, report, store):
        """The report names the run, its agent, contract and status, and hashes the task."""
        result = run(build(call("record_write")))
        explained = report(result)
        (started,) = [e.payload for e in store.events(result.run_id) if e.kind == "run.started"]
        assert explained["run_id"] == result.run_id
        assert (explained["agent"], explained["tenant_id"]) == ("test-agent", "acme")
        assert explained["contract_hash"] == started["contract_hash"]
        assert explained["task"] == {"hash": started["task_hash"], "excerpt": "do it"}
        assert explained["status"] == "completed"

    def test_held_run_is_waiting(self, build, run, report):
        """A run suspended on an approval reports status waiting."""
        assert report(run(build(call("launch"))))["status"] == "waiting"

    def test_steps_alternate_model_and_tool(self, build, run, report):
        """Step 1 is the model call, step 2 its tool call, step 3 the final answer."""
        steps = report(run(build(call("record_write"))))["steps"]
        assert [(s["step"], s["kind"]) for s in steps] == [(1, "model"), (2, "tool"), (3, "model")]
        assert steps[0]["tool_calls"] == ["record_write"]
        assert steps[2]["text_excerpt"] == "done"

    def test_step_filter(self, build, run, report):
        """step=N returns that step alone."""
        (step,) = report(run(build(call("record_write"))), step=2)["steps"]
        assert (step["step"], step["kind"]) == (2, "tool")

    def test_unknown_step(self, build, run, report):
        """An unknown step raises NotFoundError, hinting at the run's steps."""
        result = run(build(call("record_write")))
        with pytest.raises(NotFoundError, match="no step 9") as caught:
            report(result, step=9)
        assert caught.value.hint == "its steps are 1, 2, 3"

    def test_no_email_in_clear(self, build, run, report):
        """An email in the arguments appears nowhere in clear, policy context included."""
        result = run(build(call("record_write", item="alice@example.com")))
        dumped = json.dumps(report(result))
        assert "alice@example.com" not in dumped
        assert "[email]" in dumped


class TestProposedSecrets:
    def test_a_secret_tool_name_is_explained_by_its_marker(self, build, run, report):
        """A tool named like a GitHub token shows as its marker, in the model's turn and in
        its step, still tied to the turn that proposed it; no rendered line holds it."""
        secret = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
        marker = Redactor().text(secret)
        explained = report(run(build(call(secret, item="x"))))
        steps = _steps(explained)
        assert steps[1]["tool_calls"] == [marker]
        assert (steps[2]["tool"], steps[2]["context"]["model_step"]) == (marker, 1)
        assert steps[2]["verdict"]["check"] == "grant"
        assert secret not in json.dumps(explained) + "\n".join(render(explained))


class TestRender:
    def test_mentions_each_step_and_the_four_questions(self, build, run, report):
        """render() has a line per step number and the four labels for a tool step."""
        text = "\n".join(render(report(run(build(call("record_write"))))))
        for n in (1, 2, 3):
            assert f"step {n}" in text
        for label in ("context:", "policy:", "executed:", "verdict:"):
            assert label in text

    def test_escapes_free_text(self, build, run, report):
        """Markup in recorded text is shown literally, not interpreted."""
        lines = render(report(run(build(call("read_notes", item="[/bold]x")), task="[red]t")))
        plain = "\n".join(Text.from_markup(line).plain for line in lines)
        assert "[/bold]x" in plain
        assert "[red]t" in plain
