"""Stages 1-3: kill switch, principal, contract grant. The cheapest refusals come first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charter._decision import CheckResult

if TYPE_CHECKING:
    from charter._contract import Contract, Effect
    from charter.gate._call import Call
    from charter.gate._controls import Controls
    from charter.store import IdentityRecord

__all__ = ["check_grant", "check_kill_switch", "check_principal"]


def check_kill_switch(call: Call, controls: Controls) -> CheckResult:
    """Deny if an engaged kill switch matches this call's agent, workflow, tenant and tool."""
    contract = call.run.agent.contract
    switch = controls.engaged(
        agent=contract.agent,
        workflow=contract.workflow,
        tenant_id=call.run.tenant_id,
        tool=call.spec.tool,
    )
    if switch is not None:
        return CheckResult.denied(
            "kill_switch",
            f"kill switch {switch.key}: {switch.reason}",
            f"kill_switch:{switch.key}",
            engaged_by=switch.created_by,
            engaged_at=switch.created_at,
        )
    return CheckResult.passed("kill_switch", "no kill switch engaged", "kill_switches")


def check_principal(call: Call, controls: Controls) -> CheckResult:
    """Deny unless the credential is known, active, and is this agent's identity for this tenant."""
    identity = controls.identity(call.run.principal_id)
    contract = call.run.agent.contract
    if identity is None:
        return CheckResult.denied(
            "principal", f"unknown principal {call.run.principal_id}", "identities"
        )
    call.identity = identity
    if identity.problem is not None:
        # Inserted or changed in the database without Charter: its control-log entry does not
        # vouch for it, so nothing it claims (scope, environment) can be believed.
        return CheckResult.denied(
            "principal",
            f"the record of {identity.id} is refused: {identity.problem}",
            f"identity:{identity.id}",
        )
    if identity.revoked_at is not None:
        return CheckResult.denied(
            "principal", f"credential of {identity.id} was revoked", f"identity:{identity.id}"
        )
    if identity.kind != "agent":
        return CheckResult.denied(
            "principal", f"{identity.id} is a human principal, not an agent", "identities"
        )
    problem = _scope_problem(identity, contract, call.run.tenant_id)
    if problem is not None:
        return CheckResult.denied("principal", *problem)
    return CheckResult.passed("principal", f"authenticated as {identity.id}", identity.id)


def _scope_problem(
    identity: IdentityRecord, contract: Contract, tenant_id: str
) -> tuple[str, str] | None:
    """Why this agent identity may not act for this contract, tenant and environment, if so."""
    expected = (contract.agent, contract.workflow, tenant_id)
    actual = (identity.agent, identity.workflow, identity.tenant_id)
    if actual != expected:
        return (
            f"identity {identity.id} is for {'/'.join(map(str, actual))}, not {'/'.join(expected)}",
            f"identity:{identity.id}",
        )
    if identity.environment != contract.environment.value:
        # Credentials are per environment: a dev key that leaks cannot act in prod.
        reason = (
            f"{identity.id} is a {identity.environment} credential; this agent runs in "
            f"{contract.environment.value}"
        )
        return reason, f"identity:{identity.id}"
    if tenant_id not in contract.tenants:
        return f"tenant {tenant_id!r} is not in the contract's tenants", "contract:tenants"
    return None


def check_grant(call: Call) -> CheckResult:
    """Deny a tool the contract does not grant."""
    agent = call.run.agent
    grant = agent.contract.tools.get(call.spec.tool)
    tool = agent.tools.get(call.spec.tool)
    if grant is None or tool is None:
        return CheckResult.denied(
            "grant", f"tool {call.spec.tool!r} is not granted to this agent", "contract:tools"
        )
    call.grant, call.tool = grant, tool
    stage = agent.contract.autonomy_for(call.spec.tool)
    effect: Effect = grant.effect
    return CheckResult.passed(
        "grant",
        f"{call.spec.tool} granted ({effect.value}, {stage.value})",
        f"contract:tools.{call.spec.tool}",
        effect=effect.value,
        autonomy=stage.value,
    )
