"""Why each step of a run happened: the four incident questions, answered from its events alone.

For every tool step: what the agent saw when it proposed the call (context), what the policy
judged and on which values (policy), what ran (execution), and which check stopped or held it
(verdict). Model and timer steps are listed too, so step numbers read like the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    CheckRecorded,
    GateDecided,
    ModelResponded,
    RunFinished,
    RunResumed,
    RunStarted,
    RunSuspended,
    TimerStarted,
    ToolCompleted,
    ToolProposed,
)
from charter.exceptions import NotFoundError
from charter.privacy import redact

if TYPE_CHECKING:
    from charter._events import Event
    from charter.store import StoredEvent

__all__ = ["explain", "render"]

_EXCERPT = 200
_HEADER = ["agent", "workflow", "tenant_id", "principal_id", "contract_version", "contract_hash"]
_HEADER += ["policy_hash", "model", "model_kind"]
_MODEL_FIELDS = {"model", "request_hash", "response_hash", "prompt_tokens", "completion_tokens"}
_MODEL_FIELDS |= {"cost_usd", "latency_ms"}
_EXECUTION_FIELDS = {"status", "idempotency_key", "output", "output_hash", "latency_ms"}
_EXECUTION_FIELDS |= {"attempts", "error_code", "error", "cost_usd"}
_CHECK_FIELDS = ("outcome", "reason", "source")
_SEEN_FIELDS = ("model", "request_hash", "response_hash")


def _excerpt(text: str, limit: int = _EXCERPT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_ids(model: ModelResponded) -> set[str]:
    return {c.call_id for c in model.tool_calls}


@dataclass(kw_only=True)
class _ToolStep:
    proposed: ToolProposed
    """The first proposal; a re-decision after approval proposes the same call again."""
    seen: ModelResponded | None
    sources: list[dict[str, Any]]
    round: list[CheckRecorded] = field(default_factory=list)
    """The checks since the latest proposal: the decision round that counts."""
    policy: CheckRecorded | None = None
    decided: GateDecided | None = None
    completed: ToolCompleted | None = None
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(kw_only=True)
class _Run:
    started: RunStarted | None = None
    status: str = "running"
    models: dict[int, ModelResponded] = field(default_factory=dict)
    timers: dict[int, TimerStarted] = field(default_factory=dict)
    tools: dict[int, _ToolStep] = field(default_factory=dict)
    done: list[dict[str, Any]] = field(default_factory=list)
    """Tool steps completed so far, in log order: what a model step could have read."""
    sources: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        match event:
            case RunStarted():
                self.started = event
            case ModelResponded():
                self.models[event.step] = event
                self.sources[event.step] = list(self.done)
            case TimerStarted():
                self.timers[event.step] = event
            case RunSuspended():
                self.status = "waiting"
            case RunResumed() | RunFinished():
                self.status = event.status if isinstance(event, RunFinished) else "running"
            case ToolProposed():
                self._propose(event)
            case _:
                self._apply_tool(event)

    def _propose(self, event: ToolProposed) -> None:
        if event.step not in self.tools:
            # The latest turn asking for this call_id: what the agent saw when it proposed it.
            asked = [m for m in self.models.values() if event.call_id in _call_ids(m)]
            seen = asked[-1] if asked else None
            sources = self.sources[seen.step] if seen else list(self.done)
            self.tools[event.step] = _ToolStep(proposed=event, seen=seen, sources=sources)
        self.tools[event.step].round = []

    def _apply_tool(self, event: Event) -> None:
        match event:
            case CheckRecorded():
                tool = self.tools[event.step]
                tool.round.append(event)
                tool.policy = event if event.check == "policy" else tool.policy
            case GateDecided():
                self.tools[event.step].decided = event
            case ApprovalRequested() | ApprovalDecided() | ApprovalExpired():
                _fold_approval(self.tools[event.step].approvals, event)
            case ToolCompleted():
                self.tools[event.step].completed = event
                self.done.append(
                    {"step": event.step, "tool": event.tool, "output_hash": event.output_hash}
                )
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
        events: The run's stored events, in order.
        step: Explain only this step.

    Raises:
        NotFoundError: The run has no step `step`.
    """
    run = _Run()
    for stored in events:
        run.apply(stored.event)
    run_id = events[0].run_id if events else None
    steps = {n: _model_step(m) for n, m in run.models.items()}
    steps |= {n: t.model_dump(exclude={"kind"}) | {"kind": "timer"} for n, t in run.timers.items()}
    steps |= {n: _tool_step(t, run.started) for n, t in run.tools.items()}
    if step is not None:
        if step not in steps:
            numbers = ", ".join(str(n) for n in sorted(steps)) or "none yet"
            raise NotFoundError(f"run {run_id} has no step {step}", hint=f"its steps: {numbers}")
        steps = {step: steps[step]}
    started = run.started
    header = {name: getattr(started, name, None) for name in _HEADER}
    task = {"hash": started.task_hash, "excerpt": _excerpt(started.task)} if started else None
    return {"run_id": run_id, **header, "status": run.status, "task": task} | {
        "steps": [steps[n] for n in sorted(steps)]
    }


def _model_step(m: ModelResponded) -> dict[str, Any]:
    calls = [c.tool for c in m.tool_calls]
    head = {"step": m.step, "kind": "model", "tool_calls": calls}
    return head | {"text_excerpt": _excerpt(m.text)} | m.model_dump(include=_MODEL_FIELDS)


def _tool_step(t: _ToolStep, started: RunStarted | None) -> dict[str, Any]:
    p = t.proposed
    return {
        "step": p.step,
        "kind": "tool",
        "tool": p.tool,
        "effect": p.effect,
        "decision": t.decided.decision if t.decided else None,
        "context": _context(t, started),
        "policy": _policy(t),
        "execution": _execution(t),
        "verdict": _verdict(t),
        "approvals": list(t.approvals.values()),
    }


def _context(t: _ToolStep, started: RunStarted | None) -> dict[str, Any]:
    m = t.seen
    seen = m.model_dump(include=set(_SEEN_FIELDS)) if m else dict.fromkeys(_SEEN_FIELDS)
    return {
        "model_step": m.step if m else None,
        **seen,
        "model_text_excerpt": _excerpt(m.text) if m else None,
        "arguments": t.proposed.arguments,
        "sources": t.sources,
        "task_hash": started.task_hash if started else None,
    }


def _policy(t: _ToolStep) -> dict[str, Any]:
    check = t.policy
    if check is None:
        unreached = dict.fromkeys(_CHECK_FIELDS)
        return {"reached": False, **unreached, "policy_ids": [], "context": None}
    return {
        "reached": True,
        **check.model_dump(include=set(_CHECK_FIELDS)),
        "policy_ids": t.decided.policy_ids if t.decided else [],
        # The gate writes check details unredacted, and resource ids can carry personal data.
        "context": redact(check.detail),
    }


def _execution(t: _ToolStep) -> dict[str, Any] | None:
    if t.completed is None:
        return None
    return {"input_hash": t.proposed.input_hash} | t.completed.model_dump(include=_EXECUTION_FIELDS)


def _verdict(t: _ToolStep) -> dict[str, Any] | None:
    first = next((c for c in t.round if c.outcome != "pass"), None)
    decided = t.decided
    if decided and decided.decision == "denied" and (first is None or first.outcome != "deny"):
        # A refusal or an expiry denies with no check of its own; only gate.decided says so,
        # and the round's hold would tell the wrong story.
        request = next(reversed(t.approvals), None)
        source = f"approval:{request}" if request else "approval"
        return {
            "check": decided.check,
            "outcome": "deny",
            "reason": decided.reason,
            "source": source,
        }
    return first.model_dump(include={"check", *_CHECK_FIELDS}) if first else None


# --- rendering ----------------------------------------------------------------------------------
_STYLE = {"allowed": "green", "pass": "green", "denied": "red", "deny": "red", "fail": "red"}


def _e(value: object) -> str:
    return escape(str(value))


def _styled(word: object) -> str:
    style = _STYLE.get(str(word), "yellow")
    return f"[{style}]{_e(word)}[/]"


def render(report: dict[str, Any]) -> list[str]:
    """Readable lines with rich markup: the run, then one block per step; free text escaped."""
    r, task = report, report["task"]
    who = f"{_e(r['agent'])} ({_e(r['workflow'])}) for {_e(r['tenant_id'])}"
    lines = [
        f"[bold]run {_e(r['run_id'])}[/] {_e(r['status'])}: {who} as {_e(r['principal_id'])}",
        f"[dim]contract {_e(r['contract_version'])} {str(r['contract_hash'])[:12]}, policy "
        + f"{str(r['policy_hash'])[:12]}, model {_e(r['model'])} ({r['model_kind']})[/]",
    ]
    if task:
        lines.append(f"task: {_e(task['excerpt'][:80])} [dim]{task['hash'][:12]}[/]")
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
    head = f"[bold]step {s['step']}[/] {_e(s['tool'])} ({_e(s['effect'])}): "
    lines = [
        head + _styled(s["decision"]),
        "   context:  " + _render_context(s["context"]),
        "   policy:   " + _render_policy(s["policy"]),
        "   executed: " + _render_execution(s["execution"]),
        "   verdict:  " + _render_verdict(s["verdict"]),
    ]
    lines.extend(
        f"   approval: {_e(a['request_id'])} {_e(a['tier'])}, {a['needed']} {_e(a['role'])}(s), "
        f"{_styled(a['status'])}"
        + "".join(f"; {_e(d['approver'])} {d['decision']}s" for d in a["decisions"])
        for a in s["approvals"]
    )
    return lines


def _render_context(c: dict[str, Any]) -> str:
    seen = "no model turn" if c["model_step"] is None else f"model step {c['model_step']}"
    request = f" [dim]request {c['request_hash'][:12]}[/]" if c["request_hash"] else ""
    read = ", ".join(f"step {x['step']} {_e(x['tool'])}" for x in c["sources"]) or "nothing"
    return f"{seen}{request}, sources {read}; arguments {_e(c['arguments'])}"


def _render_policy(p: dict[str, Any]) -> str:
    if not p["reached"]:
        return "[dim]not reached[/]"
    ids = ", ".join(p["policy_ids"]) or "no policy matched"
    context = (p["context"] or {}).get("context", {})
    return f"{_styled(p['outcome'])} {_e(p['reason'])} [dim]<{_e(ids)}> {_e(context)}[/]"


def _render_execution(x: dict[str, Any] | None) -> str:
    if x is None:
        return "[dim]not executed[/]"
    result = _styled(x["status"]) if x["status"] == "ok" else f"[red]{_e(x['error_code'])}[/]"
    return (
        f"{result} in {x['latency_ms']:.1f} ms, {x['attempts']} attempt(s), "
        f"output {_e(x['output'])} [dim]key {_e(x['idempotency_key'])}[/]"
    )


def _render_verdict(v: dict[str, Any] | None) -> str:
    if v is None:
        return "[green]every check passed[/]"
    return (
        f"{_e(v['check'])} {_styled(v['outcome'])}: {_e(v['reason'])} [dim]<{_e(v['source'])}>[/]"
    )


_RENDERERS = {"model": _render_model, "timer": _render_timer, "tool": _render_tool}
