"""The event log schema: one frozen model per event kind, one union, one adapter.

A run's truth is its events. Payloads are written already redacted; the store adds the run id,
sequence number, time and hash-chain links around them (see `charter.store`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

__all__ = [
    "ApprovalRequested",
    "CheckName",
    "CheckOutcome",
    "CheckRecorded",
    "Event",
    "EventAdapter",
    "GateDecided",
    "ModelResponded",
    "Outcome",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "ToolCallSpec",
    "ToolCompleted",
    "ToolProposed",
]

CheckName = Literal[
    "kill_switch",
    "principal",
    "grant",
    "schema",
    "policy",
    "budget",
    "verifiers",
    "approval",
    "execute",
    "output",
    "record",
]
"""The gate's stages, in the order they run."""

CheckOutcome = Literal["pass", "deny", "hold", "propose", "fail"]
"""`hold`: needs an approval; `propose`: draft stage, nothing executes; `fail`: execution failed."""

RunStatus = Literal["running", "waiting", "completed", "failed"]
"""`waiting`: held for an approval; nothing executes until a decision arrives."""


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
    """The task as the agent received it, redacted."""
    task_hash: str


class ToolCallSpec(BaseModel):
    """One tool call as a model asked for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    call_id: str
    tool: str
    arguments: dict[str, JsonValue]


class ModelResponded(_Event):
    """The model answered one turn."""

    kind: Literal["model.responded"] = "model.responded"
    turn: int
    model: str
    request_hash: str
    """SHA-256 of the messages and tool specs sent: what context the agent saw."""
    text: str
    tool_calls: list[ToolCallSpec]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float


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


class CheckRecorded(_Event):
    """One gate stage's result for one step."""

    kind: Literal["check.recorded"] = "check.recorded"
    step: int
    check: CheckName
    outcome: CheckOutcome
    reason: str
    source: str
    """What decided: a policy id, a contract key path, a verifier name."""
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


Outcome = Literal["resolved", "escalated", "failed", "budget_exceeded", "killed", "pending"]
"""How a run ended; `pending` while it waits for a human."""


class RunFinished(_Event):
    """The run reached a resting state: finished, or waiting for a human."""

    kind: Literal["run.finished"] = "run.finished"
    status: RunStatus
    outcome: Outcome
    reason: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


Event = Annotated[
    RunStarted
    | ModelResponded
    | ToolProposed
    | CheckRecorded
    | GateDecided
    | ApprovalRequested
    | ToolCompleted
    | RunFinished,
    Field(discriminator="kind"),
]
"""Every event kind; the log schema is this union."""

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
"""(De)serialises any event by its `kind`."""


def event_payload(event: Event) -> dict[str, Any]:
    """The JSON-ready payload the store hashes and writes."""
    return event.model_dump(mode="json")
