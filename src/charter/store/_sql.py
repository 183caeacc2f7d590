"""What every SQL backend shares: the queries, the append transaction, leases and approvals.

A backend (`SqliteStore`, `PostgresStore`) supplies a connection and the few things its
database does differently: how a write transaction begins, how rows are locked, how a claim
skips rows another worker is claiming, and how other nodes hear of a change. Everything else,
the chain above all, is written once here, so the two backends cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from charter._events import (
    ApprovalDecided,
    ApprovalExpired,
    Event,
    RunFinished,
    RunStarted,
    RunSuspended,
    ToolProposed,
)
from charter._time import iso, utcnow
from charter.exceptions import (
    ApprovalRefused,
    ConfigError,
    ControlChanged,
    LeaseLost,
    NotFoundError,
    SchemaOutdated,
    SchemaVersionError,
    StateError,
    StoreError,
)
from charter.privacy._vault import sealed_key_id
from charter.store._approvals import approval_from_row, project_approval, wakes_at_once
from charter.store._audit import AuditSql
from charter.store._base import (
    ApprovalRecord,
    IdentityRecord,
    Lease,
    RunRecord,
    Store,
    StoredEvent,
    dump_payload,
)
from charter.store._cache import CacheSql
from charter.store._chain import (
    GENESIS,
    event_hash,
    payload_digest,
    seal,
)
from charter.store._controls import CONTROL_CHAIN, ControlSql
from charter.store._identities import IdentitySql
from charter.store._lease import lease_is_dead
from charter.store._ledger import Claim, append_claims, start_ledger
from charter.store._limits import apply_charges
from charter.store._privacy import PrivacySql
from charter.store._providers import ProviderSql
from charter.store._rows import RUN_COLUMNS, record_from_row, record_values
from charter.store._votes import check_vote, request_status

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from typing import Literal

    from charter.privacy import KeyProvider
    from charter.store._db import Db, Row
    from charter.store._limits import Charge

__all__ = ["SchemaState", "SqlStore"]

_SEAL_CHECK = b"charter: this database is sealed with this key"


def _now() -> str:
    return iso(utcnow())


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    """The schema version a store found when it opened, and the one it runs at now."""

    found: int
    current: int

    @property
    def upgraded(self) -> bool:
        """Opening the store applied migrations."""
        return self.current > self.found


class SqlStore(ControlSql, IdentitySql, ProviderSql, AuditSql, CacheSql, PrivacySql, Store):
    """A `Store` on a SQL database; subclasses bind it to a driver.

    Each aggregate's SQL is a class of its own, all of them built on `SqlHost`'s helpers.

    One connection per store, guarded by a lock: a store is shared by the threads of one
    process (the worker, its lease heartbeat, the gate's tool threads), and serialising them
    here is cheaper than a connection each. Other processes and nodes are coordinated by the
    database: write transactions, row locks and the run leases.
    """

    migrations: ClassVar[tuple[tuple[str, ...], ...]]
    """This backend's schema migrations, in order; never edit one that has shipped."""
    _SKIP_LOCKED: ClassVar[str] = ""
    """Appended to the claim's SELECT, so concurrent claimers pass each other's candidates."""
    _LEDGER_VERSION: ClassVar[int]
    """The migration that brings the ledger (the backends number their migrations apart)."""

    schema: SchemaState
    """The schema version found at open, and the one now."""

    def __init__(self, *, seal_key: bytes, keys: KeyProvider) -> None:
        """Set up what every backend has; the subclass connects, then calls `_open`."""
        self.seal_key = seal_key
        self.keys = keys
        self._lock = threading.Lock()
        self._wake = threading.Event()

    # --- what a backend provides (besides `SqlHost`'s transactions and reads) ------------------
    @abstractmethod
    def _clock(self, db: Db) -> float:
        """Seconds since the epoch by the clock every node's leases are judged by."""

    def _lock_schema(self, db: Db) -> None:
        """Keep other nodes out of the schema while this one migrates it (within `db`)."""

    def _notify(self, db: Db, topic: str) -> None:  # noqa: ARG002 - a backend publishes
        """Wake this process's waiting workers at once; a backend also tells other nodes."""
        self._wake.set()

    # --- opening ---------------------------------------------------------------------------
    def _open(self, *, upgrade: bool) -> None:
        """Bring the schema up to date (or check it is) and check the seal key is this store's."""
        with self._transaction() as db:
            self._lock_schema(db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            current = db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
            latest = len(self.migrations)
            if current > latest:
                raise SchemaVersionError(
                    f"{self.name}: schema version {current} is newer than this Charter "
                    f"knows ({latest})",
                    hint="upgrade Charter on this node before pointing it at this database",
                )
            if current < latest and not upgrade:
                raise SchemaOutdated(
                    f"{self.name}: schema version {current}, this Charter needs {latest}",
                    database=self.name,
                    found=current,
                    latest=latest,
                    hint="run `charter db upgrade` (or unset CHARTER_AUTO_UPGRADE=0)",
                )
            for version in range(current + 1, latest + 1):
                for statement in self.migrations[version - 1]:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            self._check_seal_key(db)
            if current < self._LEDGER_VERSION <= latest:
                self._start_ledger(db)
        self.schema = SchemaState(found=current, current=latest)

    def _start_ledger(self, db: Db) -> None:
        """Give the store its ledger, in the transaction that brings the ledger's schema.

        A store made before the ledger existed has its identities put on the control log and
        its runs' heads claimed as they are now (`adopted`): from the upgrade on, deleting or
        rolling back any of them is detected. Only ever here, never when a ledger is found
        missing later: that is tampering, and rebuilding it would launder it.
        """
        ts = _now()
        start_ledger(db, self.seal_key, ts=ts)
        self._adopt_identities(db)
        heads = db.execute("SELECT run_id, head_seq, head_hash FROM runs ORDER BY started_at")
        claims = [Claim("run", r[0], r[1], r[2], "adopted") for r in heads.fetchall()]
        control = db.execute("SELECT seq, hash FROM control_log ORDER BY seq DESC LIMIT 1")
        claims += [
            Claim("control", CONTROL_CHAIN, r[0], r[1], "adopted") for r in control.fetchall()
        ]
        if claims:
            append_claims(db, self.seal_key, claims, ts=ts)

    def _check_seal_key(self, db: Db) -> None:
        """Refuse a seal key other than the one this database's runs are sealed with.

        Every node must seal with one key, or no node could verify another's runs; a node
        started without the key file would otherwise make a new key and seal with it.
        """
        check = hmac.new(self.seal_key, _SEAL_CHECK, hashlib.sha256).hexdigest()
        row = db.execute("SELECT value FROM store_settings WHERE name = 'seal_check'").fetchone()
        if row is None:
            db.execute(
                "INSERT INTO store_settings (name, value) VALUES ('seal_check', ?)", (check,)
            )
        elif not hmac.compare_digest(row[0], check):
            raise ConfigError(
                f"{self.name}: this node's seal key is not the one this database is sealed with",
                hint="give every node the same key: copy seal.key from a node that ran here, "
                "or point CHARTER_SEAL_KEY_FILE at it",
            )

    def _bump_control(self, db: Db) -> None:
        """Mark a kill-switch, revocation or cancellation change for every node's gate."""
        db.execute("UPDATE control_version SET version = version + 1")
        self._notify(db, "control")

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a run may have become runnable, or `timeout` seconds pass.

        Returns True when woken by a change (in this process, or from another node where the
        backend carries notifications), False on timeout; either way, poll the store next.
        """
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

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
        with self._transaction() as db:
            expires = None if owner is None else self._clock(db) + lease_s
            try:
                db.execute(
                    f"INSERT INTO runs ({RUN_COLUMNS}, head_seq, head_hash, head_mac, "
                    f"lease_owner, lease_expires) VALUES ({', '.join('?' * 23)}, 0, ?, '', ?, ?)",
                    (*record_values(record), GENESIS, owner, expires),
                )
            except self._UNIQUE_VIOLATION as exc:
                raise StoreError(f"run {run_id} already exists") from exc
            if owner is None:
                self._notify(db, "runnable")
            return self._append_locked(db, run_id, [started], ts=ts, raw=raw)[0]

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
        charges: Sequence[Charge] = (),
        control_version: int | None = None,
    ) -> list[StoredEvent]:
        """Append events, update the run's projection and reseal its head, atomically."""
        with self._transaction() as db:
            return self._append_locked(
                db,
                run_id,
                events,
                ts=_now(),
                raw=raw,
                owner=owner,
                charges=charges,
                control_version=control_version,
            )

    def _append_locked(
        self,
        db: Db,
        run_id: str,
        events: Sequence[Event],
        *,
        ts: str,
        raw: Mapping[str, bytes] | None = None,
        owner: str | None = None,
        charges: Sequence[Charge] = (),
        control_version: int | None = None,
    ) -> list[StoredEvent]:
        # The control version rides on the run's read: checking it costs no round trip.
        row = db.execute(
            f"SELECT {RUN_COLUMNS}, head_seq, head_hash, lease_owner, cancel_requested, "
            "(SELECT version FROM control_version) AS control_now "
            f"FROM runs WHERE run_id = ?{self._FOR_UPDATE}",
            (run_id,),
        ).fetchone()
        record = before = _checked_head(row, run_id, events, owner, control_version)
        if charges:
            # After the run's lock, so a fenced-out worker charges nothing.
            apply_charges(db, charges, now=self._clock(db), for_update=self._FOR_UPDATE)
        seq, prev = row["head_seq"], row["head_hash"]
        stored: list[StoredEvent] = []
        for event in events:
            seq += 1
            payload = dump_payload(event)
            covered = payload_digest(payload)
            digest = event_hash(
                prev_hash=prev, run_id=run_id, seq=seq, ts=ts, kind=event.kind, payload=covered
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
                    digest=covered,
                )
            )
            prev = digest
        db.executemany(
            "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step, digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, e.seq, ts, e.kind, e.data, e.prev_hash, e.hash, e.step, e.digest)
                for e in stored
            ],
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
        if any(_milestone(e) for e in events):
            append_claims(
                db,
                self.seal_key,
                [Claim("run", run_id, seq, prev, events[-1].kind)],
                ts=ts,
                for_update=self._FOR_UPDATE,
            )
        if raw:
            db.executemany(
                "INSERT INTO payloads (run_id, name, data, key_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, name) DO UPDATE SET data = excluded.data, "
                "key_id = excluded.key_id",
                [(run_id, name, data, sealed_key_id(data)) for name, data in raw.items()],
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
                "UPDATE runs SET runnable = ?, wake_at = ?, paused_by = ? WHERE run_id = ?",
                (int(record.runnable), record.wake_at, _paused_by(suspended), run_id),
            )
            if record.runnable and owner is None:
                self._notify(db, "runnable")
        return stored

    def events(self, run_id: str) -> list[StoredEvent]:
        """All events of a run, in order."""
        self.get_run(run_id)
        with self._reading() as db:
            rows = db.execute(
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
                digest=r["digest"],
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunRecord:
        """One run's record."""
        with self._reading() as db:
            row = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
            )
        return record_from_row(row)

    def list_runs(
        self, *, limit: int = 50, tenant_id: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""
        where, params = _where(tenant_id=tenant_id, status=status)
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs{where} ORDER BY started_at DESC, run_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [record_from_row(r) for r in rows]

    # --- approvals -------------------------------------------------------------------------
    def raw_payloads(self, run_id: str) -> dict[str, bytes]:
        """A run's encrypted raw payloads by name."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT name, data FROM payloads WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {r["name"]: bytes(r["data"]) for r in rows}

    # --- scheduling ------------------------------------------------------------------------
    def claim_run(
        self, *, owner: str, workflows: Sequence[str], now: datetime, lease_s: float
    ) -> Lease | None:
        """Lease the longest-idle runnable run of `workflows`, if any.

        First a run no one holds (or whose lease ran out), taking one row and skipping rows
        other claimers or appenders have locked; failing that, a run held by a process on this
        host that is gone, taken by compare-and-set on its dead owner.
        """
        if not workflows:
            return None
        marks = ", ".join("?" * len(workflows))
        runnable = f"runnable = 1 AND workflow IN ({marks}) AND (wake_at IS NULL OR wake_at <= ?)"
        with self._transaction() as db:
            clock = self._clock(db)
            row = db.execute(
                f"SELECT run_id, workflow FROM runs WHERE {runnable} "
                "AND (lease_owner IS NULL OR lease_expires < ?) "
                f"ORDER BY updated_at LIMIT 1{self._SKIP_LOCKED}",
                (*workflows, iso(now), clock),
            ).fetchone()
            taken = None if row is None else (row["run_id"], row["workflow"], None)
            if taken is None:
                held_here = db.execute(
                    f"SELECT run_id, workflow, lease_owner FROM runs WHERE {runnable} "
                    "AND lease_owner LIKE ? AND lease_owner != ? LIMIT 64",
                    (*workflows, iso(now), owner.partition("/")[0] + "/%", owner),
                ).fetchall()
                taken = next(
                    (
                        (r["run_id"], r["workflow"], r["lease_owner"])
                        for r in held_here
                        if lease_is_dead(r["lease_owner"])
                    ),
                    None,
                )
            if taken is None:
                return None
            run_id, workflow, dead = taken
            # The free row is locked (or the whole file is, on SQLite); the dead worker's row
            # is not, so it is taken only if it is still the dead worker's.
            fence, params = ("", ()) if dead is None else (" AND lease_owner = ?", (dead,))
            cursor = db.execute(
                f"UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE run_id = ?{fence}",
                (owner, clock + lease_s, run_id, *params),
            )
            if cursor.rowcount == 0:
                return None  # another node took the dead worker's run first
        return Lease(run_id=run_id, workflow=workflow, owner=owner)

    def renew_leases(self, *, owner: str, lease_s: float) -> int:
        """Extend every lease `owner` holds."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET lease_expires = ? WHERE lease_owner = ?",
                (self._clock(db) + lease_s, owner),
            )
            return cursor.rowcount

    def release_run(self, run_id: str, *, owner: str) -> None:
        """Give up a lease (a no-op if `owner` no longer holds it)."""
        with self._transaction() as db:
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
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {RUN_COLUMNS}, lease_owner, lease_expires FROM runs "
                f"WHERE run_id = ?{self._FOR_UPDATE}",
                (run_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
                )
            record = record_from_row(row)
            if record.final:
                raise StateError(
                    f"run {run_id} already ended ({record.status}); there is nothing to cancel"
                )
            why = f"cancelled by {by}: {reason}"
            holder = row["lease_owner"]
            held = (
                holder is not None
                and row["lease_expires"] >= self._clock(db)
                and not lease_is_dead(holder)
            )
            if held or record.status != "waiting":
                db.execute(
                    "UPDATE runs SET cancel_requested = ?, runnable = 1, wake_at = NULL "
                    "WHERE run_id = ?",
                    (why, run_id),
                )
                self._bump_control(db)
                self._notify(db, "runnable")
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
        with self._reading() as db:
            rows = db.execute(
                "SELECT run_id, cancel_requested FROM runs WHERE cancel_requested IS NOT NULL "
                "AND status NOT IN ('completed', 'failed', 'cancelled')"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    # --- approvals -------------------------------------------------------------------------
    def list_approvals(
        self, *, status: str | None = "pending", run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first."""
        where, params = _where(status=status, run_id=run_id)
        with self._reading() as db:
            rows = db.execute(
                f"SELECT * FROM approvals{where} ORDER BY requested_at, request_id", params
            ).fetchall()
        return [approval_from_row(r) for r in rows]

    def get_approval(self, request_id: str) -> ApprovalRecord:
        """One approval request."""
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is None:
            raise _no_such_request(request_id)
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
        with self._transaction() as db:
            found = db.execute(
                "SELECT run_id FROM approvals WHERE request_id = ?", (request_id,)
            ).fetchone()
            if found is None:
                raise _no_such_request(request_id)
            # Lock the run, then the request: the order an append (an expiry) takes them in,
            # so a vote and an expiry on one request queue up instead of deadlocking. Votes on
            # one request queue on its row, so each counts the votes before it.
            run = db.execute(
                f"SELECT tenant_id, workflow FROM runs WHERE run_id = ?{self._FOR_UPDATE}",
                (found[0],),
            ).fetchone()
            row = db.execute(
                f"SELECT * FROM approvals WHERE request_id = ?{self._FOR_UPDATE}", (request_id,)
            ).fetchone()
            request = approval_from_row(row)
            check_vote(
                request,
                approver,
                now,
                decision=decision,
                tenant=run["tenant_id"],
                workflow=run["workflow"],
            )
            # A person counts once, whichever of their credentials (or IdPs) they vote with.
            voter = approver.subject or approver.name
            voted = db.execute(
                "SELECT decision FROM approval_votes WHERE request_id = ? AND subject = ?",
                (request_id, voter),
            ).fetchone()
            if voted is not None:
                raise ApprovalRefused(
                    f"{approver.name} already decided {request_id} ({voted[0]}); "
                    "a person counts once",
                    hint=f"a second approver with role {request.role!r} must decide",
                )
            ts = _now()
            db.execute(
                "INSERT INTO approval_votes (request_id, approver_id, decision, reason, ts, "
                "subject) VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, approver.id, decision, reason, ts, voter),
            )
            granted = db.execute(
                "SELECT count(DISTINCT subject) FROM approval_votes "
                "WHERE request_id = ? AND decision = 'approve'",
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
        with self._reading() as db:
            rows = db.execute(
                "SELECT a.* FROM approvals a JOIN runs r ON r.run_id = a.run_id "
                f"WHERE a.status = 'pending' AND a.expires_at <= ? AND r.workflow IN ({marks}) "
                "ORDER BY a.expires_at",
                (iso(now), *workflows),
            ).fetchall()
        return [approval_from_row(r) for r in rows]


def _checked_head(
    row: Row | None,
    run_id: str,
    events: Sequence[Event],
    owner: str | None,
    control_version: int | None,
) -> RunRecord:
    """The run's record, if this append may go on.

    It may if the run exists, `owner` holds it, it has not ended, and the controls are still
    those the caller judged under.
    """
    if row is None:
        raise NotFoundError(f"run {run_id} does not exist")
    if owner is not None and row["lease_owner"] != owner:
        # Fencing: a worker whose lease ran out must not write after its successor.
        raise LeaseLost(f"run {run_id} is held by {row['lease_owner'] or 'no worker'} now")
    record = record_from_row(row)
    if record.final and events:
        raise StateError(f"run {run_id} has ended ({record.status}); nothing can be appended")
    if control_version is not None and row["control_now"] != control_version:
        raise ControlChanged(
            f"controls moved to version {row['control_now']} since the call was judged",
            version=row["control_now"],
        )
    return record


_MILESTONES = (RunStarted, RunSuspended, RunFinished, ApprovalDecided, ApprovalExpired)


def _milestone(event: Event) -> bool:
    """Whether an append carrying `event` claims the run's head on the store's ledger.

    A run's rest points (start, suspension, end), the decisions people made on it, and every
    write or irreversible intent: a rollback to before any of them would hide an effect or a
    decision, so each is pinned. Reads and model turns are not, to keep steps cheap.
    """
    if isinstance(event, _MILESTONES):
        return True
    return isinstance(event, ToolProposed) and event.effect in ("write", "irreversible")


def _paused_by(suspended: RunSuspended | None) -> str | None:
    """The kill switch a suspension waits on, if it is a kill switch's pause."""
    if suspended is None:
        return None
    waits = [w.removeprefix("kill_switch:") for w in suspended.waiting_on]
    paused = [w for w, full in zip(waits, suspended.waiting_on, strict=True) if w != full]
    return paused[0] if paused else None


def _where(**equal: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause matching each column given a value (None: any), and its parameters.

    The column names are the caller's keyword names, never input.
    """
    given = {column: value for column, value in equal.items() if value is not None}
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c in given), tuple(given.values())


def _no_such_request(request_id: str) -> NotFoundError:
    return NotFoundError(
        f"approval request {request_id!r} does not exist",
        hint="`charter approvals list` shows the pending requests",
    )
