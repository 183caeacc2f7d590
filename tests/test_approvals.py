"""Approvals end to end: a held step waits, humans decide through `charter.Client`, a worker
resumes the run and the tool runs exactly once (or never, when denied, expired or cancelled).

Runs are started by `ControlPlane.run` with `initiator="alice"` under a contract owned by
`olga`; the plane and the client share one store, and the plane's clock is moved by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from charter import Agent, Client, ControlPlane
from charter._identity import create_agent_identity, create_human
from charter.engine import Worker, Workflow, agent_loop
from charter.exceptions import ApprovalRefused, CredentialError, NotAuthorized, StateError
from charter.gate import Executor, idempotency_key
from charter.models import Message, ScriptedModel, ScriptedTurn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from charter import RunResult
    from charter.engine import WorkerStats
    from charter.store import ApprovalRecord

call = ScriptedTurn.call
say = ScriptedTurn.say

OWNER = "olga"
"""The contract's owner: an approver by role, never of this agent's actions."""
INITIATOR = "alice"
"""Who starts every run: an approver by role, never of the runs she started."""
PEOPLE = {
    OWNER: ["approver"],
    INITIATOR: ["approver"],
    "bob": ["approver"],
    "carol": ["approver"],
    "eve": ["auditor"],
    "oscar": ["operator"],
    "tia": ["approver:tenant=acme,tier=ops"],
    "gina": ["approver:tenant=globex"],
    "wes": ["approver:workflow=other"],
    "fay": ["approver:tier=finance"],
    "ola": ["operator:tenant=acme"],
    "ole": ["operator:tenant=globex"],
}
BIG_WRITE = call("record_write", item="x", amount=75)
"""Above 50, so the `big-needs-ops` policy holds it for tier ops."""
HELD_STEP = 2
"""Step 1 is the model's turn; step 2 is the tool call it makes."""


@pytest.fixture
def plane(client: Client, clock) -> Iterator[ControlPlane]:
    control = ControlPlane(client.store, clock=clock, executor=Executor(sleep=lambda s: None))
    yield control
    control.close()


@pytest.fixture
def tokens(client: Client) -> dict[str, str]:
    """Each person of `PEOPLE`'s credential, by name."""
    return {
        name: create_human(client.store, name=name, roles=roles).token
        for name, roles in PEOPLE.items()
    }


@pytest.fixture
def build(make_contract, toolset) -> Callable[..., Agent]:
    """An agent owned by `OWNER`, playing `turns` then 'done' (or a `script` function)."""

    def build(*turns: ScriptedTurn, script: Any = None, data: Any = None, **top: Any) -> Agent:
        model = ScriptedModel(script or [*turns, say("done")])
        path = make_contract(data, owner=OWNER, **top)
        return Agent.load(path, tools=toolset.tools, model=model)

    return build


@pytest.fixture
def start(plane: ControlPlane, client: Client) -> Callable[[Agent], RunResult]:
    """Run an agent for acme, initiated by `INITIATOR`, until it rests."""
    cred = create_agent_identity(
        client.store, agent="test-agent", workflow="testing", tenant_id="acme"
    )

    def start(agent: Agent) -> RunResult:
        return plane.run(
            agent, credential=cred.token, tenant_id="acme", task="do it", initiator=INITIATOR
        )

    return start


@pytest.fixture
def work(plane: ControlPlane) -> Callable[[Agent], WorkerStats]:
    """Run a fresh worker for the agent's workflow until nothing is runnable."""

    def work(agent: Agent) -> WorkerStats:
        worker = Worker(plane, [Workflow(agent=agent, fn=agent_loop)])
        return worker.run(until_idle=True)

    return work


@pytest.fixture
def decide(client: Client, tokens: dict[str, str]) -> Callable[..., Any]:
    """Record `who`'s decision on a request with their own credential."""

    def decide(request_id: str, who: str, decision: str = "approve", reason: str = "checked"):
        return client.decide(
            request_id, approver=who, token=tokens[who], decision=decision, reason=reason
        )

    return decide


def _request(client: Client, run_id: str) -> ApprovalRecord:
    """The run's one approval request, whatever its status."""
    (request,) = client.approvals(status=None, run_id=run_id)
    return request


def _kinds(client: Client, run_id: str) -> list[str]:
    return [e.kind for e in client.events(run_id)]


def _verified(client: Client, run_id: str) -> bool:
    return all(r.ok for r in client.verify(run_id))


def _two_approvers(contract_data: dict[str, Any]) -> dict[str, Any]:
    """The test contract with tier ops needing two distinct approvers."""
    contract_data["approval_tiers"]["ops"] = {"approvers": 2, "expires_after": "1h"}
    return contract_data


def _escalating(contract_data: dict[str, Any]) -> dict[str, Any]:
    """Tier ops escalates after an hour to tier board, which needs two approvers."""
    contract_data["approval_tiers"] = {
        "ops": {
            "approvers": 1,
            "expires_after": "1h",
            "on_expiry": "escalate",
            "escalate_to": "board",
        },
        "board": {"approvers": 2, "expires_after": "1d"},
    }
    return contract_data


class TestHeldStep:
    def test_held_step_leaves_the_run_waiting_on_its_request(self, build, start, client, toolset):
        """A held write leaves the run waiting on one pending request; nothing executes."""
        result = start(build(BIG_WRITE))
        request = _request(client, result.run_id)
        assert (result.status, result.outcome) == ("waiting", "pending")
        assert result.waiting_on == [request.request_id]
        assert (request.status, request.tier, request.role, request.approvers) == (
            "pending",
            "ops",
            "approver",
            1,
        )
        assert (request.step, request.tool) == (HELD_STEP, "record_write")
        assert not client.run(result.run_id).runnable
        assert toolset.effects == []

    def test_request_shows_the_action_and_its_diff(self, build, start, client):
        """The request carries a summary of the call and the diff a human decides on."""
        request = _request(client, start(build(BIG_WRITE)).run_id)
        assert request.summary.startswith("record_write(")
        assert "amount=75" in request.summary
        assert {"path": "amount", "before": None, "after": 75} in request.diff

    def test_approval_makes_the_run_runnable(self, build, start, client, decide):
        """One approver-role human's approval makes the waiting run runnable for a worker."""
        run_id = start(build(BIG_WRITE)).run_id
        decided = decide(_request(client, run_id).request_id, "bob")
        assert (decided.status, decided.granted, decided.needed) == ("approved", 1, 1)
        record = client.run(run_id)
        assert (record.status, record.runnable) == ("waiting", True)

    def test_worker_runs_the_approved_step_exactly_once(
        self, build, start, client, decide, work, toolset
    ):
        """A worker resumes the approved run: the tool runs once and the run completes."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        decide(_request(client, run_id).request_id, "bob")
        stats = work(agent)
        again = work(agent)
        assert (stats.resumed, stats.completed) == (1, 1)
        assert again.resumed == 0
        assert toolset.effects == [("record_write", idempotency_key(run_id, HELD_STEP))]
        record = client.run(run_id)
        assert (record.status, record.outcome) == ("completed", "resolved")

    def test_decision_is_chained_before_the_execution(self, build, start, client, decide, work):
        """approval.decided sits in the run's chain before tool.completed; the chain verifies."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        decide(_request(client, run_id).request_id, "bob", reason="customer verified")
        work(agent)
        events = client.events(run_id)
        (decided,) = [e.payload for e in events if e.kind == "approval.decided"]
        assert (decided["approver"], decided["decision"], decided["reason"]) == (
            "bob",
            "approve",
            "customer verified",
        )
        kinds = [e.kind for e in events]
        assert kinds.index("approval.requested") < kinds.index("approval.decided")
        assert kinds.index("approval.decided") < kinds.index("tool.completed")
        assert _verified(client, run_id)

    def test_irreversible_tool_is_held_although_policy_permits(self, build, start, client):
        """`launch` is permitted by policy yet held for tier ops, because it is irreversible."""
        result = start(build(call("launch", item="rocket")))
        (decided,) = [e.payload for e in client.events(result.run_id) if e.kind == "gate.decided"]
        assert decided["decision"] == "needs_approval"
        assert decided["policy_ids"] == ["allow-tools"]
        assert "irreversible" in decided["reason"]
        assert _request(client, result.run_id).tier == "ops"

    def test_irreversible_tool_runs_once_after_approval(
        self, build, start, client, decide, work, toolset
    ):
        """An approved irreversible call executes exactly once when a worker resumes it."""
        agent = build(call("launch", item="rocket"))
        run_id = start(agent).run_id
        decide(_request(client, run_id).request_id, "bob")
        work(agent)
        assert toolset.effects == [("launch", idempotency_key(run_id, HELD_STEP))]
        assert client.run(run_id).status == "completed"


class TestWhoMayDecide:
    def test_contract_owner_cannot_approve(self, build, start, client, decide):
        """The contract's owner is refused though they hold the role; nothing is recorded."""
        run_id = start(build(BIG_WRITE)).run_id
        request = _request(client, run_id)
        before = client.run(run_id).event_count
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            decide(request.request_id, OWNER)
        assert OWNER in request.excluded
        assert client.run(run_id).event_count == before
        assert _request(client, run_id).status == "pending"

    def test_initiator_cannot_approve(self, build, start, client, decide):
        """The person who started the run is refused though they hold the role."""
        run_id = start(build(BIG_WRITE)).run_id
        request = _request(client, run_id)
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            decide(request.request_id, INITIATOR)
        assert INITIATOR in request.excluded
        assert "approval.decided" not in _kinds(client, run_id)

    def test_revoked_approver_is_refused(self, build, start, client, decide):
        """An approver whose credential was revoked can no longer decide."""
        run_id = start(build(BIG_WRITE)).run_id
        (bob,) = [i for i in client.identities() if i.name == "bob"]
        client.store.revoke_identity(bob.id)
        with pytest.raises(CredentialError, match="revoked"):
            decide(_request(client, run_id).request_id, "bob")
        assert _request(client, run_id).status == "pending"

    def test_human_without_the_role_is_refused(self, build, start, client, decide):
        """An auditor cannot decide a request whose tier needs the approver role."""
        run_id = start(build(BIG_WRITE)).run_id
        with pytest.raises(NotAuthorized, match="needs approver"):
            decide(_request(client, run_id).request_id, "eve")
        assert "approval.decided" not in _kinds(client, run_id)

    def test_someone_elses_token_is_refused(self, build, start, client, tokens):
        """Acting as bob with carol's credential is a CredentialError; nothing is recorded."""
        run_id = start(build(BIG_WRITE)).run_id
        with pytest.raises(CredentialError):
            client.decide(
                _request(client, run_id).request_id,
                approver="bob",
                token=tokens["carol"],
                decision="approve",
                reason="checked",
            )
        assert _request(client, run_id).status == "pending"

    def test_one_approval_of_two_keeps_the_run_waiting(
        self, build, start, client, decide, work, contract_data, toolset
    ):
        """With two approvers needed, one approval leaves the request pending; no worker runs it."""
        agent = build(BIG_WRITE, data=_two_approvers(contract_data))
        run_id = start(agent).run_id
        decided = decide(_request(client, run_id).request_id, "bob")
        assert (decided.status, decided.granted, decided.needed) == ("pending", 1, 2)
        assert work(agent).resumed == 0
        record = client.run(run_id)
        assert (record.status, record.runnable) == ("waiting", False)
        assert toolset.effects == []

    def test_same_person_counts_once(self, build, start, client, decide, contract_data):
        """A second vote by the same approver is refused and the count stays at one."""
        run_id = start(build(BIG_WRITE, data=_two_approvers(contract_data))).run_id
        request_id = _request(client, run_id).request_id
        decide(request_id, "bob")
        with pytest.raises(ApprovalRefused, match="counts once"):
            decide(request_id, "bob")
        request = _request(client, run_id)
        assert (request.status, request.granted) == ("pending", 1)
        assert _kinds(client, run_id).count("approval.decided") == 1

    def test_two_distinct_approvers_release_the_step(
        self, build, start, client, decide, work, contract_data, toolset
    ):
        """The second distinct approver approves the request; the worker runs the tool once."""
        agent = build(BIG_WRITE, data=_two_approvers(contract_data))
        run_id = start(agent).run_id
        request_id = _request(client, run_id).request_id
        decide(request_id, "bob")
        decided = decide(request_id, "carol")
        assert (decided.status, decided.granted) == ("approved", 2)
        work(agent)
        assert toolset.effects == [("record_write", idempotency_key(run_id, HELD_STEP))]
        assert client.run(run_id).status == "completed"


class TestDeny:
    def test_deny_tells_the_agent_and_the_run_completes(
        self, build, start, client, decide, work, toolset
    ):
        """A deny by a role holder: the worker resumes, the agent reads DENIED, nothing ran."""
        seen: list[list[Message]] = []

        def script(messages: list[Message]) -> ScriptedTurn:
            seen.append(list(messages))
            return [BIG_WRITE, say("understood")][sum(m.role == "assistant" for m in messages)]

        agent = build(script=script)
        run_id = start(agent).run_id
        decided = decide(_request(client, run_id).request_id, "bob", "deny", "amount too large")
        assert decided.status == "denied"
        stats = work(agent)
        assert stats.completed == 1
        told = seen[-1][-1]
        assert told.role == "tool"
        assert told.content.startswith("DENIED by approval")
        assert "amount too large" in told.content
        assert toolset.effects == []
        record = client.run(run_id)
        assert (record.status, record.outcome) == ("completed", "resolved")
        assert _verified(client, run_id)

    def test_deny_is_recorded_as_the_steps_final_decision(self, build, start, client, decide, work):
        """After a deny the step's last gate.decided is denied at the approval check."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        decide(_request(client, run_id).request_id, "bob", "deny", "no")
        work(agent)
        decided = [e.payload for e in client.events(run_id) if e.kind == "gate.decided"]
        assert (decided[-1]["decision"], decided[-1]["check"]) == ("denied", "approval")
        assert "tool.completed" not in _kinds(client, run_id)

    def test_one_deny_overrides_earlier_approvals(
        self, build, start, client, decide, work, contract_data, toolset
    ):
        """Of two approvers needed, one approves and another denies: the step is denied."""
        agent = build(BIG_WRITE, data=_two_approvers(contract_data))
        run_id = start(agent).run_id
        request_id = _request(client, run_id).request_id
        decide(request_id, "bob")
        assert decide(request_id, "carol", "deny", "not this one").status == "denied"
        work(agent)
        assert toolset.effects == []
        assert client.run(run_id).status == "completed"

    def test_decided_request_takes_no_more_votes(self, build, start, client, decide):
        """Once a request is decided, a further vote is a StateError and nothing is recorded."""
        run_id = start(build(BIG_WRITE)).run_id
        request_id = _request(client, run_id).request_id
        decide(request_id, "bob", "deny", "no")
        before = client.run(run_id).event_count
        with pytest.raises(StateError, match="not pending"):
            decide(request_id, "carol")
        assert client.run(run_id).event_count == before


class TestExpiry:
    def test_nothing_expires_before_expires_at(self, build, start, client, plane, clock):
        """A minute before the tier's hour is up, the worker expires nothing."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        clock.advance(minutes=59)
        worker = Worker(plane, [Workflow(agent=agent, fn=agent_loop)])
        assert worker.expire_due() == 0
        assert _request(client, run_id).status == "pending"

    def test_expired_request_is_denied_and_the_run_finishes(
        self, build, start, client, work, clock, toolset
    ):
        """With on_expiry deny, past expires_at the worker records approval.expired and ends it."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        clock.advance(hours=1, seconds=1)
        stats = work(agent)
        assert (stats.expired_approvals, stats.completed) == (1, 1)
        (expired,) = [e.payload for e in client.events(run_id) if e.kind == "approval.expired"]
        assert expired["action"] == "deny"
        assert _request(client, run_id).status == "expired"
        decided = [e.payload for e in client.events(run_id) if e.kind == "gate.decided"]
        assert decided[-1]["decision"] == "denied"
        assert "expired" in decided[-1]["reason"]
        assert toolset.effects == []
        assert client.run(run_id).status == "completed"
        assert _verified(client, run_id)

    def test_escalation_opens_a_request_of_the_higher_tier(
        self, build, start, client, work, clock, contract_data, toolset
    ):
        """With on_expiry escalate, the old request is escalated and a board request waits."""
        agent = build(BIG_WRITE, data=_escalating(contract_data))
        run_id = start(agent).run_id
        old = _request(client, run_id)
        clock.advance(hours=1, seconds=1)
        stats = work(agent)
        assert (stats.expired_approvals, stats.resumed) == (1, 0)
        (new,) = client.approvals(status="pending", run_id=run_id)
        assert client.approval(old.request_id).status == "escalated"
        assert (new.tier, new.approvers, new.step) == ("board", 2, old.step)
        assert new.request_id != old.request_id
        (expired,) = [e.payload for e in client.events(run_id) if e.kind == "approval.expired"]
        assert (expired["action"], expired["escalated_to"]) == ("escalate", new.request_id)
        record = client.run(run_id)
        assert (record.status, record.runnable) == ("waiting", False)
        assert toolset.effects == []

    def test_approving_the_escalated_request_finishes_the_run(
        self, build, start, client, decide, work, clock, contract_data, toolset
    ):
        """Approvals on the escalated request release the step; it runs once and completes."""
        agent = build(BIG_WRITE, data=_escalating(contract_data))
        run_id = start(agent).run_id
        clock.advance(hours=1, seconds=1)
        work(agent)
        (new,) = client.approvals(status="pending", run_id=run_id)
        decide(new.request_id, "bob")
        decide(new.request_id, "carol")
        work(agent)
        assert toolset.effects == [("record_write", idempotency_key(run_id, HELD_STEP))]
        assert client.run(run_id).status == "completed"
        assert _verified(client, run_id)

    def test_decision_after_expires_at_is_refused(self, build, start, client, decide, clock):
        """A request whose window ended (no worker has expired it yet) refuses a decision."""
        clock.advance(hours=-2)  # the run was held two hours ago; its 1h window is over
        run_id = start(build(BIG_WRITE)).run_id
        with pytest.raises(StateError, match="expired"):
            decide(_request(client, run_id).request_id, "bob")
        assert "approval.decided" not in _kinds(client, run_id)

    def test_decision_on_an_expired_request_is_refused(
        self, build, start, client, decide, work, clock
    ):
        """Once a worker has expired a request, approving it is a StateError."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        clock.advance(hours=1, seconds=1)
        work(agent)
        with pytest.raises(StateError):
            decide(_request(client, run_id).request_id, "bob")


class TestNoWorkerRunning:
    def test_approval_alone_executes_nothing(self, build, start, client, decide, toolset):
        """Approving while no worker runs records the decision and executes nothing."""
        run_id = start(build(BIG_WRITE)).run_id
        decide(_request(client, run_id).request_id, "bob")
        assert toolset.effects == []
        assert _kinds(client, run_id)[-1] == "approval.decided"
        assert client.run(run_id).status == "waiting"

    def test_the_next_worker_executes_it_once(self, build, start, client, decide, work, toolset):
        """The first worker to run after the approval executes the step once; later ones none."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        decide(_request(client, run_id).request_id, "bob")
        work(agent)
        work(agent)
        assert toolset.effects == [("record_write", idempotency_key(run_id, HELD_STEP))]
        assert _kinds(client, run_id).count("tool.completed") == 1


class TestCancel:
    def test_operator_cancels_a_waiting_run_at_once(self, build, start, client, tokens):
        """An operator's cancel ends a waiting run as cancelled/abandoned and its request too."""
        run_id = start(build(BIG_WRITE)).run_id
        record = client.cancel(run_id, by="oscar", token=tokens["oscar"], reason="withdrawn")
        assert (record.status, record.outcome) == ("cancelled", "abandoned")
        assert record.reason == "cancelled by oscar: withdrawn"
        assert _request(client, run_id).status == "cancelled"
        assert _kinds(client, run_id)[-1] == "run.finished"
        assert _verified(client, run_id)

    def test_cancelled_run_is_never_resumed(self, build, start, client, tokens, work, toolset):
        """A worker finds nothing to do for a cancelled run; its held step never runs."""
        agent = build(BIG_WRITE)
        run_id = start(agent).run_id
        client.cancel(run_id, by="oscar", token=tokens["oscar"], reason="withdrawn")
        assert work(agent).resumed == 0
        assert toolset.effects == []

    def test_cancelled_runs_request_cannot_be_approved(self, build, start, client, tokens, decide):
        """Approving the request of a cancelled run is a StateError."""
        run_id = start(build(BIG_WRITE)).run_id
        client.cancel(run_id, by="oscar", token=tokens["oscar"], reason="withdrawn")
        with pytest.raises(StateError):
            decide(_request(client, run_id).request_id, "bob")

    def test_second_cancel_is_a_state_error(self, build, start, client, tokens):
        """Cancelling a run that already ended is a StateError and records nothing."""
        run_id = start(build(BIG_WRITE)).run_id
        client.cancel(run_id, by="oscar", token=tokens["oscar"], reason="withdrawn")
        before = client.run(run_id).event_count
        with pytest.raises(StateError):
            client.cancel(run_id, by="oscar", token=tokens["oscar"], reason="again")
        assert client.run(run_id).event_count == before

    def test_non_operator_cannot_cancel(self, build, start, client, tokens):
        """An approver who is not an operator is refused; the run keeps waiting."""
        run_id = start(build(BIG_WRITE)).run_id
        before = client.run(run_id).event_count
        with pytest.raises(CredentialError, match="operator"):
            client.cancel(run_id, by="bob", token=tokens["bob"], reason="withdrawn")
        record = client.run(run_id)
        assert (record.status, record.event_count) == ("waiting", before)
        assert _request(client, run_id).status == "pending"


class TestScopes:
    """A grant reaches the tenant, workflow and tier it names, and nothing else."""

    @pytest.mark.parametrize("who", ["gina", "wes", "fay"])
    def test_an_approver_outside_the_requests_scope_is_refused(
        self, build, start, client, decide, who
    ):
        """Another tenant's, another workflow's or another tier's approver cannot decide."""
        run_id = start(build(BIG_WRITE)).run_id
        with pytest.raises(NotAuthorized, match="may not decide"):
            decide(_request(client, run_id).request_id, who)
        assert _request(client, run_id).status == "pending"
        assert "approval.decided" not in _kinds(client, run_id)

    def test_an_approver_scoped_to_the_request_decides(self, build, start, client, decide):
        """approver:tenant=acme,tier=ops approves acme's ops-tier request."""
        run_id = start(build(BIG_WRITE)).run_id
        decided = decide(_request(client, run_id).request_id, "tia")
        assert (decided.status, decided.approver) == ("approved", "tia")

    def test_an_operator_acts_on_their_tenants_runs_only(self, build, start, client, tokens):
        """operator:tenant=globex may not cancel or read acme's run; operator:tenant=acme may."""
        run_id = start(build(BIG_WRITE)).run_id
        with pytest.raises(NotAuthorized):
            client.cancel(run_id, by="ole", token=tokens["ole"], reason="stop")
        with pytest.raises(NotAuthorized):
            client.break_glass(run_id, by="ole", token=tokens["ole"], reason="INC-1")
        assert client.run(run_id).status == "waiting"
        assert client.cancel(run_id, by="ola", token=tokens["ola"], reason="stop").final

    def test_a_tenant_operators_kill_switch_stays_in_the_tenant(self, client, tokens):
        """operator:tenant=acme stops acme's workflow, not every tenant's; globex's cannot."""
        ola = {"by": "ola", "token": tokens["ola"], "reason": "INC-2"}
        with pytest.raises(NotAuthorized, match="unscoped"):
            client.kill(workflow="testing", **ola)
        with pytest.raises(NotAuthorized):
            client.kill(
                workflow="testing", tenant_id="acme", by="ole", token=tokens["ole"], reason="INC-2"
            )
        switch = client.kill(workflow="testing", tenant_id="acme", **ola)
        assert [s.key for s in client.kill_switches()] == [switch.key]
