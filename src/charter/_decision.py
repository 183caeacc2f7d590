"""What the gate returns, and what each of its stages reports.

The agent loop gets one of five typed decisions and never an exception it could argue with:
`Allowed` (the tool ran and its output is valid), `Denied` (a check refused it), `NeedsApproval`
(held for a human), `Proposed` (draft stage: recorded, not executed) or `Failed` (allowed, but
execution or its output failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import JsonValue

    from charter._events import CheckName, CheckOutcome

__all__ = [
    "Allowed",
    "CheckResult",
    "Decision",
    "Denied",
    "Failed",
    "NeedsApproval",
    "Proposed",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """One stage's verdict on one call."""

    check: CheckName
    outcome: CheckOutcome
    reason: str
    source: str
    """What decided: a policy id, a contract key path, a verifier name."""
    detail: dict[str, JsonValue] = field(default_factory=dict)
    tier: str | None = None
    """For `hold`: the approval tier asked for."""

    @classmethod
    def passed(cls, check: CheckName, reason: str, source: str, **detail: JsonValue) -> CheckResult:
        """A passing result."""
        return cls(check=check, outcome="pass", reason=reason, source=source, detail=detail)

    @classmethod
    def denied(cls, check: CheckName, reason: str, source: str, **detail: JsonValue) -> CheckResult:
        """A refusing result; the gate stops here."""
        return cls(check=check, outcome="deny", reason=reason, source=source, detail=detail)


@dataclass(frozen=True, kw_only=True)
class Allowed:
    """Every check passed, the tool ran once, and its output matches the output model."""

    kind: Literal["allowed"] = "allowed"
    step: int
    tool: str
    output: dict[str, Any]
    policy_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Denied:
    """A check refused the call; nothing executed."""

    kind: Literal["denied"] = "denied"
    step: int
    tool: str
    check: CheckName
    reason: str
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class NeedsApproval:
    """The call waits for approvers of `tier`; nothing executed."""

    kind: Literal["needs_approval"] = "needs_approval"
    step: int
    tool: str
    tier: str
    request_id: str
    reason: str
    diff: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Proposed:
    """Draft stage: the call was recorded as a proposal with its diff; nothing executed."""

    kind: Literal["proposed"] = "proposed"
    step: int
    tool: str
    diff: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The call was allowed but execution or output validation failed."""

    kind: Literal["failed"] = "failed"
    step: int
    tool: str
    check: CheckName
    code: str
    reason: str
    retryable: bool = False


Decision = Allowed | Denied | NeedsApproval | Proposed | Failed
"""Everything `Gate.submit` can return."""
