"""`charter.Client`: the one way the CLI, the console and tests read and administer Charter.

It is separate from the runtime (`ControlPlane`): reading a log never needs a model or tools.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from charter._events import ApprovalDecided
from charter._export import run_record
from charter._identity import IssuedCredential, create_agent_identity, create_human
from charter._retention import RetentionPlan, apply_retention, plan_retention
from charter._time import iso, utcnow
from charter.exceptions import (
    ApprovalRefused,
    CredentialError,
    NotFoundError,
    PayloadPurged,
    ReasonInvalid,
    UserError,
)
from charter.gate import hash_token
from charter.privacy import Vault, redact_text
from charter.store import CacheEntry, KillSwitch, open_store

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from charter._config import Config
    from charter._contract import Contract
    from charter.store import (
        ApprovalRecord,
        ChainReport,
        ControlEntry,
        IdentityRecord,
        RunRecord,
        Store,
        StoredEvent,
    )
    from charter.store._privacy import PurgeCounts

__all__ = ["Client"]


class Client:
    """Read runs and administer identities and kill switches in one Charter store."""

    def __init__(self, config: Config) -> None:
        """Open the store the config names."""
        self.config = config
        self.store: Store = open_store(
            config.database_url,
            seal_key=config.seal_key(),
            keys=config.keys(),
            upgrade=config.auto_upgrade,
        )

    def __enter__(self) -> Client:
        """Use as a context manager to close the store when done."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # --- runs -------------------------------------------------------------------------------
    def runs(
        self, *, limit: int = 50, tenant_id: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""
        return self.store.list_runs(limit=limit, tenant_id=tenant_id, status=status)

    def run(self, run_id: str) -> RunRecord:
        """One run's summary."""
        return self.store.get_run(run_id)

    def events(self, run_id: str) -> list[StoredEvent]:
        """A run's events in order."""
        return self.store.events(run_id)

    def export(self, run_id: str) -> dict[str, Any]:
        """The run record (see `charter runs export`)."""
        return run_record(self.store.events(run_id))

    def verify(self, run_id: str | None = None) -> list[ChainReport]:
        """Verify one run's hash chain and seal, or every run's."""
        return self.store.verify(run_id)

    def cancel(self, run_id: str, *, by: str, token: str | None, reason: str) -> RunRecord:
        """Cancel a run as operator `by`: at once if it waits, else at its worker's next step.

        Raises:
            CredentialError: `token` is not `by`'s credential, or `by` is not an operator.
            StateError: The run already ended.
        """
        operator = self.authenticate(by, token, role="operator")
        return self.store.cancel_run(run_id, by=operator.name, reason=_checked_reason(reason))

    # --- approvals ----------------------------------------------------------------------------
    def approvals(
        self, *, status: str | None = "pending", run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first."""
        return self.store.list_approvals(status=status, run_id=run_id)

    def approval(self, request_id: str) -> ApprovalRecord:
        """One approval request."""
        return self.store.get_approval(request_id)

    def approval_decisions(self, request_id: str) -> list[ApprovalDecided]:
        """The decisions recorded on a request, from its run's chain."""
        request = self.store.get_approval(request_id)
        return [
            e.event
            for e in self.store.events(request.run_id)
            if isinstance(e.event, ApprovalDecided) and e.event.request_id == request_id
        ]

    def decide(
        self,
        request_id: str,
        *,
        approver: str,
        token: str | None,
        decision: Literal["approve", "deny"],
        reason: str,
    ) -> ApprovalDecided:
        """Record `approver`'s decision on a request, authenticated by their credential.

        Raises:
            CredentialError: `token` is not `approver`'s active credential.
            ApprovalRefused: A malformed reason, the wrong role, separation of duties, or a
                second vote by the same person.
            StateError: The request is not pending (decided, expired, or its run ended).
        """
        person = self.authenticate(approver, token)
        return self.store.decide_approval(
            request_id,
            approver=person,
            decision=decision,
            reason=_checked_reason(reason, refused=ApprovalRefused),
            now=utcnow(),
        )

    def authenticate(
        self, name: str, token: str | None, *, role: str | None = None
    ) -> IdentityRecord:
        """The active human principal `name`, proven by `token`.

        Raises:
            CredentialError: No token, a token of someone else, a revoked one, or a missing role.
        """
        if not token:
            raise CredentialError(
                f"acting as {name} needs {name}'s credential",
                hint="export CHARTER_TOKEN=<the token `charter identity create --human` printed>",
            )
        found = self.store.identity_by_token_hash(hash_token(token))
        if found is None or found.kind != "human" or found.name != name:
            raise CredentialError(f"the credential given is not {name}'s")
        if not found.active:
            raise CredentialError(f"{name}'s credential was revoked ({found.id})")
        if role is not None and role not in found.roles:
            raise CredentialError(
                f"{name} does not have the {role} role",
                hint=f"charter identity create --human {name} --role {role}",
            )
        return found

    # --- identities ---------------------------------------------------------------------------
    def create_agent_identity(
        self, *, agent: str, workflow: str, tenant_id: str, environment: str = "dev"
    ) -> IssuedCredential:
        """Issue an agent identity for one environment; the returned token is shown once."""
        return create_agent_identity(
            self.store,
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            environment=environment,
        )

    def create_human(self, *, name: str, roles: Sequence[str]) -> IssuedCredential:
        """Issue a human principal; the returned token is shown once."""
        return create_human(self.store, name=name, roles=roles)

    def identities(self, *, include_revoked: bool = False) -> list[IdentityRecord]:
        """Principals (never their credentials)."""
        return self.store.list_identities(include_revoked=include_revoked)

    def revoke(self, identity_id: str) -> IdentityRecord:
        """Revoke a credential; the gate refuses it from the next call on."""
        return self.store.revoke_identity(identity_id)

    # --- kill switches ----------------------------------------------------------------------
    def kill(
        self,
        *,
        reason: str,
        by: str,
        token: str | None,
        agent: str | None = None,
        workflow: str | None = None,
        tenant_id: str | None = None,
        tool: str | None = None,
    ) -> KillSwitch:
        """Engage a kill switch as operator `by`; it reaches every node at its next gate check.

        Raises:
            CredentialError: `token` is not `by`'s credential, or `by` is not an operator.
            UserError: No scope was given.
        """
        if not any((agent, workflow, tenant_id, tool)):
            raise UserError(
                "a kill switch needs a scope", hint="name a workflow, tenant, tool or agent"
            )
        switch = self._switch(by, token, reason, (agent, workflow, tenant_id, tool))
        self.store.engage_kill_switch(switch)
        return switch

    def _switch(
        self,
        by: str,
        token: str | None,
        reason: str,
        scope: tuple[str | None, str | None, str | None, str | None],
    ) -> KillSwitch:
        """A switch of this (agent, workflow, tenant, tool) scope, by an authenticated operator."""
        operator = self.authenticate(by, token, role="operator")
        agent, workflow, tenant_id, tool = scope
        return KillSwitch(
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            tool=tool,
            reason=_checked_reason(reason),
            created_by=operator.name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def unkill(
        self,
        *,
        reason: str,
        by: str,
        token: str | None,
        agent: str | None = None,
        workflow: str | None = None,
        tenant_id: str | None = None,
        tool: str | None = None,
    ) -> KillSwitch:
        """Release the kill switch of exactly this scope as operator `by`; paused runs resume.

        Raises:
            CredentialError: `token` is not `by`'s credential, or `by` is not an operator.
            NotFoundError: No kill switch of this scope is engaged.
        """
        scope = self._switch(by, token, reason, (agent, workflow, tenant_id, tool))
        if not self.store.release_kill_switch(scope.key, by=scope.created_by, reason=scope.reason):
            engaged = ", ".join(s.key for s in self.store.kill_switches()) or "none"
            raise NotFoundError(
                f"no kill switch is engaged for {scope.key}",
                hint=f"engaged: {engaged}; give the same scope options as `charter kill` did",
            )
        return scope

    def kill_switches(self) -> list[KillSwitch]:
        """Engaged kill switches."""
        return self.store.kill_switches()

    def control_log(self) -> list[ControlEntry]:
        """Every kill and unkill, oldest first."""
        return self.store.control_log()

    def cache_entries(
        self, *, workflow: str | None = None, tenant_id: str | None = None
    ) -> list[CacheEntry]:
        """The artifact cache's entries in a scope, without their values."""
        return self.store.cache_entries(workflow=workflow, tenant_id=tenant_id)

    def clear_cache(
        self,
        *,
        by: str,
        token: str | None,
        reason: str,
        workflow: str | None = None,
        tenant_id: str | None = None,
        expired: bool = False,
    ) -> int:
        """Drop cached answers of a scope (or only the expired ones) as operator `by`.

        For an answer that must not be reused (a poisoned retrieval, a wrong classification)
        before its TTL runs out. The control log records who cleared what, and why. Returns how
        many entries were dropped.

        Raises:
            CredentialError: `token` is not `by`'s credential, or `by` is not an operator.
            ReasonInvalid: The reason is missing, multi-line or too long.
        """
        operator = self.authenticate(by, token, role="operator")
        return self.store.cache_clear(
            by=operator.name,
            reason=_checked_reason(reason),
            workflow=workflow,
            tenant_id=tenant_id,
            expired_before=iso(utcnow()) if expired else None,
        )

    # --- data protection --------------------------------------------------------------------
    def operator(self, name: str | None, token: str | None) -> IdentityRecord:
        """The operator acting: `name` proven by `token`, or (no name) whoever holds `token`.

        Raises:
            CredentialError: No token, an unknown or revoked one, another person's, or a
                person without the operator role.
        """
        if name is not None:
            return self.authenticate(name, token, role="operator")
        found = self.store.identity_by_token_hash(hash_token(token)) if token else None
        if found is None or found.kind != "human":
            raise CredentialError(
                "this needs an operator's credential",
                hint="export CHARTER_TOKEN=<an operator's token from `charter identity create`>",
            )
        return self.authenticate(found.name, token, role="operator")

    def break_glass(
        self, run_id: str, *, by: str | None, token: str | None, reason: str
    ) -> dict[str, Any]:
        """A run's raw payloads, decrypted, for operator `by` in an incident.

        The reading is written to the control log (who, which run, why, which payloads) and
        committed before anything is decrypted: no one reads raw data unrecorded. A payload
        whose key retention destroyed is reported as purged.

        Raises:
            CredentialError: Not an operator's credential.
            ReasonInvalid: The reason is missing, multi-line or too long.
            NotFoundError: No such run.
        """
        operator = self.operator(by, token)
        why = _checked_reason(reason)
        record = self.store.get_run(run_id)
        sealed = self.store.raw_payloads(run_id)
        self.store.record_break_glass(run_id, by=operator.name, reason=why, names=sorted(sealed))
        vault = Vault.for_store(self.store)
        payloads: dict[str, Any] = {}
        for name in sorted(sealed, key=_slot_order):
            try:
                payloads[name] = vault.open(
                    tenant_id=record.tenant_id, run_id=run_id, name=name, data=sealed[name]
                )
            except PayloadPurged:
                payloads[name] = {"purged": True}
        return {
            "run_id": run_id,
            "tenant_id": record.tenant_id,
            "opened_by": operator.name,
            "reason": why,
            "payloads": payloads,
        }

    def retention_plan(
        self, contracts: Sequence[Contract], *, now: datetime | None = None
    ) -> RetentionPlan:
        """What retention would purge now under `contracts`; purges nothing."""
        return plan_retention(self.store, contracts, now=now or utcnow())

    def apply_retention(
        self,
        contracts: Sequence[Contract],
        *,
        by: str | None,
        token: str | None,
        reason: str,
        now: datetime | None = None,
    ) -> tuple[RetentionPlan, PurgeCounts]:
        """Purge what is past retention under `contracts`, as operator `by` (logged first).

        Raises:
            CredentialError: Not an operator's credential.
            ReasonInvalid: The reason is missing, multi-line or too long.
        """
        operator = self.operator(by, token)
        why = _checked_reason(reason)
        plan = self.retention_plan(contracts, now=now)
        return plan, apply_retention(self.store, plan, by=operator.name, reason=why)


def _slot_order(name: str) -> tuple[int, str]:
    """Raw payload slots (`<step>:<what>`) in step order."""
    step, _, what = name.partition(":")
    return (int(step) if step.isdigit() else -1, what)


_MAX_REASON = 500


def _checked_reason(reason: str, *, refused: type[UserError] = ReasonInvalid) -> str:
    """A reason fit for the audit log: present, printable, bounded; redacted before it is kept.

    Raises `refused` (an approval's own refusal for approvals) when it is not.
    """
    text = reason.strip()
    if not text:
        raise refused("a reason is required", hint='--reason "why you decided so"')
    if len(text) > _MAX_REASON or not text.isprintable():
        raise refused(
            f"the reason must be one printable line of at most {_MAX_REASON} characters",
            hint="shorten it; link to a ticket for the long story",
        )
    return redact_text(text)
