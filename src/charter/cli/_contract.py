"""`charter contract validate`: a contract file checked strictly, with the policies it names."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from charter._agent import load_policy
from charter._contract import load_contract
from charter.cli._common import config_of, console, emit_json, handled, json_option

__all__ = ["contract"]


@click.group()
def contract() -> None:
    """Agent contracts."""


@contract.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@click.pass_context
@handled
def contract_validate(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Validate a contract file strictly, and its Cedar policies against their schema.

    The policies load as an agent would load them; the files the contract names must lie
    beside it or in $CHARTER_POLICY_ROOTS. Prints the contract hash and the policy ids.
    """
    loaded = load_contract(file, roots=config_of(ctx).policy_roots)
    policy = load_policy(loaded)
    summary = {
        "file": str(file),
        "agent": loaded.agent,
        "version": loaded.version,
        "workflow": loaded.workflow,
        "tenants": loaded.tenants,
        "tools": {name: grant.effect.value for name, grant in loaded.tools.items()},
        "contract_hash": loaded.digest,
        "policy_hash": policy.digest,
        "policy_ids": list(policy.policy_ids),
    }
    if as_json:
        emit_json({"ok": True, **summary})
        return
    said = f"{file}: {loaded.agent} {loaded.version} ({loaded.workflow})"
    console.print(f"[green]ok[/] {escape(said)}")
    tools = ", ".join(f"{k} ({v.effect.value})" for k, v in loaded.tools.items())
    console.print(f"  tools: {tools}")
    console.print(f"  policies: {', '.join(policy.policy_ids) or 'none'}", markup=False)
    console.print(f"  contract hash: {loaded.digest}")
    console.print(f"  policy hash: {policy.digest}")
