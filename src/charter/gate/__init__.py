"""The gate: the pipeline every proposed tool call passes, in order, leaving a check per stage."""

from __future__ import annotations

from charter.gate._cache import ArtifactCache, CachedAnswer
from charter.gate._call import Call, RunState, idempotency_key, input_hash
from charter.gate._controls import Controls, hash_token
from charter.gate._execute import Executor
from charter.gate._limits import budget_caps, rate_rule
from charter.gate._pipeline import Gate, Stage
from charter.gate._validate import bounded_calls, within_limit

__all__ = [
    "ArtifactCache",
    "CachedAnswer",
    "Call",
    "Controls",
    "Executor",
    "Gate",
    "RunState",
    "Stage",
    "bounded_calls",
    "budget_caps",
    "hash_token",
    "idempotency_key",
    "input_hash",
    "rate_rule",
    "within_limit",
]
