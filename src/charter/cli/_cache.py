"""`charter cache list` and `charter cache clear`: the artifact cache, seen and emptied.

Listing shows where each entry came from and when it expires, never its value (values are
sealed under their tenant's key). Clearing is an operator's act, authenticated like a kill
(`--as NAME` with the credential in $CHARTER_TOKEN) and written to the control log with its
reason: `charter kill-switches --log` shows it.
"""

from __future__ import annotations

import click
from rich.table import Table

from charter._client import Client
from charter._time import iso, utcnow
from charter.cli._common import config_of, console, emit_json, handled, json_option, token

__all__ = ["cache"]

_workflow = click.option("--workflow", help="Only this workflow's entries.")
_tenant = click.option("--tenant", help="Only this tenant's entries.")


@click.group()
def cache() -> None:
    """The artifact cache: answers of model steps and read tools reused within their TTL."""


@cache.command("list")
@_workflow
@_tenant
@json_option
@click.pass_context
@handled
def list_entries(
    ctx: click.Context, *, workflow: str | None, tenant: str | None, as_json: bool
) -> None:
    """Cached answers: scope, step label or tool, source step, expiry."""
    with Client(config_of(ctx)) as client:
        entries = client.cache_entries(workflow=workflow, tenant_id=tenant)
    now = iso(utcnow())
    rows = [{**e.to_dict(), "live": e.expires_at > now} for e in entries]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("the cache is empty")
        return
    table = Table("workflow", "tenant", "kind", "name", "from", "expires", "live")
    for r in rows:
        table.add_row(
            r["workflow"],
            r["tenant_id"],
            r["kind"],
            r["name"],
            r["source"],
            r["expires_at"],
            "yes" if r["live"] else "expired",
        )
    console.print(table)


@cache.command("clear")
@_workflow
@_tenant
@click.option("--expired", is_flag=True, help="Only entries past their TTL.")
@click.option("--as", "as_user", required=True, help="Your operator principal's name.")
@click.option("--reason", required=True, help="Why; kept in the control log.")
@json_option
@click.pass_context
@handled
def clear(
    ctx: click.Context,
    *,
    workflow: str | None,
    tenant: str | None,
    expired: bool,
    as_user: str,
    reason: str,
    as_json: bool,
) -> None:
    """Drop cached answers so the next call asks the model or tool afresh (logged)."""
    with Client(config_of(ctx)) as client:
        dropped = client.clear_cache(
            by=as_user,
            token=token(),
            reason=reason,
            workflow=workflow,
            tenant_id=tenant,
            expired=expired,
        )
    if as_json:
        emit_json({"dropped": dropped})
        return
    console.print(f"dropped {dropped} cached answer(s)")
