"""`charter audit`: verify the log."""

from __future__ import annotations

import sys

import click

from charter._client import Client
from charter.cli._common import (
    EXIT_CHECK_FAILED,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
)

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Audit the log."""


@audit.command("verify")
@click.argument("run_id", required=False)
@json_option
@click.pass_context
@handled
def audit_verify(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Verify hash chains and head seals; report each broken run's first bad link; exit 1 if any.

    Without RUN, the control log (every kill and unkill) is verified too.
    """
    with Client(config_of(ctx)) as client:
        reports = client.verify(run_id)
        control = client.store.verify_control_log() if run_id is None else None
    broken = [r for r in reports if not r.ok]
    if as_json:
        emit_json(
            {
                "runs": len(reports),
                "broken": len(broken),
                "events": sum(r.events_checked for r in reports),
                "reports": [r.__dict__ for r in reports],
                "control_log": None if control is None else control.__dict__,
            }
        )
    else:
        for r in broken:
            console.print(f"[red]BROKEN[/] {r.run_id} at event {r.broken_at}: {r.problem}")
        if control is not None and not control.ok:
            console.print(
                f"[red]BROKEN[/] control log at entry {control.broken_at}: {control.problem}"
            )
        events = sum(r.events_checked for r in reports)
        status = "[green]ok[/]" if not broken else f"[red]{len(broken)} broken[/]"
        console.print(f"{status}: {len(reports)} run(s), {events} event(s) checked")
    if broken or (control is not None and not control.ok):
        sys.exit(EXIT_CHECK_FAILED)
