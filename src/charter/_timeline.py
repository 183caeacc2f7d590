"""One readable line per event, for `charter runs show`."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from charter._events import Check, Event
    from charter.store import StoredEvent

__all__ = ["describe"]

_OUTCOME_STYLE = {
    "pass": "green",
    "deny": "red",
    "hold": "yellow",
    "propose": "cyan",
    "fail": "red",
}


def describe(stored: StoredEvent) -> str:
    """`#seq time kind: summary`, with rich markup; free text is escaped."""
    head = f"[dim]#{stored.seq:<3} {stored.ts[11:23]}[/] "
    match stored.event:
        case RunStarted() as e:
            body = f"run started for {e.tenant_id} as {e.principal_id}: {escape(e.task[:80])!s}"
        case TimerStarted() as e:
            body = f"[bold]step {e.step}[/] sleeps {e.seconds:g}s, until {e.wake_at[:19]}"
        case RunSuspended() as e:
            body = f"run [yellow]waiting[/]: {escape(e.reason)}"
        case RunResumed() as e:
            body = (
                f"run resumed by {escape(e.worker)} ({escape(e.reason)}, "
                f"{e.replayed_steps} step(s) answered from the log)"
            )
        case RunFinished() as e:
            body = f"run {e.status}: [bold]{e.outcome}[/] {escape(e.reason)} (${e.cost_usd:.4f})"
        case event:
            body = _describe_step(event)
    return head + body


def _describe_step(event: Event) -> str:  # noqa: PLR0911 - one line per event kind
    match event:
        case ModelResponded() as e:
            # Tool names are the model's to choose: never markup.
            calls = escape(", ".join(c.tool for c in e.tool_calls)) or "no tool calls"
            text = f" “{escape(e.text[:60])}”" if e.text else ""
            return (
                f"[bold]step {e.step}[/] model: {calls}{text} "
                f"[dim]({e.prompt_tokens}+{e.completion_tokens} tok, ${e.cost_usd:.5f})[/]"
            )
        case ToolProposed() as e:
            return (
                f"[bold]step {e.step}[/] proposes {escape(e.tool)} ({escape(e.effect)}) "
                f"{escape(str(e.arguments))}"
            )
        case CheckRecorded() as e:
            return _check_line(e)
        case GateDecided() as e:
            style = {"allowed": "green", "denied": "red"}.get(e.decision, "yellow")
            decided = f"   decision  [{style}]{e.decision}[/] {escape(e.reason)}"
            return "\n".join([*map(_check_line, e.checks), decided])
        case ApprovalRequested() as e:
            return (
                f"   approval  {e.request_id} needs {e.approvers} {e.role}(s) of tier {e.tier}, "
                f"expires {e.expires_at[:16]}"
            )
        case ToolCompleted() as e:
            result = "ok" if e.status == "ok" else f"[red]{e.error_code}[/]"
            executed = (
                f"   executed  {escape(e.tool)} {result} in {e.latency_ms:.1f} ms, "
                f"attempt(s) {e.attempts} "
                f"[dim]key {e.idempotency_key}[/]"
            )
            return "\n".join([*map(_check_line, e.checks), executed])
        case ApprovalDecided() as e:
            style = "green" if e.decision == "approve" else "red"
            return (
                f"   approval  {e.request_id} [{style}]{e.decision}[/] by {escape(e.approver)}: "
                f"{escape(e.reason)} ({e.granted} of {e.needed}, {e.status})"
            )
        case ApprovalExpired() as e:
            then = f" to {e.escalated_to}" if e.escalated_to else ""
            return f"   approval  {e.request_id} [yellow]expired[/]: {e.action}{then}"
        case _:
            return escape(event.kind)


def _check_line(check: Check | CheckRecorded) -> str:
    style = _OUTCOME_STYLE[check.outcome]
    return (
        f"   {check.check:<11} [{style}]{check.outcome:<7}[/] {escape(check.reason)} "
        f"[dim]<{escape(check.source)}>[/]"
    )
