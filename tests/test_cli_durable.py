"""`charter approvals` and `charter runs cancel` through click's runner, on a real home.

Each test starts from one run held for approval (a write above the policy threshold), started
by `alice` under a contract owned by `olga`. Commands authenticate with $CHARTER_TOKEN. A
refused command must leave the log exactly as it was: same event count, same verification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from charter import Agent, Client, Config, ControlPlane
from charter._identity import create_agent_identity, create_human
from charter.cli import cli
from charter.engine import Worker, Workflow, agent_loop
from charter.gate import Executor, idempotency_key
from charter.models import ScriptedModel, ScriptedTurn

if TYPE_CHECKING:
    from pathlib import Path

PEOPLE = {
    "olga": ["approver"],  # the contract's owner
    "alice": ["approver"],  # the run's initiator
    "bob": ["approver"],
    "carol": ["approver"],
    "eve": ["auditor"],
    "oscar": ["operator"],
}


@dataclass(frozen=True, kw_only=True)
class Held:
    """A home holding one run that waits on one approval request."""

    home: Path
    database_url: str
    run_id: str
    request_id: str
    tokens: dict[str, str]
    agent: Agent


@pytest.fixture
def held(tmp_path: Path, database_url: str, make_contract, toolset) -> Held:
    home = tmp_path / "home"
    turns = [ScriptedTurn.call("record_write", amount=75), ScriptedTurn.say("done")]
    agent = Agent.load(make_contract(owner="olga"), tools=toolset.tools, model=ScriptedModel(turns))
    with Client(Config.from_env({"CHARTER_DATABASE_URL": database_url}, home=home)) as client:
        tokens = {n: create_human(client.store, name=n, roles=r).token for n, r in PEOPLE.items()}
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        plane = ControlPlane(client.store, executor=Executor(sleep=lambda s: None))
        try:
            result = plane.run(
                agent, credential=cred.token, tenant_id="acme", task="do it", initiator="alice"
            )
        finally:
            plane.close()
    assert result.status == "waiting"
    (request_id,) = result.waiting_on
    return Held(
        home=home,
        database_url=database_url,
        run_id=result.run_id,
        request_id=request_id,
        tokens=tokens,
        agent=agent,
    )


def invoke(held: Held, *args: str, who: str | None = None) -> Result:
    """Run `charter --home HOME ARGS` with $CHARTER_TOKEN set to `who`'s credential (if any)."""
    env = {"CHARTER_DATABASE_URL": held.database_url}
    if who:
        env["CHARTER_TOKEN"] = held.tokens[who]
    return CliRunner().invoke(cli, ["--home", str(held.home), *args], env=env)


def config_of(held: Held) -> Config:
    """The held home's settings, on its database."""
    return Config.from_env({"CHARTER_DATABASE_URL": held.database_url}, home=held.home)


def ledger(held: Held) -> tuple[int, dict[str, Any]]:
    """The held run's event count and the whole log's `audit verify` report."""
    shown = invoke(held, "runs", "show", held.run_id, "--json")
    verified = invoke(held, "audit", "verify", "--json")
    assert shown.exit_code == verified.exit_code == 0, shown.output + verified.output
    return json.loads(shown.stdout)["run"]["event_count"], json.loads(verified.stdout)


def error_of(result: Result) -> dict[str, Any]:
    """The JSON error envelope a refused `--json` command printed."""
    return json.loads(result.stdout)["error"]


def work(held: Held) -> None:
    """Let a worker (in this process) resume whatever is runnable in the home."""
    with Client(config_of(held)) as client:
        plane = ControlPlane(client.store, executor=Executor(sleep=lambda s: None))
        try:
            Worker(plane, [Workflow(agent=held.agent, fn=agent_loop)]).run(until_idle=True)
        finally:
            plane.close()


def _fill(held: Held, args: tuple[str, ...]) -> list[str]:
    """The command with `{request}` and `{run}` replaced by the held run's ids."""
    return [a.format(request=held.request_id, run=held.run_id) for a in args]


def _approve(who: str, reason: str = "checked") -> tuple[str, ...]:
    """`approvals approve` of the held request (see `_fill`) as `who`."""
    return ("approvals", "approve", "{request}", "--as", who, "--reason", reason)


REFUSED = [
    pytest.param(("runs", "show", "run_nope"), None, "not_found", id="unknown-run"),
    pytest.param(("approvals", "show", "apr_nope"), None, "not_found", id="unknown-request"),
    pytest.param(
        ("approvals", "approve", "apr_nope", "--as", "bob", "--reason", "ok"),
        "bob",
        "not_found",
        id="approve-unknown-request",
    ),
    pytest.param(_approve("eve"), "eve", "not_authorized", id="approver-without-role"),
    pytest.param(_approve("olga"), "olga", "approval_refused", id="contract-owner"),
    pytest.param(_approve("alice"), "alice", "approval_refused", id="initiator"),
    pytest.param(_approve("bob", ""), "bob", "approval_refused", id="empty-reason"),
    pytest.param(_approve("bob", "   "), "bob", "approval_refused", id="blank-reason"),
    pytest.param(_approve("bob", "ok\nrm -rf"), "bob", "approval_refused", id="multi-line-reason"),
    pytest.param(_approve("bob", "x" * 501), "bob", "approval_refused", id="reason-over-500"),
    pytest.param(
        ("approvals", "deny", "{request}", "--as", "bob", "--reason", "a\tb"),
        "bob",
        "approval_refused",
        id="deny-with-unprintable-reason",
    ),
    pytest.param(_approve("bob"), None, "credential_invalid", id="missing-token"),
    pytest.param(_approve("bob"), "carol", "credential_invalid", id="someone-elses-token"),
    pytest.param(
        ("runs", "cancel", "{run}", "--as", "bob", "--reason", "stop"),
        "bob",
        "not_authorized",
        id="cancel-by-non-operator",
    ),
    pytest.param(
        ("runs", "cancel", "{run}", "--as", "oscar", "--reason", "stop"),
        None,
        "credential_invalid",
        id="cancel-without-token",
    ),
    pytest.param(
        ("runs", "cancel", "run_nope", "--as", "oscar", "--reason", "stop"),
        "oscar",
        "not_found",
        id="cancel-unknown-run",
    ),
]


class TestRefused:
    @pytest.mark.parametrize(("args", "who", "code"), REFUSED)
    def test_refused_command_exits_with_the_error_envelope(
        self, held: Held, args: tuple[str, ...], who: str | None, code: str
    ) -> None:
        """A refused credential exits 3, other bad input 2; both print the JSON error envelope
        with its stable code."""
        result = invoke(held, *_fill(held, args), "--json", who=who)
        refused_credential = code in ("credential_invalid", "not_authorized")
        assert result.exit_code == (3 if refused_credential else 2), result.output
        error = error_of(result)
        assert set(error) == {"code", "message", "hint"}
        assert error["code"] == code

    @pytest.mark.parametrize(("args", "who", "code"), REFUSED)
    def test_refused_command_records_nothing(
        self, held: Held, args: tuple[str, ...], who: str | None, code: str
    ) -> None:
        """After a refused command the run's event count and `audit verify` are unchanged."""
        before = ledger(held)
        invoke(held, *_fill(held, args), "--json", who=who)
        assert ledger(held) == before
        shown = invoke(held, "approvals", "show", held.request_id, "--json")
        assert json.loads(shown.stdout)["request"]["status"] == "pending"


class TestApprovals:
    def test_list_shows_the_pending_request(self, held: Held) -> None:
        """`approvals list --json` shows the held run's request as pending."""
        result = invoke(held, "approvals", "list", "--json")
        assert result.exit_code == 0, result.output
        (request,) = json.loads(result.stdout)
        assert (request["request_id"], request["run_id"]) == (held.request_id, held.run_id)
        assert (request["status"], request["tier"]) == ("pending", "ops")

    def test_show_prints_the_action_its_diff_and_who_may_not_approve(self, held: Held) -> None:
        """`approvals show` prints the call, its diff, the tier's needs and the excluded people."""
        result = invoke(held, "approvals", "show", held.request_id)
        assert result.exit_code == 0, result.output
        flat = " ".join(result.stdout.split())
        assert "action: record_write(" in flat
        assert "amount: None -> 75" in flat
        assert "needs 1 distinct approver(s) of tier ops" in flat
        assert "may not approve: alice, olga" in flat

    def test_approve_records_the_decision(self, held: Held) -> None:
        """`approvals approve` by an approver records the vote and approves the request."""
        result = invoke(
            held, *_fill(held, _approve("bob", "customer verified")), "--json", who="bob"
        )
        assert result.exit_code == 0, result.output
        event = json.loads(result.stdout)
        assert (event["approver"], event["reason"], event["status"]) == (
            "bob",
            "customer verified",
            "approved",
        )
        count, verified = ledger(held)
        assert verified["broken"] == 0
        shown = json.loads(invoke(held, "runs", "show", held.run_id, "--json").stdout)
        assert shown["events"][-1]["kind"] == "approval.decided"
        assert shown["run"]["event_count"] == count

    def test_approve_without_json_says_a_worker_resumes_the_run(self, held: Held) -> None:
        """The plain output gives the count and the next command to run."""
        result = invoke(held, *_fill(held, _approve("bob")), who="bob")
        assert result.exit_code == 0, result.output
        assert "1 of 1 approval(s), request approved" in result.stdout
        assert "charter worker --until-idle" in result.stdout

    def test_reason_of_500_characters_is_accepted(self, held: Held) -> None:
        """The longest reason allowed, 500 printable characters, is recorded."""
        result = invoke(held, *_fill(held, _approve("bob", "x" * 500)), "--json", who="bob")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["reason"] == "x" * 500

    def test_approved_step_runs_once_when_a_worker_runs(self, held: Held, toolset) -> None:
        """Approved at the CLI, the step executes once when a worker runs, and never again."""
        invoke(held, *_fill(held, _approve("bob")), who="bob")
        assert toolset.effects == []
        work(held)
        work(held)
        assert toolset.effects == [("record_write", idempotency_key(held.run_id, 2))]
        shown = json.loads(invoke(held, "runs", "show", held.run_id, "--json").stdout)
        assert shown["run"]["status"] == "completed"

    def test_approving_a_decided_request_is_invalid_state(self, held: Held) -> None:
        """A second approver on an already approved request gets invalid_state; nothing changes."""
        invoke(held, *_fill(held, _approve("bob")), who="bob")
        before = ledger(held)
        result = invoke(held, *_fill(held, _approve("carol")), "--json", who="carol")
        assert result.exit_code == 2
        assert error_of(result)["code"] == "invalid_state"
        assert ledger(held) == before

    def test_approving_the_request_of_a_finished_run_is_invalid_state(self, held: Held) -> None:
        """Once the run completed, approving its (decided) request again is invalid_state."""
        invoke(held, *_fill(held, _approve("bob")), who="bob")
        work(held)
        before = ledger(held)
        result = invoke(held, *_fill(held, _approve("carol")), "--json", who="carol")
        assert error_of(result)["code"] == "invalid_state"
        assert ledger(held) == before


class TestCancel:
    def test_operator_cancels_the_waiting_run(self, held: Held) -> None:
        """`runs cancel` by an operator ends the run at once and cancels its request."""
        args = ("runs", "cancel", held.run_id, "--as", "oscar", "--reason", "withdrawn")
        result = invoke(held, *args, "--json", who="oscar")
        assert result.exit_code == 0, result.output
        run = json.loads(result.stdout)
        assert (run["status"], run["outcome"]) == ("cancelled", "abandoned")
        listed = json.loads(invoke(held, "approvals", "list", "--status", "all", "--json").stdout)
        assert [r["status"] for r in listed] == ["cancelled"]
        assert ledger(held)[1]["broken"] == 0

    def test_second_cancel_is_invalid_state(self, held: Held) -> None:
        """Cancelling a run that already ended exits 2 with invalid_state; nothing changes."""
        args = ("runs", "cancel", held.run_id, "--as", "oscar", "--reason", "withdrawn")
        invoke(held, *args, who="oscar")
        before = ledger(held)
        result = invoke(held, *args, "--json", who="oscar")
        assert result.exit_code == 2
        assert error_of(result)["code"] == "invalid_state"
        assert ledger(held) == before

    def test_approving_a_cancelled_runs_request_is_invalid_state(self, held: Held) -> None:
        """The request of a cancelled run can no longer be approved."""
        cancel = ("runs", "cancel", held.run_id, "--as", "oscar", "--reason", "withdrawn")
        invoke(held, *cancel, who="oscar")
        before = ledger(held)
        result = invoke(held, *_fill(held, _approve("bob")), "--json", who="bob")
        assert error_of(result)["code"] == "invalid_state"
        assert ledger(held) == before


class TestPlainOutput:
    """Text that came from outside (an id a user typed) is shown as is: never read as rich
    markup, which would hide it or crash the command."""

    def test_refusal_names_the_code_and_a_hint(self, held: Held) -> None:
        """Without --json a refusal prints its error code and hint on stderr."""
        result = invoke(held, *_fill(held, _approve("eve")), who="eve")
        assert result.exit_code == 3
        assert "[not_authorized]" in result.stderr
        assert "hint:" in result.stderr
        assert result.stdout == ""

    def test_bracketed_id_in_an_error_is_printed_verbatim(self, held: Held) -> None:
        """An unknown id that looks like a closing markup tag is reported, exit 2, not a crash."""
        result = invoke(held, "runs", "show", "[/oops]")
        assert result.exit_code == 2, repr(result.exception)
        assert "[/oops]" in result.stderr
