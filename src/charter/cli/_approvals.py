"""`charter approvals`: list, inspect, approve or deny held steps, as $CHARTER_TOKEN's holder."""

from __future__ import annotations

import click
from rich.table import Table

from charter._client import Client
from charter.cli._common import (
    as_option,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
    reason_option,
    token,
)

__all__ = ["approvals"]


@click.group()
def approvals() -> None:
    """Approval requests: list, inspect, approve or deny (authenticated by $CHARTER_TOKEN)."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["pending", "approved", "denied", "expired", "escalated", "cancelled", "all"]
    ),
    default="pending",
    show_default=True,
)
@click.option("--run", "run_id", help="Only this run's requests.")
@json_option
@click.pass_context
@handled
def approvals_list(ctx: click.Context, status: str, run_id: str | None, as_json: bool) -> None:
    """List approval requests, oldest first."""
    with Client(config_of(ctx)) as client:
        found = client.approvals(status=None if status == "all" else status, run_id=run_id)
    if as_json:
        emit_json([a.to_dict() for a in found])
        return
    table = Table()
    columns = ["request", "run", "step", "tool", "tier", "granted", "expires"]
    if status == "all":
        columns.append("status")
    for column in columns:
        table.add_column(column, no_wrap=column in ("request", "run"))
    for a in found:
        row = [a.request_id, a.run_id, str(a.step), a.tool, a.tier]
        row += [f"{a.granted}/{a.approvers}", a.expires_at[5:16].replace("T", " ")]
        table.add_row(*row, *([a.status] if status == "all" else []))
    console.print(table)


@approvals.command("show")
@click.argument("request_id")
@json_option
@click.pass_context
@handled
def approvals_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """Show a request: the action proposal with its diff, who may decide, decisions so far."""
    with Client(config_of(ctx)) as client:
        request = client.approval(request_id)
        run = client.run(request.run_id)
        decided = client.approval_decisions(request_id)
    if as_json:
        emit_json(
            {
                "request": request.to_dict(),
                "run": run.to_dict(),
                "decisions": [d.model_dump(mode="json") for d in decided],
            }
        )
        return
    console.print(
        f"[bold]{request.request_id}[/] · {request.status} · expires {request.expires_at}"
    )
    console.print(
        f"run {run.run_id} · {run.agent} for {run.tenant_id} · step {request.step}", soft_wrap=True
    )
    console.print(f"action: {request.summary}", markup=False, soft_wrap=True)
    for change in request.diff:
        before = change.get("before")
        console.print(
            f"  {change.get('path')}: {before!r} -> {change.get('after')!r}", markup=False
        )
    excluded = ", ".join(request.excluded) or "nobody"
    console.print(
        f"needs {request.approvers} distinct {request.role}(s) of tier {request.tier}; "
        f"granted {request.granted}; may not approve: {excluded}"
    )
    for d in decided:
        console.print(f"  {d.decision} by {d.approver}: {d.reason}", markup=False)


def _decide(
    ctx: click.Context,
    request_id: str,
    as_user: str,
    reason: str,
    *,
    approve: bool,
    as_json: bool,
) -> None:
    with Client(config_of(ctx)) as client:
        event = client.decide(
            request_id,
            approver=as_user,
            token=token(),
            decision="approve" if approve else "deny",
            reason=reason,
        )
    if as_json:
        emit_json(event.model_dump(mode="json"))
        return
    console.print(
        f"{event.decision} recorded for {request_id}: {event.granted} of {event.needed} "
        f"approval(s), request {event.status}"
    )
    if event.status != "pending":
        console.print("the run is runnable; a worker resumes it: charter worker --until-idle")


@approvals.command("approve")
@click.argument("request_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def approvals_approve(
    ctx: click.Context, request_id: str, as_user: str, reason: str, as_json: bool
) -> None:
    """Approve a held step; with enough distinct approvers the run resumes."""
    _decide(ctx, request_id, as_user, reason, approve=True, as_json=as_json)


@approvals.command("deny")
@click.argument("request_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def approvals_deny(
    ctx: click.Context, request_id: str, as_user: str, reason: str, as_json: bool
) -> None:
    """Deny a held step; the run resumes and the agent is told it was denied."""
    _decide(ctx, request_id, as_user, reason, approve=False, as_json=as_json)
