"""The `charter` command: noun-then-verb commands over one `charter.Client`.

Every command that lists or reports has `--json`. Errors are Charter's typed errors, printed with
their code and hint (and as the JSON error envelope under `--json`), with exit status 2 for bad
input and 1 for a failed check.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click
from rich.table import Table

from charter._cli_assess import assess_command, lint_command
from charter._cli_cache import cache
from charter._cli_common import config_of, console, emit_json, handled, json_option
from charter._cli_db import db
from charter._cli_durable import approvals, explain, replay, runs_cancel, worker
from charter._cli_kill import kill, kill_switches, unkill
from charter._cli_privacy import break_glass, retention
from charter._cli_report import report
from charter._client import Client
from charter._contract import load_contract
from charter.exceptions import UserError

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


# --- demo ---------------------------------------------------------------------------------------
@cli.command()
@json_option
@click.pass_context
@handled
def demo(ctx: click.Context, as_json: bool) -> None:
    """Run the billing-dispute agent over ten disputes for two tenants (offline, scripted model)."""
    from charter.examples import APPROVER, run_demo, tally  # noqa: PLC0415 - keeps --help fast

    config = config_of(ctx)
    report = run_demo(config)
    with Client(config) as client:
        verified = client.verify()
    broken = [r for r in verified if not r.ok]
    if as_json:
        emit_json(
            {
                "runs": [
                    {
                        "run_id": r.run_id,
                        "tenant": d.tenant,
                        "dispute": d.ticket_subject,
                        "status": r.status,
                        "outcome": r.outcome,
                        "decisions": [x.kind for x in r.decisions],
                        "cost_usd": round(r.cost_usd, 6),
                    }
                    for d, r in report.runs
                ],
                "refunds_executed": report.refunds_executed,
                "foreign_refunds": report.foreign_refunds,
                "injection_target_refunds": report.injection_target_refunds,
                "chains_verified": len(verified) - len(broken),
                "chains_broken": len(broken),
                "database": report.database,
            }
        )
        return
    table = Table(title="Billing disputes (model: scripted:billing-demo)")
    for column in ("run", "tenant", "dispute", "outcome", "decisions", "cost"):
        table.add_column(column, overflow="fold")
    for dispute, result in report.runs:
        style = {"resolved": "green", "pending": "yellow"}.get(result.outcome, "red")
        table.add_row(
            result.run_id,
            dispute.tenant,
            dispute.ticket_subject,
            f"[{style}]{result.outcome if result.status != 'waiting' else 'held for approval'}[/]",
            tally(result.decisions),
            f"${result.cost_usd:.4f}",
        )
    console.print(table)
    held = sum(1 for _, r in report.runs if r.status == "waiting")
    console.print(
        f"Refunds executed: {report.refunds_executed} · held for approval: {held} · "
        f"refunds to another tenant: {report.foreign_refunds} · "
        f"refunds to the injected target: {report.injection_target_refunds}"
    )
    mark = "[green]all verified[/]" if not broken else f"[red]{len(broken)} broken[/]"
    console.print(f"Log: {report.database} ({len(verified)} run chains, {mark})", soft_wrap=True)
    first = report.runs[0][1].run_id
    charter = _program()
    if ctx.ensure_object(dict).get("home"):
        charter += f" --home {_shown_path(config.home)}"
    waiting = [r for _, r in report.runs if r.status == "waiting"]
    if waiting:
        request = waiting[0].waiting_on[0]
        console.print(
            f"{len(waiting)} refund(s) above the approval threshold wait for a finance approver. "
            "Approve one, then let a worker finish it:"
        )
        console.print(
            f"  CHARTER_TOKEN={report.approver_token} {charter} approvals approve {request} "
            f'--as {APPROVER} --reason "customer verified"',
            soft_wrap=True,
        )
        console.print(f"  {charter} worker --until-idle", soft_wrap=True)
        first = waiting[0].run_id
    cases = _shown_path(Path(__file__).parent / "examples/billing/cases.yaml")
    console.print("Try next:")
    for command in (
        "approvals list",
        f"runs show {first}",
        f"explain {first}",
        f"replay {first}",
        f"runs export {first} --format jsonl",
        "audit verify",
        f"policy test {cases}",
    ):
        console.print(f"  {charter} {command}", soft_wrap=True)


def _program() -> str:
    """How the user can call this very `charter`: bare if it is on PATH, else its path."""
    invoked = Path(sys.argv[0]).resolve()
    found = shutil.which("charter")
    if found is not None and Path(found).resolve() == invoked:
        return "charter"
    return _shown_path(invoked) if invoked.name == "charter" else "charter"


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- contract -----------------------------------------------------------------------------------
@cli.group()
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


# --- policy -------------------------------------------------------------------------------------
@cli.group()
def policy() -> None:
    """Cedar policies."""


@policy.command("test")
@click.argument("cases", type=click.Path(path_type=Path))
@json_option
@handled
def policy_test(cases: Path, as_json: bool) -> None:
    """Run a table of request -> expected decision cases; exit 1 on any mismatch."""
    from charter.policy import load_cases, run_cases  # noqa: PLC0415

    table, engine = load_cases(cases)
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
        sys.exit(1)


# --- identity -----------------------------------------------------------------------------------
@cli.group()
def identity() -> None:
    """Agent identities and human principals."""


@identity.command("create")
@click.option("--agent", help="Agent name (with --workflow and --tenant).")
@click.option("--workflow")
@click.option("--tenant")
@click.option(
    "--env",
    "environment",
    type=click.Choice(["dev", "staging", "prod"]),
    default="dev",
    show_default=True,
    help="The environment an agent credential may act in.",
)
@click.option("--human", help="Create a human principal with this name instead.")
@click.option("--role", "roles", multiple=True, help="approver, operator or auditor (repeatable).")
@json_option
@click.pass_context
@handled
def identity_create(
    ctx: click.Context,
    agent: str | None,
    workflow: str | None,
    tenant: str | None,
    environment: str,
    human: str | None,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Issue a credential. It is shown once; Charter keeps only its hash."""
    with Client(config_of(ctx)) as client:
        if human:
            issued = client.create_human(name=human, roles=roles)
        elif agent and workflow and tenant:
            issued = client.create_agent_identity(
                agent=agent, workflow=workflow, tenant_id=tenant, environment=environment
            )
        else:
            raise UserError(
                "say who the identity is for",
                hint="--agent A --workflow W --tenant T, or --human NAME --role approver",
            )
    if as_json:
        emit_json({"identity": issued.identity.to_dict(), "token": issued.token})
        return
    console.print(f"created {issued.identity.id} ({issued.identity.name})")
    console.print(f"token (shown once, store it now): {issued.token}")


@identity.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked identities.")
@json_option
@click.pass_context
@handled
def identity_list(ctx: click.Context, include_revoked: bool, as_json: bool) -> None:
    """List identities (never their credentials)."""
    with Client(config_of(ctx)) as client:
        found = client.identities(include_revoked=include_revoked)
    if as_json:
        emit_json([i.to_dict() for i in found])
        return
    table = Table()
    for column in ("id", "kind", "name", "roles", "created", "revoked"):
        table.add_column(column)
    for i in found:
        table.add_row(i.id, i.kind, i.name, ",".join(i.roles), i.created_at, i.revoked_at or "")
    console.print(table)


@identity.command("revoke")
@click.argument("identity_id")
@json_option
@click.pass_context
@handled
def identity_revoke(ctx: click.Context, identity_id: str, as_json: bool) -> None:
    """Revoke a credential; every gate refuses it from its next call."""
    with Client(config_of(ctx)) as client:
        revoked = client.revoke(identity_id)
    if as_json:
        emit_json(revoked.to_dict())
        return
    console.print(f"revoked {revoked.id} ({revoked.name}) at {revoked.revoked_at}")


# --- runs ---------------------------------------------------------------------------------------
@cli.group()
def runs() -> None:
    """Runs and their logs."""


@runs.command("list")
@click.option("--tenant", help="Only this tenant's runs.")
@click.option(
    "--status", type=click.Choice(["running", "waiting", "completed", "failed", "cancelled"])
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
@handled
def runs_list(
    ctx: click.Context, tenant: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    with Client(config_of(ctx)) as client:
        found = client.runs(limit=limit, tenant_id=tenant, status=status)
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    table = Table()
    for column in ("run", "agent", "tenant", "model", "status", "outcome", "events", "cost"):
        table.add_column(column)
    for r in found:
        table.add_row(
            r.run_id,
            r.agent,
            r.tenant_id,
            r.model,
            r.status,
            r.outcome or "",
            str(r.event_count),
            f"${r.cost_usd:.4f}",
        )
    console.print(table)


@runs.command("show")
@click.argument("run_id")
@json_option
@click.pass_context
@handled
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's timeline: every model turn, proposal, check and decision."""
    from charter._timeline import describe  # noqa: PLC0415

    with Client(config_of(ctx)) as client:
        record = client.run(run_id)
        events = client.events(run_id)
    if as_json:
        emit_json({"run": record.to_dict(), "events": [e.to_dict() for e in events]})
        return
    console.print(
        f"[bold]{record.run_id}[/] {record.agent} ({record.contract_version}) for "
        f"{record.tenant_id} · model {record.model} · {record.status}"
        + (f" · {record.outcome}: {record.reason}" if record.outcome else "")
    )
    console.print(
        f"contract {record.contract_hash[:12]} · policy {record.policy_hash[:12]} · "
        f"principal {record.principal_id} · cost ${record.cost_usd:.4f}"
    )
    for stored in events:
        console.print(describe(stored), markup=True)


@runs.command("export")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.pass_context
@handled
def runs_export(ctx: click.Context, run_id: str, fmt: str) -> None:
    """Print the run record as one JSON line (for audit pipelines)."""
    assert fmt == "jsonl"  # noqa: S101 - click's Choice admits nothing else yet
    with Client(config_of(ctx)) as client:
        record = client.export(run_id)
    click.echo(json.dumps(record, separators=(",", ":"), default=str))


# --- audit --------------------------------------------------------------------------------------
@cli.group()
def audit() -> None:
    """Audit the log."""


@audit.command("verify")
@click.argument("run_id", required=False)
@json_option
@click.pass_context
@handled
def audit_verify(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Verify hash chains and head seals; report each broken run's first bad link; exit 1 if any.

    Without RUN, the control log (every kill and unkill) is verified too.
    """
    with Client(config_of(ctx)) as client:
        reports = client.verify(run_id)
        control = client.store.verify_control_log() if run_id is None else None
    broken = [r for r in reports if not r.ok]
    if as_json:
        emit_json(
            {
                "runs": len(reports),
                "broken": len(broken),
                "events": sum(r.events_checked for r in reports),
                "reports": [r.__dict__ for r in reports],
                "control_log": None if control is None else control.__dict__,
            }
        )
    else:
        for r in broken:
            console.print(f"[red]BROKEN[/] {r.run_id} at event {r.broken_at}: {r.problem}")
        if control is not None and not control.ok:
            console.print(
                f"[red]BROKEN[/] control log at entry {control.broken_at}: {control.problem}"
            )
        events = sum(r.events_checked for r in reports)
        status = "[green]ok[/]" if not broken else f"[red]{len(broken)} broken[/]"
        console.print(f"{status}: {len(reports)} run(s), {events} event(s) checked")
    if broken or (control is not None and not control.ok):
        sys.exit(1)


cli.add_command(approvals)
cli.add_command(db)
cli.add_command(worker)
cli.add_command(replay)
cli.add_command(explain)
cli.add_command(kill)
cli.add_command(unkill)
cli.add_command(kill_switches)
cli.add_command(cache)
cli.add_command(break_glass)
cli.add_command(retention)
cli.add_command(report)
cli.add_command(assess_command)
contract.add_command(lint_command)
runs.add_command(runs_cancel)


def main() -> None:
    """Entry point of the `charter` command."""
    cli()
