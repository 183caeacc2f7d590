"""Administering identities and trusted issuers: the client's admin side.

Every change is an admin's, proven by the credential given to the call, and reaches no further
than the admin's own grants; the store writes it with its control-log entry.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from charter._federation import federated_person
from charter._identity import (
    DEFAULT_AGENT_TTL_S,
    IssuedCredential,
    create_agent_identity,
    create_human,
    initialise,
)
from charter._reasons import checked_reason
from charter.exceptions import NotAuthorized, NotFoundError, StateError
from charter.identity import Grant, parse_grants
from charter.store import IdentityRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter._authn import Authenticator
    from charter.identity import ProviderConfig
    from charter.store import Store

__all__ = ["IdentityAdministration"]


class IdentityAdministration:
    """`charter.Client`'s methods that make, change and revoke principals and issuers."""

    store: Store
    auth: Authenticator

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
            self.store, name=name, ttl_s=ttl_s, reason=checked_reason(reason), demo=demo
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
        why = checked_reason(reason)
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
            reason=checked_reason(reason),
        )

    def remove_provider(self, issuer: str, *, credential: str | None, reason: str) -> None:
        """Stop trusting an issuer, as an unscoped admin; its tokens are refused at once.

        Raises:
            CredentialError: Not an admin's credential.
            NotAuthorized: The admin is scoped.
            NotFoundError: The issuer is not registered.
        """
        actor = self._admin(credential, action=f"distrust {issuer}", reach=[Grant(role="admin")])
        self.store.remove_provider(issuer, actor=actor, reason=checked_reason(reason))

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
            reason=checked_reason(reason),
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
            reason=checked_reason(reason),
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
            identity_id, grants=grants, actor=actor, reason=checked_reason(reason)
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
        return self.store.revoke_identity(identity_id, actor=actor, reason=checked_reason(reason))

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
