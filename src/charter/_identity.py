"""Issuing principals: random tokens, shown once, stored only as hashes, each on the control log.

These functions write through the store and check nobody's authority: they are what
`charter.Client` calls once it has authenticated an admin, and what code that holds the store
(and its seal key) itself may call. The store is the boundary; the client is the door.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from charter._time import iso, utcnow
from charter.exceptions import UserError
from charter.gate import hash_token
from charter.identity import ROLES, Grant, canonical_subject, parse_grants
from charter.store import IdentityRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter.store import Store

__all__ = [
    "DEFAULT_AGENT_TTL_S",
    "HUMAN_ROLES",
    "MAX_TTL_S",
    "IssuedCredential",
    "create_agent_identity",
    "create_human",
    "initialise",
]

HUMAN_ROLES = ROLES
"""The roles a person may hold (see `charter.identity.ROLES`)."""

DEFAULT_AGENT_TTL_S = 30 * 86400.0
"""An agent credential authenticates for 30 days unless `ttl_s` says otherwise: a leaked one
cannot start runs for ever. Runs it started go on until it is revoked."""

MAX_TTL_S = 400 * 86400.0
"""The longest lifetime a credential may be given (a little over a year)."""


class IssuedCredential:
    """A new identity and its credential. The token exists only here: print it once."""

    def __init__(self, identity: IdentityRecord, token: str) -> None:
        """Pair an identity with its one-time token."""
        self.identity = identity
        self.token = token

    def __repr__(self) -> str:
        """Never show the token in a repr, a log line or a traceback."""
        return f"IssuedCredential(identity={self.identity.id!r}, token='chr_…')"


def _expiry(ttl_s: float | None) -> str | None:
    if ttl_s is None:
        return None
    if not 0 < ttl_s <= MAX_TTL_S:
        raise UserError(
            f"a credential's lifetime must be more than 0 and at most {MAX_TTL_S / 86400:g} days",
            hint="e.g. --ttl 30d, --ttl 12h",
        )
    return iso(utcnow() + timedelta(seconds=ttl_s))


def _issue(
    store: Store,
    identity: IdentityRecord,
    *,
    actor: str,
    reason: str,
    init: dict[str, str] | None = None,
) -> IssuedCredential:
    token = "chr_" + secrets.token_urlsafe(32)
    stored = store.add_identity(
        identity, token_hash=hash_token(token), actor=actor, reason=reason, init=init
    )
    return IssuedCredential(stored, token)


def create_agent_identity(
    store: Store,
    *,
    agent: str,
    workflow: str,
    tenant_id: str,
    environment: str = "dev",
    ttl_s: float | None = DEFAULT_AGENT_TTL_S,
    actor: str = "store",
    reason: str = "issued through the store",
) -> IssuedCredential:
    """Issue the one active identity for (agent, workflow, tenant) in `environment`.

    The credential acts only in that environment: the gate refuses a dev credential in prod.

    Raises:
        StateError: One is active already for this agent, workflow, tenant and environment.
    """
    name = f"{agent}/{workflow}/{tenant_id}"
    return _issue(
        store,
        IdentityRecord(
            id="agt_" + secrets.token_hex(6),
            kind="agent",
            name=name,
            subject=canonical_subject(f"agent:{name}:{environment}"),
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            created_at=iso(utcnow()),
            environment=environment,
            expires_at=_expiry(ttl_s),
        ),
        actor=actor,
        reason=reason,
    )


def create_human(
    store: Store,
    *,
    name: str,
    roles: Sequence[str | Grant],
    ttl_s: float | None = None,
    actor: str = "store",
    reason: str = "issued through the store",
) -> IssuedCredential:
    """Issue a person's credential with grants: `approver`, `operator:tenant=acme`, ...

    Raises:
        UserError: No role, an unknown role or scope, or a name that could pass for another
            person's (see `charter.identity.check_new_subject`).
        StateError: An active person with this subject exists already.
    """
    return _issue(
        store,
        _person(name, roles, ttl_s),
        actor=actor,
        reason=reason,
    )


def initialise(
    store: Store, *, name: str, ttl_s: float | None = None, reason: str, demo: bool = False
) -> IssuedCredential:
    """Give a store its first admin, and say so on the control log; refused if it has one.

    `demo` marks a store `charter demo` made for itself (and may make anew).

    Raises:
        StateError: The store has an admin already.
    """
    admin = _person(name, ["admin"], ttl_s)
    init = {"key": "store", "admin": admin.id, "reason": reason, "demo": "yes" if demo else "no"}
    return _issue(store, admin, actor=admin.subject, reason=reason, init=init)


def _person(name: str, roles: Sequence[str | Grant], ttl_s: float | None) -> IdentityRecord:
    grants = parse_grants(str(r) for r in roles)
    return IdentityRecord(
        id="usr_" + secrets.token_hex(6),
        kind="human",
        name=name.strip(),
        subject=canonical_subject(name),
        grants=grants,
        created_at=iso(utcnow()),
        expires_at=_expiry(ttl_s),
    )
