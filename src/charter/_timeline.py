"""One readable line per event, for `charter runs show`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from charter._events import (
    ApprovalRequested,
    CheckRecorded,
    GateDecided,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCompleted,
    ToolProposed,
)

if TYPE_CHECKING:
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
        case ModelResponded() as e:
            calls = ", ".join(c.tool for c in e.tool_calls) or "no tool calls"
            text = f" “{escape(e.text[:60])}”" if e.text else ""
            body = (
                f"model turn {e.turn}: {calls}{text} "
                f"[dim]({e.prompt_tokens}+{e.completion_tokens} tok, ${e.cost_usd:.5f})[/]"
            )
        case ToolProposed() as e:
            body = (
                f"[bold]step {e.step}[/] proposes {e.tool} ({e.effect}) {escape(str(e.arguments))}"
            )
        case CheckRecorded() as e:
            style = _OUTCOME_STYLE[e.outcome]
            body = (
                f"   {e.check:<11} [{style}]{e.outcome:<7}[/] {escape(e.reason)} "
                f"[dim]<{escape(e.source)}>[/]"
            )
        case GateDecided() as e:
            style = {"allowed": "green", "denied": "red"}.get(e.decision, "yellow")
            body = f"   decision  [{style}]{e.decision}[/] {escape(e.reason)}"
        case ApprovalRequested() as e:
            body = (
                f"   approval  {e.request_id} needs {e.approvers} {e.role}(s) of tier {e.tier}, "
                f"expires {e.expires_at[:16]}"
            )
        case ToolCompleted() as e:
            result = "ok" if e.status == "ok" else f"[red]{e.error_code}[/]"
            body = (
                f"   executed  {e.tool} {result} in {e.latency_ms:.1f} ms, attempt(s) {e.attempts} "
                f"[dim]key {e.idempotency_key}[/]"
            )
        case RunFinished() as e:
            body = f"run {e.status}: [bold]{e.outcome}[/] {escape(e.reason)} (${e.cost_usd:.4f})"
    return head + body
