"""The gate's first stages one at a time, on real calls, a real store and a real contract.

`plane.run` authenticates a credential before a run starts, so end-to-end tests seldom reach
the principal stage with a bad identity; the stage is there for what happens after: a run
resumed days later, a row changed in the database, a contract whose tenants shrank. Each
refusal it owes is checked here directly, with what it says and what it names as the source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _factories import RawDb, Receipt, started_event
from charter import Agent, Facts
from charter._events import ToolCallSpec
from charter._identity import create_agent_identity, create_human
from charter.exceptions import ContractError, RateLimited, ToolError
from charter.gate import (
    ArtifactCache,
    CachedAnswer,
    Call,
    Controls,
    Executor,
    Gate,
    RunState,
    idempotency_key,
    input_hash,
)
from charter.gate._access import check_grant, check_principal
from charter.gate._approval import check_approval
from charter.gate._execute import validate_output
from charter.gate._limits import budget_caps, check_budget, check_rate_limit
from charter.gate._policy import check_policy
from charter.gate._validate import (
    MAX_ARGUMENT_DEPTH,
    OVERSIZED,
    bounded_calls,
    check_input_size,
    check_schema,
    check_verifiers,
    within_limit,
)
from charter.gate._verifier import check_verifier, parse_verdict
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.privacy import Vault
from charter.store import KillSwitch
from charter.store._limits import Cap, Reserve, TakeToken

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from charter._decision import CheckResult
    from charter.store import SqlStore


@pytest.fixture
def agent(make_contract, toolset) -> Agent:
    return Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))


def _call(agent: Agent, principal_id: str, *, tenant: str = "acme", tool: str = "record_write"):
    run = RunState(run_id="run_s", agent=agent, tenant_id=tenant, principal_id=principal_id)
    spec = ToolCallSpec(call_id="c1", tool=tool, arguments={"item": "x"})
    return Call(run=run, step=2, spec=spec, idempotency_key="chk_s")


def _principal(store: SqlStore, agent: Agent, principal_id: str, **call: Any) -> CheckResult:
    return check_principal(_call(agent, principal_id, **call), Controls(store))


def _refused(result: CheckResult, reason: str, source: str) -> None:
    assert (result.check, result.outcome) == ("principal", "deny")
    assert reason in result.reason
    assert result.source == source


class TestPrincipal:
    def test_the_agents_own_identity_passes_and_is_kept(self, store, agent):
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        call = _call(agent, issued.identity.id)
        result = check_principal(call, Controls(store))
        assert (result.outcome, result.source) == ("pass", issued.identity.id)
        assert call.identity is not None
        assert call.identity.id == issued.identity.id

    def test_an_unknown_principal_is_refused(self, store, agent):
        """A run whose identity row is gone acts for no one."""
        _refused(_principal(store, agent, "agt_gone"), "unknown principal agt_gone", "identities")

    def test_an_identity_changed_in_the_database_is_refused(self, store, agent):
        """A row the control log does not vouch for: nothing it says is believed."""
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        raw = RawDb(store)
        try:
            raw.execute("UPDATE identities SET name = 'other' WHERE id = ?", (issued.identity.id,))
        finally:
            raw.close()
        result = _principal(store, agent, issued.identity.id)
        _refused(result, "is refused", f"identity:{issued.identity.id}")

    def test_a_revoked_identity_is_refused(self, store, agent):
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        store.revoke_identity(issued.identity.id, actor="ada", reason="leaked")
        result = _principal(store, agent, issued.identity.id)
        _refused(result, "was revoked", f"identity:{issued.identity.id}")

    def test_a_person_is_not_an_agent(self, store, agent):
        """A human credential cannot drive an agent's run, whatever its roles."""
        person = create_human(store, name="olga", roles=["operator"])
        result = _principal(store, agent, person.identity.id)
        _refused(result, "is a human principal, not an agent", "identities")

    def test_another_tenants_identity_is_refused(self, store, agent):
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="globex"
        )
        result = _principal(store, agent, issued.identity.id)
        _refused(result, "is for test-agent/testing/globex", f"identity:{issued.identity.id}")

    def test_a_credential_of_another_environment_is_refused(self, store, agent):
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme", environment="prod"
        )
        result = _principal(store, agent, issued.identity.id)
        _refused(result, "is a prod credential", f"identity:{issued.identity.id}")

    def test_a_tenant_outside_the_contract_is_refused(self, store, agent):
        """An identity issued for a tenant the contract does not name acts for no one there."""
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="initech"
        )
        result = _principal(store, agent, issued.identity.id, tenant="initech")
        _refused(result, "tenant 'initech' is not in the contract's tenants", "contract:tenants")


class TestGrant:
    def _grant(self, agent: Agent, tool: str) -> tuple[CheckResult, Call]:
        call = _call(agent, "agt_x", tool=tool)
        return check_grant(call), call

    def test_a_granted_and_supplied_tool_passes(self, agent):
        result, call = self._grant(agent, "record_write")
        assert (result.outcome, result.source) == ("pass", "contract:tools.record_write")
        assert result.detail == {"effect": "write", "autonomy": "autonomous"}
        assert call.grant is not None
        assert call.tool is not None

    def test_a_tool_granted_but_not_supplied_never_loads(self, make_contract, toolset):
        """The contract grants `launch`; an agent built without it is refused when it loads,
        before the gate's own check (the same refusal as an ungranted tool) could matter."""
        tools = [t for t in toolset.tools if t.name != "launch"]
        with pytest.raises(ContractError, match=r"tools\.launch is granted but no tool"):
            Agent.load(make_contract(), tools=tools, model=ScriptedModel([]))

    def test_a_tool_supplied_but_not_granted_is_refused(
        self, make_contract, toolset, contract_data
    ):
        """The agent carries `purge`; the contract does not grant it. `Agent.load` leaves such a
        tool out, so the agent is put together by hand, as code that skips it would."""
        data = {**contract_data, "tools": dict(contract_data["tools"])}
        del data["tools"]["purge"]
        loaded = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))
        assert "purge" not in loaded.tools
        purge = next(t for t in toolset.tools if t.name == "purge")
        agent = dataclasses.replace(loaded, tools={**loaded.tools, "purge": purge})
        result, call = self._grant(agent, "purge")
        assert (result.outcome, result.source) == ("deny", "contract:tools")
        assert "'purge' is not granted" in result.reason
        assert call.grant is None


class TestFormats:
    """Keys and hashes handed to other systems or stored for good: an upgrade that changed them
    would make a payment provider see a resumed step as a new one, or a replay see every
    argument as changed. Spelled out as literal bytes, never computed by the code under test."""

    def test_idempotency_key(self):
        """`chk_` and the first 32 hex digits of SHA-256 over `run:step`."""
        assert idempotency_key("run_1", 7) == "chk_69f2f75bebea6816460d7f93c4604934"
        assert idempotency_key("run_1", 8) != idempotency_key("run_1", 7)
        assert idempotency_key("run_2", 7) != idempotency_key("run_1", 7)

    def test_input_hash_is_over_compact_json_with_sorted_keys(self):
        expected = hashlib.sha256(b'{"a":[1,"x"],"b":{"c":null,"d":"2026-01-01"}}').hexdigest()
        found = input_hash({"b": {"d": date(2026, 1, 1), "c": None}, "a": [1, "x"]})
        assert found == expected


def test_a_calls_context_tells_the_tool_its_run_step_tenant_key_and_attempt(agent):
    call = _call(agent, "agt_x", tenant="globex")
    told = call.context()
    assert (told.run_id, told.step, told.tenant_id, told.idempotency_key, told.attempt) == (
        "run_s",
        2,
        "globex",
        "chk_s",
        1,
    )
    assert call.context(attempt=3).attempt == 3


class TestRateLimit:
    @pytest.fixture
    def limited(self, make_contract, toolset, contract_data) -> Agent:
        data = {**contract_data, "rate_limits": [{"tool": "record_write", "rate": "2/m"}]}
        return Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))

    def test_a_call_asks_for_a_token_from_its_bucket(self, limited):
        call = _call(limited, "agt_x")
        result = check_rate_limit(call)
        assert (result.outcome, result.source) == ("pass", "contract:rate_limits.record_write")
        (token,) = call.charges
        assert token.key == "testing/acme/record_write"

    def test_an_empty_bucket_denies_with_the_wait_to_the_millisecond(self, limited):
        call = _call(limited, "agt_x")
        call.limit_hit = RateLimited("empty", scope="bucket", retry_after_s=12.3456789)
        result = check_rate_limit(call)
        assert (result.outcome, result.source) == ("deny", "contract:rate_limits.record_write")
        assert result.detail == {"retry_after_s": 12.346, "on_limit": "deny"}
        assert "next call due in 12.35s" in result.reason
        assert call.charges == []

    def test_a_tool_without_a_rule_takes_no_token(self, limited):
        call = _call(limited, "agt_x", tool="read_notes")
        assert check_rate_limit(call).reason == "no rate limit"
        assert call.charges == []


DAY = datetime(2026, 6, 1, 23, 59, tzinfo=UTC)


class TestBudget:
    """`record_write` costs $0.01 (see `Toolset`)."""

    def _agent(self, make_contract, toolset, contract_data, **budget: Any) -> Agent:
        data = {**contract_data, "budget": budget}
        return Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))

    def _judged(self, agent: Agent, *, spent: float = 0.0, approvals: int = 0) -> tuple[Any, Call]:
        call = _call(agent, "agt_x")
        call.run.spent_usd = spent
        call.run.approvals[call.step] = approvals
        call.tool = agent.tools["record_write"]
        call.grant = agent.contract.tools["record_write"]
        return check_budget(call, lambda: DAY), call

    def test_without_day_caps_there_are_none(self, make_contract, toolset, contract_data):
        agent = self._agent(make_contract, toolset, contract_data, per_run_usd=1.0)
        assert budget_caps(agent.contract, "acme", lambda: DAY) == ()
        result, call = self._judged(agent)
        assert (result.outcome, call.charges) == ("pass", [])

    def test_day_caps_are_reserved_against_for_the_utc_day(
        self, make_contract, toolset, contract_data
    ):
        agent = self._agent(
            make_contract, toolset, contract_data, per_workflow_day_usd=5, per_tenant_day_usd=2
        )
        caps = (
            Cap(scope="workflow:testing", day="2026-06-01", cap_usd=5),
            Cap(scope="tenant:acme", day="2026-06-01", cap_usd=2),
        )
        assert budget_caps(agent.contract, "acme", lambda: DAY) == caps
        result, call = self._judged(agent)
        assert result.outcome == "pass"
        assert call.charges == [Reserve(run_id="run_s", step=2, amount_usd=0.01, caps=caps)]

    def test_a_call_answered_from_the_cache_costs_and_reserves_nothing(
        self, make_contract, toolset, contract_data
    ):
        agent = self._agent(make_contract, toolset, contract_data, per_tenant_day_usd=2)
        call = _call(agent, "agt_x")
        call.tool = agent.tools["record_write"]
        call.cached = CachedAnswer(value={"item": "x"}, source="run_a/2")
        result = check_budget(call, lambda: DAY)
        assert (result.outcome, result.detail["estimate_usd"]) == ("pass", 0.0)
        assert call.charges == []

    def test_a_call_that_reaches_the_run_cap_exactly_fits(
        self, make_contract, toolset, contract_data
    ):
        agent = self._agent(make_contract, toolset, contract_data, per_run_usd=0.06)
        result, _ = self._judged(agent, spent=0.05)
        assert (result.outcome, result.reason) == ("pass", "$0.0600 of $0.06")
        assert result.detail == {"spent_usd": 0.05, "estimate_usd": 0.01}

    def test_a_call_past_the_run_cap_is_denied(self, make_contract, toolset, contract_data):
        agent = self._agent(make_contract, toolset, contract_data, per_run_usd=0.06)
        result, call = self._judged(agent, spent=0.051)
        assert (result.outcome, result.source) == ("deny", "contract:budget")
        assert result.reason == "would spend $0.061 of a $0.06 run budget"
        assert result.detail["on_exceeded"] == "stop"
        assert call.charges == []

    def test_a_tier_named_without_escalate_does_not_hold(
        self, make_contract, toolset, contract_data
    ):
        """`escalate_tier` alone lets no run past its cap: `on_exceeded` must say escalate."""
        agent = self._agent(
            make_contract, toolset, contract_data, per_run_usd=0.001, escalate_tier="ops"
        )
        result, _ = self._judged(agent)
        assert (result.outcome, result.tier) == ("deny", None)

    def test_a_cached_call_approved_past_the_cap_reserves_nothing(
        self, make_contract, toolset, contract_data
    ):
        agent = self._agent(
            make_contract,
            toolset,
            contract_data,
            per_run_usd=0.0,
            per_tenant_day_usd=2,
            on_exceeded="escalate",
            escalate_tier="ops",
        )
        call = _call(agent, "agt_x")
        call.run.spent_usd = 0.5
        call.run.approvals[call.step] = 1
        call.tool = agent.tools["record_write"]
        call.cached = CachedAnswer(value={"item": "x"}, source="run_a/2")
        result = check_budget(call, lambda: DAY)
        assert result.reason.endswith("going on as approved")
        assert call.charges == []

    def test_past_the_cap_with_escalate_holds_then_goes_on_as_approved(
        self, make_contract, toolset, contract_data
    ):
        agent = self._agent(
            make_contract,
            toolset,
            contract_data,
            per_run_usd=0.001,
            per_tenant_day_usd=2,
            on_exceeded="escalate",
            escalate_tier="ops",
        )
        held, call = self._judged(agent)
        assert (held.outcome, held.tier) == ("hold", "ops")
        assert held.source == "contract:budget.on_exceeded"
        assert call.charges == []
        approved, call = self._judged(agent, approvals=1)
        assert (approved.outcome, approved.source) == ("pass", "contract:budget")
        (reserve,) = call.charges
        assert (reserve.amount_usd, reserve.enforce) == (0.01, False)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="abcé€ 😀", max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet="abcé€ 😀", max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


class TestInputSize:
    """Arguments are weighed as their compact JSON in UTF-8 (escapes aside), never less: a
    byte more at the top, and numbers other than integers weighed as 24 bytes."""

    @pytest.mark.parametrize(
        ("arguments", "fits_in"),
        [
            ({"a": "xyz"}, 12),  # {"a":"xyz"}, and a byte more at the top
            ({"s": "ééééé"}, 19),  # two bytes a letter
            ({"i": 1000}, 12),
            ({"k": True, "n": None}, 22),
            ({"f": 1.5}, 31),  # a float is weighed as 24 bytes, whatever it is
            ({"l": [1, 2, 3]}, 17),
            ({"t": (1, "a")}, 15),
            ({"e": [], "d": {}}, 16),
        ],
    )
    def test_the_weight_of_small_arguments(self, arguments, fits_in):
        """Pinned: the stand-in a run recorded must be the one a replay computes."""
        assert within_limit(arguments, fits_in) is arguments
        assert within_limit(arguments, fits_in - 1) == {
            OVERSIZED: {"limit_bytes": fits_in - 1, "at_least_bytes": fits_in}
        }

    @pytest.mark.parametrize(
        ("arguments", "at_least"),
        [
            ({"a": "xyz"}, 12),  # its letters just fit what is left: weighed whole
            ({"a": "wxyz"}, 11),  # more letters than what is left: refused on its length alone
        ],
    )
    def test_a_string_is_refused_before_it_is_weighed_only_when_its_length_is_over(
        self, arguments, at_least
    ):
        assert within_limit(arguments, 10) == {
            OVERSIZED: {"limit_bytes": 10, "at_least_bytes": at_least}
        }

    @settings(max_examples=300, deadline=None)
    @given(JSON)
    def test_arguments_are_never_weighed_lighter_than_their_json(self, value):
        arguments = {"v": value}
        size = len(json.dumps(arguments, separators=(",", ":"), ensure_ascii=False).encode())
        assert within_limit(arguments, size - 1) != arguments

    def test_a_long_string_is_refused_by_its_length_alone(self):
        over = within_limit({"a": "x" * 10_000_000}, 1000)[OVERSIZED]
        assert over == {"limit_bytes": 1000, "at_least_bytes": 10_000_007}

    def test_nesting_is_refused_past_the_depth_limit(self):
        deep: Any = "x"
        for _ in range(MAX_ARGUMENT_DEPTH - 1):
            deep = [deep]
        assert within_limit({"d": deep}, 10**6) == {"d": deep}
        assert within_limit({"d": [deep]}, 10**6) == {OVERSIZED: {"limit_depth": 64}}

    def test_many_empty_containers_weigh_what_they_are(self):
        """Each `[]` is two bytes and a comma: a million of them are three megabytes."""
        arguments = {"l": [[] for _ in range(1000)]}
        size = len(json.dumps(arguments, separators=(",", ":")))
        assert within_limit(arguments, size - 1) != arguments

    def test_only_the_calls_over_the_limit_are_replaced(self):
        small = ToolCallSpec(call_id="c1", tool="t", arguments={"a": "x"})
        big = ToolCallSpec(call_id="c2", tool="t", arguments={"a": "x" * 100})
        assert bounded_calls((small,), 50) == (small,)
        bounded = bounded_calls((small, big), 50)
        assert bounded[0] == small
        assert bounded[1].arguments == {OVERSIZED: {"limit_bytes": 50, "at_least_bytes": 107}}

    def test_the_stage_denies_the_stand_in_and_says_what_was_over(self, agent):
        call = _call(agent, "agt_x")
        assert check_input_size(call).reason == f"arguments within {1024 * 1024} bytes"
        call.spec = call.spec.model_copy(
            update={"arguments": {OVERSIZED: {"limit_bytes": 10, "at_least_bytes": 11}}}
        )
        result = check_input_size(call)
        assert (result.outcome, result.source) == ("deny", "contract:max_argument_bytes")
        assert (
            result.reason
            == "arguments are at least 11 bytes, over the limit of 10 (max_argument_bytes)"
        )
        call.spec = call.spec.model_copy(update={"arguments": {OVERSIZED: {"limit_depth": 64}}})
        assert check_input_size(call).reason == "arguments nest deeper than 64 levels"


class TestVerdicts:
    """What a verifier model's answer is taken to say; anything unreadable is no verdict."""

    @pytest.mark.parametrize(
        "text",
        [
            "approve",
            '{"verdict": "approve"',
            '{"verdict": "yes", "reasons": []}',
            '{"reasons": ["fine"]}',
            '{"verdict": ["approve"]}',
        ],
    )
    def test_no_readable_verdict(self, text):
        assert parse_verdict(text) is None

    def test_the_json_object_inside_prose_is_read(self):
        text = 'Here you go: {"verdict": "reject", "reasons": ["not the task"]} Thanks.'
        assert parse_verdict(text) == ("reject", ["not the task"])

    def test_reasons_default_to_none_and_a_single_reason_is_a_list(self):
        assert parse_verdict('{"verdict": "escalate"}') == ("escalate", [])
        assert parse_verdict('{"verdict": "approve", "reasons": 42}') == ("approve", ["42"])

    def test_reasons_are_bounded_to_five_of_300_characters(self):
        reasons = [f"{n}" + "x" * 400 for n in range(7)]
        verdict, kept = parse_verdict(json.dumps({"verdict": "approve", "reasons": reasons}))
        assert verdict == "approve"
        assert kept == [r[:300] for r in reasons[:5]]


class TestExecutor:
    """Running a tool: retries with backoff for retryable errors only, typed failures."""

    @pytest.fixture
    def sleeps(self) -> list[float]:
        return []

    @pytest.fixture
    def executor(self, sleeps) -> Iterator[Executor]:
        running = Executor(sleep=sleeps.append, backoff_s=0.5)
        yield running
        running.close()

    def _call(self, agent: Agent, tool: str) -> Call:
        call = _call(agent, "agt_x", tool=tool)
        call.tool = agent.tools[tool]
        call.args = call.tool.input_model(item="x")
        return call

    def test_a_tool_that_answers_runs_once(self, agent, executor, sleeps, toolset):
        started = time.perf_counter()
        done = executor.execute(self._call(agent, "record_write"), default_timeout_s=5)
        assert 0 < done.latency_ms <= (time.perf_counter() - started) * 1000
        assert (done.check.outcome, done.attempts, done.error) == ("pass", 1, None)
        assert done.check.detail == {"attempts": 1, "errors": []}
        assert done.raw == Receipt(item="x")
        assert (sleeps, toolset.effects) == ([], [("record_write", "chk_s")])

    def test_retryable_errors_are_retried_with_doubling_backoff(
        self, agent, executor, sleeps, toolset
    ):
        toolset.flaky_failures = 2
        done = executor.execute(self._call(agent, "flaky"), default_timeout_s=5)
        assert (done.check.outcome, done.attempts) == ("pass", 3)
        assert done.check.detail["errors"] == ["tool_retryable: 503 try again"] * 2
        assert sleeps == [0.5, 1.0]
        assert toolset.attempts == [(1, "chk_s"), (2, "chk_s"), (3, "chk_s")]

    def test_the_last_attempt_fails_the_call(self, agent, executor, sleeps, toolset):
        toolset.flaky_failures = 5
        done = executor.execute(self._call(agent, "flaky"), default_timeout_s=5)
        assert (done.check.outcome, done.attempts, done.check.check) == ("fail", 3, "execute")
        assert done.check.reason == "tool_retryable: 503 try again"
        assert done.check.detail == {"attempts": 3, "errors": ["tool_retryable: 503 try again"] * 3}
        assert done.error is not None
        assert sleeps == [0.5, 1.0]

    def test_a_permanent_error_is_not_retried(self, agent, executor, sleeps):
        started = time.perf_counter()
        done = executor.execute(self._call(agent, "broken"), default_timeout_s=5)
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert (done.check.outcome, done.attempts, sleeps) == ("fail", 1, [])
        assert 0 < done.latency_ms <= elapsed_ms
        assert done.check.reason == "tool_permanent: 400 bad request"

    def test_a_tool_that_raises_anything_else_fails_typed(self, agent, executor, sleeps):
        call = self._call(agent, "record_write")
        call.tool = dataclasses.replace(call.tool, run=lambda args, ctx: 1 / 0)
        done = executor.execute(call, default_timeout_s=5)
        assert (done.check.outcome, done.attempts, sleeps) == ("fail", 1, [])
        assert done.check.reason == "tool_error: ZeroDivisionError: division by zero"

    def test_a_tool_past_its_timeout_is_a_retryable_timeout(self, agent, executor, sleeps):
        release = threading.Event()
        call = self._call(agent, "record_write")
        call.tool = dataclasses.replace(
            call.tool, run=lambda args, ctx: release.wait(), timeout_s=0.01, max_attempts=2
        )
        try:
            done = executor.execute(call, default_timeout_s=5)
        finally:
            release.set()
        assert (done.check.outcome, done.attempts, sleeps) == ("fail", 2, [0.5])
        assert done.check.reason == "tool_timeout: record_write did not answer in 0.01s"

    def test_a_bounded_call_answers_or_times_out(self, executor):
        assert executor.bounded(lambda: 42, timeout_s=5) == 42
        release = threading.Event()
        try:
            with pytest.raises(TimeoutError, match=r"no answer within 0\.01s"):
                executor.bounded(release.wait, timeout_s=0.01)
        finally:
            release.set()


class TestOutput:
    def test_a_model_or_a_dict_that_matches_passes_as_json(self, agent):
        call = _call(agent, "agt_x")
        call.tool = agent.tools["record_write"]
        for raw in (Receipt(item="x"), {"item": "x"}):
            result, output = validate_output(call, raw)
            assert (result.outcome, result.source, output) == (
                "pass",
                "tool:record_write.output",
                {"item": "x"},
            )

    def test_output_that_does_not_match_is_a_typed_failure(self, agent):
        call = _call(agent, "agt_x")
        call.tool = agent.tools["record_write"]
        result, output = validate_output(call, {"wrong": 1})
        assert (result.check, result.outcome, output) == ("output", "fail", None)
        assert result.detail == {"code": "tool_output_invalid"}
        assert "item: Field required" in result.reason


class TestPolicyStage:
    """Stage 5 on a real contract's Cedar: facts first, then the decision, each named."""

    def _call(self, store, agent: Agent, tool: str = "record_write") -> Call:
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        call = _call(agent, issued.identity.id, tool=tool)
        call.identity = issued.identity
        call.tool = agent.tools[tool]
        call.args = call.tool.input_model(item="x")
        return call

    def test_an_allowed_call_names_the_policy_and_what_it_saw(self, store, agent):
        call = self._call(store, agent)
        result = check_policy(call, lambda: DAY)
        assert (result.outcome, result.source) == ("pass", "allow-tools")
        assert result.detail["resource"] == "Item::x"
        assert result.detail["resource_tenant"] == "acme"
        assert result.detail["context"] == {
            "approvals_granted": 0,
            "hour_utc": 23,
            "weekday": 1,
            "amount_minor": 1,
        }
        assert call.facts is not None
        assert call.policy is not None

    @pytest.mark.parametrize(
        ("error", "said"),
        [
            (ToolError("lookup failed"), "tool_error: lookup failed"),
            (KeyError("owner"), "KeyError: 'owner'"),
        ],
    )
    def test_facts_that_cannot_be_resolved_deny(self, store, agent, error, said):
        call = self._call(store, agent)

        def failing(args: Any, ctx: Any) -> Any:
            raise error

        call.tool = dataclasses.replace(call.tool, facts=failing)
        result = check_policy(call, lambda: DAY)
        assert (result.outcome, result.source) == ("deny", "facts")
        assert result.reason == f"could not resolve the facts to judge this call ({said})"
        assert call.policy is None

    def test_a_tool_without_facts_is_judged_on_its_name(self, store, agent):
        call = self._call(store, agent)
        call.tool = dataclasses.replace(call.tool, facts=None)
        result = check_policy(call, lambda: DAY)
        assert result.detail["resource"] == "RecordWrite::-"
        assert result.detail["resource_tenant"] == ""

    def test_a_hold_carries_its_tier(self, store, make_contract, toolset):
        gate = (
            '@id("hold-writes")\n@approval_tier("ops")\n'
            'forbid (principal, action == Action::"record_write", resource)\n'
            "unless { context.approvals_granted >= 1 };\n"
        )
        agent = Agent.load(
            make_contract(extra_policies=gate), tools=toolset.tools, model=ScriptedModel([])
        )
        result = check_policy(self._call(store, agent), lambda: DAY)
        assert (result.outcome, result.tier, result.source) == ("hold", "ops", "hold-writes")

    def test_a_default_deny_is_named_as_one(self, store, make_contract, toolset):
        agent = Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))
        call = self._call(store, agent)
        call.spec = call.spec.model_copy(update={"tool": "unknown_action"})
        result = check_policy(call, lambda: DAY)
        assert (result.outcome, result.source) == ("deny", "policy:default-deny")


def _granted(agent: Agent, tool: str, *, approvals: int = 0) -> Call:
    """A call past the grant stage: its tool, grant and arguments filled in."""
    call = _call(agent, "agt_x", tool=tool)
    call.tool = agent.tools[tool]
    call.grant = agent.contract.tools[tool]
    call.args = call.tool.input_model(item="x")
    call.run.approvals[call.step] = approvals
    return call


class TestApprovalStage:
    def test_what_needs_no_approval_says_why(self, agent):
        assert check_approval(_granted(agent, "read_notes")).reason == "reads need no approval"
        result = check_approval(_granted(agent, "flaky"))
        assert (result.outcome, result.reason) == ("pass", "no approval required")
        assert result.detail == {"autonomy": "autonomous"}

    def test_an_irreversible_call_holds_for_its_tier(self, agent):
        result = check_approval(_granted(agent, "launch"))
        assert (result.outcome, result.tier, result.source) == (
            "hold",
            "ops",
            "contract:tools.launch",
        )
        assert result.detail == {"autonomy": "autonomous", "approvers": 1, "granted": 0}
        released = check_approval(_granted(agent, "launch", approvals=1))
        assert (released.outcome, released.reason) == ("pass", "1 of 1 approval(s) granted (ops)")

    def test_a_suggest_stage_write_without_a_tier_is_refused(
        self, make_contract, toolset, contract_data
    ):
        """No one could approve it, so it must not wait for anyone."""
        data = {**contract_data, "autonomy": "suggest"}
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))
        result = check_approval(_granted(agent, "flaky"))
        assert (result.outcome, result.source) == ("deny", "contract:tools.flaky")
        assert result.reason == (
            "suggest stage: every write needs an approval, but tools.flaky.approval names no tier"
        )

    def test_draft_stage_proposes_writes_and_runs_reads(
        self, make_contract, toolset, contract_data
    ):
        data = {**contract_data, "autonomy": "draft"}
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))
        assert check_approval(_granted(agent, "record_write")).outcome == "propose"
        assert check_approval(_granted(agent, "read_notes")).outcome == "pass"


class TestVerifierStage:
    @pytest.fixture
    def judged(self, make_contract, toolset, contract_data) -> Callable[[Any], CheckResult]:
        data = {
            **contract_data,
            "verifier": {"tools": ["record_write"], "model": "scripted:judge", "tier": "ops"},
        }

        def judge(answer: Any) -> CheckResult:
            def respond(messages: list[Message]) -> ScriptedTurn:
                if isinstance(answer, Exception):
                    raise answer
                return ScriptedTurn.say(answer)

            agent = Agent.load(
                make_contract(data),
                tools=toolset.tools,
                model=ScriptedModel([]),
                verifier=ScriptedModel(respond, name="judge", usd_per_mtok_out=1000.0),
            )
            return check_verifier(_granted(agent, "record_write"))

        return judge

    def test_a_verifier_that_fails_holds_at_no_cost(self, judged):
        result = judged(RuntimeError("down"))
        assert (result.outcome, result.tier) == ("hold", "ops")
        assert result.reason == "the verifier failed (RuntimeError); a person decides"
        assert result.detail == {"verdict": "escalate", "reasons": [], "cost_usd": 0.0}

    def test_an_unreadable_answer_holds_and_is_paid_for(self, judged):
        result = judged("I think it is fine")
        assert (result.outcome, result.reason) == ("hold", "the verifier's answer had no verdict")
        assert result.detail["cost_usd"] > 0

    def test_each_verdict(self, judged):
        approve = judged('{"verdict": "approve", "reasons": ["as asked"]}')
        assert (approve.outcome, approve.reason) == ("pass", "verifier approved: as asked")
        reject = judged('{"verdict": "reject"}')
        assert (reject.outcome, reject.reason) == ("deny", "verifier rejected: no reasons given")
        escalate = judged('{"verdict": "escalate", "reasons": ["odd", "big"]}')
        assert (escalate.outcome, escalate.reason) == ("hold", "verifier escalated: odd; big")

    def test_other_tools_are_not_judged(self, agent):
        result = check_verifier(_granted(agent, "record_write"))
        assert (result.outcome, result.reason) == ("pass", "not a sensitive tool")


def test_retries_back_off_from_a_fifth_of_a_second_by_default(agent, toolset):
    sleeps: list[float] = []
    executor = Executor(sleep=sleeps.append)
    try:
        toolset.flaky_failures = 2
        call = _granted(agent, "flaky")
        assert executor.execute(call, default_timeout_s=5).attempts == 3
    finally:
        executor.close()
    assert sleeps == [0.2, 0.4]


class TestControls:
    """The per-process view of kill switches and identities, one version at a time."""

    def test_the_view_is_of_the_stores_current_version(self, store):
        controls = Controls(store)
        controls.refresh()
        assert controls.version == store.control_version()
        store.engage_kill_switch(
            KillSwitch(tenant_id="acme", reason="incident", created_by="sre", created_at="now")
        )
        assert controls.engaged(agent="a", workflow="w", tenant_id="acme", tool="t") is None
        controls.refresh()
        assert controls.version == store.control_version()
        switch = controls.engaged(agent="a", workflow="w", tenant_id="acme", tool="t")
        assert switch is not None
        assert switch.reason == "incident"
        assert controls.engaged(agent="a", workflow="w", tenant_id="globex", tool="t") is None

    def test_a_version_handed_in_is_trusted_without_a_read(self, store):
        """The gate reads the version once per call and passes it on."""
        controls = Controls(store)
        controls.refresh(7)
        assert controls.version == 7
        controls.refresh(7)
        assert controls.version == 7

    def test_identities_are_read_once_per_version(self, store):
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        controls = Controls(store)
        controls.refresh()
        first = controls.identity(issued.identity.id)
        assert first is not None
        assert first.revoked_at is None
        assert controls.identity("agt_none") is None
        store.revoke_identity(issued.identity.id, actor="ada", reason="leaked")
        assert controls.identity(issued.identity.id) is first  # cached until the version moves
        controls.refresh()
        again = controls.identity(issued.identity.id)
        assert again is not None
        assert again.revoked_at is not None


class TestSchemaAndVerifiers:
    """`record_write` is bounded (amount 1..100) and allow-listed (label a or b)."""

    def _checked(self, agent: Agent, tool: str = "record_write", **arguments: Any) -> CheckResult:
        call = _granted(agent, tool)
        call.spec = call.spec.model_copy(update={"arguments": {"item": "x", **arguments}})
        schema = check_schema(call)
        if schema.outcome != "pass":
            return schema
        call.facts = call.tool.facts(call.args, call.context()) if call.tool.facts else None
        return check_verifiers(call)

    def test_arguments_the_input_model_refuses_are_denied_field_by_field(self, agent):
        call = _granted(agent, "record_write")
        call.spec = call.spec.model_copy(update={"arguments": {"amount": "many"}})
        result = check_schema(call)
        assert (result.outcome, result.source) == ("deny", "tool:record_write.input")
        assert result.reason == (
            "arguments do not match ItemIn: amount: Input should be a valid integer, unable to "
            "parse string as an integer"
        )

    def test_a_number_a_model_wrote_as_text_is_read_as_the_number(self, agent):
        """Models write `"5"` for 5; the input model reads it (and the bounds judge 5)."""
        call = _granted(agent, "record_write")
        call.spec = call.spec.model_copy(update={"arguments": {"item": "x", "amount": "5"}})
        assert check_schema(call).outcome == "pass"
        assert call.args is not None
        assert call.args.amount == 5

    @pytest.mark.parametrize(
        ("amount", "outcome"), [(1, "pass"), (100, "pass"), (0, "deny"), (101, "deny")]
    )
    def test_bounds_are_inclusive(self, agent, amount, outcome):
        result = self._checked(agent, amount=amount)
        assert result.outcome == outcome
        if outcome == "deny":
            assert result.reason == f"amount={amount} is outside [1.0, 100.0]"
            assert result.source == "contract:tools.record_write.bounds.amount"

    def test_a_value_outside_the_allow_list_is_denied(self, agent):
        result = self._checked(agent, label="c")
        assert (result.outcome, result.reason) == ("deny", "label='c' is not in the allow-list")
        assert result.source == "contract:tools.record_write.allow.label"
        passed = self._checked(agent, label="b")
        assert (passed.outcome, passed.reason) == ("pass", "2 verifier(s) passed")

    def test_a_bounded_field_that_is_not_a_number_is_denied(
        self, make_contract, toolset, contract_data
    ):
        data = {**contract_data, "tools": {**contract_data["tools"]}}
        data["tools"]["flaky"] = {"effect": "write", "bounds": {"label": {"max": 5}}}
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))
        result = self._checked(agent, "flaky")
        assert (result.outcome, result.reason) == ("deny", "label is bounded but not numeric")

    def test_a_write_without_an_idempotency_key_is_denied(self, agent):
        call = _granted(agent, "flaky")
        call.idempotency_key = ""
        call.facts = Facts(resource_type="Item", resource_id="x")
        result = check_verifiers(call)
        assert (result.outcome, result.source) == ("deny", "tool:flaky.idempotent")
        assert result.reason == "a write without an idempotency key"
        read = _granted(agent, "read_notes")  # a read need not be idempotent, nor keyed
        read.facts = Facts(resource_type="Item", resource_id="x")
        read.idempotency_key = ""
        assert not read.tool.idempotent
        assert check_verifiers(read).outcome == "pass"

    def test_a_tools_own_verifier_denies_with_its_name(self, agent):
        def under_ten(args: Any, facts: Any) -> str | None:
            return None if args.amount < 10 else "amount must stay under 10"

        call = _granted(agent, "flaky")
        call.facts = Facts(resource_type="Item", resource_id="x")
        call.tool = dataclasses.replace(call.tool, verifiers=(under_ten,))
        assert check_verifiers(call).reason == "1 verifier(s) passed"
        call.args = call.tool.input_model(item="x", amount=10)
        result = check_verifiers(call)
        assert (result.outcome, result.reason) == ("deny", "amount must stay under 10")
        assert result.source == "tool:flaky.verifier:under_ten"


class TestGateAlone:
    """`Gate.submit` driven without the engine, which otherwise bounds arguments and reads the
    controls first: the gate holds its guarantees by itself."""

    @pytest.fixture
    def gate(self, store) -> Iterator[Gate]:
        opened = Gate(store, clock=lambda: DAY, vault=Vault.for_store(store))
        yield opened
        opened.close()

    def _run(self, store, make_contract, toolset, data) -> RunState:
        agent = Agent.load(make_contract(data), tools=toolset.tools, model=ScriptedModel([]))
        issued = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        store.start_run("run_g", started_event())
        return RunState(
            run_id="run_g", agent=agent, tenant_id="acme", principal_id=issued.identity.id
        )

    def test_oversized_arguments_are_replaced_and_denied(
        self, gate, store, make_contract, toolset, contract_data
    ):
        run = self._run(store, make_contract, toolset, {**contract_data, "max_argument_bytes": 64})
        spec = ToolCallSpec(call_id="c1", tool="record_write", arguments={"item": "x" * 1000})
        denied = gate.submit(run, spec, step=2)
        assert (denied.kind, denied.check) == ("denied", "input_size")
        (proposed,) = [e.payload for e in store.events("run_g") if e.kind == "tool.proposed"]
        assert proposed["arguments"] == {OVERSIZED: {"limit_bytes": 64, "at_least_bytes": 1010}}
        assert toolset.effects == []

    def test_a_call_waits_for_its_token_up_to_max_wait_exactly(
        self, gate, store, make_contract, toolset, contract_data, monkeypatch
    ):
        limits = [{"tool": "record_write", "rate": "1/s", "on_limit": "wait", "max_wait": "1s"}]
        run = self._run(store, make_contract, toolset, {**contract_data, "rate_limits": limits})
        now = [1000.0]
        slept: list[float] = []
        monkeypatch.setattr(store, "_clock", lambda db: now[0])

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        gate.sleep = sleep
        spec = ToolCallSpec(call_id="c1", tool="record_write", arguments={"item": "x"})
        assert gate.submit(run, spec, step=2).kind == "allowed"
        again = gate.submit(run, spec.model_copy(update={"call_id": "c2"}), step=4)
        assert again.kind == "allowed"
        assert slept == [1.0]

    def test_the_waits_of_one_call_add_up_to_max_wait(
        self, gate, store, make_contract, toolset, contract_data, monkeypatch
    ):
        """Another worker takes each token as it comes: after a minute's wait the call would
        wait a minute more, past its 90 s, so it is denied then."""
        limits = [{"tool": "record_write", "rate": "1/m", "on_limit": "wait", "max_wait": "90s"}]
        run = self._run(store, make_contract, toolset, {**contract_data, "rate_limits": limits})
        now = [1000.0]
        slept: list[float] = []
        monkeypatch.setattr(store, "_clock", lambda db: now[0])
        store.start_run("run_other", started_event())
        bucket = TakeToken(key="testing/acme/record_write", per_second=1 / 60, capacity=1.0)

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds
            store.append("run_other", [], charges=[bucket])  # the other worker is first

        gate.sleep = sleep
        spec = ToolCallSpec(call_id="c1", tool="record_write", arguments={"item": "x"})
        assert gate.submit(run, spec, step=2).kind == "allowed"
        again = gate.submit(run, spec.model_copy(update={"call_id": "c2"}), step=4)
        assert (again.kind, again.check) == ("denied", "rate_limit")
        assert slept == [pytest.approx(60.0)]


def test_the_gate_alone_reads_the_controls_before_judging_each_call(
    store, make_contract, toolset, contract_data
):
    """Driven without the engine (which reads them before any work), `Gate.submit` still
    judges each call under the current controls: a switch engaged since the last call denies
    it before the verifier is asked."""
    asked: list[object] = []

    def judge(messages: list[Message]) -> ScriptedTurn:
        asked.append(messages)
        return ScriptedTurn.say('{"verdict": "approve"}')

    data = {
        **contract_data,
        "verifier": {"tools": ["record_write"], "model": "scripted:judge", "tier": "ops"},
    }
    agent = Agent.load(
        make_contract(data),
        tools=toolset.tools,
        model=ScriptedModel([]),
        verifier=ScriptedModel(judge, name="judge"),
    )
    issued = create_agent_identity(store, agent="test-agent", workflow="testing", tenant_id="acme")
    store.start_run("run_g", started_event())
    run = RunState(run_id="run_g", agent=agent, tenant_id="acme", principal_id=issued.identity.id)
    gate = Gate(store, clock=lambda: DAY, vault=Vault.for_store(store))
    try:
        spec = ToolCallSpec(call_id="c1", tool="record_write", arguments={"item": "x"})
        assert gate.submit(run, spec, step=2).kind == "allowed"
        store.engage_kill_switch(
            KillSwitch(tool="record_write", reason="incident", created_by="sre", created_at="now")
        )
        denied = gate.submit(run, spec.model_copy(update={"call_id": "c2"}), step=4)
    finally:
        gate.close()
    assert (denied.kind, denied.check) == ("denied", "kill_switch")
    assert len(asked) == 1


def _closes_at_once(
    executor: Executor, release: threading.Event, callers: list[threading.Thread]
) -> None:
    """`executor.close()` returns while `callers` are still held; then they are let go."""
    closing = threading.Thread(target=executor.close)
    closing.start()
    closing.join(10)
    try:
        assert not closing.is_alive()
    finally:
        release.set()
        for caller in callers:
            caller.join(10)


class TestExecutorClose:
    """Closing never waits for a hung tool or model call, and nothing queued starts after."""

    def test_a_hung_call_does_not_hold_close_and_a_queued_one_never_starts(self, agent):
        executor = Executor(workers=1, sleep=lambda s: None)
        started, release = threading.Event(), threading.Event()
        ran: list[str] = []

        def hung(args: Any, ctx: Any) -> Receipt:
            started.set()
            release.wait()
            return Receipt(item="hung")

        def queued(args: Any, ctx: Any) -> Receipt:
            ran.append("queued")
            return Receipt(item="queued")

        first = _granted(agent, "record_write")
        first.tool = dataclasses.replace(first.tool, run=hung, max_attempts=1)
        second = _granted(agent, "record_write")
        second.tool = dataclasses.replace(second.tool, run=queued, max_attempts=1)
        callers = [
            threading.Thread(target=executor.execute, args=(c,), kwargs={"default_timeout_s": 30})
            for c in (first, second)
        ]
        callers[0].start()
        assert started.wait(10)
        callers[1].start()
        _closes_at_once(executor, release, callers)
        assert ran == []

    def test_hung_model_calls_do_not_hold_close_and_a_queued_one_never_starts(self):
        executor = Executor(sleep=lambda s: None)  # four threads for model calls
        release = threading.Event()
        ran: list[int] = []
        four_running = threading.Barrier(5)

        def model_call() -> None:
            ran.append(1)
            if len(ran) <= 4:
                four_running.wait(10)
            release.wait()

        def caller() -> None:
            with contextlib.suppress(Exception):  # cancelled, or timed out: either is fine
                executor.bounded(model_call, timeout_s=30)

        callers = [threading.Thread(target=caller) for _ in range(5)]
        for thread in callers:
            thread.start()
        four_running.wait(10)
        _closes_at_once(executor, release, callers)
        assert len(ran) == 4


def test_a_cached_answer_is_keyed_by_the_output_schema_too(agent):
    """A tool whose output changes shape must not be answered with the old shape."""

    class Wider(Receipt):
        note: str = ""

    contract = agent.contract
    first = ArtifactCache.tool_key(contract, "acme", "read_notes", Receipt, {"item": "x"})
    assert first == ArtifactCache.tool_key(contract, "acme", "read_notes", Receipt, {"item": "x"})
    assert first != ArtifactCache.tool_key(contract, "acme", "read_notes", Wider, {"item": "x"})
    assert first != ArtifactCache.tool_key(contract, "globex", "read_notes", Receipt, {"item": "x"})
    assert first != ArtifactCache.tool_key(contract, "acme", "read_notes", Receipt, {"item": "y"})
