"""`charter.Client`: the one way the CLI, the console and tests read and administer Charter.

It is separate from the runtime (`ControlPlane`): reading a log never needs a model or tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from charter._authn import Authenticator
from charter._client_identity import IdentityAdministration
from charter._client_ops import Operations
from charter._events import ApprovalDecided
from charter._export import run_record
from charter._federation import federation_for
from charter._reasons import checked_reason
from charter._time import utcnow
from charter.exceptions import (
    ApprovalRefused,
    NotAuthorized,
)
from charter.store import IdentityRecord, open_store

if TYPE_CHECKING:
    from types import TracebackType

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from charter._config import Config
    from charter.store import (
        ApprovalRecord,
        ChainReport,
        RunRecord,
        Store,
        StoredEvent,
    )
    from charter.store._audit import StoreReport
    from charter.store._checkpoint import Checkpoint

__all__ = ["Client"]


class Client(IdentityAdministration, Operations):
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
            reason=checked_reason(reason, refused=ApprovalRefused),
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
