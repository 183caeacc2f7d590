"""Findings of an attack on the trust around the gate, each a test that failed before the fix.

An attacker with CLI access to a store created an approver and operator for themselves with no
credential, approved a held refund, worked the kill switches, read raw secrets, and revoked the
real approver and agent, unlogged. Separation of duties compared name strings, so case, a
trailing space or a Cyrillic letter made one person two. (Tampering with the database file is
covered by tests/test_seal.py; redaction and bad input by their own security files.)
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from charter import Agent, Client, ControlPlane
from charter._identity import create_agent_identity, create_human
from charter.cli import cli
from charter.exceptions import ApprovalRefused, StateError, UserError
from charter.models import ScriptedModel, ScriptedTurn

if TYPE_CHECKING:
    from pathlib import Path


def _charter(home: Path, *args: str, token: str | None = None) -> Any:
    env = {"CHARTER_TOKEN": token} if token else {}
    return CliRunner().invoke(cli, ["--home", str(home), *args], env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A demo store: (its home, a held request, the demo approver's token)."""
    home = tmp_path_factory.mktemp("attack") / "home"
    shown = _charter(home, "demo")
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.split())
    token = re.search(r"CHARTER_TOKEN=(chr_\S+) \S+ --home \S+ approvals approve", flat)
    request = re.search(r"approvals approve (apr_\w+)", flat)
    assert token is not None
    assert request is not None
    return home, request.group(1), token.group(1)


class TestAdministrationNeedsAnAdmin:
    def test_mallory_cannot_make_herself_an_approver_and_operator(
        self, demo: tuple[Path, str, str]
    ) -> None:
        """`identity create --human mallory --role approver --role operator` with no
        credential: refused (exit 3); mallory does not exist, so she approves nothing."""
        home, request, _ = demo
        made = _charter(
            home,
            "identity",
            "create",
            "--human",
            "mallory",
            "--role",
            "approver",
            "--role",
            "operator",
            "--reason",
            "trust me",
            "--json",
        )
        assert made.exit_code == 3, made.output
        names = [i["name"] for i in json.loads(_charter(home, "identity", "list", "--json").stdout)]
        assert "mallory" not in names
        approved = _charter(
            home,
            "approvals",
            "approve",
            request,
            "--as",
            "mallory",
            "--reason",
            "ok",
            "--json",
            token="chr_" + "m" * 43,
        )
        assert approved.exit_code == 3
        shown = json.loads(_charter(home, "approvals", "show", request, "--json").stdout)
        assert shown["request"]["status"] == "pending"

    def test_nobody_revokes_the_approver_or_the_agent_without_an_admin(
        self, demo: tuple[Path, str, str]
    ) -> None:
        """`identity revoke` of the real approver and of the prod agent with no credential,
        and with the approver's own: refused, both stay active."""
        home, _, approver = demo
        listed = json.loads(_charter(home, "identity", "list", "--json").stdout)
        targets = [i["id"] for i in listed if i["name"] == "fin-approver" or i["kind"] == "agent"]
        assert len(targets) == 3
        for target in targets:
            for token in (None, approver):
                revoked = _charter(home, "identity", "revoke", target, "--reason", "x", token=token)
                assert revoked.exit_code == 3, revoked.output
        still = json.loads(_charter(home, "identity", "list", "--json").stdout)
        assert set(targets) <= {i["id"] for i in still}

    def test_a_refused_change_is_not_logged_and_an_admitted_one_is(
        self, demo: tuple[Path, str, str]
    ) -> None:
        """Refused attempts leave no entry; every identity in the store has its entry, with
        who made it and why."""
        home, _, _ = demo
        log = json.loads(_charter(home, "kill-switches", "--log", "--json").stdout)
        made = [e for e in log["entries"] if e["action"].startswith("identity.")]
        assert {e["actor"] for e in made} == {"demo-admin"}
        assert all(e["reason"] for e in made)
        listed = json.loads(_charter(home, "identity", "list", "--all", "--json").stdout)
        assert {f"identity={i['id']}" for i in listed} == {e["key"] for e in made}
        assert log["chain_ok"] is True


# --- separation of duties -----------------------------------------------------------------------
@pytest.fixture
def held(client: Client, make_contract: Any, contract_data: dict[str, Any], toolset: Any) -> str:
    """A launch owned by `ops-lead@example.com`, started by `ivan`, held for two approvers."""
    contract_data["approval_tiers"] = {"ops": {"approvers": 2, "expires_after": "1h"}}
    model = ScriptedModel([ScriptedTurn.call("launch", item="x"), ScriptedTurn.say("ok")])
    path = make_contract(contract_data, owner="ops-lead@example.com")
    agent = Agent.load(path, tools=toolset.tools, model=model)
    cred = create_agent_identity(
        client.store, agent="test-agent", workflow="testing", tenant_id="acme"
    )
    plane = ControlPlane(client.store)
    try:
        waiting = plane.run(
            agent, credential=cred.token, tenant_id="acme", task="go", initiator="ivan"
        )
    finally:
        plane.close()
    (request,) = waiting.waiting_on
    return request


def _vote(client: Client, request: str, name: str) -> Any:
    token = create_human(client.store, name=name, roles=["approver"]).token
    return client.decide(request, approver=name, token=token, decision="approve", reason="ok")


class TestSeparationOfDuties:
    def test_the_owner_in_capitals_is_still_the_owner(self, client: Client, held: str) -> None:
        """`OPS-LEAD@example.com` may not approve what excludes `ops-lead@example.com`."""
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            _vote(client, held, "OPS-LEAD@example.com")

    def test_the_initiator_with_a_trailing_space_is_still_the_initiator(
        self, client: Client, held: str
    ) -> None:
        """`ivan ` may not approve ivan's run."""
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            _vote(client, held, "ivan ")

    def test_the_owner_with_an_accent_is_still_the_owner(self, client: Client, held: str) -> None:
        """`ops-lead@example.coḿ` (an acute on the m) may not approve the owner's request."""
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            _vote(client, held, "ops-lead@example.co\u1e3f")

    def test_a_cyrillic_ivan_is_never_created(self, client: Client, held: str) -> None:
        """`ivan` with a Cyrillic i cannot be made a principal, so cannot vote either."""
        with pytest.raises(UserError, match="mixes scripts"):
            create_human(client.store, name="\u0456van", roles=["approver"])

    def test_alice_and_alice_capitalised_are_one_vote(self, client: Client, held: str) -> None:
        """`Alice` cannot be created while `alice` is; once alice is revoked and `Alice` made,
        Alice's vote is alice's second: refused. The request still needs another person."""
        _vote(client, held, "alice")
        with pytest.raises(StateError, match="already exists"):
            create_human(client.store, name="Alice", roles=["approver"])
        (alice,) = [i for i in client.identities() if i.name == "alice"]
        client.store.revoke_identity(alice.id)
        with pytest.raises(ApprovalRefused, match="counts once"):
            _vote(client, held, "Alice")
        assert client.approval(held).granted == 1
