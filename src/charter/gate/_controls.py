"""Kill switches and credentials, cached and refreshed by one cheap read per call.

Every kill-switch or revocation change bumps the store's control version; the gate reads that
one integer per call and reloads only when it moved. So an SRE's kill switch or a revocation
from any process takes effect at the very next call, at the cost of one indexed read.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charter.store import IdentityRecord, KillSwitch, Store

__all__ = ["Controls", "hash_token"]


def hash_token(token: str) -> str:
    """SHA-256 of a credential.

    Credentials are 256-bit random tokens, so a fast hash is enough: there is nothing to
    brute-force, and a slow KDF would cost every gate call milliseconds.
    """
    return hashlib.sha256(token.encode()).hexdigest()


class Controls:
    """A per-process view of kill switches and identities, valid for one control version."""

    def __init__(self, store: Store) -> None:
        """Create an empty view; it loads on first use."""
        self._store = store
        self._version = -1
        self._switches: list[KillSwitch] = []
        self._identities: dict[str, IdentityRecord | None] = {}

    def refresh(self) -> None:
        """Reload if anything changed since the last call."""
        version = self._store.control_version()
        if version != self._version:
            self._switches = self._store.kill_switches()
            self._identities = {}
            self._version = version

    def engaged(self, *, agent: str, workflow: str, tenant_id: str, tool: str) -> KillSwitch | None:
        """The first engaged switch that stops a call with these attributes, if any."""
        for switch in self._switches:
            if switch.matches(agent=agent, workflow=workflow, tenant_id=tenant_id, tool=tool):
                return switch
        return None

    def identity(self, token_hash: str) -> IdentityRecord | None:
        """The principal holding a credential (revoked ones included), or None."""
        if token_hash not in self._identities:
            self._identities[token_hash] = self._store.identity_by_token_hash(token_hash)
        return self._identities[token_hash]
