"""Stage 8: the approval tier. Combines autonomy stage, effect class and policy holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charter._contract import Autonomy, Effect
from charter._decision import CheckResult

if TYPE_CHECKING:
    from charter.gate._call import Call

__all__ = ["check_approval"]


def check_approval(call: Call) -> CheckResult:
    """Decide whether the call runs now, waits for approvers, or becomes a draft proposal.

    Draft stage turns writes into proposals. Otherwise every reason to hold is collected:
    irreversible effects (always, whatever the policy says), suggest stage for writes, and
    policy holds (reads included). The strictest tier asked for (most approvers) applies, and
    approvals already granted for this step release it.
    """
    assert call.grant is not None  # noqa: S101 - earlier stages ran
    contract = call.run.agent.contract
    name = call.spec.tool
    stage = contract.autonomy_for(name)
    effect = call.grant.effect
    source = f"contract:tools.{name}"
    if effect is not Effect.READ and stage is Autonomy.DRAFT:
        return CheckResult(
            check="approval",
            outcome="propose",
            reason="draft stage: the write is recorded as a proposal and not executed",
            source=f"{source}.autonomy",
            detail={"autonomy": stage.value},
        )
    wants: list[tuple[str | None, str, str]] = []
    if effect is Effect.IRREVERSIBLE:
        wants.append((call.grant.approval, "irreversible effects always need an approval", source))
    elif effect is Effect.WRITE and stage is Autonomy.SUGGEST:
        wants.append((call.grant.approval, "suggest stage: every write needs an approval", source))
    wants.extend((held.tier, held.reason, held.source) for held in call.holds)
    granted = call.run.approvals.get(call.step, 0)
    if not wants:
        if granted:
            # The policy saw approvals_granted and let the call through: say whose doing it was.
            reason = f"released by {granted} approval(s) granted for this step"
        elif effect is Effect.READ:
            reason = "reads need no approval"
        else:
            reason = "no approval required"
        return CheckResult.passed("approval", reason, source, autonomy=stage.value)
    for tier, reason, where in wants:
        if tier is None:
            # Suggest-stage tools without a tier cannot be approved by anyone: refuse, not run.
            return CheckResult.denied(
                "approval",
                f"{reason}, but tools.{name}.approval names no tier",
                where,
                autonomy=stage.value,
            )
    tier, reason, where = max(wants, key=lambda w: contract.approval_tiers[str(w[0])].approvers)
    assert tier is not None  # noqa: S101 - checked above
    needed = contract.approval_tiers[tier].approvers
    if granted >= needed:
        return CheckResult.passed(
            "approval",
            f"{granted} of {needed} approval(s) granted ({tier})",
            where,
            tier=tier,
            autonomy=stage.value,
        )
    return CheckResult(
        check="approval",
        outcome="hold",
        reason=reason,
        source=where,
        detail={"autonomy": stage.value, "approvers": needed, "granted": granted},
        tier=tier,
    )
