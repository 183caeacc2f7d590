"""Where a run rests after the engine let go of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charter._decision import Decision

__all__ = ["RunResult"]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Where a run rests after `run` or `resume`: ended, or waiting, and what the gate decided."""

    run_id: str
    status: str
    outcome: str
    reason: str
    decisions: list[Decision] = field(default_factory=list)
    """Every tool decision of the run, including those answered from the log."""
    cost_usd: float = 0.0
    waiting_on: list[str] = field(default_factory=list)
    """Approval request ids (or `timer`) when the run is waiting."""
