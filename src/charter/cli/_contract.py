"""`charter contract validate`: a contract file checked strictly."""

from __future__ import annotations

from pathlib import Path

import click

from charter._contract import load_contract
from charter.cli._common import console, emit_json, handled, json_option

__all__ = ["contract"]


@click.group()
def contract() -> None:
    """Agent contracts."""


@contract.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@handled
def contract_validate(file: Path, as_json: bool) -> None:
    """Validate a contract file strictly; print its hash."""
    loaded = load_contract(file)
    summary = {
        "file": str(file),
        "agent": loaded.agent,
        "version": loaded.version,
        "workflow": loaded.workflow,
        "tenants": loaded.tenants,
        "tools": {name: grant.effect.value for name, grant in loaded.tools.items()},
        "contract_hash": loaded.digest,
    }
    if as_json:
        emit_json({"ok": True, **summary})
        return
    console.print(f"[green]ok[/] {file}: {loaded.agent} {loaded.version} ({loaded.workflow})")
    tools = ", ".join(f"{k} ({v.effect.value})" for k, v in loaded.tools.items())
    console.print(f"  tools: {tools}")
    console.print(f"  contract hash: {loaded.digest}")
