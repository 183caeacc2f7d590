"""`charter policy test`: a table of requests and the decisions they must get."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from charter.cli._common import (
    EXIT_CHECK_FAILED,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
)

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """Cedar policies."""


@policy.command("test")
@click.argument("cases", type=click.Path(path_type=Path))
@json_option
@click.pass_context
@handled
def policy_test(ctx: click.Context, cases: Path, as_json: bool) -> None:
    """Run a table of request -> expected decision cases; exit 1 on any mismatch.

    The files the table names must lie beside it or in $CHARTER_POLICY_ROOTS.
    """
    from charter.policy import load_cases, run_cases  # noqa: PLC0415

    table, engine = load_cases(cases, roots=config_of(ctx).policy_roots)
    results = run_cases(table, engine)
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "cases": [r.__dict__ for r in results],
            }
        )
    else:
        for r in results:
            mark = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
            ids = ", ".join(r.policy_ids) or "-"
            console.print(f"{mark} {r.name}: {r.got} [{ids}]")
            if not r.ok:
                console.print(f"     expected {r.expected}; {r.reason}")
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(EXIT_CHECK_FAILED)
