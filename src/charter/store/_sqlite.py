"""The embedded default store: one SQLite file in WAL mode."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter._events import ApprovalRequested, Event, RunStarted
from charter.exceptions import NotFoundError, SchemaVersionError, StoreError
from charter.store._base import (
    ApprovalRecord,
    IdentityRecord,
    KillSwitch,
    RunRecord,
    Store,
    StoredEvent,
    dump_payload,
)
from charter.store._chain import GENESIS, ChainReport, ChainRow, event_hash, seal, verify_chain
from charter.store._migrations import MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["SqliteStore"]

_RUN_COLUMNS = (
    "run_id, agent, workflow, tenant_id, principal_id, model, model_kind, contract_version, "
    "contract_hash, policy_hash, budget_usd, status, outcome, reason, cost_usd, prompt_tokens, "
    "completion_tokens, started_at, updated_at, event_count"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class SqliteStore(Store):
    """A `Store` on one SQLite file.

    One connection per store, guarded by a lock: SQLite allows one writer per file at a time,
    so serialising in-process writers here is cheaper than letting them collide on the file
    lock. Other processes on the same file are coordinated by `BEGIN IMMEDIATE` and the busy
    timeout.
    """

    def __init__(self, path: str | Path, *, seal_key: bytes, verify_only: bool = False) -> None:
        """Open (creating if needed) the store at `path` (':memory:' for a throwaway one).

        Args:
            path: The database file.
            seal_key: The key that seals each run's head; keep it outside the database.
            verify_only: Refuse to migrate; fail if the schema is not current.
        """
        self.path = str(path)
        self._seal_key = seal_key
        self._lock = threading.Lock()
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
        self._migrate(verify_only=verify_only)

    # --- plumbing --------------------------------------------------------------------------
    def _migrate(self, *, verify_only: bool) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
                row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
                current = row[0] or 0
                latest = len(MIGRATIONS)
                if current > latest:
                    raise SchemaVersionError(
                        f"{self.path}: schema version {current} is newer than this Charter "
                        f"knows ({latest})",
                        hint="upgrade Charter before using this database",
                    )
                if current < latest and verify_only:
                    raise StoreError(
                        f"{self.path}: schema version {current}, expected {latest}",
                        hint="run without verify-only to upgrade",
                    )
                for version in range(current + 1, latest + 1):
                    for statement in MIGRATIONS[version - 1]:
                        self._db.execute(statement)
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (version,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _write(self) -> _Transaction:
        return _Transaction(self)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # --- runs and events -------------------------------------------------------------------
    def start_run(self, run_id: str, started: RunStarted) -> StoredEvent:
        """Create the run row and write its first event in one transaction."""
        ts = _now()
        record = RunRecord.starting(run_id=run_id, started=started, ts=ts)
        with self._write() as db:
            exists = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if exists:
                raise StoreError(f"run {run_id} already exists")
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, head_seq, head_hash, head_mac) "
                f"VALUES ({', '.join('?' * 20)}, 0, ?, '')",
                (*_record_values(record), GENESIS),
            )
            return self._append_locked(db, run_id, [started], ts=ts)[0]

    def append(self, run_id: str, events: Sequence[Event]) -> list[StoredEvent]:
        """Append events, update the run's projection and reseal its head, atomically."""
        with self._write() as db:
            return self._append_locked(db, run_id, events, ts=_now())

    def _append_locked(
        self, db: sqlite3.Connection, run_id: str, events: Sequence[Event], *, ts: str
    ) -> list[StoredEvent]:
        row = db.execute(
            f"SELECT {_RUN_COLUMNS}, head_seq, head_hash FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id} does not exist")
        record = _record_from_row(row)
        seq, prev = row["head_seq"], row["head_hash"]
        stored: list[StoredEvent] = []
        for event in events:
            seq += 1
            payload = dump_payload(event)
            digest = event_hash(
                prev_hash=prev, run_id=run_id, seq=seq, ts=ts, kind=event.kind, payload=payload
            )
            db.execute(
                "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, seq, ts, event.kind, payload, prev, digest),
            )
            if isinstance(event, ApprovalRequested):
                _insert_approval(db, run_id, event, ts)
            record = record.apply(event, ts=ts)
            stored.append(
                StoredEvent(
                    run_id=run_id,
                    seq=seq,
                    ts=ts,
                    kind=event.kind,
                    payload=json.loads(payload),
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        mac = seal(
            self._seal_key,
            run_id=run_id,
            seq=seq,
            head_hash=prev,
            summary=record.sealed_summary(),
        )
        db.execute(
            "UPDATE runs SET status = ?, outcome = ?, reason = ?, cost_usd = ?, "
            "prompt_tokens = ?, completion_tokens = ?, updated_at = ?, event_count = ?, "
            "head_seq = ?, head_hash = ?, head_mac = ? WHERE run_id = ?",
            (
                record.status,
                record.outcome,
                record.reason,
                record.cost_usd,
                record.prompt_tokens,
                record.completion_tokens,
                record.updated_at,
                record.event_count,
                seq,
                prev,
                mac,
                run_id,
            ),
        )
        return stored

    def events(self, run_id: str) -> list[StoredEvent]:
        """All events of a run, in order."""
        self.get_run(run_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [
            StoredEvent(
                run_id=r["run_id"],
                seq=r["seq"],
                ts=r["ts"],
                kind=r["kind"],
                payload=json.loads(r["payload"]),
                prev_hash=r["prev_hash"],
                hash=r["hash"],
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunRecord:
        """One run's record."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
            )
        return _record_from_row(row)

    def list_runs(
        self, *, limit: int = 50, tenant_id: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE 1 = 1"
        params: list[Any] = []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY started_at DESC, run_id LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_record_from_row(r) for r in rows]

    def verify(self, run_id: str | None = None) -> list[ChainReport]:
        """Verify one run's chain (or all runs'), reporting each run's first broken link."""
        with self._lock:
            if run_id is None:
                heads = self._db.execute(
                    f"SELECT {_RUN_COLUMNS}, head_seq, head_hash, head_mac FROM runs "
                    "ORDER BY started_at"
                ).fetchall()
            else:
                heads = self._db.execute(
                    f"SELECT {_RUN_COLUMNS}, head_seq, head_hash, head_mac FROM runs "
                    "WHERE run_id = ?",
                    (run_id,),
                ).fetchall()
                if not heads:
                    raise NotFoundError(f"run {run_id!r} does not exist")
            reports = []
            for head in heads:
                rows = self._db.execute(
                    "SELECT seq, ts, kind, payload, prev_hash, hash FROM events "
                    "WHERE run_id = ? ORDER BY seq",
                    (head["run_id"],),
                )
                reports.append(
                    verify_chain(
                        run_id=head["run_id"],
                        rows=_chain_rows(rows),
                        head_seq=head["head_seq"],
                        head_hash=head["head_hash"],
                        head_mac=head["head_mac"],
                        summary=_record_from_row(head).sealed_summary(),
                        key=self._seal_key,
                    )
                )
        return reports

    # --- approvals -------------------------------------------------------------------------
    def list_approvals(self, *, status: str | None = "pending") -> list[ApprovalRecord]:
        """Approval requests, oldest first."""
        sql = "SELECT * FROM approvals"
        params: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY requested_at", params).fetchall()
        return [ApprovalRecord(**{**dict(r), "diff": json.loads(r["diff"])}) for r in rows]

    # --- identities ------------------------------------------------------------------------
    def add_identity(self, identity: IdentityRecord, *, token_hash: str) -> None:
        """Store a principal; one active agent identity per (agent, workflow, tenant)."""
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO identities (id, kind, name, agent, workflow, tenant_id, roles, "
                    "token_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        identity.id,
                        identity.kind,
                        identity.name,
                        identity.agent,
                        identity.workflow,
                        identity.tenant_id,
                        json.dumps(list(identity.roles)),
                        token_hash,
                        identity.created_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"an active identity already exists for {identity.name}",
                    hint="revoke it first (`charter identity revoke ID`)",
                ) from exc

    def identity_by_token_hash(self, token_hash: str) -> IdentityRecord | None:
        """The principal holding a credential, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM identities WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return None if row is None else _identity_from_row(row)

    def list_identities(self, *, include_revoked: bool = False) -> list[IdentityRecord]:
        """Principals, oldest first."""
        sql = "SELECT * FROM identities"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id").fetchall()
        return [_identity_from_row(r) for r in rows]

    def revoke_identity(self, identity_id: str) -> IdentityRecord:
        """Revoke a credential; every node sees it at its next call through the gate."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE identities SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now(), identity_id),
            )
            row = db.execute("SELECT * FROM identities WHERE id = ?", (identity_id,)).fetchone()
            if row is None:
                raise NotFoundError(
                    f"identity {identity_id!r} does not exist",
                    hint="`charter identity list` shows the identities",
                )
            if cursor.rowcount:
                db.execute("UPDATE control_version SET version = version + 1")
        return _identity_from_row(row)

    # --- kill switches ---------------------------------------------------------------------
    def engage_kill_switch(self, switch: KillSwitch) -> None:
        """Engage a kill switch."""
        with self._write() as db:
            db.execute(
                "INSERT INTO kill_switches (key, agent, workflow, tenant_id, tool, reason, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO "
                "UPDATE SET reason = excluded.reason, created_by = excluded.created_by, "
                "created_at = excluded.created_at",
                (
                    switch.key,
                    switch.agent,
                    switch.workflow,
                    switch.tenant_id,
                    switch.tool,
                    switch.reason,
                    switch.created_by,
                    switch.created_at,
                ),
            )
            db.execute("UPDATE control_version SET version = version + 1")

    def release_kill_switch(self, key: str) -> bool:
        """Release a kill switch by its key."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM kill_switches WHERE key = ?", (key,))
            db.execute("UPDATE control_version SET version = version + 1")
            return cursor.rowcount > 0

    def kill_switches(self) -> list[KillSwitch]:
        """Every engaged kill switch."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM kill_switches ORDER BY created_at").fetchall()
        # A Row iterates its values, so the column names come from keys().
        return [KillSwitch(**{k: r[k] for k in r.keys() if k != "key"}) for r in rows]  # noqa: SIM118

    def control_version(self) -> int:
        """The kill-switch and revocation counter."""
        with self._lock:
            row = self._db.execute("SELECT version FROM control_version").fetchone()
        return int(row[0])


class _Transaction:
    """`BEGIN IMMEDIATE` under the store's lock; commit on success, roll back on any exit."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        self._store._lock.acquire()  # noqa: SLF001 - the transaction is part of the store
        db = self._store._db  # noqa: SLF001
        try:
            # IMMEDIATE takes the write lock now, so two writers never both read a run's head
            # and then race to append after it.
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._store._lock.release()  # noqa: SLF001
            raise
        return db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        db = self._store._db  # noqa: SLF001
        try:
            db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._store._lock.release()  # noqa: SLF001


def _record_values(record: RunRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name.strip()) for name in _RUN_COLUMNS.split(","))


def _record_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**{name.strip(): row[name.strip()] for name in _RUN_COLUMNS.split(",")})


def _identity_from_row(row: sqlite3.Row) -> IdentityRecord:
    return IdentityRecord(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        agent=row["agent"],
        workflow=row["workflow"],
        tenant_id=row["tenant_id"],
        roles=tuple(json.loads(row["roles"])),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _insert_approval(
    db: sqlite3.Connection, run_id: str, event: ApprovalRequested, ts: str
) -> None:
    db.execute(
        "INSERT INTO approvals (request_id, run_id, step, tool, tier, role, approvers, status, "
        "requested_at, expires_at, summary, diff) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
        (
            event.request_id,
            run_id,
            event.step,
            event.tool,
            event.tier,
            event.role,
            event.approvers,
            ts,
            event.expires_at,
            event.summary,
            json.dumps(event.diff),
        ),
    )


def _chain_rows(rows: Iterator[sqlite3.Row] | sqlite3.Cursor) -> Iterator[ChainRow]:
    for r in rows:
        yield ChainRow(
            seq=r["seq"],
            ts=r["ts"],
            kind=r["kind"],
            payload=r["payload"],
            prev_hash=r["prev_hash"],
            hash=r["hash"],
        )
