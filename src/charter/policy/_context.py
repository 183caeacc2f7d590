"""Builds the Cedar request for one proposed call from who asks, what and the resolved facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charter.policy._engine import EntityRef, PolicyRequest

if TYPE_CHECKING:
    from datetime import datetime

    from charter._tools import Facts

__all__ = ["AGENT_ENTITY", "build_request"]

AGENT_ENTITY = "Agent"
"""The Cedar entity type of agent principals; schemas declare it with these attributes:
`agent`, `workflow`, `tenant`, `environment` (all String)."""

_FACT_FIELDS = (
    "amount_minor",
    "currency",
    "customer_tier",
    "geography",
    "data_class",
    "severity",
    "environment",
    "in_change_window",
)


def build_request(
    *,
    principal_id: str,
    agent: str,
    workflow: str,
    tenant_id: str,
    environment: str,
    action: str,
    facts: Facts,
    approvals_granted: int,
    now: datetime,
) -> PolicyRequest:
    """The policy request for one call.

    The context always has `approvals_granted`, `hour_utc` and `weekday` (1 = Monday); each fact
    that is set is added under its own name, then the tool's `extra` facts. The resource carries
    a `tenant` attribute: the owner resolved from the system of record, or "" when unknown, so
    a tenant-match policy fails closed.
    """
    context: dict[str, str | int | bool] = {
        "approvals_granted": approvals_granted,
        "hour_utc": now.hour,
        "weekday": now.isoweekday(),
    }
    for name in _FACT_FIELDS:
        value = getattr(facts, name)
        if value is not None:
            context[name] = value
    context.update(facts.extra)
    return PolicyRequest(
        principal=EntityRef(
            type=AGENT_ENTITY,
            id=principal_id,
            attrs={
                "agent": agent,
                "workflow": workflow,
                "tenant": tenant_id,
                "environment": environment,
            },
        ),
        action=action,
        resource=EntityRef(
            type=facts.resource_type,
            id=facts.resource_id,
            attrs={"tenant": facts.resource_tenant or ""},
        ),
        context=context,
    )
