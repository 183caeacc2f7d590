"""A run's log read back as steps: what each step recorded, for resume, replay and explain."""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from charter._decision import Allowed, Decision, Denied, Failed, Proposed
from charter._events import (
    MODEL_CALL,
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    CheckRecorded,
    GateDecided,
    ModelResponded,
    RunResumed,
    RunStarted,
    RunSuspended,
    TimerStarted,
    ToolCallSpec,
    ToolCompleted,
    ToolProposed,
)
from charter.gate import RunState
from charter.models import ModelResponse, Usage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter._agent import Agent
    from charter._events import CheckName, Event
    from charter.models import Message
    from charter.privacy import Vault
    from charter.store import RunRecord, Store, StoredEvent

__all__ = [
    "CollectorPause",
    "History",
    "LoadedRun",
    "StepRecord",
    "request_hash",
    "response_from_json",
    "response_to_json",
]

StepKind = Literal["model", "tool", "timer"]


def request_hash(messages: list[Message]) -> str:
    """SHA-256 of the conversation sent to a model: the context the agent saw."""
    return hashlib.sha256(json.dumps([m.content for m in messages]).encode()).hexdigest()


def response_to_json(response: ModelResponse) -> dict[str, Any]:
    """A model response as JSON, for its encrypted raw copy."""
    return {
        "text": response.text,
        "tool_calls": [c.model_dump(mode="json") for c in response.tool_calls],
        "usage": [response.usage.prompt_tokens, response.usage.completion_tokens],
        "cost_usd": response.cost_usd,
        "confidence": response.confidence,
    }


def response_from_json(data: dict[str, Any]) -> ModelResponse:
    """The model response a raw copy holds: a model step's answer, replayed."""
    return ModelResponse(
        text=data["text"],
        tool_calls=tuple(ToolCallSpec.model_validate(c) for c in data["tool_calls"]),
        usage=Usage(prompt_tokens=data["usage"][0], completion_tokens=data["usage"][1]),
        cost_usd=data["cost_usd"],
        confidence=data.get("confidence"),
    )


ApprovalState = Literal["pending", "approved", "denied", "expired", "escalated"]


@dataclass(kw_only=True)
class StepRecord:
    """Everything the log holds about one step."""

    step: int
    kind: StepKind
    model: ModelResponded | None = None
    """The answer; None while a model step waits for an approval to go past its budget."""
    proposed: ToolProposed | None = None
    """The first proposal: what the workflow asked for, compared on replay."""
    decision_event: StoredEvent | None = None
    """The latest `gate.decided`, typed only when read (see `decided`)."""
    completed: ToolCompleted | None = None
    failed_check: CheckName | None = None
    timer: TimerStarted | None = None
    request_id: str | None = None
    """The latest approval request for this step (escalation replaces it)."""
    granted: int = 0
    verdicts: list[ApprovalDecided] = field(default_factory=list)
    verified_usd: float = 0.0
    """What the independent verifier's judgements of this step cost, every judgement counted."""

    @property
    def tool(self) -> str:
        """The tool the step called ('' for model and timer steps)."""
        return self.proposed.tool if self.proposed else ""

    @property
    def decided(self) -> GateDecided | None:
        """The latest decision (a held step is decided again once approved).

        Typed on first read: replaying a completed step never needs it, and it is the largest
        event of a step (it carries the checks).
        """
        if self.decision_event is None:
            return None
        event = self.decision_event.event
        assert isinstance(event, GateDecided)  # noqa: S101 - only gate.decided is kept here
        return event


@dataclass(kw_only=True)
class History:
    """A run's steps and approval states, folded from its events in order."""

    started: RunStarted
    steps: dict[int, StepRecord] = field(default_factory=dict)
    requests: dict[str, ApprovalState] = field(default_factory=dict)
    active_ms: int = 0
    """Running time before the latest suspension."""

    @classmethod
    def from_events(cls, events: Sequence[StoredEvent]) -> History:
        """Fold a run's stored events (the first is `run.started`)."""
        first = events[0].event
        if not isinstance(first, RunStarted):
            msg = f"run {events[0].run_id} does not begin with run.started"
            raise TypeError(msg)
        history = cls(started=first)
        for stored in events[1:]:
            if stored.kind == "gate.decided" and stored.step is not None:
                history._tool_step(stored.step).decision_event = stored
            else:
                history._apply(stored)
        return history

    def _tool_step(self, step: int) -> StepRecord:
        return self.steps.setdefault(step, StepRecord(step=step, kind="tool"))

    def _apply(self, stored: StoredEvent) -> None:
        match stored.event:
            case ModelResponded(purpose="verify") as e:
                # The verifier's judgement of a tool step: the step stays the tool's.
                self._tool_step(e.step).verified_usd += e.cost_usd
            case ModelResponded() as e:
                self.steps[e.step] = StepRecord(step=e.step, kind="model", model=e)
            case TimerStarted() as e:
                self.steps[e.step] = StepRecord(step=e.step, kind="timer", timer=e)
            case RunSuspended() as e:
                self.active_ms = e.active_ms
            case event:
                self._apply_tool(event, stored)

    def _apply_tool(self, event: Event, stored: StoredEvent) -> None:
        match event:
            case ToolProposed() as e:
                record = self._tool_step(e.step)
                record.proposed = record.proposed or e
            case CheckRecorded(outcome="fail") as e:  # logs written before checks were embedded
                self._tool_step(e.step).failed_check = e.check
            case GateDecided() as e:  # logs written before events had a step column
                self._tool_step(e.step).decision_event = stored
            case ApprovalRequested() as e:
                # A model call held for an approval to go past its budget stays a model step.
                kind: StepKind = "model" if e.tool == MODEL_CALL else "tool"
                self.steps.setdefault(
                    e.step, StepRecord(step=e.step, kind=kind)
                ).request_id = e.request_id
                self.requests[e.request_id] = "pending"
            case ApprovalDecided() as e:
                record = self._tool_step(e.step)
                record.granted = e.granted
                record.verdicts.append(e)
                self.requests[e.request_id] = e.status
            case ApprovalExpired() as e:
                self.requests[e.request_id] = "expired" if e.action == "deny" else "escalated"
            case ToolCompleted() as e:
                record = self._tool_step(e.step)
                record.completed = e
                failed = [c.check for c in e.checks if c.outcome == "fail"]
                record.failed_check = failed[0] if failed else record.failed_check
            case _:
                pass

    def approval_state(self, record: StepRecord) -> ApprovalState | None:
        """The state of the step's latest approval request, if it has one."""
        return None if record.request_id is None else self.requests[record.request_id]

    def recorded_decision(self, record: StepRecord, output: dict[str, object] | None) -> Decision:
        """The decision a finished tool step ended with; `output` is its raw output if allowed."""
        completed = record.completed
        if completed is not None:
            if completed.status == "ok":
                policies = completed.policy_ids
                if not policies and record.decided is not None:  # logs from before the field
                    policies = record.decided.policy_ids
                return Allowed(
                    step=record.step,
                    tool=completed.tool,
                    output=dict(output or {}),
                    policy_ids=tuple(policies),
                )
            return Failed(
                step=record.step,
                tool=completed.tool,
                check=record.failed_check or "execute",
                code=completed.error_code or "tool_error",
                reason=completed.error or "",
            )
        decided = record.decided
        assert decided is not None  # noqa: S101 - callers check the step is finished
        if decided.decision == "proposed":
            return Proposed(step=record.step, tool=decided.tool, diff=tuple(decided.diff))
        return Denied(
            step=record.step,
            tool=decided.tool,
            check=decided.check or "approval",
            reason=decided.reason,
        )


@dataclass(frozen=True, kw_only=True)
class LoadedRun:
    """What resuming or replaying a run reads: its record, history and raw payloads.

    The stored events themselves are dropped once folded: a long run's log held alive through
    the replay would only give the garbage collector more to walk.
    """

    record: RunRecord
    history: History
    last: Event
    """The log's latest event."""
    raw: dict[str, bytes]
    trace: tuple[str, str] = ("", "")
    """The run's trace id and root span id, as its first event recorded them."""
    waits: list[ApprovalWait] = field(default_factory=list)
    """Approvals decided since the run last ran: what it waited for, and how long."""

    @classmethod
    def load(cls, store: Store, run_id: str) -> LoadedRun:
        """Read a run; raises NotFoundError."""
        record = store.get_run(run_id)
        events = store.events(run_id)
        first = events[0].event
        return cls(
            record=record,
            history=History.from_events(events),
            last=events[-1].event,
            raw=store.raw_payloads(run_id),
            trace=(first.trace_id, first.span_id) if isinstance(first, RunStarted) else ("", ""),
            waits=_waits(events),
        )

    def state(self, agent: Agent) -> RunState:
        """The gate's view of this run, acting as its recorded principal."""
        record = self.record
        return RunState(
            run_id=record.run_id,
            agent=agent,
            tenant_id=record.tenant_id,
            principal_id=record.principal_id,
            initiator=record.initiator,
        )

    def task(self, vault: Vault) -> Any:  # noqa: ANN401 - any JSON value
        """The workflow's input, as given to `start`."""
        return vault.open(
            tenant_id=self.record.tenant_id,
            run_id=self.record.run_id,
            name="0:input",
            data=self.raw["0:input"],
        )


class CollectorPause:
    """Pauses the cyclic garbage collector while a run's log is read, folded and replayed.

    Resuming a long run allocates tens of thousands of objects, none in reference cycles, and
    every burst of allocations triggers collector passes that walk everything alive in the
    process: in a busy worker those passes cost more than the replay itself (measured in
    bench/durable.py). Reference counting still frees what it can meanwhile. The pause ends at
    the first new step (`end`), or when the run rests, whichever comes first.
    """

    def __init__(self) -> None:
        """Pause the collector (if it runs)."""
        self._paused = gc.isenabled()
        gc.disable()

    def end(self) -> None:
        """Let the collector run again; idempotent."""
        if self._paused:
            self._paused = False
            gc.enable()

    def __enter__(self) -> CollectorPause:
        """Use as a context manager: the pause ends with the block at the latest."""
        return self

    def __exit__(self, *exc: object) -> None:
        """End the pause."""
        self.end()


@dataclass(frozen=True, kw_only=True)
class ApprovalWait:
    """One approval a run waited for: the request, how it ended, who decided, and when."""

    request_id: str
    tier: str
    status: str
    approvers: list[str]
    requested_at: datetime
    decided_at: datetime


def _waits(events: Sequence[StoredEvent]) -> list[ApprovalWait]:
    """The approvals that ended since the run's last resume (those this resume follows)."""
    requested: dict[str, tuple[str, str]] = {}
    voters: dict[str, list[str]] = {}
    ended: list[ApprovalWait] = []
    for stored in events:
        event = stored.event
        match event:
            case RunResumed():
                ended.clear()  # waits before an earlier resume were reported by it
            case ApprovalRequested():
                requested[event.request_id] = (stored.ts, event.tier)
            case ApprovalDecided():
                voters.setdefault(event.request_id, []).append(event.approver)
                if event.status != "pending" and event.request_id in requested:
                    ended.append(_wait(requested, voters, event.request_id, event.status, stored))
            case ApprovalExpired() if event.request_id in requested:
                ended.append(_wait(requested, voters, event.request_id, "expired", stored))
            case _:
                pass
    return ended


def _wait(
    requested: dict[str, tuple[str, str]],
    voters: dict[str, list[str]],
    request_id: str,
    status: str,
    stored: StoredEvent,
) -> ApprovalWait:
    at, tier = requested[request_id]
    return ApprovalWait(
        request_id=request_id,
        tier=tier,
        status=status,
        approvers=voters.get(request_id, []),
        requested_at=datetime.fromisoformat(at),
        decided_at=datetime.fromisoformat(stored.ts),
    )
