"""An audit's runs shared between processes, all reading one snapshot.

Each helper process verifies a contiguous range of run ids (a `Part`), so each reads its own
stretch of the events' index. PostgreSQL hands its snapshot to the helpers
(`pg_export_snapshot`). SQLite cannot, so while the helpers open theirs, this process holds the
write lock: nothing commits in between, and writers wait those few milliseconds. Each helper
reports what the one-process pass would for its runs. Whatever goes wrong with a helper, its
part is verified in this process instead: helpers change how fast an audit is, never what it
finds.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import subprocess
import sys
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from charter.store._runpass import verify_part

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from charter.store._chain import ChainReport, StoredRow
    from charter.store._db import Db
    from charter.store._host import SqlHost
    from charter.store._runpass import Part, Stream

__all__ = ["HELPED_FROM", "MOST_PROCESSES", "Helpers", "cores", "helper_main", "start_helpers"]

_log = logging.getLogger("charter.store")

HELPED_FROM = 200_000
"""Events (as the runs count them) from which helper processes repay their start (~0.5 s)."""
MOST_PROCESSES = 4
"""No more processes than this share an audit, whatever the machine has."""


_HELPER_MAIN = (
    "import pickle, sys\n"
    "path, target, key = pickle.load(sys.stdin.buffer)\n"
    "sys.path[:0] = path\n"
    "from charter.store._parallel import helper_main\n"
    "helper_main(target, key)\n"
)
"""A helper's program: a fresh interpreter (not a fork of this one, whose connections and
threads it must not share, nor multiprocessing's spawn, which would import `__main__` again)."""


@dataclass(frozen=True)
class _Failure:
    """What a helper sends instead of its result when it cannot do its part."""

    what: str


class _HelperError(Exception):
    """A helper failed or broke off; its part is verified here instead."""


class _Helper:
    """One helper process, spoken to in pickles over its stdin and stdout."""

    def __init__(self, target: tuple[str, str], key: bytes, part: Part) -> None:
        self.part = part
        self.acks = ["ready", "joined"]
        """What it is yet to say before its result."""
        self.done = False
        """Its result was read: it ends by itself."""
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, our own program
            [sys.executable, "-c", _HELPER_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        # The seal key goes over the pipe, never in the arguments or environment.
        self.send((sys.path, target, key))

    def send(self, message: object) -> None:
        pipe = self.process.stdin
        if pipe is None:  # pragma: no cover - made with a pipe
            raise _HelperError("no pipe to the helper")
        pickle.dump(message, pipe)
        pipe.flush()

    def receive(self) -> Any:  # noqa: ANN401 - a message of the protocol below
        pipe = self.process.stdout
        if pipe is None:  # pragma: no cover - made with a pipe
            raise _HelperError("no pipe from the helper")
        # Trusted: our own child's answer, over a pipe only the two of us hold.
        found = pickle.load(pipe)  # noqa: S301
        if isinstance(found, _Failure):
            raise _HelperError(found.what)
        return found

    def expect(self, ack: str) -> None:
        """Read the helper's next acknowledgement, which must be `ack`."""
        if self.receive() != ack:
            raise _HelperError(f"the helper did not say {ack!r}")
        self.acks.remove(ack)

    def stop(self) -> None:
        """End the process: at once if its result is no longer wanted."""
        if not self.done:
            self.process.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_FAILED = (OSError, EOFError, pickle.PickleError, _HelperError, sqlite3.Error)
"""What going wrong with helpers raises; then this process verifies their parts itself."""


class Helpers:
    """Helper processes, each verifying a part of the runs in this process's snapshot."""

    def __init__(self, target: tuple[str, str], parts: list[Part]) -> None:
        self.target = target
        self.parts = parts
        self.team: list[_Helper] = []

    def join(self, db: Db, key: bytes) -> None:
        """Start the helpers; take this process's snapshot and theirs on the same state.

        SQLite's helpers must have opened theirs before the write lock is let go, so this waits
        for them (writers wait that long: a round trip through a pipe); PostgreSQL's import the
        exported snapshot whenever they are ready, while this process goes on (their
        acknowledgements are read with their results).
        """
        for part in self.parts[1:]:
            self.team.append(_Helper(self.target, key, part))
        sqlite = self.target[0] == "sqlite"
        if sqlite:
            for helper in self.team:
                helper.expect("ready")
        with _writers_held(self.target):
            snapshot = _snapshot_id(db, self.target)
            for helper in self.team:
                helper.send((snapshot, helper.part))
            if sqlite:
                for helper in self.team:
                    helper.expect("joined")

    def gather(
        self, verify_here: Callable[[Part], tuple[dict[Any, ChainReport], list[ChainReport]]]
    ) -> list[tuple[dict[Any, ChainReport], list[ChainReport]]]:
        """Every part's result, in run-id order.

        The first part is verified here, the rest by the helpers (or here, if a helper failed).
        """
        results = [verify_here(self.parts[0])]
        for helper in self.team:
            try:
                while helper.acks:
                    helper.expect(helper.acks[0])
                results.append(helper.receive())
                helper.done = True
            except _FAILED as exc:
                _log.warning("audit helper failed (%s); verifying its part here", exc)
                results.append(verify_here(helper.part))
        return results

    def stop(self) -> None:
        """End every helper; those whose results were not read, at once."""
        for helper in self.team:
            helper.stop()


@contextmanager
def start_helpers(store: SqlHost, db: Db, parts: list[Part]) -> Iterator[Helpers | None]:
    """Helpers for every part but the first, sharing the snapshot `db` is about to take.

    None when this process verifies alone: one process asked for, an in-memory store, or
    helpers that could not start or join.
    """
    target = target_of(store) if len(parts) > 1 else None
    if target is None:
        yield None
        return
    started = Helpers(target, parts)
    helpers: Helpers | None = started
    try:
        started.join(db, store.seal_key)
    except (*_FAILED, ValueError) as exc:
        _log.warning("audit helpers could not start (%s); verifying in one process", exc)
        started.stop()
        helpers = None
    try:
        yield helpers
    finally:
        if helpers is not None:
            helpers.stop()


def target_of(store: SqlHost) -> tuple[str, str] | None:
    """How a helper reaches the store's database; None when it cannot (in memory)."""
    path = getattr(store, "path", None)  # a SqliteStore's file
    if isinstance(path, str):
        return None if path == ":memory:" else ("sqlite", path)
    url = getattr(store, "_url", None)  # a PostgresStore's URL
    return ("postgres", url) if isinstance(url, str) else None


@contextmanager
def _writers_held(target: tuple[str, str]) -> Iterator[None]:
    """Hold every commit back while the snapshots are opened.

    SQLite: the write lock, on a connection of its own, waiting for it as long as the store's
    writers would. PostgreSQL: nothing to hold; its snapshot is handed over.
    """
    if target[0] != "sqlite":
        yield
        return
    lock = sqlite3.connect(target[1], timeout=10.0, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with suppress(sqlite3.Error):
            lock.execute("ROLLBACK")
        lock.close()


def _snapshot_id(db: Db, target: tuple[str, str]) -> str | None:
    """Take this process's snapshot now; on PostgreSQL, its id for the helpers to import."""
    if target[0] == "sqlite":
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return None
    row = db.execute("SELECT pg_export_snapshot()").fetchone()
    return str(row[0])


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def helper_main(target: tuple[str, str], key: bytes) -> None:
    """A helper process's life: connect, join the parent's snapshot, verify its part, answer."""
    source = sys.stdin.buffer
    sink: BinaryIO = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must never land in the parent's pipe

    def send(message: object) -> None:
        pickle.dump(message, sink)
        sink.flush()

    try:
        db, stream, join = _connect(target)
        send("ready")
        # Trusted: our parent's order, over a pipe only the two of us hold.
        snapshot, part = pickle.load(source)  # noqa: S301
        join(snapshot)
        send("joined")
        send(verify_part(db, stream, key, part, None))
    except Exception as exc:  # noqa: BLE001 - whatever it is, the parent does the part itself
        send(_Failure(type(exc).__name__))  # never its text: it may quote a payload


def _connect(target: tuple[str, str]) -> tuple[Db, Stream, Callable[[str | None], None]]:
    """A helper's connection: how it queries, streams, and joins the parent's snapshot."""
    kind, where = target
    if kind == "sqlite":
        conn = sqlite3.connect(where, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=ON")

        def rows(sql: str, params: Sequence[Any]) -> Iterable[StoredRow]:
            cursor = conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params)

        def join(_: str | None) -> None:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

        return conn, rows, join
    import psycopg  # noqa: PLC0415 - only a PostgreSQL store's helpers need it
    from psycopg import sql as pgsql  # noqa: PLC0415
    from psycopg.rows import tuple_row  # noqa: PLC0415

    from charter.store._postgres import _named_rows, _PgDb, _placeholders  # noqa: PLC0415

    pg = psycopg.connect(where, row_factory=_named_rows, application_name="charter-audit")
    pg.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    pg.read_only = True

    def stream(sql: str, params: Sequence[Any]) -> Iterator[StoredRow]:
        with pg.cursor(name="charter_verify", row_factory=tuple_row) as cursor:
            cursor.itersize = 5000
            cursor.execute(_placeholders(sql, bound=bool(params)), params or None)
            yield from cursor

    def adopt(snapshot: str | None) -> None:
        pg.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot)))

    return _PgDb(pg), stream, adopt
