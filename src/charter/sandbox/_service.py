"""`SandboxService`: the base class that owns a sandbox's connection and transactions."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from charter.sandbox._base import (
    SCHEMA,
    SandboxError,
    add_fault,
    connect,
    run_idempotent,
    take_fault,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Mapping
    from types import TracebackType

    from charter.sandbox._base import Clock, Effect

__all__ = ["SandboxService"]


def _system_clock() -> datetime:
    return datetime.now(UTC)


class SandboxService:
    """Base of the sandbox services: one SQLite file, idempotent writes and injectable faults.

    Subclasses list their tables in `schema` and the names `inject_fault` accepts in
    `endpoints` (public method names). Writes go through `_idempotent`, which checks the key,
    runs the effect and records its outcome in one `BEGIN IMMEDIATE` transaction, so any
    number of threads and processes can share a file. Different services may share a file
    too; they then share one space of idempotency keys.
    """

    schema: ClassVar[tuple[str, ...]] = ()
    endpoints: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str | Path, *, clock: Clock | None = None) -> None:
        """Open (creating if needed) the service's database.

        Args:
            path: The SQLite file, or ':memory:'.
            clock: Source of timestamps; defaults to the system clock.
        """
        self.path = Path(path)
        self._clock = clock or _system_clock
        # One connection per object; the lock lets threads share the object.
        self._lock = threading.Lock()
        self._db = connect(path)
        with self._write() as db:
            for statement in (*SCHEMA, *self.schema):
                db.execute(statement)
            self._seed(db)

    def _seed(self, db: sqlite3.Connection) -> None:
        """Insert fixed rows a fresh database needs; runs on every open, so must be idempotent."""

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        """Return the service; leaving the block closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection."""
        self.close()

    def now(self) -> str:
        """The clock's time as an ISO-8601 UTC string.

        Raises:
            ValueError: The clock returned a naive datetime, whose zone is unknowable.
        """
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment.astimezone(UTC).isoformat(timespec="microseconds")

    def inject_fault(self, endpoint: str, *, status: int, code: str, times: int = 1) -> None:
        """Make the next `times` calls of `endpoint` fail before doing anything.

        Faults live in the database, so they reach every process using the file. They are
        consumed in the order injected and never recorded against an idempotency key.

        Args:
            endpoint: A public method name listed in `endpoints`, e.g. "refund".
            status: The HTTP-like status to fail with (>= 400).
            code: The error code to fail with.
            times: How many consecutive calls fail.

        Raises:
            ValueError: Unknown endpoint, a status below 400, a blank code or `times` < 1.
        """
        if endpoint not in self.endpoints:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {self.endpoints}")
        with self._write() as db:
            add_fault(db, endpoint, status=status, code=code, times=times)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A `BEGIN IMMEDIATE` transaction: commits on success, rolls back on any exception."""
        with self._lock:
            # IMMEDIATE takes the write lock up front, so two writers can never both see a key
            # as unused and both perform the effect.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read_one(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def _read_all(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _count(self, table: str, **where: object) -> int:
        """Rows of `table` matching the non-None `where` columns (names come from our code)."""
        filters = {column: value for column, value in where.items() if value is not None}
        clause = " AND ".join(f"{column} = ?" for column in filters) or "1"
        row = self._read_one(f"SELECT count(*) FROM {table} WHERE {clause}", (*filters.values(),))
        return int(row[0]) if row is not None else 0

    def _check_fault(self, endpoint: str) -> None:
        """Raise the next injected fault for a read endpoint, if there is one."""
        # The plain read first, so reads take the write lock only when a fault is pending.
        if self._read_one("SELECT 1 FROM faults WHERE endpoint = ?", (endpoint,)) is None:
            return
        with self._write() as db:
            fault = take_fault(db, endpoint)
        if fault is not None:
            raise fault

    def _idempotent(
        self, endpoint: str, key: str, params: Mapping[str, Any], effect: Effect
    ) -> dict[str, Any]:
        """Run a write through `run_idempotent` in its own transaction.

        Raises:
            SandboxError: A missing key, an injected fault, a reused key or the effect's error.
        """
        with self._write() as db:
            outcome = run_idempotent(
                db, endpoint=endpoint, key=key, params=params, effect=effect, created_at=self.now()
            )
        # Raised only after the commit, so a consumed fault or a stored error is not rolled back.
        if isinstance(outcome, SandboxError):
            raise outcome
        return outcome
