"""Kill switches and credentials, cached and refreshed by one cheap read per call.

Every kill-switch, revocation or cancellation change bumps the store's control version; the
gate reads that one integer per call and reloads only when it moved. So an SRE's kill switch or
a revocation from any process takes effect at the very next call, at the cost of one read.
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
        self._cancellations: dict[str, str] = {}
        self._identities: dict[str, IdentityRecord | None] = {}

    @property
    def version(self) -> int:
        """The control version this view was loaded at."""
        return self._version

    def refresh(self, version: int | None = None) -> None:
        """Reload if anything changed since the last call (or if `version` is not this view's)."""
        version = self._store.control_version() if version is None else version
        if version != self._version:
            self._switches = self._store.kill_switches()
            self._cancellations = self._store.cancellations()
            self._identities = {}
            self._version = version

    def engaged(self, *, agent: str, workflow: str, tenant_id: str, tool: str) -> KillSwitch | None:
        """The first engaged switch that stops a call with these attributes, if any."""
        for switch in self._switches:
            if switch.matches(agent=agent, workflow=workflow, tenant_id=tenant_id, tool=tool):
                return switch
        return None

    def identity(self, identity_id: str) -> IdentityRecord | None:
        """A principal by id (revoked ones included), or None."""
        if identity_id not in self._identities:
            self._identities[identity_id] = self._store.get_identity(identity_id)
        return self._identities[identity_id]

    def cancelled(self, run_id: str) -> str | None:
        """Why an operator asked to cancel this run while a worker held it; None if not."""
        return self._cancellations.get(run_id)
