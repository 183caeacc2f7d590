"""`charter db`: the store's schema version, and upgrading it."""

from __future__ import annotations

import sys

import click

from charter.cli._common import (
    EXIT_CHECK_FAILED,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
)
from charter.exceptions import SchemaOutdated
from charter.store import open_store

__all__ = ["db"]


@click.group()
def db() -> None:
    """The database's schema: its version, and upgrading it."""


@db.command("status")
@click.option("--check", is_flag=True, help="Exit 1 when migrations are pending.")
@json_option
@click.pass_context
@handled
def db_status(ctx: click.Context, check: bool, as_json: bool) -> None:
    """Show the schema version of the store and how many migrations are pending; change nothing."""
    config = config_of(ctx)
    try:
        store = open_store(
            config.database_url, seal_key=config.seal_key(), keys=config.keys(), upgrade=False
        )
    except SchemaOutdated as outdated:
        name, version, latest = outdated.database, outdated.found, outdated.latest
    else:
        name, version, latest = store.name, store.schema.current, store.schema.current
        store.close()
    pending = latest - version
    if as_json:
        emit_json({"database": name, "version": version, "latest": latest, "pending": pending})
    elif pending:
        console.print(
            f"{name}: schema version {version}, {pending} migration(s) pending "
            f"(latest {latest}); run `charter db upgrade`",
            markup=False,
        )
    else:
        console.print(f"{name}: schema version {version}, up to date", markup=False)
    if check and pending:
        sys.exit(EXIT_CHECK_FAILED)


@db.command("upgrade")
@json_option
@click.pass_context
@handled
def db_upgrade(ctx: click.Context, as_json: bool) -> None:
    """Apply pending schema migrations (safe to run on many nodes at once)."""
    config = config_of(ctx)
    store = open_store(
        config.database_url, seal_key=config.seal_key(), keys=config.keys(), upgrade=True
    )
    store.close()
    found, current = store.schema.found, store.schema.current
    if as_json:
        emit_json(
            {"database": store.name, "from": found, "to": current, "upgraded": current > found}
        )
    elif current > found:
        console.print(f"{store.name}: schema upgraded from {found} to {current}", markup=False)
    else:
        console.print(f"{store.name}: schema version {current}, already up to date", markup=False)
