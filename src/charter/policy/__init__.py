"""Policy-as-code: the engine interface, the Cedar backend, the context builder, policy tests."""

from __future__ import annotations

from charter.policy._cases import CaseResult, PolicyCase, PolicyCases, load_cases, run_cases
from charter.policy._cedar import CedarPolicy
from charter.policy._context import AGENT_ENTITY, build_request
from charter.policy._engine import EntityRef, PolicyDecision, PolicyEngine, PolicyRequest

__all__ = [
    "AGENT_ENTITY",
    "CaseResult",
    "CedarPolicy",
    "EntityRef",
    "PolicyCase",
    "PolicyCases",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyRequest",
    "build_request",
    "load_cases",
    "run_cases",
]
