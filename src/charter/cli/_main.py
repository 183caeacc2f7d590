"""The root `charter` group: global options, and every noun's commands registered on it."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._approvals import approvals
from charter.cli._assess import assess_command, lint_command
from charter.cli._audit import audit
from charter.cli._cache import cache
from charter.cli._contract import contract
from charter.cli._db import db
from charter.cli._demo import demo
from charter.cli._identity import identity, idp, init
from charter.cli._kill import kill, kill_switches, unkill
from charter.cli._policy import policy
from charter.cli._privacy import break_glass, retention
from charter.cli._report import report
from charter.cli._runs import runs
from charter.cli._worker import explain, replay, worker

__all__ = ["cli", "main"]


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="State folder (default: $CHARTER_HOME or ./.charter).",
)
@click.version_option(package_name="charter")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Charter: the control plane for LLM agents that act."""
    ctx.ensure_object(dict)["home"] = home


for command in (
    approvals,
    assess_command,
    audit,
    break_glass,
    cache,
    contract,
    db,
    demo,
    explain,
    identity,
    idp,
    init,
    kill,
    kill_switches,
    policy,
    replay,
    report,
    retention,
    runs,
    unkill,
    worker,
):
    cli.add_command(command)
contract.add_command(lint_command)


def main() -> None:
    """Entry point of the `charter` command."""
    cli()
