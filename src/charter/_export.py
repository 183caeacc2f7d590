"""The run record: one JSON object per run, built from its events alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    GateDecided,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunSuspended,
    ToolCompleted,
    ToolProposed,
)

if TYPE_CHECKING:
    from charter.store import StoredEvent

__all__ = ["run_record"]


def run_record(events: list[StoredEvent]) -> dict[str, Any]:
    """run_id, agent, tenant_id, model, budget_usd, tool_calls, approvals, outcome, cost."""
    record: dict[str, Any] = {"run_id": events[0].run_id if events else None}
    calls: dict[int, dict[str, Any]] = {}
    approvals: dict[str, dict[str, Any]] = {}
    cost = {"prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0}
    outcome: dict[str, Any] = {"status": "running", "reason": None}
    for stored in events:
        match stored.event:
            case RunStarted() as e:
                record |= {
                    "agent": e.agent,
                    "workflow": e.workflow,
                    "tenant_id": e.tenant_id,
                    "principal_id": e.principal_id,
                    "model": e.model,
                    "model_kind": e.model_kind,
                    "budget_usd": e.budget_usd,
                    "contract_version": e.contract_version,
                    "contract_hash": e.contract_hash,
                    "policy_hash": e.policy_hash,
                }
            case ModelResponded() as e:
                cost["prompt_tokens"] += e.prompt_tokens
                cost["completion_tokens"] += e.completion_tokens
                cost["usd"] += e.cost_usd
            case ToolProposed() as e:
                # A held step is proposed again once approved; the first proposal stands.
                calls.setdefault(
                    e.step,
                    {
                        "step": e.step,
                        "tool": e.tool,
                        "input_hash": e.input_hash,
                        "status": "proposed",
                        "latency_ms": None,
                    },
                )
            case GateDecided() as e if e.decision != "allowed":
                calls[e.step]["status"] = e.decision
                if e.decision == "denied":
                    calls[e.step]["denied_by"] = e.check
            case ApprovalRequested() | ApprovalDecided() | ApprovalExpired() as e:
                _fold_approval(approvals, e)
            case ToolCompleted() as e:
                calls[e.step] |= {
                    "status": "ok" if e.status == "ok" else "failed",
                    "latency_ms": e.latency_ms,
                }
                cost["usd"] += e.cost_usd
            case RunSuspended() | RunFinished() as e:
                outcome = _outcome(e)
            case _:
                pass
    cost["usd"] = round(float(cost["usd"]), 6)
    return record | {
        "tool_calls": list(calls.values()),
        "approvals": list(approvals.values()),
        "outcome": outcome,
        "cost": cost,
    }


def _fold_approval(
    approvals: dict[str, dict[str, Any]],
    event: ApprovalRequested | ApprovalDecided | ApprovalExpired,
) -> None:
    match event:
        case ApprovalRequested() as e:
            approvals[e.request_id] = {
                "type": e.tier,
                "request_id": e.request_id,
                "step": e.step,
                "required": e.approvers,
                "approved": 0,
                "status": "pending",
                "decided_by": [],
            }
        case ApprovalDecided() as e:
            approvals[e.request_id]["approved"] = e.granted
            approvals[e.request_id]["status"] = e.status
            approvals[e.request_id]["decided_by"].append(e.approver)
        case ApprovalExpired() as e:
            approvals[e.request_id]["status"] = "expired" if e.action == "deny" else "escalated"


def _outcome(event: RunSuspended | RunFinished) -> dict[str, Any]:
    if isinstance(event, RunSuspended):
        return {"status": "pending", "run_status": "waiting", "reason": event.reason}
    return {"status": event.outcome, "run_status": event.status, "reason": event.reason}
