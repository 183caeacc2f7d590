"""Stage 5: Cedar policy on the resolved facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charter._decision import CheckResult
from charter._tools import Facts
from charter.exceptions import CharterError
from charter.policy import build_request

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pydantic import JsonValue

    from charter._events import CheckOutcome
    from charter.gate._call import Call

__all__ = ["check_policy"]

_OUTCOMES: dict[str, CheckOutcome] = {"allow": "pass", "deny": "deny", "approval": "hold"}


def _facts(call: Call) -> Facts | str:
    """Ask the tool for the call's risk facts; an error is a reason to deny, never to guess."""
    assert call.tool is not None  # noqa: S101 - earlier stages ran
    if call.tool.facts is None:
        return Facts(resource_type=call.tool.name.title().replace("_", ""), resource_id="-")
    try:
        return call.tool.facts(call.args, call.context())
    except CharterError as exc:
        return f"{exc.code}: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - any failure to resolve facts must deny
        return f"{type(exc).__name__}: {exc}"


def check_policy(call: Call, clock: Callable[[], datetime]) -> CheckResult:
    """Resolve the facts, build the Cedar request, and record the deciding policy ids."""
    assert call.identity is not None  # noqa: S101
    facts = _facts(call)
    if isinstance(facts, str):
        return CheckResult.denied(
            "policy", f"could not resolve the facts to judge this call ({facts})", "facts"
        )
    call.facts = facts
    contract = call.run.agent.contract
    request = build_request(
        principal_id=call.identity.id,
        agent=contract.agent,
        workflow=contract.workflow,
        tenant_id=call.run.tenant_id,
        environment=contract.environment.value,
        action=call.spec.tool,
        facts=facts,
        approvals_granted=call.run.approvals.get(call.step, 0),
        now=clock(),
    )
    decision = call.run.agent.policy.evaluate(request)
    call.policy = decision
    detail: dict[str, JsonValue] = {
        "policy_ids": list(decision.policy_ids),
        "context": dict(request.context),
        "resource": f"{request.resource.type}::{request.resource.id}",
        "resource_tenant": str(request.resource.attrs.get("tenant", "")),
    }
    outcome: CheckOutcome = _OUTCOMES[decision.effect]
    return CheckResult(
        check="policy",
        outcome=outcome,
        reason=decision.reason,
        source=",".join(decision.policy_ids) or "policy:default-deny",
        detail=detail,
        tier=decision.tier,
    )
