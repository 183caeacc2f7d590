"""Commands for durable runs: approvals, workers, cancellation, replay and explain."""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

import click
from rich.table import Table

from charter._cli_common import config_of, console, emit_json, handled, json_option
from charter._client import Client

if TYPE_CHECKING:
    from charter._config import Config
    from charter._plane import RunResult
    from charter.engine import Workflow

__all__ = ["approvals", "explain", "replay", "runs_cancel", "worker"]

DEFAULT_APP = "charter.examples:workflows"

app_option = click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="MODULE:FACTORY",
    help=f"Where the workflows are: factory(config) returns them (default: {DEFAULT_APP}).",
)
as_option = click.option("--as", "as_user", required=True, help="Your human principal's name.")
reason_option = click.option("--reason", required=True, help="Why; recorded in the run's chain.")


def _token() -> str | None:
    return os.environ.get("CHARTER_TOKEN")


def _workflows(config: Config, apps: tuple[str, ...]) -> list[Workflow]:
    from charter.engine import load_workflows  # noqa: PLC0415 - imports user code

    return [w for app in apps or (DEFAULT_APP,) for w in load_workflows(app, config)]


# --- approvals ----------------------------------------------------------------------------------
@click.group()
def approvals() -> None:
    """Approval requests: list, inspect, approve or deny (authenticated by $CHARTER_TOKEN)."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["pending", "approved", "denied", "expired", "escalated", "cancelled", "all"]
    ),
    default="pending",
    show_default=True,
)
@click.option("--run", "run_id", help="Only this run's requests.")
@json_option
@click.pass_context
@handled
def approvals_list(ctx: click.Context, status: str, run_id: str | None, as_json: bool) -> None:
    """List approval requests, oldest first."""
    with Client(config_of(ctx)) as client:
        found = client.approvals(status=None if status == "all" else status, run_id=run_id)
    if as_json:
        emit_json([a.to_dict() for a in found])
        return
    table = Table()
    columns = ["request", "run", "step", "tool", "tier", "granted", "expires"]
    if status == "all":
        columns.append("status")
    for column in columns:
        table.add_column(column, no_wrap=column in ("request", "run"))
    for a in found:
        row = [a.request_id, a.run_id, str(a.step), a.tool, a.tier]
        row += [f"{a.granted}/{a.approvers}", a.expires_at[5:16].replace("T", " ")]
        table.add_row(*row, *([a.status] if status == "all" else []))
    console.print(table)


@approvals.command("show")
@click.argument("request_id")
@json_option
@click.pass_context
@handled
def approvals_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """Show a request: the action proposal with its diff, who may decide, decisions so far."""
    with Client(config_of(ctx)) as client:
        request = client.approval(request_id)
        run = client.run(request.run_id)
        decided = client.approval_decisions(request_id)
    if as_json:
        emit_json(
            {
                "request": request.to_dict(),
                "run": run.to_dict(),
                "decisions": [d.model_dump(mode="json") for d in decided],
            }
        )
        return
    console.print(
        f"[bold]{request.request_id}[/] · {request.status} · expires {request.expires_at}"
    )
    console.print(
        f"run {run.run_id} · {run.agent} for {run.tenant_id} · step {request.step}", soft_wrap=True
    )
    console.print(f"action: {request.summary}", markup=False, soft_wrap=True)
    for change in request.diff:
        before = change.get("before")
        console.print(
            f"  {change.get('path')}: {before!r} -> {change.get('after')!r}", markup=False
        )
    excluded = ", ".join(request.excluded) or "nobody"
    console.print(
        f"needs {request.approvers} distinct {request.role}(s) of tier {request.tier}; "
        f"granted {request.granted}; may not approve: {excluded}"
    )
    for d in decided:
        console.print(f"  {d.decision} by {d.approver}: {d.reason}", markup=False)


def _decide(
    ctx: click.Context,
    request_id: str,
    as_user: str,
    reason: str,
    *,
    approve: bool,
    as_json: bool,
) -> None:
    with Client(config_of(ctx)) as client:
        event = client.decide(
            request_id,
            approver=as_user,
            token=_token(),
            decision="approve" if approve else "deny",
            reason=reason,
        )
    if as_json:
        emit_json(event.model_dump(mode="json"))
        return
    console.print(
        f"{event.decision} recorded for {request_id}: {event.granted} of {event.needed} "
        f"approval(s), request {event.status}"
    )
    if event.status != "pending":
        console.print("the run is runnable; a worker resumes it: charter worker --until-idle")


@approvals.command("approve")
@click.argument("request_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def approvals_approve(
    ctx: click.Context, request_id: str, as_user: str, reason: str, as_json: bool
) -> None:
    """Approve a held step; with enough distinct approvers the run resumes."""
    _decide(ctx, request_id, as_user, reason, approve=True, as_json=as_json)


@approvals.command("deny")
@click.argument("request_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def approvals_deny(
    ctx: click.Context, request_id: str, as_user: str, reason: str, as_json: bool
) -> None:
    """Deny a held step; the run resumes and the agent is told it was denied."""
    _decide(ctx, request_id, as_user, reason, approve=False, as_json=as_json)


# --- runs cancel --------------------------------------------------------------------------------
@click.command("cancel")
@click.argument("run_id")
@as_option
@reason_option
@json_option
@click.pass_context
@handled
def runs_cancel(ctx: click.Context, run_id: str, as_user: str, reason: str, as_json: bool) -> None:
    """Cancel a run (operator): at once if it waits, else before its next new step."""
    with Client(config_of(ctx)) as client:
        record = client.cancel(run_id, by=as_user, token=_token(), reason=reason)
    if as_json:
        emit_json(record.to_dict())
        return
    if record.status == "cancelled":
        console.print(f"cancelled {run_id}")
    else:
        console.print(f"{run_id} is running on a worker; it stops at its next step")


# --- worker -------------------------------------------------------------------------------------
@click.command()
@app_option
@click.option("--until-idle", is_flag=True, help="Exit once nothing is runnable.")
@click.option("--lease", "lease_s", type=click.FloatRange(1), default=60.0, show_default=True)
@click.option("--poll", "poll_s", type=click.FloatRange(0.01), default=0.5, show_default=True)
@json_option
@click.pass_context
@handled
def worker(
    ctx: click.Context,
    apps: tuple[str, ...],
    until_idle: bool,
    lease_s: float,
    poll_s: float,
    as_json: bool,
) -> None:
    """Claim runnable runs, resume them until they rest, and release them. Ctrl-C stops.

    Logs go to stderr as JSON lines with run and trace ids (`CHARTER_LOG_FORMAT=text` for
    plain lines, `CHARTER_LOG_LEVEL` for the level); traces and metrics go where the OTEL_*
    environment variables say.
    """
    from charter._logging import configure_logging  # noqa: PLC0415
    from charter._plane import ControlPlane  # noqa: PLC0415
    from charter.engine import Worker  # noqa: PLC0415

    config = config_of(ctx)
    configure_logging(os.environ)

    def show(result: RunResult) -> None:
        if as_json:
            emit_json({"run_id": result.run_id, "status": result.status, "outcome": result.outcome})
        else:
            console.print(
                f"{result.run_id}: {result.status} {result.outcome} {result.reason}", markup=False
            )

    with Client(config) as client:
        plane = ControlPlane(client.store)
        try:
            runner = Worker(
                plane,
                _workflows(config, apps),
                lease_s=lease_s,
                poll_s=poll_s,
                on_result=show,
            )
            # SIGTERM (a deploy, an orchestrator) stops the worker between runs, releasing
            # its leases, so another worker picks the runs up at once instead of at expiry.
            stop = threading.Event()
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                stats = runner.run(until_idle=until_idle, stop=stop)
            except KeyboardInterrupt:
                stats = runner.stats
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            plane.close()
    if as_json:
        emit_json({"worker": runner.owner, **stats.to_dict()})
    else:
        counts = ", ".join(f"{k} {v}" for k, v in stats.to_dict().items())
        console.print(f"worker {runner.owner}: {counts}")


# --- replay and explain ---------------------------------------------------------------------------
@click.command()
@click.argument("run_id")
@app_option
@json_option
@click.pass_context
@handled
def replay(ctx: click.Context, run_id: str, apps: tuple[str, ...], as_json: bool) -> None:
    """Re-execute a run's workflow against its log, calling no tool or model.

    Reports each step as matching the log or diverging from it; exit 1 on any divergence.
    """
    from charter.engine import replay_run  # noqa: PLC0415

    config = config_of(ctx)
    with Client(config) as client:
        report = replay_run(client.store, run_id, _workflows(config, apps))
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            console.print(line, markup=False)
    if not report.ok:
        ctx.exit(1)


@click.command()
@click.argument("run_id")
@click.option("--step", type=int, help="Only this step.")
@json_option
@click.pass_context
@handled
def explain(ctx: click.Context, run_id: str, step: int | None, as_json: bool) -> None:
    """Answer the four incident questions for each step of a run.

    What context the agent saw, what policy allowed it, what tool call executed, and which
    check failed or held it.
    """
    from charter._explain import explain as explain_run  # noqa: PLC0415
    from charter._explain import render  # noqa: PLC0415

    with Client(config_of(ctx)) as client:
        report = explain_run(client.events(run_id), step=step)
    if as_json:
        emit_json(report)
        return
    for line in render(report):
        console.print(line, soft_wrap=True)
