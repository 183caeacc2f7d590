"""`charter.Client`: the one way the CLI, the console and tests read and administer Charter.

It is separate from the runtime (`ControlPlane`): reading a log never needs a model or tools.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from charter._authn import Authenticator
from charter._events import ApprovalDecided
from charter._export import run_record
from charter._federation import federated_person, federation_for
from charter._identity import (
    DEFAULT_AGENT_TTL_S,
    IssuedCredential,
    create_agent_identity,
    create_human,
    initialise,
)
from charter._retention import RetentionPlan, apply_retention, plan_retention
from charter._time import iso, utcnow
from charter.exceptions import (
    ApprovalRefused,
    NotAuthorized,
    NotFoundError,
    PayloadPurged,
    ReasonInvalid,
    StateError,
    UserError,
)
from charter.identity import Grant, parse_grants
from charter.privacy import Vault, redact_text
from charter.store import CacheEntry, IdentityRecord, KillSwitch, open_store

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from charter._config import Config
    from charter._contract import Contract
    from charter.identity._oidc import ProviderConfig
    from charter.store import (
        ApprovalRecord,
        ChainReport,
        ControlEntry,
        RunRecord,
        Store,
        StoredEvent,
    )
    from charter.store._audit import StoreReport
    from charter.store._checkpoint import Checkpoint
    from charter.store._privacy import PurgeCounts

__all__ = ["Client"]


class Client:
    """Read runs, and administer identities and kill switches, in one Charter store.

    Every change is made by an authenticated principal whose grants cover it: the credential
    (a Charter token or an IdP's JWT) is given to each call, never kept.
    """

    def __init__(self, config: Config) -> None:
        """Open the store the config names."""
        self.config = config
        self.store: Store = open_store(
            config.database_url,
            seal_key=config.seal_key(),
            keys=config.keys(),
            upgrade=config.auto_upgrade,
        )
        self.auth = Authenticator(self.store, federation=federation_for(self.store))
        """Turns credentials into principals for this store."""

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

    def audit(
        self, *, checkpoint: Checkpoint | None = None, trusted: Ed25519PublicKey | None = None
    ) -> StoreReport:
        """Verify the whole store; against `checkpoint` (signed by `trusted`) if given."""
        return self.store.audit(checkpoint=checkpoint, trusted=trusted)

    def checkpoint(self) -> Checkpoint:
        """Sign the store's ledger head with the configured signing key, and record it."""
        return self.store.checkpoint(self.config.signing_key())

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
        return self.store.cancel_run(run_id, by=person.name, reason=_checked_reason(reason))

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
            NotAuthorized: No approver grant of theirs covers the request's tenant, workflow
                and tier.
            ApprovalRefused: A malformed reason, separation of duties, or a second vote by the
                same person.
            StateError: The request is not pending (decided, expired, or its run ended).
        """
        person = self.auth.person(token, name=approver)
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
        """The active person `name`, proven by `token`, holding `role` (over some scope).

        Raises:
            CredentialError: No token, a token of someone else, a revoked or expired one.
            NotAuthorized: They hold no grant of `role` at all.
        """
        person = self.auth.person(token, name=name)
        if role is not None and role not in person.roles:
            raise NotAuthorized(
                f"{person.name} does not have the {role} role",
                hint=f"an admin grants it: charter identity update {person.id} --role {role}",
            )
        return person

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

    # --- identities ---------------------------------------------------------------------------
    def init(
        self,
        *,
        name: str = "admin",
        ttl_s: float | None = None,
        reason: str = "initialised",
        demo: bool = False,
    ) -> IssuedCredential:
        """Give a new store its first admin; the returned token is shown once, kept nowhere.

        Refused on a store that has an admin, and on one that does not verify: an admin made
        now would vouch for whatever someone slipped into it.

        Raises:
            StateError: The store has an admin already, or it does not verify.
        """
        self._check_uninitialised()
        return initialise(
            self.store, name=name, ttl_s=ttl_s, reason=_checked_reason(reason), demo=demo
        )

    def init_federated(
        self, provider: ProviderConfig, *, subject: str, reason: str = "initialised"
    ) -> IdentityRecord:
        """Give a new store its first admin: the person `provider` vouches for as `subject`.

        The issuer is registered as trusted, and `subject` holds the admin role on record; no
        Charter token is made: they sign in with their IdP's JWT.

        Raises:
            StateError: The store has an admin already, or it does not verify.
            UserError: The subject is not usable.
        """
        self._check_uninitialised()
        why = _checked_reason(reason)
        record, key = federated_person(provider, subject, grants=(Grant(role="admin"),))
        self.store.add_provider(
            provider.issuer, provider.model_dump_json(), actor=record.subject, reason=why
        )
        init = {"key": "store", "admin": record.id, "reason": why, "issuer": provider.issuer}
        return self.store.add_identity(
            record, token_hash=key, actor=record.subject, reason=why, init=init
        )

    def _check_uninitialised(self) -> None:
        if self.store.initialisation() is not None:
            raise StateError(
                "this store was initialised already; it has an admin",
                hint="ask an admin for a credential (`charter identity create`)",
            )
        if not self.store.audit().ok:
            raise StateError(
                "this store does not verify, so it gets no admin: an admin now would vouch for "
                "what was changed in it",
                hint="`charter audit verify` says what is wrong",
            )

    def add_provider(
        self, provider: ProviderConfig, *, credential: str | None, reason: str
    ) -> None:
        """Trust an OIDC issuer (or replace its configuration), as an unscoped admin.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The admin is scoped: an issuer's people may reach every tenant.
        """
        actor = self._admin(
            credential, action=f"trust {provider.issuer}", reach=[Grant(role="admin")]
        )
        self.store.add_provider(
            provider.issuer,
            provider.model_dump_json(),
            actor=actor,
            reason=_checked_reason(reason),
        )

    def remove_provider(self, issuer: str, *, credential: str | None, reason: str) -> None:
        """Stop trusting an issuer, as an unscoped admin; its tokens are refused at once.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The admin is scoped.
            NotFoundError: The issuer is not registered.
        """
        actor = self._admin(credential, action=f"distrust {issuer}", reach=[Grant(role="admin")])
        self.store.remove_provider(issuer, actor=actor, reason=_checked_reason(reason))

    def providers(self) -> list[dict[str, Any]]:
        """The trusted issuers with their configuration, and any problem with their record."""
        return [
            {"issuer": issuer, "config": json.loads(config), "problem": problem}
            for issuer, config, problem in self.store.providers()
        ]

    def _admin(
        self, credential: str | IdentityRecord | None, *, action: str, reach: Sequence[Grant]
    ) -> str:
        """The subject of the admin acting, once every grant in `reach` is within theirs.

        `credential` may be a person authenticated already (to authenticate before looking up
        what they act on: an unknown id must not tell a stranger it does not exist).
        """
        admin = (
            credential if isinstance(credential, IdentityRecord) else self.auth.person(credential)
        )
        held = [g for g in admin.grants if g.role == "admin"]
        for wanted in reach:
            if not any(wanted.within(g) for g in held):
                raise NotAuthorized(
                    f"{admin.name} may not {action}: that needs an admin grant covering "
                    f"{wanted}; they hold {', '.join(str(g) for g in admin.grants) or 'none'}",
                    hint="an unscoped admin can; scoped admins act within their tenant",
                )
        return admin.subject

    def create_agent_identity(
        self,
        *,
        agent: str,
        workflow: str,
        tenant_id: str,
        environment: str = "dev",
        ttl_s: float | None = DEFAULT_AGENT_TTL_S,
        credential: str | None,
        reason: str,
    ) -> IssuedCredential:
        """Issue an agent identity for one environment, as the admin `credential` proves.

        The returned token is shown once.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The admin's grants do not reach this tenant and workflow.
            StateError: One is active already for this agent, workflow, tenant and environment.
        """
        scope = Grant(role="admin", tenant=tenant_id, workflow=workflow)
        actor = self._admin(credential, action=f"issue a credential for {tenant_id}", reach=[scope])
        return create_agent_identity(
            self.store,
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            environment=environment,
            ttl_s=ttl_s,
            actor=actor,
            reason=_checked_reason(reason),
        )

    def create_human(
        self,
        *,
        name: str,
        roles: Sequence[str],
        ttl_s: float | None = None,
        credential: str | None,
        reason: str,
    ) -> IssuedCredential:
        """Issue a person's credential with scoped roles, as the admin `credential` proves.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: A role reaches past the admin's own scope.
            UserError: A bad role, or a name that could pass for another person's.
        """
        grants = parse_grants(roles)
        actor = self._admin(credential, action=f"create {name!r}", reach=grants)
        return create_human(
            self.store,
            name=name,
            roles=grants,
            ttl_s=ttl_s,
            actor=actor,
            reason=_checked_reason(reason),
        )

    def update_identity(
        self, identity_id: str, *, roles: Sequence[str], credential: str | None, reason: str
    ) -> IdentityRecord:
        """Replace a person's roles, as the admin `credential` proves.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The old or the new roles reach past the admin's scope.
            StateError: The identity is not an active person, or this would leave the store
                without an unscoped admin.
        """
        person = self.auth.person(credential)
        grants = parse_grants(roles)
        target = self._identity(identity_id)
        actor = self._admin(
            person, action=f"change {target.name}'s roles", reach=[*target.grants, *grants]
        )
        if not any(g == Grant(role="admin") for g in grants):
            self._keep_an_admin(target)
        return self.store.update_identity(
            identity_id, grants=grants, actor=actor, reason=_checked_reason(reason)
        )

    def identities(self, *, include_revoked: bool = False) -> list[IdentityRecord]:
        """Principals (never their credentials)."""
        return self.store.list_identities(include_revoked=include_revoked)

    def revoke(self, identity_id: str, *, credential: str | None, reason: str) -> IdentityRecord:
        """Revoke a credential as the admin `credential` proves; the gate refuses it at once.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The identity is outside the admin's scope.
            StateError: It is the store's last unscoped admin.
        """
        person = self.auth.person(credential)
        target = self._identity(identity_id)
        reach = (
            [Grant(role="admin", tenant=target.tenant_id, workflow=target.workflow)]
            if target.kind == "agent"
            else list(target.grants)
        )
        actor = self._admin(person, action=f"revoke {target.name}", reach=reach)
        self._keep_an_admin(target)
        return self.store.revoke_identity(identity_id, actor=actor, reason=_checked_reason(reason))

    def _identity(self, identity_id: str) -> IdentityRecord:
        found = self.store.get_identity(identity_id)
        if found is None:
            raise NotFoundError(
                f"identity {identity_id!r} does not exist",
                hint="`charter identity list --all` shows the identities",
            )
        return found

    def _keep_an_admin(self, leaving: IdentityRecord) -> None:
        """Refuse to take away the last unscoped admin: nobody could administer the store."""
        if Grant(role="admin") not in leaving.grants or leaving.revoked_at is not None:
            return
        others = [
            i
            for i in self.store.list_identities()
            if i.id != leaving.id and i.active and Grant(role="admin") in i.grants
        ]
        if not others:
            raise StateError(
                f"{leaving.name} is the store's last unscoped admin; without one nobody could "
                "administer it",
                hint="create another admin first: charter identity create --human NAME --role "
                'admin --reason "..."',
            )

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
        operator = self._operator(
            by, token, action="clear these cached answers", tenant=tenant_id, workflow=workflow
        )
        return self.store.cache_clear(
            by=operator.name,
            reason=_checked_reason(reason),
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
        why = _checked_reason(reason)
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
