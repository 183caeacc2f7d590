"""`charter demo`: the billing-dispute agent on the embedded SQLite default."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
from rich.table import Table

from charter._client import Client
from charter.cli._common import config_of, console, emit_json, handled, json_option

__all__ = ["demo"]


@click.command()
@json_option
@click.pass_context
@handled
def demo(ctx: click.Context, as_json: bool) -> None:
    """Run the billing-dispute agent over ten disputes for two tenants (offline, scripted model)."""
    from charter.examples import APPROVER, run_demo, tally  # noqa: PLC0415 - keeps --help fast

    config = config_of(ctx)
    report = run_demo(config)
    with Client(config) as client:
        verified = client.verify()
    broken = [r for r in verified if not r.ok]
    if as_json:
        emit_json(
            {
                "runs": [
                    {
                        "run_id": r.run_id,
                        "tenant": d.tenant,
                        "dispute": d.ticket_subject,
                        "status": r.status,
                        "outcome": r.outcome,
                        "decisions": [x.kind for x in r.decisions],
                        "cost_usd": round(r.cost_usd, 6),
                    }
                    for d, r in report.runs
                ],
                "refunds_executed": report.refunds_executed,
                "foreign_refunds": report.foreign_refunds,
                "injection_target_refunds": report.injection_target_refunds,
                "chains_verified": len(verified) - len(broken),
                "chains_broken": len(broken),
                "database": report.database,
            }
        )
        return
    table = Table(title="Billing disputes (model: scripted:billing-demo)")
    for column in ("run", "tenant", "dispute", "outcome", "decisions", "cost"):
        table.add_column(column, overflow="fold")
    for dispute, result in report.runs:
        style = {"resolved": "green", "pending": "yellow"}.get(result.outcome, "red")
        table.add_row(
            result.run_id,
            dispute.tenant,
            dispute.ticket_subject,
            f"[{style}]{result.outcome if result.status != 'waiting' else 'held for approval'}[/]",
            tally(result.decisions),
            f"${result.cost_usd:.4f}",
        )
    console.print(table)
    held = sum(1 for _, r in report.runs if r.status == "waiting")
    console.print(
        f"Refunds executed: {report.refunds_executed} · held for approval: {held} · "
        f"refunds to another tenant: {report.foreign_refunds} · "
        f"refunds to the injected target: {report.injection_target_refunds}"
    )
    mark = "[green]all verified[/]" if not broken else f"[red]{len(broken)} broken[/]"
    console.print(f"Log: {report.database} ({len(verified)} run chains, {mark})", soft_wrap=True)
    first = report.runs[0][1].run_id
    charter = _program()
    if ctx.ensure_object(dict).get("home"):
        charter += f" --home {_shown_path(config.home)}"
    waiting = [r for _, r in report.runs if r.status == "waiting"]
    if waiting:
        request = waiting[0].waiting_on[0]
        console.print(
            f"{len(waiting)} refund(s) above the approval threshold wait for a finance approver. "
            "Approve one, then let a worker finish it:"
        )
        console.print(
            f"  CHARTER_TOKEN={report.approver_token} {charter} approvals approve {request} "
            f'--as {APPROVER} --reason "customer verified"',
            soft_wrap=True,
        )
        console.print(f"  {charter} worker --until-idle", soft_wrap=True)
        first = waiting[0].run_id
    cases = _shown_path(Path(__file__).parent.parent / "examples/billing/cases.yaml")
    console.print("Try next:")
    for command in (
        "approvals list",
        f"runs show {first}",
        f"explain {first}",
        f"replay {first}",
        f"runs export {first} --format jsonl",
        "audit verify",
        "audit checkpoint --out checkpoint.json",
        f"policy test {cases}",
    ):
        console.print(f"  {charter} {command}", soft_wrap=True)
    console.print(
        "This store's admin (the demo made it; its token is shown once, here):", soft_wrap=True
    )
    console.print(
        f"  CHARTER_TOKEN={report.admin_token} {charter} identity create --human you "
        '--role operator:tenant=acme --reason "trying Charter"',
        soft_wrap=True,
    )


def _program() -> str:
    """How the user can call this very `charter`: bare if it is on PATH, else its path."""
    invoked = Path(sys.argv[0]).resolve()
    found = shutil.which("charter")
    if found is not None and Path(found).resolve() == invoked:
        return "charter"
    return _shown_path(invoked) if invoked.name == "charter" else "charter"


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
