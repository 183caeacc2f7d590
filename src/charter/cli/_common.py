"""What every `charter` command shares: output consoles, the error handler, settings, --json."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from charter._config import Config
from charter.exceptions import CharterError, CredentialError, InternalError, UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.engine import Workflow

__all__ = [
    "DEFAULT_APP",
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_INTERNAL",
    "EXIT_REFUSED_CREDENTIAL",
    "EXIT_UNAVAILABLE",
    "app_option",
    "as_option",
    "config_of",
    "console",
    "emit_json",
    "errors",
    "exit_status",
    "handled",
    "json_option",
    "reason_option",
    "token",
    "workflows_of",
]

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False, emoji=False)
errors = Console(stderr=True, highlight=False, emoji=False)


def emit_json(data: object) -> None:
    """Print `data` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str))


EXIT_CHECK_FAILED = 1
"""The command ran and found a problem: a broken chain, a failing policy case, a lint warning."""
EXIT_BAD_INPUT = 2
"""The input must change: a malformed file, an unknown id, a value out of range (and click's
own usage errors)."""
EXIT_REFUSED_CREDENTIAL = 3
"""No credential, or one that is unknown, expired, revoked or forged, or whose principal lacks
the role or scope the command needs."""
EXIT_UNAVAILABLE = 4
"""The store could not do it: unreachable, locked, of another schema version, or corrupt."""
EXIT_INTERNAL = 70
"""A bug in Charter (`CHARTER_DEBUG=1` shows the traceback)."""


def exit_status(exc: CharterError) -> int:
    """The one rule that maps every error to the `charter` command's exit status."""
    if isinstance(exc, CredentialError):
        return EXIT_REFUSED_CREDENTIAL
    if isinstance(exc, UserError):
        return EXIT_BAD_INPUT
    return EXIT_UNAVAILABLE


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn errors into a clear message (or the JSON envelope) and an exit status; no traceback.

    Charter's errors carry their code and hint. Anything else is a bug: it is reported as
    `internal_error`, with its traceback only when `CHARTER_DEBUG=1`.
    """

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CharterError as exc:
            _report(exc, as_json=bool(kwargs.get("as_json")))
            sys.exit(exit_status(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("CHARTER_DEBUG") == "1":
                raise
            internal = InternalError(
                f"internal error: {type(exc).__name__}",
                hint="this is a bug in Charter; run again with CHARTER_DEBUG=1 to see where",
            )
            _report(internal, as_json=bool(kwargs.get("as_json")))
            sys.exit(EXIT_INTERNAL)

    return wrapper


def _report(exc: CharterError, *, as_json: bool) -> None:
    if as_json:
        emit_json({"error": exc.to_dict()})
        return
    # Messages quote user input (ids, reasons): never let it read as markup.
    # soft_wrap: a path or id in a message must never be broken across lines.
    errors.print(
        f"[bold red]error[/] {escape(f'[{exc.code}]')} {escape(exc.message)}", soft_wrap=True
    )
    if exc.hint:
        errors.print(f"  hint: {escape(exc.hint)}", soft_wrap=True)


def config_of(ctx: click.Context) -> Config:
    """Settings from the environment and the root `--home` option."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    return Config.from_env(os.environ, home=obj.get("home"))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


DEFAULT_APP = "charter.examples:workflows"
"""The workflows `charter worker` and `charter replay` run when no --app is given."""

app_option = click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="MODULE:FACTORY",
    help=f"Where the workflows are: factory(config) returns them (default: {DEFAULT_APP}).",
)
as_option = click.option("--as", "as_user", required=True, help="Your human principal's name.")
reason_option = click.option("--reason", required=True, help="Why; recorded in the run's chain.")


def token() -> str | None:
    """The credential the person at the terminal presents: `$CHARTER_TOKEN`, read here only."""
    return os.environ.get("CHARTER_TOKEN") or None


def workflows_of(config: Config, apps: tuple[str, ...]) -> list[Workflow]:
    """The workflows the --app options name (default: the examples')."""
    from charter.engine import load_workflows  # noqa: PLC0415 - imports user code

    return [w for app in apps or (DEFAULT_APP,) for w in load_workflows(app, config)]
