"""Verifying a whole store: runs, control log, ledger, principals, kill switches, checkpoint.

One read snapshot; one pass over the events in key order (run, seq), not a query per run, so a
store of a million events verifies at the rate SHA-256 and the driver allow. No row, however
malformed, stops it: a value of the wrong type is a broken link like any other.

The runs' pass is in `_runpass`; a big store shares it between processes (`_parallel`), all
reading the same snapshot. The ledger, the control log, the principals and the kill switches
are checked here, once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from charter._time import iso, utcnow
from charter.exceptions import NotFoundError
from charter.store._chain import GENESIS, ChainReport, seal, verify_chain
from charter.store._checkpoint import Checkpoint
from charter.store._controls import CONTROL_CHAIN
from charter.store._host import SqlHost
from charter.store._ledger import Claim, LedgerReport, append_claims, read_head, verify_ledger
from charter.store._parallel import HELPED_FROM, MOST_PROCESSES, cores, start_helpers
from charter.store._rows import switch_from_row
from charter.store._runpass import (
    EVENTS,
    HEADS,
    UNREADABLE,
    WHOLE,
    Part,
    merged,
    shares,
    split,
    verify_part,
    walk,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from charter.store._base import IdentityRecord
    from charter.store._db import Db, Row
    from charter.store._parallel import Helpers

__all__ = ["AuditSql", "StoreReport"]

_log = logging.getLogger("charter.store")

_IDP = "idp:"
"""How the control log names an identity provider (`idp:<issuer>`)."""


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


class AuditSql(SqlHost):
    """Verification and checkpoints, in SQL shared by both backends."""

    if TYPE_CHECKING:
        # The identities' and the providers' aggregates implement these; declared for the
        # type checker only, so no abstract twin can stand before them in the store's bases.
        def _checked(self, db: Db, row: Row) -> IdentityRecord: ...

        def _provider_problem(self, db: Db, row: Any) -> str | None: ...  # noqa: ANN401

    # --- runs ------------------------------------------------------------------------------
    def verify(
        self, run_id: str | None = None, *, processes: int | None = None
    ) -> list[ChainReport]:
        """Verify one run's chain (or every run's) against its seal and the ledger's claims.

        `processes`: how many share the work, this one included; by default as many as the
        machine has cores (at most `MOST_PROCESSES`) when the store holds `HELPED_FROM` events
        or more, else one.
        """
        try:
            return self._verify(run_id, processes, lenient=False)
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
        return self._verify(run_id, 1, lenient=True)

    def _verify(
        self, run_id: str | None, processes: int | None, *, lenient: bool
    ) -> list[ChainReport]:
        if run_id is not None:
            with self._view(lenient=lenient) as db:
                return [self._verify_one(db, run_id)]
        parts = self._parts(processes)
        with self._view(lenient=lenient) as db, start_helpers(self, db, parts) as helpers:
            return self._verify_runs(db, self._ledger(db), helpers)[0]

    def _verify_one(self, db: Db, run_id: str) -> ChainReport:
        heads = db.execute(f"{HEADS} WHERE run_id = ?", (run_id,)).fetchall()
        if not heads:
            raise NotFoundError(
                f"run {run_id!r} does not exist", hint="`charter runs list` shows the runs"
            )
        claimed = db.execute(
            "SELECT head_seq, head_hash FROM ledger WHERE subject = ? AND kind = 'run'", (run_id,)
        ).fetchall()
        claims = {run_id: {r[0]: r[1] for r in claimed}}
        stream = self._stream(f"{EVENTS} WHERE run_id = ? ORDER BY seq", (run_id,))
        (report,) = walk(db, heads, stream, claims, self.seal_key)[0].values()
        if not claimed and report.ok:
            report = _unclaimed(report)
        return report

    def _verify_runs(
        self, db: Db, ledger: LedgerReport, helpers: Helpers | None
    ) -> tuple[list[ChainReport], list[str]]:
        """Every run's report, and the runs the ledger knows that are gone."""
        claims = ledger.claims
        if helpers is not None and not ledger.complete:
            # A helper loads its runs' claims from the ledger as stored; the walk keeps them
            # only up to its first broken entry. They agree when the walk took every entry.
            helpers.stop()
            helpers = None
        if helpers is None:
            reports, orphans = verify_part(db, self._stream, self.seal_key, WHOLE, claims)
            found = list(reports.values())
        else:
            found, orphans = merged(
                db,
                helpers.gather(
                    lambda part: verify_part(db, self._stream, self.seal_key, part, claims)
                ),
            )
        present = {r.run_id for r in found}
        found = [r if r.run_id in claims or not r.ok else _unclaimed(r) for r in found]
        deleted = [
            f"run {rid} is gone: the ledger recorded its event {max(claimed)}, so it was "
            "deleted from the database"
            for rid, claimed in claims.items()
            if rid != CONTROL_CHAIN and rid not in present and claimed
        ]
        return found + orphans, deleted

    def _parts(self, processes: int | None) -> list[Part]:
        """The parts of the runs, one a process.

        As many as asked; by default, as many as there are cores (at most `MOST_PROCESSES`)
        for a store of `HELPED_FROM` events or more, else one. Read before the audit's
        snapshot, each in a statement of its own: the parts' bounds only balance the work (any
        bounds give the same result), and a column altered to another type must not fail the
        audit's transaction.
        """
        with self._reading() as db:
            try:
                found = db.execute("SELECT sum(event_count) FROM runs").fetchone()[0]
                events = found if isinstance(found, int) else 0
                helped = min(cores(), MOST_PROCESSES) if events >= HELPED_FROM else 1
                count = processes or helped
                if count < 2:  # noqa: PLR2004
                    return [WHOLE]
                head = read_head(db)
                ledger = head.seq if head is not None and head.seq > 0 else 0
                return split(db, shares(count, events, ledger))
            except Exception:  # noqa: BLE001 - whatever it is, the audit runs in one process
                return [WHOLE]

    @contextmanager
    def _view(self, *, lenient: bool) -> Iterator[Db]:
        """The audit's snapshot; `lenient`: SQLite text that is not UTF-8 read as bytes."""
        with self._snapshot() as db:
            if not lenient or not isinstance(db, sqlite3.Connection):
                yield db
                return
            db.text_factory = _text_or_bytes
            try:
                yield db
            finally:
                db.text_factory = str

    # --- the whole store -------------------------------------------------------------------
    def audit(
        self,
        *,
        checkpoint: Checkpoint | None = None,
        trusted: Ed25519PublicKey | None = None,
        processes: int | None = None,
    ) -> StoreReport:
        """Verify everything: runs, control log, ledger, principals, kill switches, checkpoint.

        `trusted`: the public key the checkpoint must be signed with (an auditor's copy); by
        default the checkpoint's own key, which proves the file is whole but not whose it is.
        `processes`: as for `verify`.
        """
        try:
            return self._audit(checkpoint, trusted, processes, lenient=False)
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
        return self._audit(checkpoint, trusted, 1, lenient=True)

    def _audit(
        self,
        checkpoint: Checkpoint | None,
        trusted: Ed25519PublicKey | None,
        processes: int | None,
        *,
        lenient: bool,
    ) -> StoreReport:
        parts = self._parts(processes)
        with self._view(lenient=lenient) as db, start_helpers(self, db, parts) as helpers:
            ledger = self._ledger(db)
            runs, problems = self._verify_runs(db, ledger, helpers)
            control = self._verify_control(db, ledger.claims.get(CONTROL_CHAIN, {}))
            if checkpoint is not None:
                problems += self._against(db, ledger, checkpoint, trusted)
            problems += _switch_problems(db)
            identities, providers = self._principal_problems(db)
            problems += providers
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
        return verify_ledger(rows, read_head(db), self.seal_key)

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

    # --- principals --------------------------------------------------------------------------
    def _principal_problems(self, db: Db) -> tuple[list[tuple[str, str]], list[str]]:
        """What the control log does not vouch for, in the audit's snapshot.

        Returns (identity id, problem) for each identity, and a line for each identity
        provider. Each row is judged alone: one of the wrong shape is reported, never raised.
        """
        identities: list[tuple[str, str]] = []
        providers: list[str] = []
        present: set[Any] = set()
        for row in db.execute("SELECT * FROM identities ORDER BY id").fetchall():
            present.add(row["id"])
            try:
                problem = self._checked(db, row).problem
            except UNREADABLE as exc:
                problem = _unreadable(exc)
            if problem is not None:
                identities.append((str(row["id"]), problem))
        for row in db.execute("SELECT * FROM identity_providers ORDER BY issuer").fetchall():
            present.add(f"{_IDP}{row['issuer']}")
            try:
                problem = self._provider_problem(db, row)
            except UNREADABLE as exc:
                problem = _unreadable(exc)
            if problem is not None:
                providers.append(f"identity provider {row['issuer']}: {problem}")
        gone_identities, gone_providers = _principals_gone(db, present)
        return identities + gone_identities, providers + gone_providers

    # --- the control log -------------------------------------------------------------------
    def verify_control_log(self) -> ChainReport:
        """Check the control log's chain, its seal, and that it holds what the ledger recorded."""
        with self._snapshot() as db:
            claimed = db.execute(
                "SELECT head_seq, head_hash FROM ledger WHERE subject = ?", (CONTROL_CHAIN,)
            ).fetchall()
            return self._verify_control(db, {r[0]: r[1] for r in claimed})

    def _verify_control(self, db: Db, claims: Mapping[int, str]) -> ChainReport:
        # The control log hashes its payloads whole: no digest column.
        rows = self._stream(
            "SELECT NULL, seq, ts, action, payload, prev_hash, hash, NULL FROM control_log "
            "ORDER BY seq",
            (),
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
            rows=rows,
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


def _switch_problems(db: Db) -> list[str]:
    """Kill switches the control log engaged whose rows are gone or say something else.

    The gate reads the rows, so a row deleted or edited in the database would release or
    narrow a switch with no entry on the log. (A row the log never engaged is not reported:
    switches engaged before the log existed have none, and an extra one only stops more.)
    """
    engaged: dict[Any, dict[str, Any]] = {}
    for action, payload in db.execute(
        "SELECT action, payload FROM control_log WHERE action IN ('kill', 'unkill') ORDER BY seq"
    ).fetchall():
        try:
            detail = json.loads(payload)
            if action == "kill":
                engaged[detail["key"]] = detail
            else:
                engaged.pop(detail["key"], None)
        except UNREADABLE:
            continue  # an unreadable entry vouches for nothing; the chain reports it
    rows = {row["key"]: row for row in db.execute("SELECT * FROM kill_switches").fetchall()}
    problems = []
    for key, detail in engaged.items():
        row = rows.get(key)
        if row is None:
            problems.append(
                f"kill switch {key} is engaged on the control log, but its row is gone: it was "
                "released outside Charter"
            )
            continue
        try:
            stored = switch_from_row(row)
            same = stored.key == key and (stored.reason, stored.created_by) == (
                detail.get("reason"),
                detail.get("actor"),
            )
        except UNREADABLE:
            same = False
        if not same:
            problems.append(
                f"kill switch {key} is not what the control log engaged (its scope, reason or "
                "author differ): it was changed outside Charter"
            )
    return problems


def _principals_gone(db: Db, present: set[Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """Principals whose rows are not `present`, though the control log says they exist.

    That is every identity it made (revoking one keeps its row), and every provider whose last
    entry registered it.
    """
    identities: list[tuple[str, str]] = []
    providers: list[str] = []
    logged = db.execute(
        "SELECT subject_id, action FROM control_log WHERE subject_id IS NOT NULL ORDER BY seq"
    ).fetchall()
    for subject, action in dict(logged).items():  # each subject's last entry wins
        if subject in present:
            continue
        if not (isinstance(subject, str) and subject.startswith(_IDP)):
            gone = "the control log made it, but its row is gone: deleted outside Charter"
            identities.append((str(subject), gone))
        elif action == "idp.add":
            providers.append(
                f"identity provider {subject.removeprefix(_IDP)}: the control log registered "
                "it, but its row is gone: deleted outside Charter"
            )
    return identities, providers


def _unreadable(exc: Exception) -> str:
    """The problem of a principal's row that cannot even be read."""
    return f"its row is unreadable ({type(exc).__name__}): altered outside Charter"


def _undecodable(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite met text that is not UTF-8 (which only a writer outside Charter makes)."""
    return "decode" in str(exc)


def _text_or_bytes(raw: bytes) -> str | bytes:
    """SQLite text as a str, or as the bytes it holds when they are not UTF-8.

    Such a value is of the wrong type, and the checks report it like a BLOB.
    """
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def _unclaimed(report: ChainReport) -> ChainReport:
    """A run the ledger has never heard of: its start would have been claimed."""
    return replace(
        report,
        ok=False,
        broken_at=1,
        problem="no ledger entry knows this run: it was inserted outside Charter",
    )
