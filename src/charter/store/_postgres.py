"""The scale-out store: one PostgreSQL database shared by every node, through psycopg 3.

What it adds to the shared SQL store:

* row locks: an append locks its run's row (`FOR UPDATE`), so concurrent appends to one run
  line up and the chain has no forks; a claim skips rows another worker is claiming
  (`FOR UPDATE SKIP LOCKED`), so claimers never wait on each other;
* one clock: leases are judged by the database's clock, not by each node's;
* propagation: a change other nodes must see (a run became runnable; a kill switch, revocation
  or cancellation) is published with `NOTIFY` in the transaction that makes it. A listener
  thread wakes the idle worker at once and tells the gate its cached controls are stale, so a
  gate call costs no round trip while the listener is connected, and one read per call (the
  polling fallback) while it is not; a cached version is trusted for `control_cache_s` at most;
* fewer statements: an append's events go in one multi-row INSERT.

The schema is the URL's schema (libpq `options=-csearch_path=NAME`), `public` by default;
notifications are per schema, so several Charter deployments can share one database.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from charter.exceptions import ConfigError, StoreError
from charter.store._migrations import POSTGRES_MIGRATIONS
from charter.store._sql import SqlStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from psycopg._cursor_base import BaseCursor

    from charter.privacy import KeyProvider
    from charter.store._db import Cursor, Db

__all__ = ["PostgresStore"]

_log = logging.getLogger("charter.store")


class PostgresStore(SqlStore):
    """A `Store` on a PostgreSQL database, safe to share between many nodes."""

    migrations = POSTGRES_MIGRATIONS
    _FOR_UPDATE = " FOR UPDATE"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    _LEDGER_VERSION = 5
    _UNIQUE_VIOLATION = (psycopg.errors.UniqueViolation,)

    def __init__(
        self,
        url: str,
        *,
        seal_key: bytes,
        keys: KeyProvider,
        upgrade: bool = True,
        control_cache_s: float = 1.0,
    ) -> None:
        """Connect to the database `url` names and bring its schema up to date.

        Args:
            url: A libpq URL, `postgresql://user@host:port/dbname`.
            seal_key: The key that seals each run's head; every node needs the same one.
            keys: Where the raw payloads' data keys are; every node needs the same keys (a
                shared keyring file, or a KMS-backed provider).
            upgrade: Apply pending migrations (the default); otherwise refuse an old schema.
            control_cache_s: The longest the gate trusts a cached control version. Changes
                arrive by NOTIFY within milliseconds; this bounds how stale a node can be if
                notifications stop arriving without the listener noticing (a half-open
                connection), at the cost of one read per this many seconds.

        Raises:
            StoreError: The database does not answer, or its schema is older and `upgrade`
                is off.
            ConfigError: The URL's schema does not exist, or the seal key is not this
                database's.
        """
        super().__init__(seal_key=seal_key, keys=keys)
        self._url = url  # private: it may hold the password
        self.name = _describe(url)
        self._closed = False
        self._conn = self._connect()
        schema = self._conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            raise ConfigError(
                f"{self.name}: the schema in the URL's search_path does not exist",
                hint="create it first (CREATE SCHEMA name) or drop the search_path option",
            )
        self.schema_name: str = schema[0]
        """The schema the store's tables are in."""
        if self.schema_name != "public":
            self.name += f" (schema {self.schema_name})"
        self.control_cache_s = control_cache_s
        """The longest a cached control version is trusted."""
        self.channel = _channel(self.schema_name)
        """The NOTIFY channel of this schema."""
        self._after_commit: list[Callable[[], None]] = []
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()
        try:
            self._open(upgrade=upgrade)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self._url, autocommit=True, row_factory=_named_rows, application_name="charter"
            )
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"{self.name}: cannot connect: {_first_line(exc, self._url)}",
                hint="check that PostgreSQL is up and CHARTER_DATABASE_URL is right",
            ) from exc
        except psycopg.Error as exc:
            # A malformed URL: psycopg's message would quote it, password and all.
            raise ConfigError(
                f"{self.name}: CHARTER_DATABASE_URL is not a valid PostgreSQL URL",
                hint="use postgresql://user:password@host:port/dbname",
            ) from exc

    def close(self) -> None:
        """Stop the listener and close the connection."""
        with self._listener_lock:
            if self._listener is not None:
                self._listener.stop()
        with self._lock:
            self._closed = True
            self._conn.close()

    # --- transactions ----------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection under the lock, reconnected if the last one broke."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.name}: the store is closed")
            if self._conn.broken or self._conn.closed:
                self._conn = self._connect()
            try:
                yield self._conn
            except psycopg.OperationalError as exc:
                # A dropped connection or a server restart: nothing was committed; the caller
                # may retry, and the next call reconnects.
                raise StoreError(
                    f"{self.name}: {_first_line(exc, self._url)}",
                    hint="the transaction was rolled back; retry once the database answers",
                ) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Db]:
        # Not pipelined: on this machine psycopg's pipeline mode cost more client CPU per
        # append than the round trips it saved (BENCHMARKS.md, scale-out).
        with self._connection() as conn:
            self._after_commit.clear()
            with conn.transaction():
                yield _PgDb(conn)
            for action in self._after_commit:
                action()

    @contextmanager
    def _reading(self) -> Iterator[Db]:
        with self._connection() as conn:
            yield _PgDb(conn)

    @contextmanager
    def _snapshot(self) -> Iterator[Db]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _PgDb(conn)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor: a million events arrive in batches, not in one result. It is
        # closed as soon as the caller has read it all, inside the caller's transaction.
        with self._conn.cursor(name="charter_verify", row_factory=tuple_row) as cursor:
            cursor.itersize = 5000
            cursor.execute(_placeholders(sql, bound=bool(params)), params or None)
            yield from cursor

    def _clock(self, db: Db) -> float:
        # The database's clock, so nodes whose clocks drift apart still agree on leases.
        row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        return float(row[0])

    def _lock_schema(self, db: Db) -> None:
        # Nodes starting together would race to create the same tables.
        db.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")

    # --- propagation -----------------------------------------------------------------------
    def _notify(self, db: Db, topic: str) -> None:
        db.execute("SELECT pg_notify(?, ?)", (self.channel, topic))
        if topic == "control" and self._listener is not None:
            # This process must not serve its own stale cache until its notification returns.
            self._after_commit.append(self._listener.invalidate)
        self._after_commit.append(self._wake.set)

    def _listening(self) -> _Listener:
        # Every gate call comes here: take the lock only the first time.
        listener = self._listener
        if listener is not None:
            return listener
        with self._listener_lock:
            if self._listener is None:
                self._listener = _Listener(self)
            return self._listener

    def control_version(self) -> int:
        """The control version: from the listener's cache while it is connected, else read."""
        listener = self._listening()
        cached = listener.cached()
        if cached is not None:
            return cached
        generation = listener.generation
        version = super().control_version()
        listener.remember(version, generation)
        return version

    def wait_for_work(self, timeout: float) -> bool:
        """Wait for a NOTIFY that a run became runnable (from any node), or `timeout`."""
        self._listening()
        return super().wait_for_work(timeout)


class _Listener:
    """A thread on its own connection that LISTENs to the store's channel.

    It keeps the control-version cache honest: the cache is used only while the thread is
    connected and listening, and any notification, reconnection or failure clears it.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self.retry = threading.Event()
        """Set to reconnect now instead of after `reconnect_s`."""
        self.reconnect_s = 1.0
        """The pause before reconnecting after losing the connection."""
        self._ready = threading.Event()
        """Set while the thread is connected and listening."""
        self.lost = threading.Event()
        """Set when the thread loses its connection (cleared on reconnecting)."""
        self._guard = threading.Lock()
        self._cached: int | None = None
        self._cached_at = 0.0
        self.generation = 0
        """Bumped whenever the cache may be stale; a read that started before it is dropped."""
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="charter-listen", daemon=True)
        self._thread.start()
        # Usually a few milliseconds; until then every control read goes to the database.
        self._ready.wait(2.0)

    def cached(self) -> int | None:
        """The cached control version, or None when it must be read."""
        with self._guard:
            fresh = time.monotonic() - self._cached_at < self._store.control_cache_s
            return self._cached if fresh and self._ready.is_set() else None

    def remember(self, version: int, generation: int) -> None:
        """Cache a version read from the database, unless something changed since the read."""
        with self._guard:
            if self._ready.is_set() and generation == self.generation:
                self._cached, self._cached_at = version, time.monotonic()

    def invalidate(self) -> None:
        """Drop the cache: the next read goes to the database."""
        with self._guard:
            self._cached = None
            self.generation += 1

    def stop(self) -> None:
        """End the thread and its connection."""
        self._stop.set()
        self.retry.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error:
                _log.warning(
                    "%s: lost the NOTIFY listener; polling until it is back", self._store.name
                )
            finally:
                self._ready.clear()
                self.invalidate()
                self.lost.set()
                if self._conn is not None:
                    self._conn.close()
            # Reconnect after a pause; meanwhile the gate reads the version per call and idle
            # workers poll, so nothing is missed, only later.
            self.retry.wait(self.reconnect_s)
            self.retry.clear()

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process, while connected."""
        return self._conn.info.backend_pid if self._ready.is_set() and self._conn else None

    def _listen(self) -> None:
        self._conn = psycopg.connect(
            self._store._url,  # noqa: SLF001 - the listener is part of the store
            autocommit=True,
            application_name="charter-listen",
        )
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._store.channel)))
        # LISTEN first, then trust: anything committed before it is read from the database.
        self.invalidate()
        self.lost.clear()
        # Wake before ready: whoever waits for readiness then sees (and may drain) this wake.
        self._store._wake.set()  # noqa: SLF001 - work may have arrived while we were deaf
        self._ready.set()
        while not self._stop.is_set():
            for note in self._conn.notifies(timeout=0.5):
                if note.payload == "control":
                    self.invalidate()
                self._store._wake.set()  # noqa: SLF001


class _PgDb:
    """A psycopg connection seen through the `Db` interface: `?` placeholders, named rows."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(_placeholders(sql, bound=bool(params)), params or None)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> object:
        # One multi-row INSERT, not a statement per row: each statement costs psycopg a
        # result to process, and an append writes several events.
        rows = list(params)
        if rows:
            statement = _multi_row(sql, len(rows))
            self._conn.execute(statement, [value for row in rows for value in row])
        return None


@functools.lru_cache(maxsize=64)
def _multi_row(statement: str, rows: int) -> str:
    """`INSERT ... VALUES (?, ?) [tail]` for `rows` rows, with psycopg placeholders."""
    head, values, tail = statement.partition(" VALUES ")
    group, closing, rest = tail.partition(")")
    if not values or not closing:
        msg = f"executemany takes INSERT ... VALUES (...) statements, not {statement[:40]!r}"
        raise ValueError(msg)
    groups = ", ".join([group + closing] * rows)
    return _placeholders(f"{head}{values}{groups}{rest}", bound=True)


@functools.lru_cache(maxsize=512)
def _placeholders(statement: str, *, bound: bool) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal `%` escaped, when values are bound)."""
    if not bound:
        return statement
    return statement.replace("%", "%%").replace("?", "%s")


class _Row:
    """A row read by column name or position, like `sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def keys(self) -> list[str]:
        return list(self._index)

    def __getitem__(self, key: int | str, /) -> Any:  # noqa: ANN401 - a column's value
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _named_rows(cursor: BaseCursor[Any, Any]) -> Callable[[Sequence[Any]], _Row]:
    # From the raw result, not `cursor.description`: that builds a Column object per column
    # per statement, a sixth of an append's client CPU on the 26-column runs row.
    result = cursor.pgresult
    names = tuple(result.fname(i) for i in range(result.nfields)) if result else ()
    return functools.partial(_Row, _index(names))


@functools.lru_cache(maxsize=256)
def _index(names: tuple[bytes | None, ...]) -> dict[str, int]:
    return {(name or b"").decode(): i for i, name in enumerate(names)}


def _channel(schema: str) -> str:
    """The schema's NOTIFY channel: an identifier of at most 63 bytes."""
    channel = f"charter_{schema}"
    if len(channel.encode()) <= 63:  # noqa: PLR2004 - PostgreSQL's identifier limit
        return channel
    return "charter_" + hashlib.sha256(schema.encode()).hexdigest()[:32]


def _first_line(exc: Exception, url: str) -> str:
    """The first line of a driver error, with the URL's password masked if it appears."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    return text.replace(str(password), "***") if password else text


def _describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or 5432
    return f"postgresql://{parts.get('user') or ''}@{host}:{port}/{parts.get('dbname') or ''}"
