"""Verifying a whole store: runs, control log, ledger, identities, and a checkpoint if given.

One read snapshot, one pass over the events in key order, so a store of a million events
verifies at the rate SHA-256 and the driver allow; no row, however malformed, stops it: a
value of the wrong type is a broken link like any other.
"""

from __future__ import annotations

import itertools
import json
import operator
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from charter._time import iso, utcnow
from charter.exceptions import NotFoundError
from charter.store._chain import GENESIS, ChainReport, ChainRow, seal, verify_chain
from charter.store._checkpoint import Checkpoint
from charter.store._controls import CONTROL_CHAIN
from charter.store._ledger import (
    Claim,
    LedgerReport,
    LedgerRow,
    append_claims,
    read_head,
    verify_ledger,
)
from charter.store._rows import RUN_COLUMNS, record_from_row

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from charter.store._db import Db, Row

__all__ = ["AuditSql", "StoreReport"]

_HEADS = f"SELECT {RUN_COLUMNS}, head_seq, head_hash, head_mac FROM runs"
_UNREADABLE = (TypeError, ValueError, KeyError, AttributeError, OverflowError)
"""What reading a row of the wrong shape raises; verification reports it, never raises it."""


@dataclass(frozen=True, kw_only=True)
class StoreReport:
    """What `charter audit verify` found in a store."""

    runs: list[ChainReport]
    control: ChainReport
    ledger: LedgerReport
    identities: list[tuple[str, str]] = field(default_factory=list)
    """(identity id, problem) for every principal that does not match the control log."""
    problems: list[str] = field(default_factory=list)
    """Store-wide findings: runs deleted, runs no ledger entry knows, a checkpoint not met."""
    checkpoint: Checkpoint | None = None
    """The checkpoint verified against, if one was given."""

    @property
    def ok(self) -> bool:
        """Nothing broken anywhere."""
        return (
            all(r.ok for r in self.runs)
            and self.control.ok
            and self.ledger.ok
            and not self.identities
            and not self.problems
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the shape `charter audit verify --json` prints."""
        broken = [r for r in self.runs if not r.ok]
        ledger = self.ledger
        return {
            "ok": self.ok,
            "runs": len(self.runs),
            "broken": len(broken),
            "events": sum(r.events_checked for r in self.runs),
            "reports": [r.__dict__ for r in self.runs],
            "control_log": self.control.__dict__,
            "ledger": {
                "ok": ledger.ok,
                "entries": ledger.entries,
                "store_id": ledger.store_id,
                "problem": ledger.problem,
                "broken_at": ledger.broken_at,
                "checkpoints": len(ledger.checkpoints),
                "adopted_runs": ledger.adopted,
            },
            "identities": [{"id": i, "problem": p} for i, p in self.identities],
            "problems": self.problems,
            "checkpoint": None
            if self.checkpoint is None
            else {
                "ts": self.checkpoint.ts,
                "ledger_seq": self.checkpoint.ledger_seq,
                "key_id": self.checkpoint.key_id,
            },
        }


class AuditSql:
    """Verification and checkpoints, in SQL shared by both backends."""

    seal_key: bytes
    _FOR_UPDATE: ClassVar[str]

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Db]: ...

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Db]: ...

    @abstractmethod
    def _snapshot(self) -> AbstractContextManager[Db]: ...

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]: ...

    @abstractmethod
    def identity_problems(self) -> list[tuple[str, str]]: ...

    # --- runs ------------------------------------------------------------------------------
    def verify(self, run_id: str | None = None) -> list[ChainReport]:
        """Verify one run's chain (or every run's) against its seal and the ledger's claims."""
        with self._snapshot() as db:
            if run_id is not None:
                return [self._verify_one(db, run_id)]
            ledger = self._ledger(db)
            return self._verify_runs(db, ledger.claims)[0]

    def _verify_one(self, db: Db, run_id: str) -> ChainReport:
        heads = db.execute(f"{_HEADS} WHERE run_id = ?", (run_id,)).fetchall()
        if not heads:
            raise NotFoundError(
                f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
            )
        claimed = db.execute(
            "SELECT head_seq, head_hash FROM ledger WHERE subject = ? AND kind = 'run'", (run_id,)
        ).fetchall()
        claims = {run_id: {r[0]: r[1] for r in claimed}}
        stream = self._stream(
            "SELECT run_id, seq, ts, kind, payload, prev_hash, hash, digest FROM events "
            "WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        (report,) = self._walk(db, heads, stream, claims)[0]
        if not claimed and report.ok:
            report = _unclaimed(report)
        return report

    def _verify_runs(
        self, db: Db, claims: Mapping[str, Mapping[int, str]]
    ) -> tuple[list[ChainReport], list[str]]:
        """Every run's report, and the runs the ledger knows that are gone."""
        heads = db.execute(f"{_HEADS} ORDER BY started_at").fetchall()
        # One pass over the events in key order (run, seq), not a query per run: a store of
        # many short runs verifies at the rate of its events, not of its queries.
        stream = self._stream(
            "SELECT run_id, seq, ts, kind, payload, prev_hash, hash, digest FROM events "
            "ORDER BY run_id, seq",
            (),
        )
        reports, orphans = self._walk(db, heads, stream, claims)
        present = {r.run_id for r in reports}
        reports = [r if r.run_id in claims or not r.ok else _unclaimed(r) for r in reports]
        deleted = [
            f"run {rid} is gone: the ledger recorded its event {max(claimed)}, so it was "
            "deleted from the database"
            for rid, claimed in claims.items()
            if rid != CONTROL_CHAIN and rid not in present and claimed
        ]
        return reports + orphans, deleted

    def _walk(
        self,
        db: Db,
        heads: list[Row],
        stream: Iterable[tuple[Any, ...]],
        claims: Mapping[str, Mapping[int, str]],
    ) -> tuple[list[ChainReport], list[ChainReport]]:
        found: dict[Any, ChainReport] = {}
        key = self.seal_key
        by_run = {head["run_id"]: head for head in heads}
        orphans: list[ChainReport] = []
        for rid, group in itertools.groupby(stream, key=operator.itemgetter(0)):
            head = by_run.get(rid)
            if head is None:
                orphans.append(_orphaned(str(rid)))
                continue
            rows = (ChainRow._make(r[1:]) for r in group)
            found[rid] = _verify_head(head, rows, key, claims.get(rid, {}))
        # Runs with no events at all never came up in the pass; they are checked empty.
        reports = [
            found.pop(rid) if rid in found else _verify_head(head, iter(()), key, claims.get(rid))
            for rid, head in by_run.items()
        ]
        if any(r.events_purged for r in reports):
            purged_by_retention = _retention_runs(db)
            reports = [_purge_recorded(r, purged_by_retention) for r in reports]
        return reports, orphans

    # --- the whole store -------------------------------------------------------------------
    def audit(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        trusted: Ed25519PublicKey | None = None,
    ) -> StoreReport:
        """Verify everything: runs, control log, ledger, identities, and `checkpoint` if given.

        `trusted`: the public key the checkpoint must be signed with (an auditor's copy); by
        default the checkpoint's own key, which proves the file is whole but not whose it is.
        """
        with self._snapshot() as db:
            ledger = self._ledger(db)
            runs, problems = self._verify_runs(db, ledger.claims)
            control = self._verify_control(db, ledger.claims.get(CONTROL_CHAIN, {}))
            if checkpoint is not None:
                problems += self._against(db, ledger, checkpoint, trusted)
        identities = self.identity_problems()
        return StoreReport(
            runs=runs,
            control=control,
            ledger=ledger,
            identities=identities,
            problems=problems,
            checkpoint=checkpoint,
        )

    def _ledger(self, db: Db) -> LedgerReport:
        rows = self._stream(
            "SELECT seq, ts, kind, subject, head_seq, head_hash, detail, prev_hash, hash "
            "FROM ledger ORDER BY seq",
            (),
        )
        return verify_ledger((LedgerRow._make(r) for r in rows), read_head(db), self.seal_key)

    def _against(
        self,
        db: Db,
        ledger: LedgerReport,
        checkpoint: Checkpoint,
        trusted: Ed25519PublicKey | None,
    ) -> list[str]:
        """What the store fails of a checkpoint kept outside it."""
        problem = checkpoint.signature_problem(trusted)
        if problem is not None:
            return [problem]
        if checkpoint.store_id != ledger.store_id:
            return [
                (
                    f"the checkpoint is of store {checkpoint.store_id}, this is store "
                    f"{ledger.store_id}: another store, or this one rebuilt from scratch"
                )
            ]
        row = db.execute(
            "SELECT hash FROM ledger WHERE seq = ?", (checkpoint.ledger_seq,)
        ).fetchone()
        if row is None or row[0] != checkpoint.ledger_hash:
            return [
                (
                    f"the store does not hold the ledger of the checkpoint of {checkpoint.ts} "
                    f"(entry {checkpoint.ledger_seq}): it was rolled back to an older state, "
                    "or its ledger rewritten"
                )
            ]
        return []

    # --- the control log -------------------------------------------------------------------
    def verify_control_log(self) -> ChainReport:
        """Check the control log's chain, its seal, and that it holds what the ledger recorded."""
        with self._snapshot() as db:
            claimed = db.execute(
                "SELECT head_seq, head_hash FROM ledger WHERE subject = ?", (CONTROL_CHAIN,)
            ).fetchall()
            return self._verify_control(db, {r[0]: r[1] for r in claimed})

    def _verify_control(self, db: Db, claims: Mapping[int, str]) -> ChainReport:
        rows = self._stream(
            "SELECT seq, ts, action, payload, prev_hash, hash FROM control_log ORDER BY seq", ()
        )
        head = db.execute("SELECT value FROM store_settings WHERE name = 'control_head'").fetchone()
        parts = head[0].split(":") if head is not None and isinstance(head[0], str) else []
        if len(parts) == 3 and parts[0].isdigit():  # noqa: PLR2004 - seq:hash:mac
            seq, digest, mac = int(parts[0]), parts[1], parts[2]
        else:
            seq, digest, mac = 0, GENESIS, ""
            if head is None:
                # An empty log has no head yet; the ledger's claims say whether it was emptied.
                mac = seal(
                    self.seal_key, run_id=CONTROL_CHAIN, seq=0, head_hash=GENESIS, summary=""
                )
        return verify_chain(
            run_id=CONTROL_CHAIN,
            # The control log hashes its payloads whole: no digest column.
            rows=(ChainRow._make((*r, None)) for r in rows),
            head_seq=seq,
            head_hash=digest,
            head_mac=mac,
            summary="",
            key=self.seal_key,
            claims=claims,
        )

    # --- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, private: Ed25519PrivateKey) -> Checkpoint:
        """Claim every run's current head, then sign the ledger's head and record that too.

        Resting runs are claimed already (a suspension or an end is a milestone); this claims
        the heads of runs caught mid-step, so the checkpoint pins every run as it is now.
        """
        ts = iso(utcnow())
        with self._transaction() as db:
            moved = db.execute(
                "SELECT r.run_id, r.head_seq, r.head_hash FROM runs r WHERE r.head_seq > "
                "COALESCE((SELECT max(l.head_seq) FROM ledger l WHERE l.subject = r.run_id), 0) "
                "ORDER BY r.run_id"
            ).fetchall()
            head = append_claims(
                db,
                self.seal_key,
                [Claim("run", r[0], r[1], r[2], "checkpoint") for r in moved],
                ts=ts,
                for_update=self._FOR_UPDATE,
            )
            store_id = db.execute(
                "SELECT value FROM store_settings WHERE name = 'store_id'"
            ).fetchone()[0]
            runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
            signed = Checkpoint.sign(
                private,
                store_id=store_id,
                ts=ts,
                ledger_seq=head.seq,
                ledger_hash=head.hash,
                runs=int(runs),
            )
            append_claims(
                db,
                self.seal_key,
                [Claim("checkpoint", signed.key_id, head.seq, head.hash, signed.to_json())],
                ts=ts,
                for_update=self._FOR_UPDATE,
            )
        return signed


def _verify_head(
    head: Row, rows: Iterator[ChainRow], key: bytes, claims: Mapping[int, str] | None
) -> ChainReport:
    try:
        summary = record_from_row(head).sealed_summary()
        return verify_chain(
            run_id=head["run_id"],
            rows=rows,
            head_seq=head["head_seq"],
            head_hash=head["head_hash"],
            head_mac=head["head_mac"],
            summary=summary,
            key=key,
            claims=claims,
        )
    except _UNREADABLE as exc:
        return ChainReport(
            run_id=str(head["run_id"]),
            ok=False,
            events_checked=0,
            broken_at=1,
            problem=f"the run's row is unreadable ({type(exc).__name__}): it was altered "
            "outside Charter",
        )


def _retention_runs(db: Db) -> set[str]:
    """The runs whose redacted payloads a retention entry of the control log says it dropped."""
    rows = db.execute("SELECT payload FROM control_log WHERE action = 'retention'").fetchall()
    found: set[str] = set()
    for row in rows:
        try:
            found.update(json.loads(row["payload"]).get("runs", []))
        except _UNREADABLE:
            continue  # an unreadable entry vouches for nothing; the chain reports it
    return found


def _purge_recorded(report: ChainReport, purged_by_retention: set[str]) -> ChainReport:
    """A run with dropped payloads verifies only if retention, on record, dropped them.

    The database lets a marker replace a payload (that is how retention drops it), so a
    marker alone proves nothing; the control log, sealed apart, says which runs were purged.
    """
    if not report.events_purged or report.run_id in purged_by_retention:
        return report
    return replace(
        report,
        ok=False,
        broken_at=1,
        problem=(
            f"{report.events_purged} event(s) were dropped as purged, but no retention entry "
            "of the control log names this run: they were hidden, not purged"
        ),
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


def _unclaimed(report: ChainReport) -> ChainReport:
    """A run the ledger has never heard of: its start would have been claimed."""
    return replace(
        report,
        ok=False,
        broken_at=1,
        problem="no ledger entry knows this run: it was inserted outside Charter",
    )
