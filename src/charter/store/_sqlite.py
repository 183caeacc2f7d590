"""The embedded default store: one SQLite file in WAL mode."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.privacy._keys import LocalKeyring, MemoryKeyring
from charter.store._migrations import SQLITE_MIGRATIONS
from charter.store._sql import SqlStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from charter.privacy import KeyProvider
    from charter.store._db import Db

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    """A `Store` on one SQLite file.

    SQLite allows one writer per file at a time, so serialising this process's writers on the
    store's lock is cheaper than letting them collide on the file lock. Other processes on the
    same file are coordinated by `BEGIN IMMEDIATE` and the busy timeout.
    """

    migrations = SQLITE_MIGRATIONS
    _LEDGER_VERSION = 9
    _UNIQUE_VIOLATION = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str | Path,
        *,
        seal_key: bytes,
        keys: KeyProvider | None = None,
        verify_only: bool = False,
        upgrade: bool = True,
    ) -> None:
        """Open (creating if needed) the store at `path` (':memory:' for a throwaway one).

        Args:
            path: The database file.
            seal_key: The key that seals each run's head; keep it outside the database.
            keys: Where the raw payloads' data keys are; default: a keyring file beside the
                database (`<path>.keys`), or memory for an in-memory store.
            verify_only: Refuse to migrate; fail if the schema is not current.
            upgrade: Apply pending migrations (the default); `verify_only` is its opposite.
        """
        if keys is None:
            in_memory = str(path) == ":memory:"
            keys = MemoryKeyring() if in_memory else LocalKeyring(Path(f"{path}.keys"))
        super().__init__(seal_key=seal_key, keys=keys)
        self.path = str(path)
        self.name = f"sqlite://{self.path}"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so every transaction is explicit.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL: readers (CLI, console) never block the writer and vice versa.
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it returns, so an acknowledged event survives power
        # loss; the log is the system of record.
        self._db.execute("PRAGMA synchronous=FULL")
        # Several processes share one file; wait for the lock instead of failing at once.
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self._open(upgrade=upgrade and not verify_only)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[Db]:
        with self._lock:
            # IMMEDIATE takes the write lock now, so two writers never both read a run's head
            # and then race to append after it.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[Db]:
        with self._lock:
            yield self._db

    @contextmanager
    def _snapshot(self) -> Iterator[Db]:
        with self._lock:
            # A deferred transaction reads one WAL snapshot: heads and events agree even while
            # another process appends.
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
        cursor = self._db.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

    def _clock(self, db: Db) -> float:  # noqa: ARG002 - the database has no say
        # One file means one machine: its clock is every worker's clock.
        return time.time()
