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

    In order: draft stage turns writes into proposals; irreversible effects always wait, whatever
    the policy says; suggest stage makes every write wait; otherwise a policy hold decides.
    Approvals already granted for this step release the hold.
    """
    assert call.grant is not None  # noqa: S101 - earlier stages ran
    contract = call.run.agent.contract
    name = call.spec.tool
    stage = contract.autonomy_for(name)
    effect = call.grant.effect
    source = f"contract:tools.{name}"
    if effect is Effect.READ:
        return CheckResult.passed(
            "approval", "reads need no approval", source, autonomy=stage.value
        )
    if stage is Autonomy.DRAFT:
        return CheckResult(
            check="approval",
            outcome="propose",
            reason="draft stage: the write is recorded as a proposal and not executed",
            source=f"{source}.autonomy",
            detail={"autonomy": stage.value},
        )
    tier: str | None = None
    reason = ""
    if effect is Effect.IRREVERSIBLE:
        tier, reason = call.grant.approval, "irreversible effects always need an approval"
    elif stage is Autonomy.SUGGEST:
        tier, reason = call.grant.approval, "suggest stage: every write needs an approval"
    elif call.holds:
        held = call.holds[0]
        tier, reason, source = held.tier, held.reason, held.source
    if tier is None and reason:
        # The contract loader guarantees irreversible tools have a tier; suggest-stage tools
        # without one cannot be approved by anyone, so they are refused rather than run.
        return CheckResult.denied(
            "approval", f"{reason}, but tools.{name}.approval names no tier", source
        )
    if tier is None:
        return CheckResult.passed(
            "approval", "autonomous: no approval required", source, autonomy=stage.value
        )
    needed = contract.approval_tiers[tier].approvers
    granted = call.run.approvals.get(call.step, 0)
    if granted >= needed:
        return CheckResult.passed(
            "approval", f"{granted} of {needed} approval(s) granted ({tier})", source, tier=tier
        )
    return CheckResult(
        check="approval",
        outcome="hold",
        reason=reason,
        source=source,
        detail={"autonomy": stage.value, "approvers": needed, "granted": granted},
        tier=tier,
    )
