"""The embedded default store: one SQLite file in WAL mode."""

from __future__ import annotations

import itertools
import json
import operator
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter._events import (
    ApprovalDecided,
    Event,
    RunFinished,
    RunStarted,
    RunSuspended,
)
from charter._time import iso, utcnow
from charter.exceptions import (
    ApprovalRefused,
    LeaseLost,
    NotFoundError,
    SchemaVersionError,
    StateError,
    StoreError,
)
from charter.store._base import (
    ApprovalRecord,
    IdentityRecord,
    KillSwitch,
    Lease,
    RunRecord,
    Store,
    StoredEvent,
    dump_payload,
)
from charter.store._chain import GENESIS, ChainReport, ChainRow, event_hash, seal, verify_chain
from charter.store._lease import lease_is_dead
from charter.store._migrations import MIGRATIONS
from charter.store._sqlite_approvals import approval_from_row, project_approval, wakes_at_once
from charter.store._votes import check_vote, request_status

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from datetime import datetime
    from typing import Literal

__all__ = ["SqliteStore"]

_RUN_COLUMNS = (
    "run_id, agent, workflow, tenant_id, principal_id, model, model_kind, contract_version, "
    "contract_hash, policy_hash, budget_usd, status, outcome, reason, cost_usd, prompt_tokens, "
    "completion_tokens, started_at, updated_at, event_count, initiator, runnable, wake_at"
)


def _now() -> str:
    return iso(utcnow())


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
        self.seal_key = seal_key
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
    def start_run(
        self,
        run_id: str,
        started: RunStarted,
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
        lease_s: float = 300.0,
    ) -> StoredEvent:
        """Create the run row (leased to `owner`, if given) and its first event, atomically."""
        ts = _now()
        record = RunRecord.starting(run_id=run_id, started=started, ts=ts)
        with self._write() as db:
            exists = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if exists:
                raise StoreError(f"run {run_id} already exists")
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, head_seq, head_hash, head_mac, lease_owner, "
                f"lease_expires) VALUES ({', '.join('?' * 23)}, 0, ?, '', ?, ?)",
                (
                    *_record_values(record),
                    GENESIS,
                    owner,
                    None if owner is None else time.time() + lease_s,
                ),
            )
            return self._append_locked(db, run_id, [started], ts=ts, raw=raw)[0]

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
    ) -> list[StoredEvent]:
        """Append events, update the run's projection and reseal its head, atomically."""
        with self._write() as db:
            return self._append_locked(db, run_id, events, ts=_now(), raw=raw, owner=owner)

    def _append_locked(
        self,
        db: sqlite3.Connection,
        run_id: str,
        events: Sequence[Event],
        *,
        ts: str,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
    ) -> list[StoredEvent]:
        row = db.execute(
            f"SELECT {_RUN_COLUMNS}, head_seq, head_hash, lease_owner, cancel_requested "
            "FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id} does not exist")
        if owner is not None and row["lease_owner"] != owner:
            # Fencing: a worker whose lease ran out must not write after its successor.
            raise LeaseLost(f"run {run_id} is held by {row['lease_owner'] or 'no worker'} now")
        record = before = _record_from_row(row)
        if record.final and events:
            raise StateError(f"run {run_id} has ended ({record.status}); nothing can be appended")
        seq, prev = row["head_seq"], row["head_hash"]
        stored: list[StoredEvent] = []
        for event in events:
            seq += 1
            payload = dump_payload(event)
            digest = event_hash(
                prev_hash=prev, run_id=run_id, seq=seq, ts=ts, kind=event.kind, payload=payload
            )
            project_approval(db, run_id, event, ts)
            record = record.apply(event)
            stored.append(
                StoredEvent(
                    run_id=run_id,
                    seq=seq,
                    ts=ts,
                    kind=event.kind,
                    data=payload,
                    prev_hash=prev,
                    hash=digest,
                    step=getattr(event, "step", None),
                )
            )
            prev = digest
        db.executemany(
            "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, e.seq, ts, e.kind, e.data, e.prev_hash, e.hash, e.step) for e in stored],
        )
        record = replace(record, updated_at=ts, event_count=record.event_count + len(events))
        suspended = events[-1] if events and isinstance(events[-1], RunSuspended) else None
        if suspended is not None and wakes_at_once(db, row, suspended):
            record = replace(record, runnable=True, wake_at=None)
        mac = seal(
            self.seal_key,
            run_id=run_id,
            seq=seq,
            head_hash=prev,
            summary=record.sealed_summary(),
        )
        for name, data in (raw or {}).items():
            db.execute(
                "INSERT OR REPLACE INTO payloads (run_id, name, data) VALUES (?, ?, ?)",
                (run_id, name, data),
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
        if (record.runnable, record.wake_at) != (before.runnable, before.wake_at):
            # Apart, because SQLite rewrites an index whenever its columns are SET, changed or
            # not, and most appends leave the scheduling columns alone.
            db.execute(
                "UPDATE runs SET runnable = ?, wake_at = ? WHERE run_id = ?",
                (int(record.runnable), record.wake_at, run_id),
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
                data=r["payload"],
                prev_hash=r["prev_hash"],
                hash=r["hash"],
                step=r["step"],
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
            # One pass over the events in key order (run, seq), not a query per run: a store
            # of many short runs verifies at the rate of its events, not of its queries.
            cursor = self._db.cursor()
            cursor.row_factory = None
            where, params = ("WHERE run_id = ? ", (run_id,)) if run_id else ("", ())
            stream = cursor.execute(
                "SELECT run_id, seq, ts, kind, payload, prev_hash, hash FROM events "
                f"{where}ORDER BY run_id, seq",
                params,
            )
            found: dict[str, ChainReport] = {}
            key = self.seal_key
            by_run = {head["run_id"]: head for head in heads}
            for rid, group in itertools.groupby(stream, key=operator.itemgetter(0)):
                head = by_run.get(rid)
                if head is None:
                    found[rid] = _orphaned(rid)
                    continue
                found[rid] = _verify_head(head, (ChainRow._make(r[1:]) for r in group), key)
            # Runs with no events at all never came up in the pass; they are checked empty.
            reports = [
                found.pop(rid) if rid in found else _verify_head(head, iter(()), key)
                for rid, head in by_run.items()
            ]
        return reports + list(found.values())

    # --- approvals -------------------------------------------------------------------------
    def raw_payloads(self, run_id: str) -> dict[str, bytes]:
        """A run's encrypted raw payloads by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, data FROM payloads WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {r["name"]: bytes(r["data"]) for r in rows}

    # --- scheduling ------------------------------------------------------------------------
    def claim_run(
        self, *, owner: str, workflows: Sequence[str], now: datetime, lease_s: float
    ) -> Lease | None:
        """Lease the longest-idle runnable run of `workflows`, if any."""
        if not workflows:
            return None
        marks = ", ".join("?" * len(workflows))
        clock = time.time()
        with self._write() as db:
            rows = db.execute(
                "SELECT run_id, workflow, lease_owner, lease_expires FROM runs "
                f"WHERE runnable = 1 AND workflow IN ({marks}) "
                "AND (wake_at IS NULL OR wake_at <= ?) "
                "AND (lease_owner IS NULL OR lease_expires < ? OR lease_owner LIKE ?) "
                "ORDER BY lease_owner IS NOT NULL, updated_at LIMIT 64",
                (*workflows, iso(now), clock, owner.partition("/")[0] + "/%"),
            ).fetchall()
            for row in rows:
                holder = row["lease_owner"]
                live = holder is not None and row["lease_expires"] >= clock
                if live and (holder == owner or not lease_is_dead(holder)):
                    continue
                db.execute(
                    "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE run_id = ?",
                    (owner, clock + lease_s, row["run_id"]),
                )
                return Lease(run_id=row["run_id"], workflow=row["workflow"], owner=owner)
        return None

    def renew_leases(self, *, owner: str, lease_s: float) -> int:
        """Extend every lease `owner` holds."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET lease_expires = ? WHERE lease_owner = ?",
                (time.time() + lease_s, owner),
            )
            return cursor.rowcount

    def release_run(self, run_id: str, *, owner: str) -> None:
        """Give up a lease (a no-op if `owner` no longer holds it)."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires = NULL "
                "WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner),
            )

    def cancel_run(self, run_id: str, *, by: str, reason: str) -> RunRecord:
        """Cancel a waiting run now; flag any other for the worker that runs it next.

        Only a waiting run that no one holds can end here: its every step is settled. A run
        that is running, or crashed mid-step, may have an effect whose result is not recorded
        yet; a worker resumes it, settles that step with the same idempotency key, and stops
        before any new one.
        """
        with self._write() as db:
            row = db.execute(
                f"SELECT {_RUN_COLUMNS}, lease_owner, lease_expires FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
                )
            record = _record_from_row(row)
            if record.final:
                raise StateError(
                    f"run {run_id} already ended ({record.status}); there is nothing to cancel"
                )
            why = f"cancelled by {by}: {reason}"
            holder = row["lease_owner"]
            held = (
                holder is not None
                and row["lease_expires"] >= time.time()
                and not lease_is_dead(holder)
            )
            if held or record.status != "waiting":
                db.execute(
                    "UPDATE runs SET cancel_requested = ?, runnable = 1, wake_at = NULL "
                    "WHERE run_id = ?",
                    (why, run_id),
                )
                db.execute("UPDATE control_version SET version = version + 1")
                return record
            finished = RunFinished(
                status="cancelled",
                outcome="abandoned",
                reason=why,
                cost_usd=round(record.cost_usd, 6),
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                code="cancelled",
            )
            self._append_locked(db, run_id, [finished], ts=_now())
            db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE run_id = ?",
                (run_id,),
            )
        return self.get_run(run_id)

    def cancellations(self) -> dict[str, str]:
        """Runs flagged for cancellation and not yet ended, with the reason."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, cancel_requested FROM runs WHERE cancel_requested IS NOT NULL "
                "AND status NOT IN ('completed', 'failed', 'cancelled')"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    # --- approvals -------------------------------------------------------------------------
    def list_approvals(
        self, *, status: str | None = "pending", run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first."""
        sql = "SELECT * FROM approvals WHERE 1 = 1"
        params: list[str] = []
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY requested_at, request_id", params).fetchall()
        return [approval_from_row(r) for r in rows]

    def get_approval(self, request_id: str) -> ApprovalRecord:
        """One approval request."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"approval request {request_id!r} does not exist",
                hint="`charter approvals list` shows the pending requests",
            )
        return approval_from_row(row)

    def decide_approval(
        self,
        request_id: str,
        *,
        approver: IdentityRecord,
        decision: Literal["approve", "deny"],
        reason: str,
        now: datetime,
    ) -> ApprovalDecided:
        """Validate and count one vote, and append it to the run's chain, in one transaction."""
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"approval request {request_id!r} does not exist",
                    hint="`charter approvals list` shows the pending requests",
                )
            request = approval_from_row(row)
            check_vote(request, approver, now, decision=decision)
            # A person counts once, whichever of their credentials they vote with.
            voted = db.execute(
                "SELECT v.decision FROM approval_votes v JOIN identities i "
                "ON i.id = v.approver_id WHERE v.request_id = ? AND i.name = ?",
                (request_id, approver.name),
            ).fetchone()
            if voted is not None:
                raise ApprovalRefused(
                    f"{approver.name} already decided {request_id} ({voted[0]}); "
                    "a person counts once",
                    hint=f"a second approver with role {request.role!r} must decide",
                )
            ts = _now()
            db.execute(
                "INSERT INTO approval_votes (request_id, approver_id, decision, reason, ts) "
                "VALUES (?, ?, ?, ?, ?)",
                (request_id, approver.id, decision, reason, ts),
            )
            granted = db.execute(
                "SELECT count(*) FROM approval_votes WHERE request_id = ? AND decision = 'approve'",
                (request_id,),
            ).fetchone()[0]
            status = request_status(decision, granted=granted, needed=request.approvers)
            event = ApprovalDecided(
                step=request.step,
                request_id=request_id,
                decision=decision,
                approver_id=approver.id,
                approver=approver.name,
                reason=reason,
                granted=granted,
                needed=request.approvers,
                status=status,
            )
            self._append_locked(db, request.run_id, [event], ts=ts)
        return event

    def due_approvals(self, *, now: datetime, workflows: Sequence[str]) -> list[ApprovalRecord]:
        """Pending requests past their expiry, for runs of these workflows."""
        if not workflows:
            return []
        marks = ", ".join("?" * len(workflows))
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM approvals a JOIN runs r ON r.run_id = a.run_id "
                f"WHERE a.status = 'pending' AND a.expires_at <= ? AND r.workflow IN ({marks}) "
                "ORDER BY a.expires_at",
                (iso(now), *workflows),
            ).fetchall()
        return [approval_from_row(r) for r in rows]

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

    def get_identity(self, identity_id: str) -> IdentityRecord | None:
        """A principal by id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM identities WHERE id = ?", (identity_id,)
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
    values = {name.strip(): row[name.strip()] for name in _RUN_COLUMNS.split(",")}
    return RunRecord(**{**values, "runnable": bool(values["runnable"])})


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


def _verify_head(head: sqlite3.Row, rows: Iterator[ChainRow], key: bytes) -> ChainReport:
    return verify_chain(
        run_id=head["run_id"],
        rows=rows,
        head_seq=head["head_seq"],
        head_hash=head["head_hash"],
        head_mac=head["head_mac"],
        summary=_record_from_row(head).sealed_summary(),
        key=key,
    )


def _orphaned(run_id: str) -> ChainReport:
    """A run whose events remain but whose head row is gone: it was deleted from the file."""
    return ChainReport(
        run_id=run_id,
        ok=False,
        events_checked=0,
        broken_at=1,
        problem="the run's events are stored but its head row is missing: it was deleted",
    )
