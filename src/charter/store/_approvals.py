"""The approvals table, kept in step with the approval events of a run (every SQL backend)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    Event,
    RunFinished,
    RunSuspended,
)
from charter.exceptions import StateError
from charter.store._base import ApprovalRecord

if TYPE_CHECKING:
    from charter.store._db import Db, Row

__all__ = ["approval_from_row", "project_approval", "wakes_at_once"]


def wakes_at_once(db: Db, row: Row, suspended: RunSuspended) -> bool:
    """Whether a run suspending now must stay runnable: what it waits for already happened.

    A decision or a cancellation can land between the append that holds a step and the one
    that suspends the run; without this the run would wait for something already past.
    """
    if row["cancel_requested"] is not None:
        return True
    requests = [r for r in suspended.waiting_on if r != "timer"]
    if not requests:
        return False
    marks = ", ".join("?" * len(requests))
    decided = db.execute(
        f"SELECT 1 FROM approvals WHERE request_id IN ({marks}) AND status != 'pending'",
        requests,
    ).fetchone()
    return decided is not None


def project_approval(db: Db, run_id: str, event: Event, ts: str) -> None:
    """Keep the approvals table in step with the approval events appended in this transaction."""
    match event:
        case ApprovalRequested():
            db.execute(
                "INSERT INTO approvals (request_id, run_id, step, tool, tier, role, approvers, "
                "status, requested_at, expires_at, summary, diff, excluded) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (
                    event.request_id,
                    run_id,
                    event.step,
                    event.tool,
                    event.tier,
                    event.role,
                    event.approvers,
                    ts,
                    event.expires_at,
                    event.summary,
                    json.dumps(event.diff),
                    json.dumps(event.excluded),
                ),
            )
        case ApprovalDecided():
            db.execute(
                "UPDATE approvals SET granted = ?, status = ?, decided_at = ? WHERE request_id = ?",
                (
                    event.granted,
                    event.status,
                    None if event.status == "pending" else ts,
                    event.request_id,
                ),
            )
        case ApprovalExpired():
            cursor = db.execute(
                "UPDATE approvals SET status = ?, decided_at = ? "
                "WHERE request_id = ? AND status = 'pending'",
                ("expired" if event.action == "deny" else "escalated", ts, event.request_id),
            )
            if cursor.rowcount == 0:
                # Decided meanwhile: the decision stands and this expiry is void.
                raise StateError(f"approval request {event.request_id} is no longer pending")
        case RunFinished():
            db.execute(
                "UPDATE approvals SET status = 'cancelled', decided_at = ? "
                "WHERE run_id = ? AND status = 'pending'",
                (ts, run_id),
            )
        case _:
            pass


def approval_from_row(row: Row) -> ApprovalRecord:
    """The record of one approvals row."""
    return ApprovalRecord(
        **{
            **dict(row),
            "diff": json.loads(row["diff"]),
            "excluded": json.loads(row["excluded"]),
        }
    )
