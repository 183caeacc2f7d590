"""The root `charter` group: global options, and every noun's commands registered on it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from charter.cli._approvals import approvals
from charter.cli._assess import assess_command, lint_command
from charter.cli._audit import audit
from charter.cli._cache import cache
from charter.cli._common import EXIT_BAD_INPUT, emit_json
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

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["cli", "main"]


class _Charter(click.Group):
    """The root group: click's own usage errors keep the JSON envelope under `--json`."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,  # noqa: ANN401 - passed on to click
    ) -> Any:  # noqa: ANN401 - what the command returns
        """Run the command; an unknown option or a bad choice is reported like any bad input.

        Click parses the command line before any command runs, so its usage errors would
        bypass the error envelope a script reading `--json` expects.
        """
        argv = list(sys.argv[1:] if args is None else args)
        try:
            returned = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if "--json" not in argv:
                exc.show()
                sys.exit(exc.exit_code)
            emit_json(
                {
                    "error": {
                        "code": "usage_error",
                        "message": exc.format_message(),
                        "hint": "see --help for the command's options",
                    }
                }
            )
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(returned if isinstance(returned, int) else 0)
        return returned


@click.group(cls=_Charter)
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
