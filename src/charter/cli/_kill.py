"""`charter kill`, `charter unkill` and `charter kill-switches`: incident response, audited.

An operator authenticates with `--as NAME` and the credential in $CHARTER_TOKEN. The switch
reaches every process on the store at its next gate check; runs in flight stop with outcome
`killed` (or pause, if their contract says `on_kill: pause`). Every kill and unkill goes to the
control log, a sealed hash chain: who, what, when, why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from charter._client import Client
from charter.cli._common import config_of, console, emit_json, handled, json_option, token

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["kill", "kill_switches", "unkill"]


def _scope(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options naming what a switch stops; every one given must match."""
    for option in reversed(
        (
            click.option("--workflow", help="Stop this workflow."),
            click.option("--tenant", help="Only for this tenant."),
            click.option("--tool", help="Only calls of this tool."),
            click.option("--agent", help="Only this agent."),
            click.option("--as", "as_user", required=True, help="Your operator principal's name."),
            click.option("--reason", required=True, help="Why; kept in the control log."),
        )
    ):
        fn = option(fn)
    return fn


@click.command()
@_scope
@json_option
@click.pass_context
@handled
def kill(
    ctx: click.Context,
    *,
    workflow: str | None,
    tenant: str | None,
    tool: str | None,
    agent: str | None,
    as_user: str,
    reason: str,
    as_json: bool,
) -> None:
    """Engage a kill switch: matching calls are refused from the next gate check, everywhere."""
    with Client(config_of(ctx)) as client:
        switch = client.kill(
            reason=reason,
            by=as_user,
            token=token(),
            agent=agent,
            workflow=workflow,
            tenant_id=tenant,
            tool=tool,
        )
    if as_json:
        emit_json(switch.to_dict())
        return
    console.print(f"[red]kill switch engaged[/red] {switch.key}: {switch.reason}")
    console.print("runs in flight stop at their next step (or pause, per their contract)")


@click.command()
@_scope
@json_option
@click.pass_context
@handled
def unkill(
    ctx: click.Context,
    *,
    workflow: str | None,
    tenant: str | None,
    tool: str | None,
    agent: str | None,
    as_user: str,
    reason: str,
    as_json: bool,
) -> None:
    """Release the kill switch of exactly this scope; runs it paused resume."""
    with Client(config_of(ctx)) as client:
        switch = client.unkill(
            reason=reason,
            by=as_user,
            token=token(),
            agent=agent,
            workflow=workflow,
            tenant_id=tenant,
            tool=tool,
        )
    if as_json:
        emit_json({"released": switch.key, "by": switch.created_by, "reason": switch.reason})
        return
    console.print(f"[green]kill switch released[/green] {switch.key}")


@click.command("kill-switches")
@click.option("--log", "show_log", is_flag=True, help="Show the control log (every change).")
@json_option
@click.pass_context
@handled
def kill_switches(ctx: click.Context, *, show_log: bool, as_json: bool) -> None:
    """Engaged kill switches, or with --log every kill and unkill with who and why."""
    with Client(config_of(ctx)) as client:
        if show_log:
            entries = [e.to_dict() for e in client.control_log()]
            report = client.store.verify_control_log()
            if as_json:
                emit_json({"entries": entries, "chain_ok": report.ok, "problem": report.problem})
                return
            table = Table("seq", "when", "action", "by", "scope", "reason")
            for e in entries:
                table.add_row(
                    str(e["seq"]), e["ts"], e["action"], e["actor"], e["key"], e["reason"]
                )
            console.print(table)
            verdict = "chain verified" if report.ok else f"CHAIN BROKEN: {report.problem}"
            console.print(verdict)
            return
        switches = [s.to_dict() for s in client.kill_switches()]
    if as_json:
        emit_json(switches)
        return
    if not switches:
        console.print("no kill switch engaged")
        return
    table = Table("scope", "by", "since", "reason")
    for s in switches:
        table.add_row(s["key"], s["created_by"], s["created_at"], s["reason"])
    console.print(table)
