"""Principals vouched for by an OIDC issuer: tokens verified, then known to the store.

The first time an issuer vouches for a person or an agent, the store records an identity for
it (on the control log, by the issuer), so that everything Charter does with identities works
for federated ones too: a run's principal, separation of duties on the subject, and
revocation (an admin revokes the identity; the issuer's tokens for it are refused from then
on, however valid). A person's roles come from each token's claims (the IdP stays the source of
truth for who holds which role), plus any an admin granted on that record.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from charter._time import iso, utcnow
from charter.exceptions import CredentialError, StateError
from charter.identity import canonical_subject
from charter.identity._oidc import (
    FederatedClaims,
    JwksCache,
    ProviderConfig,
    unverified_issuer,
    verify,
)
from charter.store import IdentityRecord

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from charter.identity import Grant
    from charter.store import Store

__all__ = ["Federation", "federated_key", "federation_for"]


def federated_key(claims: FederatedClaims) -> str:
    """What stands in a federated identity's token-hash column: who, for whom, vouched by whom.

    It can never equal a hash of a Charter token (those are bare hex digests).
    """
    parts = (
        claims.issuer,
        claims.kind,
        claims.subject,
        claims.agent or "",
        claims.workflow or "",
        claims.tenant_id or "",
        claims.environment,
    )
    return "federated:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def federated_person(
    provider: ProviderConfig, subject: str, *, grants: tuple[Grant, ...]
) -> tuple[IdentityRecord, str]:
    """The record (and its lookup key) of a person an issuer will vouch for as `subject`.

    How `charter init --idp` names the first admin before they ever sign in.
    """
    canonical = canonical_subject(subject)
    claims = FederatedClaims(
        issuer=provider.issuer, kind="human", subject=canonical, name=subject.strip()
    )
    record = IdentityRecord(
        id="usr_" + secrets.token_hex(6),
        kind="human",
        name=claims.name,
        subject=canonical,
        grants=grants,
        created_at=iso(utcnow()),
        issuer=provider.issuer,
    )
    return record, federated_key(claims)


class Federation:
    """Verifies JWTs against the store's registered issuers and maps them to principals."""

    def __init__(
        self,
        store: Store,
        *,
        keys: JwksCache | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Check tokens against `store`'s issuers, their keys cached in `keys`."""
        self._store = store
        self._keys = keys or JwksCache()
        self._clock = clock

    def _provider(self, issuer: str | None) -> ProviderConfig:
        for registered, config, problem in self._store.providers():
            if registered == issuer and problem is None:
                return ProviderConfig.parse(json.loads(config), source=f"idp {registered}")
        raise CredentialError(
            "the JWT's issuer is not one this store trusts",
            hint="an admin registers issuers with `charter idp add FILE`",
        )

    def principal(self, token: str) -> IdentityRecord:
        """The principal a valid JWT stands for, known to the store from its first sign-in.

        Raises:
            CredentialError: The issuer is not registered, or the token fails a check.
        """
        config = self._provider(unverified_issuer(token))
        claims = verify(token, config, self._keys, now=lambda: int(self._clock().timestamp()))
        key = federated_key(claims)
        known = self._store.identity_by_token_hash(key) or self._first_sign_in(claims, key)
        # The token's claims grant roles; an admin may have granted more on the record (the
        # first admin named at `charter init --idp`, say).
        return replace(known, grants=tuple(sorted({*known.grants, *claims.grants})))

    def _first_sign_in(self, claims: FederatedClaims, key: str) -> IdentityRecord:
        """Record the principal an issuer vouches for the first time, on the control log."""
        try:
            return self._store.add_identity(
                IdentityRecord(
                    id=("usr_" if claims.kind == "human" else "agt_") + secrets.token_hex(6),
                    kind=claims.kind,
                    name=claims.name,
                    subject=claims.subject,
                    agent=claims.agent,
                    workflow=claims.workflow,
                    tenant_id=claims.tenant_id,
                    created_at=iso(utcnow()),
                    environment=claims.environment,
                    issuer=claims.issuer,
                ),
                token_hash=key,
                actor=f"idp:{claims.issuer}",
                reason="first sign-in with a token of this issuer",
            )
        except StateError:
            # Another process recorded it first, or a Charter identity holds this agent scope.
            found = self._store.identity_by_token_hash(key)
            if found is not None:
                return found
            raise CredentialError(
                f"a Charter identity is active for {claims.name}; one principal per agent scope",
                hint="revoke it (`charter identity revoke ID`) to act through the IdP instead",
            ) from None


def federation_for(store: Store) -> Federation:
    """A federation over `store`'s registered issuers (read as each token comes)."""
    return Federation(store)
