"""Principals and their credentials: random tokens, shown once, stored only as hashes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from charter.exceptions import UserError
from charter.gate import hash_token
from charter.store import IdentityRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter.store import Store

__all__ = ["HUMAN_ROLES", "IssuedCredential", "create_agent_identity", "create_human"]

HUMAN_ROLES = ("approver", "operator", "auditor")
"""approver: decides approval requests; operator: kill switches and runs; auditor: reads logs."""


class IssuedCredential:
    """A new identity and its credential. The token exists only here: print it once."""

    def __init__(self, identity: IdentityRecord, token: str) -> None:
        """Pair an identity with its one-time token."""
        self.identity = identity
        self.token = token

    def __repr__(self) -> str:
        """Never show the token in a repr, a log line or a traceback."""
        return f"IssuedCredential(identity={self.identity.id!r}, token='chr_…')"


def _issue(store: Store, identity: IdentityRecord) -> IssuedCredential:
    token = "chr_" + secrets.token_urlsafe(32)
    store.add_identity(identity, token_hash=hash_token(token))
    return IssuedCredential(identity, token)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_agent_identity(
    store: Store, *, agent: str, workflow: str, tenant_id: str, environment: str = "dev"
) -> IssuedCredential:
    """Issue the one active identity for (agent, workflow, tenant) in `environment`.

    The credential acts only in that environment: the gate refuses a dev credential in prod.
    """
    return _issue(
        store,
        IdentityRecord(
            id="agt_" + secrets.token_hex(6),
            kind="agent",
            name=f"{agent}/{workflow}/{tenant_id}",
            agent=agent,
            workflow=workflow,
            tenant_id=tenant_id,
            created_at=_now(),
            environment=environment,
        ),
    )


def create_human(store: Store, *, name: str, roles: Sequence[str]) -> IssuedCredential:
    """Issue a human principal with roles drawn from `HUMAN_ROLES`."""
    unknown = sorted(set(roles) - set(HUMAN_ROLES))
    if unknown or not roles:
        raise UserError(
            f"roles must be one or more of {', '.join(HUMAN_ROLES)}; got {list(roles)}",
            hint="e.g. --role approver --role auditor",
        )
    return _issue(
        store,
        IdentityRecord(
            id="usr_" + secrets.token_hex(6),
            kind="human",
            name=name,
            roles=tuple(dict.fromkeys(roles)),
            created_at=_now(),
        ),
    )
