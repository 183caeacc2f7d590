"""The event log schema: one frozen model per event kind, one union, one adapter.

A run's truth is its events. Payloads are written already redacted; the store adds the run id,
sequence number, time and hash-chain links around them (see `charter.store`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

__all__ = [
    "MODEL_CALL",
    "OUTCOMES",
    "SUCCESSFUL_OUTCOMES",
    "TIMER",
    "ApprovalDecided",
    "ApprovalExpired",
    "ApprovalRequested",
    "Check",
    "CheckName",
    "CheckOutcome",
    "CheckRecorded",
    "Event",
    "EventAdapter",
    "GateDecided",
    "ModelResponded",
    "Outcome",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "RunSuspended",
    "TimerStarted",
    "ToolCallSpec",
    "ToolCompleted",
    "ToolProposed",
]

CheckName = Literal[
    "kill_switch",
    "principal",
    "grant",
    "input_size",
    "schema",
    "policy",
    "rate_limit",
    "budget",
    "verifiers",
    "verifier",
    "approval",
    "execute",
    "output",
    "record",
]
"""The gate's stages, in the order they run."""

CheckOutcome = Literal["pass", "deny", "hold", "propose", "fail"]
"""`hold`: needs an approval; `propose`: draft stage, nothing executes; `fail`: execution failed."""

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled"]
"""`running`: runnable or being run by a worker; `waiting`: suspended on an approval or a timer,
holding no thread; the other three are final."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStarted(_Event):
    """A run began: who acts, under which contract and policy, with which model."""

    kind: Literal["run.started"] = "run.started"
    agent: str
    workflow: str
    tenant_id: str
    principal_id: str
    contract_version: str
    contract_hash: str
    policy_hash: str
    model: str
    model_kind: Literal["scripted", "provider"]
    """'scripted' marks a model that plays back a declared script (tests, the offline demo)."""
    budget_usd: float | None
    environment: str
    autonomy: str
    task: str
    """The workflow's input (for agents, the task) as the agent received it, redacted."""
    task_hash: str
    initiator: str = ""
    """Who started the run (a person or system); they may not approve its actions."""
    trace_id: str = ""
    """The run's OpenTelemetry trace (hex), every stretch of its work in it; empty when
    nothing recorded traces."""
    span_id: str = ""
    """The run's root span (hex), the parent of each stretch of work."""


class ToolCallSpec(BaseModel):
    """One tool call as a model asked for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    call_id: str
    tool: str
    arguments: dict[str, JsonValue]


class ModelResponded(_Event):
    """The model answered one turn."""

    kind: Literal["model.responded"] = "model.responded"
    step: int
    model: str
    request_hash: str
    """SHA-256 of the messages sent: what context the agent saw. Replay compares it."""
    response_hash: str = ""
    """SHA-256 of the raw response, whose encrypted copy replays the step."""
    text: str
    tool_calls: list[ToolCallSpec]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    purpose: Literal["act", "verify"] = "act"
    """`verify`: the independent verifier judging an action proposal (verification cost)."""
    cached: bool = False
    """Answered from the artifact cache: no provider call, zero cost."""
    route: str | None = None
    """The contract's routing rule that picked the model, if one did."""
    cached_from: str | None = None
    """For a cached answer: `run_id/step` of the step that first produced it."""


class ToolProposed(_Event):
    """The agent proposed a tool call; the gate is about to judge it."""

    kind: Literal["tool.proposed"] = "tool.proposed"
    step: int
    call_id: str
    tool: str
    effect: str
    arguments: dict[str, JsonValue]
    input_hash: str
    idempotency_key: str


class Check(BaseModel):
    """One gate stage's result for one step, as recorded inside the event that concludes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    check: CheckName
    outcome: CheckOutcome
    reason: str
    source: str
    """What decided: a policy id, a contract key path, a verifier name."""
    detail: dict[str, JsonValue] = Field(default_factory=dict)
    duration_us: int


class CheckRecorded(_Event):
    """One gate stage's result as an event of its own. Read, never written.

    Logs written before `gate.decided` and `tool.completed` carried their checks hold these.
    """

    kind: Literal["check.recorded"] = "check.recorded"
    step: int
    check: CheckName
    outcome: CheckOutcome
    reason: str
    source: str
    detail: dict[str, JsonValue] = Field(default_factory=dict)
    duration_us: int


class GateDecided(_Event):
    """The gate's decision for one step, before anything executes."""

    kind: Literal["gate.decided"] = "gate.decided"
    step: int
    tool: str
    decision: Literal["allowed", "denied", "needs_approval", "proposed"]
    check: CheckName | None
    """The stage that denied or held; None when allowed."""
    reason: str
    policy_ids: list[str]
    tier: str | None = None
    diff: list[dict[str, JsonValue]] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    """Every decision stage that ran, in order, up to the one that denied, held or proposed."""


class ApprovalRequested(_Event):
    """A step is held until enough approvers of a role decide."""

    kind: Literal["approval.requested"] = "approval.requested"
    step: int
    request_id: str
    tool: str
    tier: str
    role: str
    approvers: int
    expires_at: str
    summary: str
    diff: list[dict[str, JsonValue]]
    excluded: list[str] = Field(default_factory=list)
    """Who may not approve (separation of duties): the agent's owner and the run's initiator."""


class ApprovalDecided(_Event):
    """One approver's decision on a held step. `status` is the request's state after it."""

    kind: Literal["approval.decided"] = "approval.decided"
    step: int
    request_id: str
    decision: Literal["approve", "deny"]
    approver_id: str
    approver: str
    reason: str
    granted: int
    """Distinct approvals so far, this one included."""
    needed: int
    status: Literal["pending", "approved", "denied"]


class ApprovalExpired(_Event):
    """Nobody decided in time: the step is denied, or escalated to the next tier."""

    kind: Literal["approval.expired"] = "approval.expired"
    step: int
    request_id: str
    action: Literal["deny", "escalate"]
    escalated_to: str | None = None
    """The new request's id when escalated."""


class TimerStarted(_Event):
    """A durable timer: the run sleeps, holding no thread, until `wake_at`."""

    kind: Literal["timer.started"] = "timer.started"
    step: int
    seconds: float
    wake_at: str


class RunSuspended(_Event):
    """The run waits for approvals or a timer; a worker resumes it when they resolve."""

    kind: Literal["run.suspended"] = "run.suspended"
    waiting_on: list[str]
    """Approval request ids, or `timer`."""
    wake_at: str | None = None
    reason: str
    active_ms: int
    """Time spent running so far, across resumes; the run timeout counts only this."""


class RunResumed(_Event):
    """A worker picked the run up: first start, after a suspension, or after a crash."""

    kind: Literal["run.resumed"] = "run.resumed"
    worker: str
    reason: str
    replayed_steps: int
    """Steps answered from the log before new work began."""
    span_id: str = ""
    """This stretch of work's span in the run's trace (hex); empty when not traced."""


class ToolCompleted(_Event):
    """A tool call executed (or failed to) and its output was checked."""

    kind: Literal["tool.completed"] = "tool.completed"
    step: int
    tool: str
    status: Literal["ok", "error"]
    output: dict[str, JsonValue] | None
    output_hash: str | None
    error_code: str | None = None
    error: str | None = None
    attempts: int
    latency_ms: float
    cost_usd: float
    idempotency_key: str
    checks: list[Check] = Field(default_factory=list)
    """The execute, output and record stages."""
    policy_ids: list[str] = Field(default_factory=list)
    """The policies that allowed the call, as its decision recorded them."""
    cached: bool = False
    """Answered from the artifact cache: the tool was not called, and the call cost nothing."""
    cached_from: str | None = None
    """For a cached answer: `run_id/step` of the call that first produced it."""


Outcome = Literal[
    "resolved",
    "deflected",
    "escalated",
    "failed",
    "budget_exceeded",
    "killed",
    "abandoned",
    "pending",
]
"""How a run ended; see `OUTCOMES`. `pending` while it waits for a human."""

MODEL_CALL = "(model)"
"""What a model call is named where a tool's name goes: kill-switch scopes, and the approval
request that lets a model call go past its budget. No tool can take it."""

TIMER = "(timer)"
"""What a durable timer is named where a tool's name goes: a kill switch without a tool stops
(or pauses) a run at its next timer as at its next call."""

OUTCOMES: dict[str, str] = {
    "resolved": "the agent did the work itself",
    "deflected": "the need was met without the work (answered, redirected, self-served)",
    "escalated": "handed to a human to finish",
    "failed": "ended by an error",
    "budget_exceeded": "stopped by a spend cap",
    "killed": "stopped by a kill switch",
    "abandoned": "cancelled by an operator",
}
"""The outcome taxonomy: every final outcome and what it means. `resolved` and `deflected`
are the successful ones."""

SUCCESSFUL_OUTCOMES = frozenset({"resolved", "deflected"})
"""Outcomes that count as a unit of work bought, for cost per outcome."""


class RunFinished(_Event):
    """The run ended: completed, failed or cancelled."""

    kind: Literal["run.finished"] = "run.finished"
    status: Literal["completed", "failed", "cancelled"]
    outcome: Outcome
    reason: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    code: str | None = None
    """Why a failed run failed, as a stable code (`nondeterminism`, `run_timeout`, ...)."""


Event = Annotated[
    RunStarted
    | ModelResponded
    | ToolProposed
    | CheckRecorded
    | GateDecided
    | ApprovalRequested
    | ApprovalDecided
    | ApprovalExpired
    | TimerStarted
    | ToolCompleted
    | RunSuspended
    | RunResumed
    | RunFinished,
    Field(discriminator="kind"),
]
"""Every event kind; the log schema is this union."""

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
"""(De)serialises any event by its `kind`."""


def event_payload(event: Event) -> dict[str, Any]:
    """The JSON-ready payload the store hashes and writes."""
    return event.model_dump(mode="json")
