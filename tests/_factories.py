"""Builders shared by the store and chain tests."""

from __future__ import annotations

from charter._events import RunStarted


def started_event(tenant: str = "acme") -> RunStarted:
    """A `run.started` event for the test agent, as `ControlPlane.run` would write it."""
    return RunStarted(
        agent="test-agent",
        workflow="testing",
        tenant_id=tenant,
        principal_id="agt_1",
        contract_version="1.0",
        contract_hash="c" * 64,
        policy_hash="p" * 64,
        model="scripted:default",
        model_kind="scripted",
        budget_usd=1.0,
        environment="dev",
        autonomy="autonomous",
        task="do it",
        task_hash="t" * 64,
    )
