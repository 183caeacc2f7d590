"""The deploys and support example toolsets, through the real gate and sandboxes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from charter import Agent, Allowed, ControlPlane, Denied, NeedsApproval
from charter._identity import create_agent_identity
from charter.examples import BILLING, deploy_tools, in_change_window, support_tools
from charter.exceptions import ContractError
from charter.models import ScriptedModel, ScriptedTurn
from charter.sandbox import DeploysSandbox, SupportSandbox
from charter.store import SqliteStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

EXAMPLES = BILLING.parent
TUESDAY_NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SATURDAY_NIGHT = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path / "charter.db", seal_key=b"k" * 32)
    yield db
    db.close()


def _run_deploy(store: SqliteStore, tmp_path: Path, now: datetime, *turns: ScriptedTurn):
    sandbox = DeploysSandbox(tmp_path / "deploys.db")
    agent = Agent.load(
        EXAMPLES / "deploys" / "contract.yaml",
        tools=deploy_tools(sandbox, clock=lambda: now),
        model=ScriptedModel([*turns, ScriptedTurn.say("done")]),
    )
    token = create_agent_identity(
        store,
        agent="deploy-agent",
        workflow="deploy-gate",
        tenant_id="platform",
        environment="prod",
    ).token
    plane = ControlPlane(store, clock=lambda: now)
    try:
        result = plane.run(agent, credential=token, tenant_id="platform", task="ship it")
    finally:
        plane.close()
    return result, sandbox


class TestDeployGate:
    def test_change_window_is_weekday_working_hours(self) -> None:
        """Tuesday noon is inside the window; Saturday night is not."""
        assert in_change_window(TUESDAY_NOON)
        assert not in_change_window(SATURDAY_NIGHT)

    def test_staging_deploy_runs_once(self, store: SqliteStore, tmp_path: Path) -> None:
        """A staging deploy is allowed and creates exactly one deployment."""
        result, sandbox = _run_deploy(
            store,
            tmp_path,
            SATURDAY_NIGHT,
            ScriptedTurn.call(
                "trigger_deploy", repo="shop/web", ref="v1.2.0", environment="staging"
            ),
        )
        assert isinstance(result.decisions[0], Allowed)
        assert sandbox.deployment_count("shop/web") == 1

    def test_production_outside_window_is_denied(self, store: SqliteStore, tmp_path: Path) -> None:
        """A production deploy on a Saturday night is refused by policy; nothing deploys."""
        result, sandbox = _run_deploy(
            store,
            tmp_path,
            SATURDAY_NIGHT,
            ScriptedTurn.call(
                "trigger_deploy", repo="shop/web", ref="v1.2.0", environment="production"
            ),
        )
        decision = result.decisions[0]
        assert isinstance(decision, Denied)
        assert decision.check == "policy"
        assert sandbox.deployment_count() == 0

    def test_production_in_window_waits_for_release(
        self, store: SqliteStore, tmp_path: Path
    ) -> None:
        """A production deploy in the window is held for the release tier, with a ref diff."""
        result, sandbox = _run_deploy(
            store,
            tmp_path,
            TUESDAY_NOON,
            ScriptedTurn.call(
                "trigger_deploy", repo="shop/web", ref="v2", environment="production"
            ),
        )
        decision = result.decisions[0]
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "release"
        assert decision.diff[0]["after"] == "v2"
        assert result.status == "waiting"
        assert sandbox.deployment_count() == 0


class TestSupportMacros:
    def test_ticket_then_macro_each_happen_once(self, store: SqliteStore, tmp_path: Path) -> None:
        """create_ticket and send_macro execute once each; the macro's ticket id flows through."""
        sandbox = SupportSandbox(tmp_path / "support.db")
        agent = Agent.load(
            EXAMPLES / "support" / "contract.yaml",
            tools=support_tools(sandbox),
            model=ScriptedModel(
                [
                    ScriptedTurn.call(
                        "create_ticket",
                        requester_email="pat@example.com",
                        subject="Where is my refund",
                        body="It has been a week.",
                    ),
                    ScriptedTurn.call("send_macro", ticket_id=1, macro_id="refund_issued"),
                    ScriptedTurn.say("done"),
                ]
            ),
        )
        token = create_agent_identity(
            store,
            agent="support-macro-agent",
            workflow="support-macro",
            tenant_id="acme",
            environment="prod",
        ).token
        plane = ControlPlane(store)
        try:
            result = plane.run(agent, credential=token, tenant_id="acme", task="help pat")
        finally:
            plane.close()
        assert [d.kind for d in result.decisions] == ["allowed", "allowed"]
        assert sandbox.ticket_count("acme") == 1
        assert sandbox.message_count(1) == 1
        assert all(r.ok for r in store.verify())


class TestAgentLoad:
    def test_bounds_on_an_unknown_argument_are_refused(self, tmp_path: Path) -> None:
        """A contract bounding an argument the tool does not take fails at load, naming both."""
        folder = tmp_path / "deploys"
        folder.mkdir()
        for name in ("policies.cedar", "schema.cedarschema"):
            (folder / name).write_text((EXAMPLES / "deploys" / name).read_text())
        text = (EXAMPLES / "deploys" / "contract.yaml").read_text()
        (folder / "contract.yaml").write_text(
            text.replace("allow:\n      environment:", "allow:\n      enviroment:")
        )
        with pytest.raises(
            ContractError, match=r"tools\.trigger_deploy\.allow names \['enviroment'\]"
        ):
            Agent.load(
                folder / "contract.yaml",
                tools=deploy_tools(DeploysSandbox(tmp_path / "d.db")),
                model=ScriptedModel([]),
            )
