"""Why each step of a run happened: the four incident questions, answered from its events alone.

For every tool step: what the agent saw when it proposed the call (context), what the policy
judged and on which values (policy), what ran (execution), and which check stopped or held it
(verdict). Model and timer steps are listed too, so step numbers read as in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    Check,
    CheckRecorded,
    GateDecided,
    RunFinished,
    RunResumed,
    RunSuspended,
    ToolCompleted,
    ToolProposed,
)
from charter.engine import History, StepRecord
from charter.exceptions import NotFoundError

if TYPE_CHECKING:
    from charter._events import ModelResponded
    from charter.store import StoredEvent

__all__ = ["explain", "render"]

_HEADER = {"agent", "workflow", "tenant_id", "principal_id", "contract_version", "contract_hash"}
_HEADER |= {"policy_hash", "model", "model_kind"}
_MODEL = {"model", "request_hash", "response_hash", "prompt_tokens", "completion_tokens"}
_MODEL |= {"cost_usd", "latency_ms"}
_SEEN = ("model", "request_hash", "response_hash")
_EXECUTION = {"status", "idempotency_key", "output", "output_hash", "latency_ms", "attempts"}
_EXECUTION |= {"error_code", "error", "cost_usd"}
_TIMER = {"seconds", "wake_at"}
_CHECK = ("outcome", "reason", "source")


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(kw_only=True)
class _Gate:
    """What `History` leaves out: every check, where each step's latest round began, approvals."""

    status: str = "running"
    checks: dict[int, list[Check]] = field(default_factory=dict)
    starts: dict[int, int] = field(default_factory=dict)
    """Step -> index into its checks where the latest round (its latest proposal) began."""
    approvals: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def round(self, step: int) -> list[Check]:
        return self.checks.get(step, [])[self.starts.get(step, 0) :]

    def fold(self, stored: StoredEvent) -> None:
        match stored.event:
            case ToolProposed() as e:
                self.starts[e.step] = len(self.checks.setdefault(e.step, []))
            case GateDecided() | ToolCompleted() as e:
                self.checks.setdefault(e.step, []).extend(e.checks)
            case CheckRecorded() as e:  # logs written before checks were embedded
                legacy = Check.model_validate(e.model_dump(exclude={"kind", "step"}))
                self.checks.setdefault(e.step, []).append(legacy)
            case ApprovalRequested() | ApprovalDecided() | ApprovalExpired() as e:
                _fold_approval(self.approvals.setdefault(e.step, {}), e)
            case RunSuspended() | RunResumed() as e:
                # A resumed run is running again, as the store's run record has it.
                self.status = "waiting" if isinstance(e, RunSuspended) else "running"
            case RunFinished() as e:
                self.status = e.status
            case _:
                pass


def _fold_approval(
    approvals: dict[str, dict[str, Any]],
    event: ApprovalRequested | ApprovalDecided | ApprovalExpired,
) -> None:
    match event:
        case ApprovalRequested():
            request = event.model_dump(include={"request_id", "tier", "role"})
            approvals[event.request_id] = request | {
                "needed": event.approvers,
                "decisions": [],
                "status": "pending",
            }
        case ApprovalDecided():
            vote = event.model_dump(include={"approver", "decision", "reason"})
            approvals[event.request_id]["decisions"].append(vote)
            approvals[event.request_id]["status"] = event.status
        case ApprovalExpired():
            status = "expired" if event.action == "deny" else "escalated"
            approvals[event.request_id]["status"] = status


def explain(events: list[StoredEvent], *, step: int | None = None) -> dict[str, Any]:
    """Answer context, policy, execution and verdict for each step of one run.

    Args:
        events: The run's stored events, in order (the first is `run.started`).
        step: Explain only this step.

    Raises:
        NotFoundError: The run has no events, or no step `step`.
    """
    if not events:
        raise NotFoundError("no events to explain", hint="is the run id right?")
    history, gate = History.from_events(events), _Gate()
    for stored in events:
        gate.fold(stored)
    records = dict(sorted(history.steps.items()))
    if step is not None:
        if step not in records:
            numbers = ", ".join(map(str, records)) or "none yet"
            raise NotFoundError(
                f"run {events[0].run_id} has no step {step}", hint=f"its steps are {numbers}"
            )
        records = {step: records[step]}
    started = history.started
    return {
        "run_id": events[0].run_id,
        **started.model_dump(include=_HEADER),
        "status": gate.status,
        "task": {"hash": started.task_hash, "excerpt": _excerpt(started.task)},
        "steps": [_step(r, history, gate) for r in records.values()],
    }


def _step(r: StepRecord, history: History, gate: _Gate) -> dict[str, Any]:
    if r.model is not None:
        m = r.model
        head = {"step": r.step, "kind": "model", "tool_calls": [c.tool for c in m.tool_calls]}
        return head | {"text_excerpt": _excerpt(m.text)} | m.model_dump(include=_MODEL)
    if r.timer is not None:
        return {"step": r.step, "kind": "timer"} | r.timer.model_dump(include=_TIMER)
    assert r.proposed is not None  # noqa: S101 - every tool step begins with its proposal
    return {
        "step": r.step,
        "kind": "tool",
        "tool": r.tool,
        "effect": r.proposed.effect,
        "decision": r.decided.decision if r.decided else None,
        "context": _context(r, history),
        "policy": _policy(r, gate),
        "execution": _execution(r),
        "verdict": _verdict(r, gate),
        "approvals": list(gate.approvals.get(r.step, {}).values()),
    }


def _context(r: StepRecord, history: History) -> dict[str, Any]:
    assert r.proposed is not None  # noqa: S101
    call_id, earlier = r.proposed.call_id, [s for n, s in history.steps.items() if n < r.step]
    asked = [s.model for s in earlier if s.model and call_id in _call_ids(s.model)]
    # Steps run one at a time (a held step suspends the run), so a lower step number means
    # the step finished first: these are the results the model could have read.
    m = max(asked, key=lambda model: model.step) if asked else None
    before = m.step if m else r.step
    sources = [
        {"step": s.step, "tool": s.tool, "output_hash": s.completed.output_hash}
        for s in sorted(earlier, key=lambda s: s.step)
        if s.completed and s.step < before
    ]
    return {
        "model_step": m.step if m else None,
        **(m.model_dump(include=set(_SEEN)) if m else dict.fromkeys(_SEEN)),
        "model_text_excerpt": _excerpt(m.text) if m else None,
        "arguments": r.proposed.arguments,
        "sources": sources,
        "task_hash": history.started.task_hash,
    }


def _call_ids(model: ModelResponded) -> set[str]:
    return {c.call_id for c in model.tool_calls}


def _policy(r: StepRecord, gate: _Gate) -> dict[str, Any]:
    checks = [c for c in gate.checks.get(r.step, []) if c.check == "policy"]
    if not checks:
        return {"reached": False, **dict.fromkeys(_CHECK), "policy_ids": [], "context": None}
    return {
        "reached": True,
        **checks[-1].model_dump(include=set(_CHECK)),
        "policy_ids": r.decided.policy_ids if r.decided else [],
        "context": checks[-1].detail,
    }


def _execution(r: StepRecord) -> dict[str, Any] | None:
    if r.completed is None or r.proposed is None:
        return None
    return {"input_hash": r.proposed.input_hash} | r.completed.model_dump(include=_EXECUTION)


def _verdict(r: StepRecord, gate: _Gate) -> dict[str, Any] | None:
    first = next((c for c in gate.round(r.step) if c.outcome != "pass"), None)
    decided = r.decided
    if decided and decided.decision == "denied" and (first is None or first.outcome != "deny"):
        # A refusal or an expiry denies with no check of its own: only gate.decided says so,
        # and the round's hold alone would tell the wrong story.
        return {
            "check": decided.check,
            "outcome": "deny",
            "reason": decided.reason,
            "source": r.request_id or "",
        }
    return first.model_dump(include={"check", *_CHECK}) if first else None


# --- rendering ----------------------------------------------------------------------------------
_STYLE = {"allowed": "green", "pass": "green", "ok": "green", "approved": "green"}
_STYLE |= {"denied": "red", "deny": "red"}


def _e(value: object) -> str:
    return escape(str(value))


def _styled(word: object) -> str:
    return f"[{_STYLE.get(str(word), 'yellow')}]{_e(word)}[/]"


def render(report: dict[str, Any]) -> list[str]:
    """Readable lines with rich markup: the run, then one block per step; free text escaped."""
    r = report
    who = f"{_e(r['agent'])} ({_e(r['workflow'])}) for {_e(r['tenant_id'])}"
    rules = f"contract {_e(r['contract_version'])} {r['contract_hash'][:12]}"
    rules += f", policy {r['policy_hash'][:12]}, model {_e(r['model'])} ({r['model_kind']})"
    lines = [
        f"[bold]run {_e(r['run_id'])}[/] {_e(r['status'])}: {who} as {_e(r['principal_id'])}",
        f"[dim]{rules}[/]",
        f"task: {_e(r['task']['excerpt'][:80])} [dim]{r['task']['hash'][:12]}[/]",
    ]
    for s in r["steps"]:
        lines.extend(_RENDERERS[s["kind"]](s))
    return lines


def _render_model(s: dict[str, Any]) -> list[str]:
    calls = ", ".join(s["tool_calls"]) or "no tool calls"
    text = f" “{_e(s['text_excerpt'][:60])}”" if s["text_excerpt"] else ""
    usage = f"{s['prompt_tokens']}+{s['completion_tokens']} tok, ${s['cost_usd']:.5f}"
    request = s["request_hash"][:12]
    return [f"[bold]step {s['step']}[/] model: {_e(calls)}{text} [dim]({usage}, {request})[/]"]


def _render_timer(s: dict[str, Any]) -> list[str]:
    return [f"[bold]step {s['step']}[/] timer: sleeps {s['seconds']:g}s, until {s['wake_at'][:19]}"]


def _render_tool(s: dict[str, Any]) -> list[str]:
    return [
        f"[bold]step {s['step']}[/] {_e(s['tool'])} ({_e(s['effect'])}): {_styled(s['decision'])}",
        f"   context:  {_render_context(s['context'])}",
        f"   policy:   {_render_policy(s['policy'])}",
        f"   executed: {_render_execution(s['execution'])}",
        f"   verdict:  {_render_verdict(s['verdict'])}",
        *(
            f"   approval: {_e(a['request_id'])} {_e(a['tier'])} needs {a['needed']} "
            f"{_e(a['role'])}(s): {_styled(a['status'])}"
            + "".join(f"; {_e(d['approver'])} {d['decision']}s" for d in a["decisions"])
            for a in s["approvals"]
        ),
    ]


def _render_context(c: dict[str, Any]) -> str:
    seen = "no model turn" if c["model_step"] is None else f"model step {c['model_step']}"
    request = f" [dim](request {c['request_hash'][:12]})[/]" if c["request_hash"] else ""
    read = ", ".join(f"step {x['step']} {_e(x['tool'])}" for x in c["sources"]) or "none"
    return f"{seen}{request}, sources: {read}; arguments {_e(c['arguments'])}"


def _render_policy(p: dict[str, Any]) -> str:
    if not p["reached"]:
        return "[dim]not reached[/]"
    ids = ", ".join(p["policy_ids"]) or "no policy matched"
    values = p["context"].get("context", {})
    return f"{_styled(p['outcome'])} {_e(p['reason'])} [dim]<{_e(ids)}> {_e(values)}[/]"


def _render_execution(x: dict[str, Any] | None) -> str:
    if x is None:
        return "[dim]not executed[/]"
    result = _styled("ok") if x["status"] == "ok" else f"[red]{_e(x['error_code'])}[/]"
    return (
        f"{result} in {x['latency_ms']:.1f} ms, {x['attempts']} attempt(s), output "
        f"{_e(x['output'])} [dim]key {_e(x['idempotency_key'])}[/]"
    )


def _render_verdict(v: dict[str, Any] | None) -> str:
    if v is None:
        return "[green]every check passed[/]"
    return (
        f"{_e(v['check'])} {_styled(v['outcome'])}: {_e(v['reason'])} [dim]<{_e(v['source'])}>[/]"
    )


_RENDERERS = {"model": _render_model, "timer": _render_timer, "tool": _render_tool}
