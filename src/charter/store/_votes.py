"""The rules of an approval vote, the same for every store backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from charter._time import iso
from charter.exceptions import ApprovalRefused, NotAuthorized, StateError
from charter.identity import same_person

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
    tenant: str,
    workflow: str,
) -> None:
    """Everything that makes a vote not count, before anything is written.

    `tenant` and `workflow` are the request's run's: the approver's grant must cover them and
    the request's tier.
    """
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
    if approver.kind != "human" or not approver.active or approver.expired(iso(now)):
        raise ApprovalRefused(f"{approver.name} is not an active human principal")
    if not approver.may(request.role, tenant=tenant, workflow=workflow, tier=request.tier):
        raise NotAuthorized(
            f"{approver.name} may not decide {request.request_id}: that needs "
            f"{request.role}:tenant={tenant},workflow={workflow},tier={request.tier} (or wider)",
            hint=f"an admin grants it: charter identity update {approver.id} --role "
            f"{request.role}:tenant={tenant},tier={request.tier} --reason ...",
        )
    # Separation of duties bars approving; a deny only tightens, so the owner may still veto.
    # People are compared as subjects, look-alikes included: `OPS-LEAD@example.com` is the
    # owner `ops-lead@example.com`, and `ivan ` is the initiator `ivan`.
    me = approver.subject or approver.name
    excluded = approver.id in request.excluded or any(
        same_person(me, other) for other in request.excluded
    )
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
