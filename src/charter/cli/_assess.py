"""Commands for autonomy assessment: `charter assess` and `charter contract lint`.

Both are plain click commands; `charter.cli` registers them (`assess` at the top level, `lint`
under `contract`). Exit status: 0 when clean, 1 when lint has warnings (so CI can gate on it),
2 for a file that does not load.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from charter._assess import Rung, lint_contract, load_assessment, recommend
from charter._contract import load_contract
from charter.cli._common import (
    EXIT_CHECK_FAILED,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
)

__all__ = ["assess_command", "lint_command"]

_STYLE = {
    Rung.DRAFT: "red",
    Rung.SUGGEST: "yellow",
    Rung.GATED: "cyan",
    Rung.AUTONOMOUS: "green",
}


@click.command("assess")
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@handled
def assess_command(file: Path, *, as_json: bool) -> None:
    """Recommend an autonomy stage per tool from an assessment file's risk ratings."""
    assessment = load_assessment(file)
    found = [recommend(name, risk) for name, risk in assessment.tools.items()]
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    scope = " · ".join(
        str(part) for part in (assessment.workflow, assessment.environment) if part is not None
    )
    table = Table(title=f"Autonomy assessment{f' ({escape(scope)})' if scope else ''}")
    for column in ("tool", "autonomy", "approval", "risk", "reasons"):
        table.add_column(column, overflow="fold")
    for r in found:
        approval = "required" if r.rung.approval_required else "-"
        table.add_row(
            escape(r.tool),
            f"[{_STYLE[r.rung]}]{r.rung.label}[/]",
            approval,
            str(r.risk_score),
            "\n".join(escape(reason) for reason in r.reasons),
        )
    console.print(table)
    console.print(
        "Rules: docs/autonomy.md · check a contract against this: "
        f"charter contract lint CONTRACT --assessment {escape(str(file))}",
        soft_wrap=True,
    )


@click.command("lint")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--assessment",
    "assessment_file",
    type=click.Path(path_type=Path),
    help="Warn where the contract grants more autonomy than this assessment recommends.",
)
@json_option
@click.pass_context
@handled
def lint_command(
    ctx: click.Context, file: Path, *, assessment_file: Path | None, as_json: bool
) -> None:
    """Check a contract for risky grants; exit 1 on any warning."""
    contract = load_contract(file, roots=config_of(ctx).policy_roots)
    assessment = load_assessment(assessment_file) if assessment_file is not None else None
    found = lint_contract(contract, assessment)
    warnings = [f for f in found if f.severity == "warning"]
    notes = [f for f in found if f.severity == "info"]
    if as_json:
        emit_json(
            {
                "file": str(file),
                "assessment": str(assessment_file) if assessment_file is not None else None,
                "warnings": [f.to_dict() for f in warnings],
                "info": [f.to_dict() for f in notes],
            }
        )
    elif found:
        table = Table()
        for column in ("", "tool", "code", "message"):
            table.add_column(column, overflow="fold")
        for f in found:
            mark = "[yellow]warning[/]" if f.severity == "warning" else "[dim]info[/]"
            table.add_row(mark, escape(f.tool or "(contract)"), f.code, escape(f.message))
        console.print(table)
    if not as_json:
        status = (
            "[green]no warnings[/]" if not warnings else f"[yellow]{len(warnings)} warning(s)[/]"
        )
        extra = f" ({len(notes)} info)" if notes else ""
        console.print(f"{status} in {escape(str(file))}{extra}", soft_wrap=True)
    if warnings:
        sys.exit(EXIT_CHECK_FAILED)
