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
from charter.exceptions import CharterError, UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.engine import Workflow

__all__ = [
    "DEFAULT_APP",
    "app_option",
    "as_option",
    "config_of",
    "console",
    "emit_json",
    "errors",
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


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Charter errors into a clear message (or JSON envelope) and an exit status."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CharterError as exc:
            if kwargs.get("as_json"):
                emit_json({"error": exc.to_dict()})
            else:
                # Messages quote user input (ids, reasons): never let it read as markup.
                # soft_wrap: a path or id in a message must never be broken across lines.
                errors.print(
                    f"[bold red]error[/] {escape(f'[{exc.code}]')} {escape(exc.message)}",
                    soft_wrap=True,
                )
                if exc.hint:
                    errors.print(f"  hint: {escape(exc.hint)}", soft_wrap=True)
            sys.exit(2 if isinstance(exc, UserError) else 1)

    return wrapper


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
