"""The durable run engine: workflows as plain functions of a run context, resumed from the log."""

from __future__ import annotations

from charter.engine._context import Context, Finish, RunContext, Stop, Suspend
from charter.engine._history import CollectorPause, History, LoadedRun, StepRecord
from charter.engine._replay import ReplayContext, ReplayReport, StepReplay, replay_run
from charter.engine._result import RunResult
from charter.engine._worker import Worker, WorkerStats
from charter.engine._workflow import Workflow, WorkflowFn, agent_loop, load_workflows, render

__all__ = [
    "CollectorPause",
    "Context",
    "Finish",
    "History",
    "LoadedRun",
    "ReplayContext",
    "ReplayReport",
    "RunContext",
    "RunResult",
    "StepRecord",
    "StepReplay",
    "Stop",
    "Suspend",
    "Worker",
    "WorkerStats",
    "Workflow",
    "WorkflowFn",
    "agent_loop",
    "load_workflows",
    "render",
    "replay_run",
]
