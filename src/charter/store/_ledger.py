"""The store's ledger: one hash chain over every run's milestones and the control log's head.

A run's own chain proves its events were not edited, and its sealed head that it was not cut
short. Neither can prove the run still exists, or that it was not replaced by an older copy of
itself with that copy's own valid seal. The ledger can. Every milestone of a run (its start,
each write or irreversible intent, each approval decision, each suspension, its end) appends a
*claim* to the ledger: "run R's chain had event N with hash H". Every control-log entry claims
the control log's head the same way. So:

* a deleted run leaves claims that point at nothing;
* a run rolled back to an older copy lacks the events its later claims name;
* a wiped or truncated control log lacks the entries the ledger says it had.

The ledger's own head is sealed like a run's. Rolling the whole store back (ledger included) to
an older consistent state is only visible against a record kept outside the database: a
checkpoint, signed with an Ed25519 key that never lives in the database (see
`charter.store._checkpoint`). Checkpoints are ledger entries too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from charter.exceptions import StoreError
from charter.store._chain import GENESIS, seal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from charter.store._db import Db

__all__ = [
    "LEDGER_CHAIN",
    "Claim",
    "LedgerHead",
    "LedgerReport",
    "LedgerRow",
    "append_claims",
    "ledger_hash",
    "read_head",
    "start_ledger",
    "verify_ledger",
]

LEDGER_CHAIN = "(ledger)"
"""The chain id the ledger's head is sealed under; no run id can take it."""

_HEAD = "ledger_head"
_STORE_ID = "store_id"


class Claim(NamedTuple):
    """What one ledger entry says: `subject`'s chain had event `head_seq` with `head_hash`.

    `kind` is `run` (a run's milestone), `control` (the control log's head), `store` (the
    ledger's first entry) or `checkpoint` (a signed checkpoint; `detail` holds it).
    """

    kind: str
    subject: str
    head_seq: int
    head_hash: str
    detail: str = ""


class LedgerRow(NamedTuple):
    """One stored ledger entry, as the verifier reads it."""

    seq: int
    ts: str
    kind: str
    subject: str
    head_seq: int
    head_hash: str
    detail: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, kw_only=True)
class LedgerHead:
    """The ledger's sealed head as stored: its last entry and the seal over it."""

    seq: int
    hash: str
    mac: str


def ledger_hash(prev_hash: str, ts: str, seq: int, claim: Claim) -> str:
    """SHA-256 over the previous entry's hash and this entry's every field."""
    material = "\n".join(
        (
            prev_hash,
            str(seq),
            ts,
            claim.kind,
            claim.subject,
            str(claim.head_seq),
            claim.head_hash,
            claim.detail,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


def read_head(db: Db, *, for_update: str = "") -> LedgerHead | None:
    """The ledger's head, locked for the transaction with `for_update`; None if it is missing."""
    row = db.execute(
        f"SELECT value FROM store_settings WHERE name = '{_HEAD}'{for_update}"
    ).fetchone()
    if row is None:
        return None
    value = row[0]
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 3 or not parts[0].isdigit():  # noqa: PLR2004 - seq:hash:mac
        return LedgerHead(seq=-1, hash="", mac="")
    return LedgerHead(seq=int(parts[0]), hash=parts[1], mac=parts[2])


def start_ledger(db: Db, key: bytes, *, ts: str) -> str:
    """Give a new (or newly upgraded) store its ledger: a store id and the first entry.

    Returns the store id, which every checkpoint names.
    """
    store_id = "sto_" + secrets.token_hex(8)
    db.execute("INSERT INTO store_settings (name, value) VALUES (?, ?)", (_STORE_ID, store_id))
    mac = seal(key, run_id=LEDGER_CHAIN, seq=0, head_hash=GENESIS, summary="")
    db.execute(
        "INSERT INTO store_settings (name, value) VALUES (?, ?)", (_HEAD, f"0:{GENESIS}:{mac}")
    )
    append_claims(db, key, [Claim("store", store_id, 0, GENESIS)], ts=ts)
    return store_id


def append_claims(
    db: Db, key: bytes, claims: Iterable[Claim], *, ts: str, for_update: str = ""
) -> LedgerHead:
    """Append claims after the ledger's head and reseal it, in the caller's transaction.

    The head's row is locked first (`for_update`), so the ledger is one chain however many
    nodes append; a store whose ledger head is gone refuses to write rather than start a new
    chain an attacker chose.

    Raises:
        StoreError: The ledger's head is missing or unreadable: the store was tampered with.
    """
    head = read_head(db, for_update=for_update)
    if head is None or head.seq < 0:
        raise StoreError(
            "the store's ledger head is missing or malformed: the database was altered outside "
            "Charter, and nothing more is written until it is restored",
            hint="run `charter audit verify` to see what was changed; restore from a backup "
            "that verifies against your last checkpoint",
        )
    seq, prev = head.seq, head.hash
    rows = []
    for claim in claims:
        seq += 1
        digest = ledger_hash(prev, ts, seq, claim)
        rows.append((seq, ts, *claim, prev, digest))
        prev = digest
    db.executemany(
        "INSERT INTO ledger (seq, ts, kind, subject, head_seq, head_hash, detail, prev_hash, "
        "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    mac = seal(key, run_id=LEDGER_CHAIN, seq=seq, head_hash=prev, summary="")
    db.execute(
        f"UPDATE store_settings SET value = ? WHERE name = '{_HEAD}'", (f"{seq}:{prev}:{mac}",)
    )
    return LedgerHead(seq=seq, hash=prev, mac=mac)


@dataclass(frozen=True, kw_only=True)
class LedgerReport:
    """The ledger's own chain checked, and what its claims say each chain must contain."""

    ok: bool
    entries: int
    problem: str | None = None
    broken_at: int | None = None
    store_id: str | None = None
    claims: dict[str, dict[int, str]]
    """Per run id (and the control log's chain id): sequence number -> hash the chain must
    have there. Filled up to the first broken entry."""
    checkpoints: list[str]
    """The checkpoints the ledger holds (their JSON), oldest first."""
    adopted: int = 0
    """Runs already in the store when it got its ledger (an upgrade): claimed as they were."""
    complete: bool = True
    """Every entry was walked (the head or seal may still be wrong): `claims` are then all
    the ledger's claims."""


def _row_problem(row: LedgerRow, expected_seq: int, prev: str) -> str | None:
    if not all(isinstance(v, int) for v in (row.seq, row.head_seq)) or not all(
        isinstance(v, str)
        for v in (row.ts, row.kind, row.subject, row.head_hash, row.detail, row.prev_hash, row.hash)
    ):
        return (
            f"ledger entry {expected_seq} holds a value of the wrong type: altered outside Charter"
        )
    if row.seq != expected_seq:
        return f"ledger entry {expected_seq} is missing (next stored is {row.seq})"
    if row.prev_hash != prev:
        return f"ledger entry {row.seq} does not link to entry {row.seq - 1}"
    claim = Claim(row.kind, row.subject, row.head_seq, row.head_hash, row.detail)
    if ledger_hash(prev, row.ts, row.seq, claim) != row.hash:
        return f"ledger entry {row.seq} ({row.kind} {row.subject}) was altered after it was written"
    return None


class _Walk:
    """What a walk of the ledger has gathered so far."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[int, str]] = {}
        self.checkpoints: list[str] = []
        self.prev, self.count, self.adopted = GENESIS, 0, 0
        self.store_id: str | None = None

    def walk(self, rows: Iterable[tuple[Any, ...]]) -> str | None:
        """Check every entry in order and gather what it says; the first problem, if any."""
        # Every entry of a store passes here, so the loop keeps its state in local names and a
        # well-typed entry whose hash holds costs one hash and these comparisons; anything else
        # is judged by `_row_problem`, which alone says what is wrong. Comparing a value with a
        # str proves it is one (prev_hash, hash).
        sha256 = hashlib.sha256
        claims, checkpoints = self.claims, self.checkpoints
        prev_hash, count, adopted = self.prev, self.count, self.adopted
        problem = None
        for row in rows:
            seq, ts, kind, subject, head_seq, head_hash, detail, prev, digest = row
            expected = count + 1
            if not (
                seq == expected
                and prev == prev_hash
                and type(seq) is int
                and type(head_seq) is int
                and type(ts) is str
                and type(kind) is str
                and type(subject) is str
                and type(head_hash) is str
                and type(detail) is str
                and digest
                == sha256(
                    f"{prev}\n{seq}\n{ts}\n{kind}\n{subject}\n{head_seq}\n{head_hash}\n{detail}".encode()
                ).hexdigest()
            ):
                problem = _row_problem(LedgerRow._make(row), expected, prev_hash)
                if problem is not None:
                    break
            if kind in ("run", "control"):
                adopted += detail == "adopted"
                said = claims.get(subject)
                if said is None:
                    said = claims[subject] = {}
                if said.setdefault(head_seq, head_hash) != head_hash:
                    problem = (
                        f"ledger entry {seq} says event {head_seq} of {subject} has another hash "
                        "than an earlier entry: the chain was rewritten in between"
                    )
                    break
            elif kind == "store" and expected == 1:
                self.store_id = subject
            elif kind == "checkpoint":
                checkpoints.append(detail)
            prev_hash, count = digest, expected
        self.prev, self.count, self.adopted = prev_hash, count, adopted
        return problem

    def end_problem(self, head: LedgerHead | None, key: bytes) -> str | None:
        """What is wrong with the head, once every entry is walked."""
        if head is None:
            return "the ledger's head is missing: it was deleted from the database"
        if head.seq != self.count or head.hash != self.prev:
            return (
                f"the ledger ends at entry {self.count} but its head says {head.seq}: entries "
                "were deleted or the head was rewritten"
            )
        expected = seal(key, run_id=LEDGER_CHAIN, seq=head.seq, head_hash=head.hash, summary="")
        if not hmac.compare_digest(expected, head.mac):
            return "the ledger's seal does not match: it was rewritten or cut short"
        if self.count and self.store_id is None:
            return "the ledger does not start with the store's first entry"
        return None

    def report(
        self, problem: str | None = None, at: int | None = None, *, complete: bool = True
    ) -> LedgerReport:
        return LedgerReport(
            ok=problem is None,
            entries=self.count,
            problem=problem,
            broken_at=at,
            store_id=self.store_id,
            claims=self.claims,
            checkpoints=self.checkpoints,
            adopted=self.adopted,
            complete=complete,
        )


def verify_ledger(
    rows: Iterable[tuple[Any, ...]], head: LedgerHead | None, key: bytes
) -> LedgerReport:
    """Walk the ledger in order: every link, the sealed head, and the claims it makes.

    `rows` are shaped like `LedgerRow`, as the database returns them.
    """
    walk = _Walk()
    problem = walk.walk(rows)
    if problem is not None:
        return walk.report(problem, walk.count + 1, complete=False)
    problem = walk.end_problem(head, key)
    return walk.report(problem, None if problem is None else walk.count + 1)
