"""The durable run engine: workflows as plain functions of a run context, resumed from the log."""

from __future__ import annotations

from charter.engine._context import Finish, RunContext, Stop, Suspend
from charter.engine._history import History, StepRecord
from charter.engine._workflow import Workflow, WorkflowFn, agent_loop, load_workflows, render

__all__ = [
    "Finish",
    "History",
    "RunContext",
    "StepRecord",
    "Stop",
    "Suspend",
    "Workflow",
    "WorkflowFn",
    "agent_loop",
    "load_workflows",
    "render",
]
