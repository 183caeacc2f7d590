"""The rules of an approval vote (`store/_votes.py`), which both backends apply before writing.

End to end, `tests/test_approvals.py` votes through the store; here each rule is met alone,
at its edge, so a rule loosened by one character fails a test of its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from charter._time import iso
from charter.exceptions import ApprovalRefused, NotAuthorized, StateError
from charter.identity import parse_grants
from charter.store import ApprovalRecord, IdentityRecord
from charter.store._votes import check_vote, request_status

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REQUEST = ApprovalRecord(
    request_id="apr_1",
    run_id="run_1",
    step=4,
    tool="refund",
    tier="finance",
    role="approver",
    approvers=1,
    status="pending",
    requested_at=iso(NOW - timedelta(hours=1)),
    expires_at=iso(NOW + timedelta(hours=1)),
    summary="refund $240",
    excluded=["ops-lead@example.com", "ivan"],
)
FINN = IdentityRecord(
    id="hum_finn",
    kind="human",
    name="Finn",
    subject="finn@example.com",
    grants=parse_grants(["approver:tenant=acme,tier=finance"]),
)


def vote(
    request: ApprovalRecord = REQUEST,
    approver: IdentityRecord = FINN,
    *,
    decision: Literal["approve", "deny"] = "approve",
    tenant: str = "acme",
    now: datetime = NOW,
) -> None:
    check_vote(
        request,
        approver,
        now,
        decision=decision,
        tenant=tenant,
        workflow="billing",
    )


def test_a_person_in_scope_may_approve():
    vote()
    vote(decision="deny")


@pytest.mark.parametrize("status", ["approved", "denied", "expired", "escalated", "cancelled"])
def test_only_a_pending_request_takes_votes(status):
    with pytest.raises(StateError, match=f"is {status}, not pending"):
        vote(replace(REQUEST, status=status))


def test_a_request_is_closed_from_the_instant_it_expires():
    """At its expiry time exactly, a request no longer takes votes: the worker's expiry rule
    (deny or escalate) decides from then on."""
    vote(now=NOW.replace(hour=13) - timedelta(microseconds=1))
    with pytest.raises(StateError, match="expired at"):
        vote(now=NOW.replace(hour=13))


@pytest.mark.parametrize(
    ("approver", "why"),
    [
        (replace(FINN, kind="agent"), "an agent"),
        (replace(FINN, revoked_at=iso(NOW)), "revoked"),
        (replace(FINN, problem="altered"), "changed in the database"),
        (replace(FINN, expires_at=iso(NOW)), "expired"),
    ],
)
def test_only_an_active_human_votes(approver, why):
    """Each of these alone refuses the vote, whatever the grants say."""
    with pytest.raises(ApprovalRefused, match="is not an active human principal"):
        vote(approver=approver)
    with pytest.raises(ApprovalRefused, match="is not an active human principal"):
        vote(approver=approver, decision="deny")


def test_a_credential_that_expires_later_still_votes():
    vote(approver=replace(FINN, expires_at=iso(NOW + timedelta(seconds=1))))


@pytest.mark.parametrize(
    ("grants", "tenant"),
    [
        (["approver:tenant=globex,tier=finance"], "acme"),
        (["approver:tenant=acme,tier=ops"], "acme"),
        (["approver:workflow=deploys"], "acme"),
        (["operator"], "acme"),
        (["approver:tenant=acme,tier=finance"], "globex"),
    ],
)
def test_a_grant_that_does_not_cover_the_request_refuses(grants, tenant):
    approver = replace(FINN, grants=parse_grants(grants))
    with pytest.raises(NotAuthorized, match="needs approver:tenant=") as raised:
        vote(approver=approver, tenant=tenant)
    assert "charter identity update hum_finn" in (raised.value.hint or "")


@pytest.mark.parametrize(
    "name", ["ops-lead@example.com", "OPS-LEAD@example.com", "ivan", "ivan ", "\u0456van"]
)
def test_the_owner_and_initiator_may_not_approve_under_any_spelling(name):
    approver = replace(FINN, name=name, subject="")
    with pytest.raises(ApprovalRefused, match="separation of duties"):
        vote(approver=approver)


def test_separation_of_duties_goes_by_the_subject_not_the_display_name():
    """A person whose subject is the owner's is the owner, whatever name they go by."""
    owner = replace(FINN, name="Olga from Ops", subject="ops-lead@example.com")
    with pytest.raises(ApprovalRefused, match="separation of duties"):
        vote(approver=owner)
    namesake = replace(FINN, name="ivan", subject="ivan.petrov@example.com")
    vote(approver=namesake)


def test_an_excluded_identity_id_may_not_approve():
    with pytest.raises(ApprovalRefused, match="separation of duties"):
        vote(replace(REQUEST, excluded=["hum_finn"]))


def test_the_owner_may_still_veto():
    """A deny only tightens, so separation of duties does not bar it."""
    vote(approver=replace(FINN, subject="ops-lead@example.com"), decision="deny")


@pytest.mark.parametrize(
    ("decision", "granted", "needed", "status"),
    [
        ("deny", 5, 1, "denied"),
        ("approve", 0, 1, "pending"),
        ("approve", 1, 2, "pending"),
        ("approve", 2, 2, "approved"),
        ("approve", 3, 2, "approved"),
    ],
)
def test_request_status_after_a_vote(decision, granted, needed, status):
    assert request_status(decision, granted=granted, needed=needed) == status
