"""The store interface: what every backend keeps, and the records it returns.

A backend stores three aggregates: runs with their hash-chained events, identities (hashed
credentials), and kill switches. The run row is a projection of the run's events, updated in
the same transaction as the append, so it can never disagree with the log it summarises.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    Event,
    EventAdapter,
    ModelResponded,
    RunFinished,
    RunResumed,
    RunStarted,
    RunStatus,
    RunSuspended,
    ToolCompleted,
)
from charter.exceptions import PayloadPurged
from charter.store._chain import is_marker

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from charter.identity import Grant
    from charter.privacy import KeyProvider
    from charter.store._audit import StoreReport
    from charter.store._cache import CacheEntry
    from charter.store._chain import ChainReport
    from charter.store._checkpoint import Checkpoint
    from charter.store._limits import Charge, SpendRecord
    from charter.store._privacy import EndedRun, PurgeCounts

__all__ = [
    "ApprovalRecord",
    "ControlEntry",
    "IdentityRecord",
    "KillSwitch",
    "Lease",
    "RunRecord",
    "Store",
    "StoredEvent",
]


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """An event as written: its canonical JSON text and its place in the run's chain.

    The parsed forms are computed on first use: resuming a long run reads thousands of events
    and needs only some of them typed.
    """

    run_id: str
    seq: int
    ts: str
    kind: str
    data: str
    """The canonical JSON the hash covers."""
    prev_hash: str
    hash: str
    step: int | None = None
    """The step the event belongs to (a copy of the payload's, kept as a column); None for
    run-level events and in logs written before the column existed."""
    digest: str | None = None
    """SHA-256 of `data`, which the chain hash covers; None in logs written before it existed."""

    @property
    def purged(self) -> bool:
        """Retention dropped this event's payload; `data` is the marker saying when."""
        return is_marker(self.data)

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The payload as a dict (for a purged event, its marker)."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @cached_property
    def event(self) -> Event:
        """The typed event.

        Raises:
            PayloadPurged: Retention dropped the payload.
        """
        if self.purged:
            raise PayloadPurged(
                f"event {self.seq} of run {self.run_id} ({self.kind}) was purged by retention "
                f"on {self.payload.get('purged')}",
                hint="its place, time and hash remain; `charter audit verify` still checks it",
            )
        return EventAdapter.validate_json(self.data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the chain fields and the payload."""
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """The summary of one run, projected from its events."""

    run_id: str
    agent: str
    workflow: str
    tenant_id: str
    principal_id: str
    model: str
    model_kind: str
    contract_version: str
    contract_hash: str
    policy_hash: str
    budget_usd: float | None
    status: RunStatus = "running"
    outcome: str | None = None
    reason: str | None = None
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: str = ""
    updated_at: str = ""
    event_count: int = 0
    initiator: str = ""
    runnable: bool = False
    """A worker should pick the run up (once `wake_at` has passed, if set)."""
    wake_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)

    @property
    def final(self) -> bool:
        """The run ended; nothing will resume it."""
        return self.status in ("completed", "failed", "cancelled")

    def sealed_summary(self) -> str:
        """The fields the head seal covers, as one canonical string.

        The list is fixed, not "every field": adding a projection field must not break the seals
        of runs written before it existed. Scheduling fields are left out; the events they are
        projected from are chained.
        """
        covered = {name: getattr(self, name) for name in _SEALED_FIELDS}
        return json.dumps(covered, sort_keys=True, separators=(",", ":"))

    @classmethod
    def starting(cls, *, run_id: str, started: RunStarted, ts: str) -> RunRecord:
        """The record of a run whose first event is `started`."""
        return cls(
            run_id=run_id,
            agent=started.agent,
            workflow=started.workflow,
            tenant_id=started.tenant_id,
            principal_id=started.principal_id,
            model=started.model,
            model_kind=started.model_kind,
            contract_version=started.contract_version,
            contract_hash=started.contract_hash,
            policy_hash=started.policy_hash,
            budget_usd=started.budget_usd,
            started_at=ts,
            updated_at=ts,
            initiator=started.initiator,
            runnable=True,
        )

    def apply(self, event: Event) -> RunRecord:
        """This record after `event`; the store calls it inside the append transaction.

        `updated_at` and `event_count` are the store's to set, once per append.
        """
        match event:
            case ModelResponded():
                changes: dict[str, Any] = {
                    "cost_usd": self.cost_usd + event.cost_usd,
                    "prompt_tokens": self.prompt_tokens + event.prompt_tokens,
                    "completion_tokens": self.completion_tokens + event.completion_tokens,
                }
            case ToolCompleted():
                changes = {"cost_usd": self.cost_usd + event.cost_usd}
            case RunSuspended():
                changes = {
                    "status": "waiting",
                    "outcome": "pending",
                    "reason": event.reason,
                    "runnable": event.wake_at is not None,
                    "wake_at": event.wake_at,
                }
            case RunResumed():
                changes = {"status": "running", "outcome": None, "runnable": True, "wake_at": None}
            case ApprovalDecided(status="approved" | "denied") | ApprovalExpired(action="deny"):
                # A decided step lets the workflow go on; a worker picks the run up.
                changes = {"runnable": not self.final, "wake_at": None}
            case RunFinished():
                changes = {
                    "status": event.status,
                    "outcome": event.outcome,
                    "reason": event.reason,
                    "runnable": False,
                    "wake_at": None,
                }
            case _:
                return self
        return replace(self, **changes)


_SEALED_FIELDS = (
    "run_id",
    "agent",
    "workflow",
    "tenant_id",
    "principal_id",
    "model",
    "model_kind",
    "contract_version",
    "contract_hash",
    "policy_hash",
    "budget_usd",
    "status",
    "outcome",
    "reason",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "started_at",
    "updated_at",
    "event_count",
)


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A worker's claim on a run: it alone runs the run until the lease ends or is released."""

    run_id: str
    workflow: str
    owner: str


@dataclass(frozen=True, kw_only=True)
class IdentityRecord:
    """A principal: an agent identity (agent, workflow, tenant) or a human with scoped roles."""

    id: str
    kind: Literal["agent", "human"]
    name: str
    """As given at creation, for display; `subject` is what separation of duties compares."""
    subject: str = ""
    """The canonical subject (NFKC, case-folded, trimmed): one per person, across Charter tokens
    and identity providers."""
    agent: str | None = None
    workflow: str | None = None
    tenant_id: str | None = None
    grants: tuple[Grant, ...] = ()
    """A human's roles, each with its scopes."""
    created_at: str = ""
    revoked_at: str | None = None
    environment: str = "dev"
    """The environment the credential may act in; a dev credential cannot act in prod."""
    expires_at: str | None = None
    """When the credential stops authenticating (ISO time); None: never."""
    issuer: str = "charter"
    """`charter` for Charter's own tokens, else the OIDC issuer that vouches for the principal."""
    problem: str | None = None
    """Set by the store when the record does not match its control-log entry: it was inserted
    or changed outside Charter, and is refused wherever it is presented."""

    @property
    def roles(self) -> tuple[str, ...]:
        """The role names of the grants, without their scopes."""
        return tuple(dict.fromkeys(g.role for g in self.grants))

    @property
    def active(self) -> bool:
        """Neither revoked nor altered outside Charter."""
        return self.revoked_at is None and self.problem is None

    def expired(self, now: str) -> bool:
        """Whether the credential has expired by `now` (an ISO time)."""
        return self.expires_at is not None and self.expires_at <= now

    def may(
        self,
        role: str,
        *,
        tenant: str | None = None,
        workflow: str | None = None,
        tier: str | None = None,
    ) -> bool:
        """Whether one of the grants allows `role` over this scope (None: over every value)."""
        return any(g.covers(role, tenant=tenant, workflow=workflow, tier=tier) for g in self.grants)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; never contains the credential or its hash."""
        return {
            **self.__dict__,
            "grants": [str(g) for g in self.grants],
            "roles": list(self.roles),
        }


@dataclass(frozen=True, kw_only=True)
class KillSwitch:
    """An engaged kill switch: every call it matches is denied until it is released.

    Each of `agent`, `workflow`, `tenant_id` and `tool` that is set must match; `None` matches
    anything. So `workflow="billing", tenant_id="acme"` stops one workflow for one tenant.
    """

    agent: str | None = None
    workflow: str | None = None
    tenant_id: str | None = None
    tool: str | None = None
    reason: str
    created_by: str
    created_at: str

    @property
    def key(self) -> str:
        """The switch's identity: its scope fields, `*` for any."""
        return ",".join(
            f"{name}={getattr(self, name) or '*'}"
            for name in ("agent", "workflow", "tenant_id", "tool")
        )

    def matches(self, *, agent: str, workflow: str, tenant_id: str, tool: str) -> bool:
        """Whether a call with these attributes is stopped by this switch."""
        return (
            self.agent in (None, agent)
            and self.workflow in (None, workflow)
            and self.tenant_id in (None, tenant_id)
            and self.tool in (None, tool)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"key": self.key, **self.__dict__}


@dataclass(frozen=True, kw_only=True)
class ControlEntry:
    """One control log entry: a kill switch engaged or released, or cached answers cleared."""

    seq: int
    ts: str
    action: str
    """`kill`, `unkill`, `cache_clear`, `retention` or `break_glass`."""
    actor: str
    """The operator identity that did it."""
    key: str
    """The kill switch's key, or the cleared cache scope."""
    reason: str
    dropped: int | None = None
    """For `cache_clear`: how many cached answers were dropped."""
    detail: dict[str, Any] = field(default_factory=dict)
    """What else the entry records: for `retention`, the keys destroyed and runs purged; for
    `break_glass`, the payloads read."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True, kw_only=True)
class ApprovalRecord:
    """An approval request and its state, projected from the run's approval events."""

    request_id: str
    run_id: str
    step: int
    tool: str
    tier: str
    role: str
    approvers: int
    status: Literal["pending", "approved", "denied", "expired", "escalated", "cancelled"]
    requested_at: str
    expires_at: str
    summary: str
    diff: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    """Who may not approve: the agent's owner and the run's initiator."""
    granted: int = 0
    decided_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def dump_payload(event: Event) -> str:
    """The JSON text of an event (fields in declaration order): what is stored and hashed.

    The chain hashes this exact text and verification rehashes the stored text, so no reader
    ever needs to reproduce it from the parsed event.
    """
    return event.model_dump_json()


class Store(ABC):
    """Where Charter keeps runs, events, identities and kill switches.

    Implementations must make `append` atomic: the events, the run's projection and its sealed
    head are written in one transaction, or not at all.
    """

    seal_key: bytes
    """The key that seals run heads (and opened format-1 raw payloads)."""
    keys: KeyProvider
    """Where the data keys of raw payloads are; retention destroys them."""
    name: str
    """Where the store is, for messages and logs; never with a password."""

    # --- runs and events -------------------------------------------------------------------
    @abstractmethod
    def start_run(
        self,
        run_id: str,
        started: RunStarted,
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
        lease_s: float = 300.0,
    ) -> StoredEvent:
        """Create the run with its first event; it is runnable at once.

        With `owner`, the run starts leased to it, so no worker claims it from under the
        process that is about to run it.
        """

    @abstractmethod
    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
        charges: Sequence[Charge] = (),
        control_version: int | None = None,
    ) -> list[StoredEvent]:
        """Append events to a run's chain in one durable transaction.

        `raw` holds encrypted raw payloads (by name) written in the same transaction, so an
        event and the payload that replays it exist together or not at all. `owner` fences a
        worker: if another worker holds the run's lease, nothing is written. `charges` are
        applied against the shared budgets and rate limits in the same transaction, first.
        `control_version`, when given, must still be the store's: an intent judged under
        controls that have changed since (a kill switch engaged on another node) is refused.

        Raises:
            LeaseLost: `owner` no longer holds the run.
            BudgetExceeded: A reservation does not fit a shared cap; nothing is written.
            RateLimited: A token bucket is empty; nothing is written.
            ControlChanged: `control_version` is no longer current; nothing is written.
        """

    @abstractmethod
    def events(self, run_id: str) -> list[StoredEvent]:
        """All events of a run in sequence order."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """One run's record; raises NotFoundError."""

    @abstractmethod
    def list_runs(
        self, *, limit: int = 50, tenant_id: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""

    @abstractmethod
    def verify(self, run_id: str | None = None) -> list[ChainReport]:
        """Verify one run's chain, or every run's."""

    @abstractmethod
    def raw_payloads(self, run_id: str) -> dict[str, bytes]:
        """A run's encrypted raw payloads by name (`<step>:<what>`), for resume and replay."""

    # --- scheduling ------------------------------------------------------------------------
    @abstractmethod
    def claim_run(
        self, *, owner: str, workflows: Sequence[str], now: datetime, lease_s: float
    ) -> Lease | None:
        """Lease one runnable run of these workflows whose timer (if any) is due.

        A run leased by another live owner is never returned; one whose lease ran out (a dead
        worker) is.
        """

    @abstractmethod
    def renew_leases(self, *, owner: str, lease_s: float) -> int:
        """Extend every lease `owner` holds; returns how many."""

    @abstractmethod
    def release_run(self, run_id: str, *, owner: str) -> None:
        """Give up the lease on a run (it suspended, finished or the worker stops)."""

    @abstractmethod
    def cancel_run(self, run_id: str, *, by: str, reason: str) -> RunRecord:
        """Cancel a run: at once if it waits and no worker holds it, else before its next step.

        Raises:
            NotFoundError: No such run.
            StateError: The run already ended.
        """

    # --- approvals -------------------------------------------------------------------------
    @abstractmethod
    def list_approvals(
        self, *, status: str | None = "pending", run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first."""

    @abstractmethod
    def get_approval(self, request_id: str) -> ApprovalRecord:
        """One approval request; raises NotFoundError."""

    @abstractmethod
    def decide_approval(
        self,
        request_id: str,
        *,
        approver: IdentityRecord,
        decision: Literal["approve", "deny"],
        reason: str,
        now: datetime,
    ) -> ApprovalDecided:
        """Count one approver's decision and append it to the run's chain, atomically.

        Raises:
            NotFoundError: No such request.
            StateError: The request is no longer pending, or has expired.
            ApprovalRefused: Wrong role, separation of duties, or a second vote.
        """

    @abstractmethod
    def due_approvals(self, *, now: datetime, workflows: Sequence[str]) -> list[ApprovalRecord]:
        """Pending requests of these workflows' runs whose expiry has passed."""

    # --- identities ------------------------------------------------------------------------
    @abstractmethod
    def add_identity(
        self,
        identity: IdentityRecord,
        *,
        token_hash: str,
        actor: str = "store",
        reason: str = "issued through the store",
        init: dict[str, Any] | None = None,
    ) -> IdentityRecord:
        """Store a new principal with its hashed credential; `actor` did it, for `reason`.

        The change is a control-log entry, written with the principal in one transaction. With
        `init`, the principal is the store's first admin (refused if it has one).
        """

    @abstractmethod
    def initialisation(self) -> dict[str, Any] | None:
        """What was recorded when the store got its first admin; None if it has none yet."""

    @abstractmethod
    def update_identity(
        self, identity_id: str, *, grants: Sequence[Grant], actor: str, reason: str
    ) -> IdentityRecord:
        """Replace a person's grants, on the control log; raises NotFoundError."""

    @abstractmethod
    def identity_by_token_hash(self, token_hash: str) -> IdentityRecord | None:
        """The principal holding this credential, revoked or not; None if unknown."""

    @abstractmethod
    def get_identity(self, identity_id: str) -> IdentityRecord | None:
        """A principal by id, revoked or not; None if unknown."""

    @abstractmethod
    def list_identities(self, *, include_revoked: bool = False) -> list[IdentityRecord]:
        """Principals, oldest first."""

    @abstractmethod
    def revoke_identity(
        self, identity_id: str, *, actor: str = "store", reason: str = "revoked through the store"
    ) -> IdentityRecord:
        """Revoke a principal's credential, on the control log; raises NotFoundError."""

    @abstractmethod
    def identity_problems(self) -> list[tuple[str, str]]:
        """(identity id, problem) for each principal that does not match the control log."""

    # --- audit ---------------------------------------------------------------------------
    @abstractmethod
    def audit(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        trusted: Ed25519PublicKey | None = None,
    ) -> StoreReport:
        """Verify the whole store (runs, control log, ledger, identities, `checkpoint`)."""

    @abstractmethod
    def checkpoint(self, private: Ed25519PrivateKey) -> Checkpoint:
        """Sign the ledger's head (after claiming every run's) and record the checkpoint."""

    # --- identity providers --------------------------------------------------------------
    @abstractmethod
    def add_provider(self, issuer: str, config: str, *, actor: str, reason: str) -> None:
        """Register (or replace) an OIDC issuer's configuration (JSON), on the control log."""

    @abstractmethod
    def remove_provider(self, issuer: str, *, actor: str, reason: str) -> None:
        """Stop trusting an issuer, on the control log; raises NotFoundError."""

    @abstractmethod
    def providers(self) -> list[tuple[str, str, str | None]]:
        """Registered issuers: (issuer, configuration JSON, problem if altered, else None)."""

    # --- kill switches ---------------------------------------------------------------------
    @abstractmethod
    def engage_kill_switch(self, switch: KillSwitch) -> None:
        """Engage (or re-engage with a new reason) a kill switch; its `key` identifies it."""

    @abstractmethod
    def release_kill_switch(self, key: str, *, by: str = "", reason: str = "") -> bool:
        """Release a kill switch (logging who and why) and wake the runs it paused.

        False if it was not engaged.
        """

    @abstractmethod
    def kill_switches(self) -> list[KillSwitch]:
        """Every engaged kill switch."""

    @abstractmethod
    def control_log(self) -> list[ControlEntry]:
        """Every kill and unkill, oldest first."""

    @abstractmethod
    def verify_control_log(self) -> ChainReport:
        """Check the control log's hash chain and seal."""

    @abstractmethod
    def spend(self, *, day: str | None = None, scope: str | None = None) -> list[SpendRecord]:
        """Spent and reserved amounts of the shared caps, by scope and UTC day."""

    # --- the artifact cache ------------------------------------------------------------------
    @abstractmethod
    def cache_get(self, key: str, *, now: str) -> CacheEntry | None:
        """The entry under `key` if it is still live at `now` (an ISO time)."""

    @abstractmethod
    def cache_put(self, entry: CacheEntry) -> None:
        """Store an entry, replacing the one under its key."""

    @abstractmethod
    def cache_entries(
        self, *, workflow: str | None = None, tenant_id: str | None = None
    ) -> list[CacheEntry]:
        """The entries of a scope, without their values."""

    @abstractmethod
    def cache_clear(
        self,
        *,
        by: str,
        reason: str,
        workflow: str | None = None,
        tenant_id: str | None = None,
        expired_before: str | None = None,
    ) -> int:
        """Delete the entries of a scope (or only those expired by then); returns how many.

        Logged as a control change by `by`, for `reason`.
        """

    # --- data protection -------------------------------------------------------------------
    @abstractmethod
    def record_break_glass(self, run_id: str, *, by: str, reason: str, names: list[str]) -> None:
        """Log, durably, that operator `by` is about to read `run_id`'s raw payloads, and why."""

    @abstractmethod
    def keys_held_open(self) -> dict[str, list[str]]:
        """Data key ids sealing payloads of runs that have not ended, with those runs."""

    @abstractmethod
    def ended_runs(self, *, before: str) -> list[EndedRun]:
        """Runs that ended at or before `before` and still hold something retention purges."""

    @abstractmethod
    def purge(
        self,
        *,
        by: str,
        reason: str,
        keys: Sequence[str],
        legacy_runs: Sequence[str],
        redacted_runs: Sequence[str],
        cache_expired_before: str,
    ) -> PurgeCounts:
        """Purge what retention found due, in one transaction that logs it first."""

    @abstractmethod
    def control_version(self) -> int:
        """A counter bumped by every kill-switch and revocation change; cheap to poll."""

    @abstractmethod
    def wait_for_work(self, timeout: float) -> bool:
        """Block until a run may have become runnable, or `timeout` seconds pass.

        True when woken by a change, False on timeout; either way the caller polls next.
        """

    @abstractmethod
    def cancellations(self) -> dict[str, str]:
        """Runs whose cancellation was requested while a worker held them, with the reason."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""
