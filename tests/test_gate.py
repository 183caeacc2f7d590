"""The gate, end to end: a scripted agent run through `ControlPlane` against a real store.

Every scenario checks that the run's log still verifies (see the `run` fixture).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from charter import Agent, Allowed, Change, Denied, Failed, NeedsApproval, Proposed
from charter.exceptions import CredentialError
from charter.gate import idempotency_key
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.privacy import Redactor
from charter.store import KillSwitch

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter import RunResult

STAGES = [
    "kill_switch",
    "principal",
    "grant",
    "input_size",
    "schema",
    "policy",
    "rate_limit",
    "budget",
    "verifiers",
    "verifier",
    "approval",
]
"""The decision stages, in the order the gate runs them."""
call = ScriptedTurn.call


@pytest.fixture
def build(make_contract, toolset) -> Callable[..., Agent]:
    """An agent playing `turns` then 'done', or a `script` function, under a contract."""

    def build(*turns: ScriptedTurn, script: Any = None, data: Any = None, **contract: Any) -> Agent:
        model = ScriptedModel(script or [*turns, ScriptedTurn.say("done")])
        path = make_contract(data, **contract)
        return Agent.load(path, tools=toolset.tools, model=model)

    return build


@pytest.fixture
def run(plane, cred) -> Callable[..., RunResult]:
    """Run an agent with acme's credential and check that the run's log verifies."""

    def run(agent: Agent, *, tenant: str = "acme") -> RunResult:
        result = plane.run(agent, credential=cred.token, tenant_id=tenant, task="do it")
        assert [r.ok for r in plane.store.verify(result.run_id)] == [True]
        return result

    return run


def _only(result: RunResult) -> Any:
    (decision,) = result.decisions
    return decision


def _step_log(store, run_id: str, step: int) -> list[str]:
    """One step's events in order, each event's checks just before it: 'check:policy'."""
    log: list[str] = []
    for e in store.events(run_id):
        if e.payload.get("step") == step:
            log += [f"check:{c['check']}" for c in e.payload.get("checks", [])]
            log.append(e.kind)
    return log


class TestAllowed:
    def test_write_executes_once(self, build, run, toolset, store):
        """An allowed write returns Allowed with the tool's output and runs exactly once; its
        result is recorded with the output's hash (SHA-256 of its compact, sorted JSON)."""
        result = run(build(call("record_write", item="x")))
        decision = _only(result)
        assert isinstance(decision, Allowed)
        assert decision.output == {"item": "x"}
        assert decision.policy_ids == ("allow-tools",)
        assert toolset.effects == [("record_write", idempotency_key(result.run_id, 2))]
        (completed,) = [
            e.payload for e in store.events(result.run_id) if e.kind == "tool.completed"
        ]
        assert completed["output"] == {"item": "x"}
        assert completed["output_hash"] == hashlib.sha256(b'{"item":"x"}').hexdigest()
        assert completed["latency_ms"] > 0  # to the microsecond: a thread's round trip shows
        assert (completed["status"], completed["error_code"], completed["error"]) == (
            "ok",
            None,
            None,
        )

    def test_read_executes(self, build, run):
        """An allowed read returns Allowed."""
        assert isinstance(_only(run(build(call("read_notes", item="n")))), Allowed)

    def test_run_completes_with_tool_cost(self, build, run, store):
        """The run completes and its recorded cost includes the tool's cost."""
        result = run(build(call("record_write")))
        record = store.get_run(result.run_id)
        assert (record.status, record.outcome) == ("completed", "resolved")
        assert record.cost_usd == pytest.approx(0.01)


def test_each_check_records_how_long_it_took(build, plane, cred, store):
    """In microseconds, each at most the whole run's time; running the tool takes some."""
    started = time.perf_counter()
    result = plane.run(
        build(call("record_write", item="x")), credential=cred.token, tenant_id="acme", task="t"
    )
    elapsed_us = (time.perf_counter() - started) * 1_000_000
    (decided,) = [e.payload for e in store.events(result.run_id) if e.kind == "gate.decided"]
    durations = [c["duration_us"] for c in decided["checks"]]
    assert len(durations) == len(STAGES)
    assert all(0 <= d <= elapsed_us for d in durations)
    (completed,) = [e.payload for e in store.events(result.run_id) if e.kind == "tool.completed"]
    after = {c["check"]: c["duration_us"] for c in completed["checks"]}
    assert set(after) == {"execute", "output", "record"}
    assert 1 <= after["execute"] <= elapsed_us
    assert 0 <= after["output"] <= elapsed_us
    assert after["record"] == 0  # the record is the append that carries these checks
    # The result's latency is the execute check's, in milliseconds to the microsecond.
    assert abs(completed["latency_ms"] - after["execute"] / 1000) <= 0.001


def test_an_approval_request_is_named_by_16_random_hex_digits(build, run, store):
    first = run(build(call("launch")))
    second = run(build(call("launch")))
    ids = [a.request_id for a in store.list_approvals()]
    assert len(ids) == 2
    assert all(re.fullmatch(r"apr_[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == 2
    assert {first.status, second.status} == {"waiting"}


class TestPreviews:
    """What a person deciding on a held write sees: the tool's own preview, or the arguments."""

    def _held(self, make_contract, toolset, run, preview: Any) -> NeedsApproval:
        tools = [
            dataclasses.replace(t, preview=preview) if t.name == "launch" else t
            for t in toolset.tools
        ]
        agent = Agent.load(
            make_contract(),
            tools=tools,
            model=ScriptedModel([call("launch", item="x"), ScriptedTurn.say("done")]),
        )
        decision = _only(run(agent))
        assert isinstance(decision, NeedsApproval)
        return decision

    def test_the_tools_preview_is_the_diff(self, make_contract, toolset, run):
        def preview(args: Any, ctx: Any) -> list[Change]:
            return [Change(path="deploys/x", before="v1", after="v2 by mail bob@example.com")]

        decision = self._held(make_contract, toolset, run, preview)
        assert decision.diff == (
            {"path": "deploys/x", "before": "v1", "after": "v2 by mail [email]"},
        )

    def test_a_preview_that_fails_says_so_in_the_diff(self, make_contract, toolset, run):
        def preview(args: Any, ctx: Any) -> list[Change]:
            raise RuntimeError("inventory down; ask alice@example.com")

        decision = self._held(make_contract, toolset, run, preview)
        assert decision.diff == (
            {"path": "(preview failed)", "before": None, "after": "inventory down; ask [email]"},
        )


class TestDenied:
    def _denied(self, result: RunResult, check: str) -> Denied:
        decision = _only(result)
        assert isinstance(decision, Denied)
        assert decision.check == check
        return decision

    def test_kill_switch(self, build, run, store, toolset):
        """A kill switch engaged for the tenant stops a run before its first model call."""
        store.engage_kill_switch(
            KillSwitch(tenant_id="acme", reason="incident", created_by="sre", created_at="now")
        )
        result = run(build(call("record_write")))
        assert (result.status, result.outcome, result.decisions) == ("cancelled", "killed", [])
        assert "incident" in result.reason
        assert toolset.effects == []

    def test_kill_switch_on_a_tool_denies_on_record_and_ends_the_run(
        self, build, run, store, toolset
    ):
        """A kill switch on the tool denies the call at kill_switch, then ends the run killed."""
        store.engage_kill_switch(
            KillSwitch(tool="record_write", reason="incident", created_by="sre", created_at="now")
        )
        result = run(build(call("record_write")))
        decision = self._denied(result, "kill_switch")
        assert "incident" in decision.reason
        assert (result.status, result.outcome) == ("cancelled", "killed")
        assert toolset.effects == []

    def test_kill_switch_for_another_tool_does_not_stop(self, build, run, store):
        """A kill switch scoped to another tool lets this call through."""
        store.engage_kill_switch(
            KillSwitch(tool="purge", reason="incident", created_by="sre", created_at="now")
        )
        assert isinstance(_only(run(build(call("record_write")))), Allowed)

    def test_revoked_mid_run(self, build, run, store, cred, toolset):
        """A credential revoked between two calls of one run denies the second at principal."""

        def script(messages: list[Message]) -> ScriptedTurn:
            turn = sum(m.role == "assistant" for m in messages)
            if turn == 1:
                store.revoke_identity(cred.identity.id)
            return [call("record_write"), call("record_write"), ScriptedTurn.say("done")][turn]

        result = run(build(script=script))
        first, second = result.decisions
        assert isinstance(first, Allowed)
        assert isinstance(second, Denied)
        assert (second.check, len(toolset.effects)) == ("principal", 1)

    def test_unknown_credential_starts_no_run(self, build, plane, store):
        """An unknown credential raises CredentialError and starts no run."""
        with pytest.raises(CredentialError, match="unknown"):
            plane.run(build(), credential="chr_nobody", tenant_id="acme", task="t")
        assert store.list_runs() == []

    def test_identity_of_another_tenant(self, build, run):
        """acme's credential used for a globex run is denied at principal."""
        self._denied(run(build(call("record_write")), tenant="globex"), "principal")

    def test_ungranted_tool(self, build, run):
        """A tool the contract does not grant is denied at grant."""
        self._denied(run(build(call("teleport"))), "grant")

    def test_bad_arguments(self, build, run):
        """Arguments the input model rejects are denied at schema, naming the field."""
        decision = self._denied(run(build(call("record_write", amount="lots"))), "schema")
        assert "amount" in decision.reason

    def test_tenant_mismatch(self, build, run, toolset):
        """A resource owned by another tenant is denied at policy by tenant-isolation."""
        decision = self._denied(run(build(call("record_write", owner="globex"))), "policy")
        assert decision.source == "tenant-isolation"
        assert toolset.effects == []

    def test_default_deny(self, build, run, toolset):
        """A granted tool that no policy permits is denied at policy by default."""
        decision = self._denied(run(build(call("purge"))), "policy")
        assert "default deny" in decision.reason
        assert toolset.effects == []

    def test_over_budget(self, build, run):
        """A call whose cost would exceed budget.per_run_usd is denied at budget."""
        agent = build(call("record_write"), budget={"per_run_usd": 0.005})
        self._denied(run(agent), "budget")

    def test_out_of_bounds(self, build, run):
        """An argument outside the contract's bounds is denied at verifiers."""
        decision = self._denied(run(build(call("record_write", amount=0))), "verifiers")
        assert decision.source == "contract:tools.record_write.bounds.amount"

    def test_not_in_allow_list(self, build, run):
        """An argument outside the contract's allow-list is denied at verifiers."""
        decision = self._denied(run(build(call("record_write", label="z"))), "verifiers")
        assert decision.source == "contract:tools.record_write.allow.label"


class TestHeldAndProposed:
    def test_policy_hold(self, build, run, store, toolset):
        """A policy approval gate returns NeedsApproval with the tier and an approvals row."""
        result = run(build(call("record_write", amount=75)))
        decision = _only(result)
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "ops"
        (approval,) = store.list_approvals()
        assert (approval.request_id, approval.run_id) == (decision.request_id, result.run_id)
        assert (approval.tier, approval.tool, approval.status) == ("ops", "record_write", "pending")
        assert toolset.effects == []

    def test_hold_leaves_the_run_waiting(self, build, run, store):
        """A held call ends the run as waiting/pending."""
        result = run(build(call("record_write", amount=75)))
        assert (result.status, result.outcome) == ("waiting", "pending")
        assert store.get_run(result.run_id).status == "waiting"

    def test_draft_proposes_and_executes_nothing(self, build, run, store, toolset):
        """In draft autonomy a write becomes Proposed; nothing runs and no approval is asked."""
        decision = _only(run(build(call("record_write", item="x"), autonomy="draft")))
        assert isinstance(decision, Proposed)
        assert {"path": "item", "before": None, "after": "x"} in decision.diff
        assert toolset.effects == []
        assert store.list_approvals() == []

    def test_suggest_holds_every_write(self, build, run, toolset):
        """In suggest autonomy even a small, permitted write waits for approval."""
        decision = _only(run(build(call("record_write"), autonomy="suggest")))
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "ops"
        assert toolset.effects == []

    def test_suggest_still_runs_reads(self, build, run):
        """In suggest autonomy reads run without approval."""
        assert isinstance(_only(run(build(call("read_notes"), autonomy="suggest"))), Allowed)

    def test_policy_hold_on_a_read(self, build, run):
        """A policy approval gate on a read holds it too: a Cedar forbid is never skipped."""
        gate = (
            '@id("notes-need-ops")\n@approval_tier("ops")\n'
            'forbid (principal, action == Action::"read_notes", resource)\n'
            "unless { context.approvals_granted >= 1 };\n"
        )
        decision = _only(run(build(call("read_notes"), extra_policies=gate)))
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "ops"
        assert decision.diff == ()  # a read changes nothing to show

    def test_strictest_tier_wins(self, build, run, toolset, contract_data):
        """When policy asks for a stricter tier than the contract's, the stricter one applies."""
        data = contract_data
        data["approval_tiers"]["board"] = {"approvers": 3, "expires_after": "1h"}
        gate = (
            '@id("launch-needs-board")\n@approval_tier("board")\n'
            'forbid (principal, action == Action::"launch", resource)\n'
            "unless { context.approvals_granted >= 3 };\n"
        )
        decision = _only(run(build(call("launch"), data=data, extra_policies=gate)))
        assert isinstance(decision, NeedsApproval)
        assert (decision.tier, toolset.effects) == ("board", [])

    def test_of_two_policy_gates_the_stricter_holds(self, build, run, toolset, contract_data):
        """Two approval gates on one write: the tier more approvers sign applies, whatever
        order Cedar names them in."""
        data = contract_data
        data["approval_tiers"]["board"] = {"approvers": 3, "expires_after": "1h"}
        gates = "".join(
            f'@id("{pid}")\n@approval_tier("{tier}")\n'
            'forbid (principal, action == Action::"record_write", resource)\n'
            f"unless {{ context.approvals_granted >= {n} }};\n"
            for pid, tier, n in (("a-ops", "ops", 1), ("b-board", "board", 3))
        )
        decision = _only(
            run(build(call("record_write", item="x"), data=data, extra_policies=gates))
        )
        assert isinstance(decision, NeedsApproval)
        assert (decision.tier, toolset.effects) == ("board", [])

    def test_irreversible_always_holds(self, build, run, toolset):
        """An irreversible tool is held even though policy permits it."""
        decision = _only(run(build(call("launch"))))
        assert isinstance(decision, NeedsApproval)
        assert (decision.tier, toolset.effects) == ("ops", [])


class TestExecution:
    def test_retry_keeps_the_idempotency_key(self, build, run, toolset):
        """A retryable error is retried until success, with the same key on every attempt."""
        toolset.flaky_failures = 2
        result = run(build(call("flaky")))
        assert isinstance(_only(result), Allowed)
        key = idempotency_key(result.run_id, 2)
        assert toolset.attempts == [(1, key), (2, key), (3, key)]
        assert toolset.effects == [("flaky", key)]

    def test_retries_exhausted(self, build, run, toolset):
        """A tool failing on every attempt returns a retryable Failed after max_attempts."""
        toolset.flaky_failures = 99
        decision = _only(run(build(call("flaky"))))
        assert isinstance(decision, Failed)
        assert (decision.code, decision.retryable) == ("tool_retryable", True)
        assert len(toolset.attempts) == 3

    def test_permanent_error_fails(self, build, run):
        """A permanent tool error returns Failed at execute without retrying."""
        decision = _only(run(build(call("broken"))))
        assert isinstance(decision, Failed)
        assert (decision.check, decision.code) == ("execute", "tool_permanent")
        assert not decision.retryable

    def test_malformed_output_fails_and_the_model_is_told(self, build, run, store):
        """Output that fails the output model is Failed at output; the model sees FAILED."""
        seen: list[list[Message]] = []

        def script(messages: list[Message]) -> ScriptedTurn:
            seen.append(list(messages))
            return call("bad_output") if len(seen) == 1 else ScriptedTurn.say("done")

        result = run(build(script=script))
        decision = _only(result)
        assert isinstance(decision, Failed)
        assert (decision.check, decision.code) == ("output", "tool_output_invalid")
        (completed,) = [
            e.payload for e in store.events(result.run_id) if e.kind == "tool.completed"
        ]
        assert (completed["status"], completed["error_code"]) == ("error", "tool_output_invalid")
        assert completed["error"].startswith("bad_output returned output that does not match")
        assert completed["output_hash"] is None
        assert seen[1][-1].role == "tool"
        assert seen[1][-1].content.startswith("FAILED (tool_output_invalid)")

    def test_completed_event_records_attempts_and_key(self, build, run, store, toolset):
        """tool.completed records the attempts and the idempotency key."""
        toolset.flaky_failures = 1
        result = run(build(call("flaky")))
        events = store.events(result.run_id)
        (completed,) = [e.payload for e in events if e.kind == "tool.completed"]
        assert (completed["status"], completed["attempts"]) == ("ok", 2)
        assert completed["idempotency_key"] == idempotency_key(result.run_id, 2)


class TestAuditTrail:
    def test_allowed_call_records_every_stage_in_order(self, build, run, store):
        """An allowed call logs each stage's check, the decision, then execution and result."""
        result = run(build(call("record_write")))
        assert _step_log(store, result.run_id, 2) == [
            "tool.proposed",
            *(f"check:{s}" for s in STAGES),
            "gate.decided",
            "check:execute",
            "check:output",
            "check:record",
            "tool.completed",
        ]

    @pytest.mark.parametrize(
        ("turn", "stopped_at"),
        [
            (call("teleport"), "grant"),
            (call("record_write", amount="lots"), "schema"),
            (call("purge"), "policy"),
            (call("record_write", label="z"), "verifiers"),
        ],
    )
    def test_denied_call_records_stages_up_to_the_denial(self, build, run, store, turn, stopped_at):
        """A denial logs one check per stage run, up to the denying one, then gate.decided."""
        result = run(build(turn))
        ran = STAGES[: STAGES.index(stopped_at) + 1]
        assert _step_log(store, result.run_id, 2) == [
            "tool.proposed",
            *(f"check:{s}" for s in ran),
            "gate.decided",
        ]

    def test_hold_records_decision_then_approval_request(self, build, run, store):
        """A held call logs every decision stage, gate.decided, then approval.requested."""
        result = run(build(call("launch")))
        assert _step_log(store, result.run_id, 2) == [
            "tool.proposed",
            *(f"check:{s}" for s in STAGES),
            "gate.decided",
            "approval.requested",
        ]

    def test_gate_decided_names_the_denying_check(self, build, run, store):
        """gate.decided carries the decision, the check that decided it and the policy ids."""
        result = run(build(call("record_write", owner="globex")))
        (decided,) = [e.payload for e in store.events(result.run_id) if e.kind == "gate.decided"]
        assert (decided["decision"], decided["check"]) == ("denied", "policy")
        assert decided["policy_ids"] == ["tenant-isolation"]


def _payloads(store, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in store.events(run_id) if e.kind == kind]


STAND_IN = {"(oversized)": {"limit_bytes": 64, "at_least_bytes": 1010}}
"""What a 1,000-character argument becomes under `max_argument_bytes: 64`."""


class TestInputSize:
    def test_an_oversized_call_is_denied_at_input_size(self, build, run, toolset):
        """Arguments over `max_argument_bytes` are denied at input_size, naming size and limit."""
        result = run(build(call("record_write", item="x" * 1000), max_argument_bytes=64))
        decision = self._denied(result)
        assert decision.reason == (
            "arguments are at least 1010 bytes, over the limit of 64 (max_argument_bytes)"
        )
        assert toolset.effects == []

    def test_only_the_stand_in_is_recorded(self, build, run, store):
        """The model's answer and the proposal carry the stand-in, never the arguments."""
        result = run(build(call("record_write", item="x" * 1000), max_argument_bytes=64))
        (answer, _) = _payloads(store, result.run_id, "model.responded")
        assert answer["tool_calls"][0]["arguments"] == STAND_IN
        (proposed,) = _payloads(store, result.run_id, "tool.proposed")
        assert proposed["arguments"] == STAND_IN
        (decided,) = _payloads(store, result.run_id, "gate.decided")
        assert decided["checks"][-1]["detail"] == STAND_IN["(oversized)"]

    def test_a_call_within_the_limit_passes_the_check(self, build, run, store):
        """A call at the limit's side of it is judged on, its input_size check passed."""
        result = run(build(call("record_write", item="x"), max_argument_bytes=64))
        assert isinstance(_only(result), Allowed)
        (decided,) = _payloads(store, result.run_id, "gate.decided")
        sized = [c for c in decided["checks"] if c["check"] == "input_size"]
        assert [(c["outcome"], c["reason"]) for c in sized] == [
            ("pass", "arguments within 64 bytes")
        ]

    def test_an_unknown_tool_is_denied_at_grant_whatever_its_size(self, build, run):
        """The grant check comes first: an ungranted tool is refused as such."""
        result = run(build(call("teleport", item="x" * 1000), max_argument_bytes=64))
        assert _only(result).check == "grant"

    def _denied(self, result: RunResult) -> Denied:
        decision = _only(result)
        assert isinstance(decision, Denied)
        assert decision.check == "input_size"
        return decision


class TestProposedNames:
    def test_a_secret_tool_name_is_redacted_in_every_event(self, build, run, store):
        """A tool named like a GitHub token is denied at grant and recorded by its marker."""
        secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
        marker, key = Redactor().text(secret), Redactor().text("AKIAQ3EXAMPLE7KEYID2")
        result = run(build(call(secret, AKIAQ3EXAMPLE7KEYID2=1)))
        decision = _only(result)
        assert (decision.check, decision.tool) == ("grant", marker)
        logged = str([e.payload for e in store.events(result.run_id)])
        assert secret not in logged
        assert "AKIAQ3EXAMPLE7KEYID2" not in logged
        (proposed,) = _payloads(store, result.run_id, "tool.proposed")
        assert (proposed["tool"], proposed["arguments"]) == (marker, {key: 1})
