"""The control plane's run loop: every run ends on record, whatever the model does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from charter import Agent, ControlPlane
from charter._identity import create_agent_identity
from charter.models import Message, ScriptedModel, ScriptedTurn, ToolSpec

if TYPE_CHECKING:
    from charter.store import SqliteStore


class ExplodingModel:
    """A provider whose SDK raises something that is not a Charter error."""

    name = "provider:exploding"
    kind = "provider"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> Any:
        raise ConnectionResetError("peer reset")

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float:
        return 0.0


@pytest.fixture
def plane(store: SqliteStore):
    control = ControlPlane(store)
    yield control
    control.close()


@pytest.fixture
def token(store: SqliteStore) -> str:
    return create_agent_identity(
        store, agent="test-agent", workflow="testing", tenant_id="acme"
    ).token


class TestRunEnds:
    def test_model_exception_ends_the_run_failed(self, plane, store, token, make_contract, toolset):
        """An arbitrary exception from a model ends the run as failed, recorded and verifiable."""
        agent = Agent.load(make_contract(), tools=toolset.tools, model=ExplodingModel())
        result = plane.run(agent, credential=token, tenant_id="acme", task="x")
        assert (result.status, result.outcome) == ("failed", "failed")
        assert "ConnectionResetError" in result.reason
        assert store.get_run(result.run_id).status == "failed"
        assert store.events(result.run_id)[-1].kind == "run.finished"
        assert all(r.ok for r in store.verify(result.run_id))

    def test_exhausted_script_is_a_failed_run(self, plane, store, token, make_contract, toolset):
        """A scripted model that runs out of turns fails the run with a model_error reason."""
        agent = Agent.load(
            make_contract(),
            tools=toolset.tools,
            model=ScriptedModel([ScriptedTurn.call("read_notes")]),
        )
        result = plane.run(agent, credential=token, tenant_id="acme", task="x")
        assert result.outcome == "failed"
        assert "model_error" in result.reason

    def test_max_turns_stops_a_looping_agent(self, plane, token, make_contract, toolset):
        """An agent that never stops calling tools is stopped after max_turns."""
        looping = ScriptedModel(lambda messages: ScriptedTurn.call("read_notes"))
        agent = Agent.load(make_contract(max_turns=3), tools=toolset.tools, model=looping)
        result = plane.run(agent, credential=token, tenant_id="acme", task="x")
        assert result.outcome == "failed"
        assert len(result.decisions) == 3

    def test_spent_budget_stops_before_the_next_model_call(
        self, plane, token, make_contract, toolset, contract_data
    ):
        """Once tool costs reach the run budget, the run ends as budget_exceeded."""
        contract_data["budget"] = {"per_run_usd": 0.01}
        writes = ScriptedModel(lambda messages: ScriptedTurn.call("record_write", item="x"))
        agent = Agent.load(make_contract(contract_data), tools=toolset.tools, model=writes)
        result = plane.run(agent, credential=token, tenant_id="acme", task="x")
        assert result.outcome == "budget_exceeded"
        assert len(toolset.effects) == 1

    def test_task_and_model_text_are_redacted_in_the_log(
        self, plane, store, token, make_contract, toolset
    ):
        """A task carrying an email and a card number is stored redacted; its hash is kept."""
        agent = Agent.load(
            make_contract(), tools=toolset.tools, model=ScriptedModel([ScriptedTurn.say("ok")])
        )
        task = "customer jane@example.com paid with 4242 4242 4242 4242"
        result = plane.run(agent, credential=token, tenant_id="acme", task=task)
        started = store.events(result.run_id)[0].payload
        assert "jane@example.com" not in started["task"]
        assert "4242 4242" not in started["task"]
        assert "[email]" in started["task"]
        assert len(started["task_hash"]) == 64
