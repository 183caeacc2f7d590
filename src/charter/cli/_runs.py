"""`charter runs`: runs, their timelines and records."""

from __future__ import annotations

import json

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

__all__ = ["runs"]


@click.group()
def runs() -> None:
    """Runs and their logs."""


@runs.command("list")
@click.option("--tenant", help="Only this tenant's runs.")
@click.option(
    "--status", type=click.Choice(["running", "waiting", "completed", "failed", "cancelled"])
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
@handled
def runs_list(
    ctx: click.Context, tenant: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    with Client(config_of(ctx)) as client:
        found = client.runs(limit=limit, tenant_id=tenant, status=status)
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    table = Table()
    for column in ("run", "agent", "tenant", "model", "status", "outcome", "events", "cost"):
        table.add_column(column)
    for r in found:
        table.add_row(
            r.run_id,
            r.agent,
            r.tenant_id,
            r.model,
            r.status,
            r.outcome or "",
            str(r.event_count),
            f"${r.cost_usd:.4f}",
        )
    console.print(table)


@runs.command("show")
@click.argument("run_id")
@json_option
@click.pass_context
@handled
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's timeline: every model turn, proposal, check and decision."""
    from charter._timeline import describe  # noqa: PLC0415

    with Client(config_of(ctx)) as client:
        record = client.run(run_id)
        events = client.events(run_id)
    if as_json:
        emit_json({"run": record.to_dict(), "events": [e.to_dict() for e in events]})
        return
    console.print(
        f"[bold]{record.run_id}[/] {record.agent} ({record.contract_version}) for "
        f"{record.tenant_id} · model {record.model} · {record.status}"
        + (f" · {record.outcome}: {record.reason}" if record.outcome else "")
    )
    console.print(
        f"contract {record.contract_hash[:12]} · policy {record.policy_hash[:12]} · "
        f"principal {record.principal_id} · cost ${record.cost_usd:.4f}"
    )
    for stored in events:
        console.print(describe(stored), markup=True)


@runs.command("export")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.pass_context
@handled
def runs_export(ctx: click.Context, run_id: str, fmt: str) -> None:
    """Print the run record as one JSON line (for audit pipelines)."""
    assert fmt == "jsonl"  # noqa: S101 - click's Choice admits nothing else yet
    with Client(config_of(ctx)) as client:
        record = client.export(run_id)
    click.echo(json.dumps(record, separators=(",", ":"), default=str))


@runs.command("cancel")
@click.argument("run_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def runs_cancel(ctx: click.Context, run_id: str, as_user: str, reason: str, as_json: bool) -> None:
    """Cancel a run (operator): at once if it waits, else before its next new step."""
    with Client(config_of(ctx)) as client:
        record = client.cancel(run_id, by=as_user, token=token(), reason=reason)
    if as_json:
        emit_json(record.to_dict())
        return
    if record.status == "cancelled":
        console.print(f"cancelled {run_id}")
    else:
        console.print(f"{run_id} is running on a worker; it stops at its next step")
