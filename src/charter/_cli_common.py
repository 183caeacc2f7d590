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

__all__ = ["config_of", "console", "emit_json", "errors", "handled", "json_option"]

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
