"""`charter break-glass` and `charter retention apply`: raw data read in an incident, and purged.

Both are an operator's acts, proven by the credential in $CHARTER_TOKEN (`--as NAME` names the
operator; by default, whoever the credential belongs to). Both are written to the control log
before they act: `charter kill-switches --log` shows who read or purged what, and why.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.table import Table

from charter._client import Client
from charter._contract import load_contract
from charter.cli._common import config_of, console, emit_json, handled, json_option, token

__all__ = ["break_glass", "retention"]

_as = click.option(
    "--as",
    "as_user",
    help="Your operator principal's name (default: the holder of $CHARTER_TOKEN).",
)


@click.command("break-glass")
@click.argument("run_id")
@click.option("--reason", required=True, help="Why (an incident id); kept in the control log.")
@_as
@json_option
@click.pass_context
@handled
def break_glass(
    ctx: click.Context, *, run_id: str, reason: str, as_user: str | None, as_json: bool
) -> None:
    """Show a run's raw payloads (prompts, tool inputs and outputs) decrypted; logged first."""
    with Client(config_of(ctx)) as client:
        opened = client.break_glass(run_id, by=as_user, token=token(), reason=reason)
    if as_json:
        emit_json(opened)
        return
    console.print(
        f"[bold]{opened['run_id']}[/] (tenant {opened['tenant_id']}) opened by "
        f"{opened['opened_by']}; logged to the control log"
    )
    for name, value in opened["payloads"].items():
        console.print(f"[bold]{name}[/]", value, soft_wrap=True)


@click.group()
def retention() -> None:
    """Purge raw and redacted data past the retention of their contract."""


@retention.command("apply")
@click.option(
    "--contract",
    "contracts",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A contract whose runs to purge by its retention classes (repeat for several).",
)
@click.option("--dry-run", is_flag=True, help="Show what is due; purge nothing.")
@click.option("--reason", default="retention schedule", help="Why; kept in the control log.")
@_as
@json_option
@click.pass_context
@handled
def apply(
    ctx: click.Context,
    *,
    contracts: tuple[Path, ...],
    dry_run: bool,
    reason: str,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Destroy the keys of raw payloads past retention, drop redacted payloads past their tier.

    Chains still verify afterwards; the purge itself is a control-log entry.
    """
    config = config_of(ctx)
    loaded = [load_contract(path, roots=config.policy_roots) for path in contracts]
    with Client(config) as client:
        if dry_run:
            plan, counts = client.retention_plan(loaded), None
        else:
            plan, counts = client.apply_retention(loaded, by=as_user, token=token(), reason=reason)
    if as_json:
        purged = dataclasses.asdict(counts) if counts is not None else None
        emit_json({**plan.to_dict(), "dry_run": dry_run, "purged": purged})
        return
    table = Table("due at " + plan.now, "count", "detail")
    table.add_row("data keys to destroy", str(len(plan.keys)), ", ".join(plan.keys[:5]))
    table.add_row("keys held by open runs", str(len(plan.held)), ", ".join(list(plan.held)[:5]))
    table.add_row("runs' redacted payloads", str(len(plan.redacted_runs)), "")
    table.add_row("runs' legacy raw payloads", str(len(plan.legacy_runs)), "")
    console.print(table)
    for what in plan.unknown:
        console.print(f"[yellow]untouched[/]: {what} (no contract given describes it)")
    if counts is None:
        console.print("dry run: nothing purged")
    else:
        console.print(
            f"purged {counts.payloads} raw payload(s), {counts.events} event payload(s), "
            f"{counts.cache_entries} cache entr(ies); destroyed {len(plan.keys)} key(s)"
        )
