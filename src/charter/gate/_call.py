"""The state a call carries through the gate's stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from charter._tools import ToolContext

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pydantic import BaseModel

    from charter._agent import Agent
    from charter._contract import ToolGrant
    from charter._decision import CheckResult
    from charter._events import Event, ToolCallSpec
    from charter._telemetry import ToolSpan
    from charter._tools import Facts, Tool
    from charter.exceptions import LimitReached
    from charter.gate._cache import CachedAnswer
    from charter.models import ModelResponse
    from charter.policy import PolicyDecision
    from charter.store import Charge, IdentityRecord, Store

__all__ = ["Call", "RunState", "idempotency_key", "input_hash"]


@dataclass(kw_only=True)
class RunState:
    """What the gate needs to know about the run a call belongs to."""

    run_id: str
    agent: Agent
    tenant_id: str
    principal_id: str
    """The agent identity the run acts as, authenticated by its credential when the run started;
    re-checked on every call, so revocation bites even in a run resumed days later."""
    spent_usd: float = 0.0
    task: str = ""
    """The run's stated task, redacted: what the verifier judges a proposal against."""
    initiator: str = ""
    """Who started the run; separation of duties keeps them from approving its steps."""
    approvals: dict[int, int] = field(default_factory=dict)
    """Step -> approvals granted for it."""
    lease_owner: str | None = None
    """The worker holding the run, which fences every append; None for a run held in-process."""
    deferred: list[Event] = field(default_factory=list)
    """Events that ride on this run's next append (see `defer`)."""
    deferred_raw: dict[str, bytes] = field(default_factory=dict)
    deferred_charges: list[Charge] = field(default_factory=list)

    def append(
        self,
        store: Store,
        events: Sequence[Event],
        raw: Mapping[str, bytes] | None = None,
        charges: Sequence[Charge] = (),
        control_version: int | None = None,
    ) -> None:
        """Append to the run's log in one durable transaction, deferred events first.

        If a charge does not fit (`LimitReached`), nothing is written and the deferred events
        stay deferred.
        """
        if self.deferred:
            events = [*self.deferred, *events]
            raw = {**self.deferred_raw, **(raw or {})}
        if self.deferred_charges:
            charges = [*self.deferred_charges, *charges]
        store.append(
            self.run_id,
            events,
            raw=raw,
            owner=self.lease_owner,
            charges=charges,
            control_version=control_version,
        )
        self.deferred.clear()
        self.deferred_raw.clear()
        self.deferred_charges.clear()

    def defer(
        self,
        events: Sequence[Event],
        raw: Mapping[str, bytes] | None = None,
        charges: Sequence[Charge] = (),
    ) -> None:
        """Record events with the run's next append instead of in a transaction of their own.

        This is group commit, and it is safe for results: the next append is the next intent
        (or the run's suspension or end), and nothing can act on a result before that intent
        is durable. A crash before it loses the result, never the effect: the step still has
        its intent and no result, so it is executed again with the same idempotency key, and
        the downstream system answers with the effect it already made.
        """
        self.deferred.extend(events)
        self.deferred_raw.update(raw or {})
        self.deferred_charges.extend(charges)


@dataclass(kw_only=True, slots=True)
class Call:
    """One proposed tool call; stages fill in what they learn for the stages after them."""

    run: RunState
    step: int
    spec: ToolCallSpec
    idempotency_key: str
    tool: Tool[Any, Any] | None = None
    grant: ToolGrant | None = None
    identity: IdentityRecord | None = None
    args: BaseModel | None = None
    facts: Facts | None = None
    policy: PolicyDecision | None = None
    holds: list[CheckResult] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    """What the intent's append must charge against the shared limits."""
    limit_hit: LimitReached | None = None
    """A shared limit that refused this call's charges; the call is being judged again."""
    verification: ModelResponse | None = None
    """The verifier model's answer, when it judged this call."""
    control_version: int | None = None
    """The control version the call was judged under; its intent commits only under it."""
    cache_key: str | None = None
    """For a call of a cached read tool: the key its result is cached under."""
    cached: CachedAnswer | None = None
    """The cached result that answers this call instead of the tool, if one is live."""
    span: ToolSpan | None = None
    """The step's trace span, which the gate reports its decision and result into."""

    @property
    def tool_name(self) -> str:
        """The proposed tool's name as the log, spans and decisions carry it: redacted.

        A model may propose any name, a secret included; a granted tool's name comes through
        as it is. Resume and replay compare names in this form (see `RunContext.tool`).
        """
        return self.run.agent.contract.redactor.text(self.spec.tool)

    def context(self, *, attempt: int = 1) -> ToolContext:
        """What the tool's `run`, `facts` and `preview` are told about this call."""
        return ToolContext(
            run_id=self.run.run_id,
            step=self.step,
            tenant_id=self.run.tenant_id,
            idempotency_key=self.idempotency_key,
            attempt=attempt,
        )


def idempotency_key(run_id: str, step: int) -> str:
    """Stable for (run, step): a retry or a resumed run presents the same key downstream."""
    return "chk_" + hashlib.sha256(f"{run_id}:{step}".encode()).hexdigest()[:32]


def input_hash(arguments: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a call's arguments, before redaction."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
