"""`charter identity`: agent identities and human principals."""

from __future__ import annotations

import click
from rich.table import Table

from charter._client import Client
from charter.cli._common import config_of, console, emit_json, handled, json_option
from charter.exceptions import UserError

__all__ = ["identity"]


@click.group()
def identity() -> None:
    """Agent identities and human principals."""


@identity.command("create")
@click.option("--agent", help="Agent name (with --workflow and --tenant).")
@click.option("--workflow")
@click.option("--tenant")
@click.option(
    "--env",
    "environment",
    type=click.Choice(["dev", "staging", "prod"]),
    default="dev",
    show_default=True,
    help="The environment an agent credential may act in.",
)
@click.option("--human", help="Create a human principal with this name instead.")
@click.option("--role", "roles", multiple=True, help="approver, operator or auditor (repeatable).")
@json_option
@click.pass_context
@handled
def identity_create(
    ctx: click.Context,
    agent: str | None,
    workflow: str | None,
    tenant: str | None,
    environment: str,
    human: str | None,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Issue a credential. It is shown once; Charter keeps only its hash."""
    with Client(config_of(ctx)) as client:
        if human:
            issued = client.create_human(name=human, roles=roles)
        elif agent and workflow and tenant:
            issued = client.create_agent_identity(
                agent=agent, workflow=workflow, tenant_id=tenant, environment=environment
            )
        else:
            raise UserError(
                "say who the identity is for",
                hint="--agent A --workflow W --tenant T, or --human NAME --role approver",
            )
    if as_json:
        emit_json({"identity": issued.identity.to_dict(), "token": issued.token})
        return
    console.print(f"created {issued.identity.id} ({issued.identity.name})")
    console.print(f"token (shown once, store it now): {issued.token}")


@identity.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked identities.")
@json_option
@click.pass_context
@handled
def identity_list(ctx: click.Context, include_revoked: bool, as_json: bool) -> None:
    """List identities (never their credentials)."""
    with Client(config_of(ctx)) as client:
        found = client.identities(include_revoked=include_revoked)
    if as_json:
        emit_json([i.to_dict() for i in found])
        return
    table = Table()
    for column in ("id", "kind", "name", "roles", "created", "revoked"):
        table.add_column(column)
    for i in found:
        table.add_row(i.id, i.kind, i.name, ",".join(i.roles), i.created_at, i.revoked_at or "")
    console.print(table)


@identity.command("revoke")
@click.argument("identity_id")
@json_option
@click.pass_context
@handled
def identity_revoke(ctx: click.Context, identity_id: str, as_json: bool) -> None:
    """Revoke a credential; every gate refuses it from its next call."""
    with Client(config_of(ctx)) as client:
        revoked = client.revoke(identity_id)
    if as_json:
        emit_json(revoked.to_dict())
        return
    console.print(f"revoked {revoked.id} ({revoked.name}) at {revoked.revoked_at}")
