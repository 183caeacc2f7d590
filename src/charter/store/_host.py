"""What each aggregate's SQL needs of the store it is part of, declared once.

`SqlStore` is put together from one class per aggregate (runs, identities, providers, the
control log, the cache, data protection, the audit). Each builds on these few helpers, which
the store (or the control log's class) implements: declared here, below every aggregate, the
implementations always come first, whatever order the aggregates are listed in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from contextlib import AbstractContextManager

    from charter.privacy import KeyProvider
    from charter.store._db import Db

__all__ = ["SqlHost"]


class SqlHost(ABC):
    """The helpers every aggregate's SQL uses; `SqlStore` and its backends implement them."""

    seal_key: bytes
    """The key that seals run heads, identities, providers and the ledger's head."""
    keys: KeyProvider
    """Where the data keys of raw payloads are."""
    _FOR_UPDATE: ClassVar[str] = ""
    """Appended to a SELECT of the row a transaction goes on to change, to lock it."""
    _UNIQUE_VIOLATION: ClassVar[tuple[type[Exception], ...]]
    """The driver's error for a duplicate key."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Db]:
        """A write transaction under the store's lock; commit on success, else roll back."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Db]:
        """The connection under the store's lock, for single-statement reads."""

    @abstractmethod
    def _snapshot(self) -> AbstractContextManager[Db]:
        """A read transaction: every statement in it sees the same committed state."""

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
        """Rows as plain tuples, fetched in batches (for verifying millions of events)."""

    @abstractmethod
    def _bump_control(self, db: Db) -> None:
        """Mark a kill-switch, revocation or cancellation change for every node's gate."""

    @abstractmethod
    def _notify(self, db: Db, topic: str) -> None:
        """Tell waiting workers that `topic` ("runnable", "control") changed, at commit."""

    @abstractmethod
    def _log_control(
        self,
        db: Db,
        *,
        actor: str,
        action: str,
        detail: dict[str, Any],
        subject_id: str | None = None,
    ) -> tuple[int, str]:
        """Append a control-log entry in `db`'s transaction and claim it on the ledger.

        `subject_id` names the identity (or provider) the entry changes. Returns the entry's
        sequence number and hash.
        """
