"""The rules of an approval vote, the same for every store backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from charter._time import iso
from charter.exceptions import ApprovalRefused, StateError

if TYPE_CHECKING:
    from datetime import datetime

    from charter.store._base import ApprovalRecord, IdentityRecord

__all__ = ["check_vote", "request_status"]


def check_vote(
    request: ApprovalRecord,
    approver: IdentityRecord,
    now: datetime,
    *,
    decision: Literal["approve", "deny"],
) -> None:
    """Everything that makes a vote not count, before anything is written."""
    if request.status != "pending":
        raise StateError(
            f"approval request {request.request_id} is {request.status}, not pending",
            hint="`charter approvals list` shows the requests still waiting",
        )
    if request.expires_at <= iso(now):
        raise StateError(
            f"approval request {request.request_id} expired at {request.expires_at}",
            hint="a worker applies the tier's on_expiry rule (deny or escalate)",
        )
    if approver.kind != "human" or not approver.active:
        raise ApprovalRefused(f"{approver.name} is not an active human principal")
    if request.role not in approver.roles:
        raise ApprovalRefused(
            f"{approver.name} does not have the role {request.role!r} this tier needs",
            hint=f"charter identity create --human NAME --role {request.role}",
        )
    # Separation of duties bars approving; a deny only tightens, so the owner may still veto.
    excluded = approver.name in request.excluded or approver.id in request.excluded
    if excluded and decision == "approve":
        raise ApprovalRefused(
            f"{approver.name} may not approve {request.request_id}: separation of duties "
            "excludes the agent's owner and the run's initiator",
            hint=f"another person with role {request.role!r} must decide",
        )


def request_status(
    decision: Literal["approve", "deny"], *, granted: int, needed: int
) -> Literal["pending", "approved", "denied"]:
    """A request's state after a vote: one deny vetoes; `needed` distinct approvals release."""
    if decision == "deny":
        return "denied"
    return "approved" if granted >= needed else "pending"
