"""What operators do through the client, each act authenticated, scoped and on record.

Cancel runs, engage and release kill switches, clear the cache, read raw payloads in an
incident, apply retention.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from charter._reasons import checked_reason
from charter._retention import RetentionPlan, apply_retention, plan_retention
from charter._time import iso, utcnow
from charter.exceptions import NotFoundError, PayloadPurged, UserError
from charter.privacy import Vault
from charter.store import CacheEntry, KillSwitch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter._authn import Authenticator
    from charter._contract import Contract
    from charter.store import ControlEntry, IdentityRecord, RunRecord, Store
    from charter.store._privacy import PurgeCounts

__all__ = ["Operations"]


class Operations:
    """`charter.Client`'s operator acts, and the control log they leave."""

    store: Store
    auth: Authenticator

    def cancel(self, run_id: str, *, by: str, token: str | None, reason: str) -> RunRecord:
        """Cancel a run as operator `by`: at once if it waits, else at its worker's next step.

        Raises:
            CredentialError: `token` is not `by`'s credential, or `by` is not an operator.
            StateError: The run already ended.
        """
        person = self.auth.person(token, name=by)
        record = self.store.get_run(run_id)
        self.auth.authorize(
            person,
            "operator",
            action=f"cancel {run_id}",
            tenant=record.tenant_id,
            workflow=record.workflow,
        )
        return self.store.cancel_run(run_id, by=person.name, reason=checked_reason(reason))

    def _operator(
        self,
        name: str | None,
        token: str | None,
        *,
        action: str,
        tenant: str | None,
        workflow: str | None,
    ) -> IdentityRecord:
        """The operator acting (`name`, or whoever holds `token`), cleared for this scope."""
        person = self.auth.person(token, name=name)
        self.auth.authorize(person, "operator", action=action, tenant=tenant, workflow=workflow)
        return person

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
        agent, workflow, tenant_id, tool = scope
        operator = self._operator(
            by,
            token,
            action="engage or release this kill switch",
            tenant=tenant_id,
            workflow=workflow,
        )
        return KillSwitch(
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            tool=tool,
            reason=checked_reason(reason),
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
        operator = self._operator(
            by, token, action="clear these cached answers", tenant=tenant_id, workflow=workflow
        )
        return self.store.cache_clear(
            by=operator.name,
            reason=checked_reason(reason),
            workflow=workflow,
            tenant_id=tenant_id,
            expired_before=iso(utcnow()) if expired else None,
        )

    # --- data protection --------------------------------------------------------------------
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
        person = self.auth.person(token, name=by)
        why = checked_reason(reason)
        record = self.store.get_run(run_id)
        self.auth.authorize(
            person,
            "operator",
            action=f"read {run_id}'s raw payloads",
            tenant=record.tenant_id,
            workflow=record.workflow,
        )
        operator = person
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
        operator = self.auth.person(token, name=by)
        for contract in contracts:
            for tenant in contract.tenants:
                self.auth.authorize(
                    operator,
                    "operator",
                    action=f"purge {contract.workflow}'s data",
                    tenant=tenant,
                    workflow=contract.workflow,
                )
        why = checked_reason(reason)
        plan = self.retention_plan(contracts, now=now)
        return plan, apply_retention(self.store, plan, by=operator.name, reason=why)


def _slot_order(name: str) -> tuple[int, str]:
    """Raw payload slots (`<step>:<what>`) in step order."""
    step, _, what = name.partition(":")
    return (int(step) if step.isdigit() else -1, what)
