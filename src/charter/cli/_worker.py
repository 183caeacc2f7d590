"""`charter worker`, `charter replay`, `charter explain`: durable runs carried on and checked."""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

import click

from charter._client import Client
from charter.cli._common import (
    EXIT_CHECK_FAILED,
    app_option,
    config_of,
    console,
    emit_json,
    handled,
    json_option,
    workflows_of,
)

if TYPE_CHECKING:
    from charter._plane import RunResult

__all__ = ["explain", "replay", "worker"]


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
                workflows_of(config, apps),
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
        report = replay_run(client.store, run_id, workflows_of(config, apps))
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            console.print(line, markup=False)
    if not report.ok:
        ctx.exit(EXIT_CHECK_FAILED)


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
