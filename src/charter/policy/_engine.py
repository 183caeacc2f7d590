"""The policy engine interface: a request in, a decision with the deciding policy ids out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["EntityRef", "PolicyDecision", "PolicyEngine", "PolicyRequest"]


@dataclass(frozen=True, kw_only=True, slots=True)
class EntityRef:
    """A Cedar entity: type, id and attributes."""

    type: str
    id: str
    attrs: dict[str, str | int | bool] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyRequest:
    """Who wants to do what to which resource, in which context."""

    principal: EntityRef
    action: str
    resource: EntityRef
    context: dict[str, str | int | bool]


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyDecision:
    """The engine's answer.

    `approval` means: allowed once approvers of `tier` have signed, because the only policies
    that refused are approval gates (annotated `@approval_tier`).
    """

    effect: Literal["allow", "deny", "approval"]
    reason: str
    policy_ids: tuple[str, ...] = ()
    """The `@id` of every policy that determined the decision."""
    tier: str | None = None
    """For `approval`: the strictest tier `tiers` names (the one most approvers must sign)."""
    tiers: tuple[str, ...] = ()
    """For `approval`: every tier the approval gates that refused ask for, in policy-id order."""
    errors: tuple[str, ...] = ()


class PolicyEngine(Protocol):
    """Anything that can judge a `PolicyRequest`. Implementations must fail closed."""

    @property
    def digest(self) -> str:
        """A hash of the policies and schema in force, recorded on every run."""
        ...

    def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        """Decide; any internal error must come back as a deny, never as an exception."""
        ...
