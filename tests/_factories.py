"""Builders shared by the store and chain tests."""

from __future__ import annotations

from charter._events import RunFinished, RunStarted


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


def finished_event(status: str = "completed") -> RunFinished:
    """A `run.finished` event: resolved when completed, else failed."""
    return RunFinished(
        status=status,  # type: ignore[arg-type]
        outcome="resolved" if status == "completed" else "failed",
        reason="done",
        cost_usd=0.0,
        prompt_tokens=0,
        completion_tokens=0,
    )
