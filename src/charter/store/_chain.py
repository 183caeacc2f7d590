"""The per-run hash chain and the head seal.

Each event's hash covers the previous event's hash and the event's own identity and payload, so
an edit, deletion or reordering breaks a link. It covers the payload through the payload's own
SHA-256 (its digest, stored beside it): retention may then drop a redacted payload past its
tier, leaving a marker, and the chain still verifies, while any other change to a kept payload
still breaks it. Events written before digests existed (format 1) hash the payload itself and
are never dropped. The run's head (last sequence number and hash) is
additionally sealed with an HMAC whose key lives outside the database, so truncating a run and
rewriting its head in the database file is detected too: a database-only attacker cannot forge
the seal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "GENESIS",
    "PURGED",
    "ChainReport",
    "ChainRow",
    "StoredRow",
    "event_hash",
    "is_marker",
    "payload_digest",
    "purged_marker",
    "seal",
    "verify_chain",
]

GENESIS = "0" * 64
"""The `prev_hash` of a run's first event."""

PURGED = '{"purged":'
"""How a dropped payload's marker starts; no event payload starts so (they start with `kind`)."""


def event_hash(*, prev_hash: str, run_id: str, seq: int, ts: str, kind: str, payload: str) -> str:
    """SHA-256 over the previous hash and the event as stored.

    `payload` is the payload's digest (format 2), or for a format-1 event its JSON text.
    """
    material = f"{prev_hash}\n{run_id}\n{seq}\n{ts}\n{kind}\n{payload}"
    return hashlib.sha256(material.encode()).hexdigest()


def payload_digest(payload: str) -> str:
    """SHA-256 of a payload's JSON text: what its event's hash covers."""
    return hashlib.sha256(payload.encode()).hexdigest()


def purged_marker(ts: str, reason: str) -> str:
    """What replaces a redacted payload dropped by retention: when, and under which rule."""
    return json.dumps({"purged": ts, "reason": reason}, separators=(",", ":"))


def is_marker(payload: str) -> bool:
    """Whether `payload` is a retention marker exactly as `purged_marker` writes one."""
    if not payload.startswith(PURGED):
        return False
    try:
        found = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(found, dict)
        and set(found) == {"purged", "reason"}
        and isinstance(found["purged"], str)
        and isinstance(found["reason"], str)
        and payload == purged_marker(found["purged"], found["reason"])
    )


def seal(key: bytes, *, run_id: str, seq: int, head_hash: str, summary: str) -> str:
    """HMAC-SHA256 over a run's head and its summary row, keyed outside the database.

    Sealing the summary too means the run row (tenant, status, outcome, cost) cannot be edited
    in the file without the verifier noticing, though it is a projection, not the log.
    """
    material = f"{run_id}\n{seq}\n{head_hash}\n{summary}"
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """The result of verifying one run's chain."""

    run_id: str
    ok: bool
    events_checked: int
    events_purged: int = 0
    """Events whose redacted payload retention dropped; their place and hash still verify."""
    broken_at: int | None = None
    """Sequence number of the first event that fails, if any."""
    problem: str | None = None
    """What is wrong, for a person."""


class ChainRow(NamedTuple):
    """One stored event, as the verifier judges it when something about it is wrong."""

    seq: int
    ts: str
    kind: str
    payload: str
    prev_hash: str
    hash: str
    digest: str | None
    """The payload's SHA-256 (format 2); None for a format-1 event."""


StoredRow = tuple[Any, ...]
"""One event as the database returns it: (chain id, seq, ts, kind, payload, prev_hash, hash,
digest). The chain id is read to group a store's events by run and never judged here."""


def _link_problem(run_id: str, row: ChainRow, expected_seq: int, expected_prev: str) -> str | None:
    """What is wrong with one stored event, given the event before it; None: nothing."""
    if not _well_typed(row):
        return (
            f"event {expected_seq} holds a value of the wrong type (a BLOB or number where text "
            "belongs): it was written outside Charter"
        )
    if row.seq != expected_seq:
        return f"event {expected_seq} is missing (next stored is {row.seq})"
    if row.prev_hash != expected_prev:
        return f"event {row.seq} does not link to event {row.seq - 1}"
    covered = row.payload
    if row.digest is not None:
        if not is_marker(row.payload) and payload_digest(row.payload) != row.digest:
            return f"event {row.seq} ({row.kind}) was altered after it was written"
        covered = row.digest
    recomputed = event_hash(
        prev_hash=row.prev_hash,
        run_id=run_id,
        seq=row.seq,
        ts=row.ts,
        kind=row.kind,
        payload=covered,
    )
    if recomputed != row.hash:
        return f"event {row.seq} ({row.kind}) was altered after it was written"
    return None


def _well_typed(row: ChainRow) -> bool:
    """Whether every field of a stored event has its type; SQLite stores whatever it is given."""
    return (
        type(row.seq) is int
        and type(row.ts) is str
        and type(row.kind) is str
        and type(row.payload) is str
        and type(row.prev_hash) is str
        and type(row.hash) is str
        and (row.digest is None or type(row.digest) is str)
    )


def verify_chain(
    *,
    run_id: str,
    rows: Iterable[StoredRow],
    head_seq: int,
    head_hash: str,
    head_mac: str,
    summary: str,
    key: bytes,
    claims: Mapping[int, str] | None = None,
) -> ChainReport:
    """Walk a run's events (`StoredRow`s, in sequence order) and report the first broken link.

    `claims` are what the store's ledger recorded of this chain (sequence number -> hash): the
    chain must still hold each of them, so a chain restored from an older copy, its own seal
    valid, is caught too.
    """
    claims = claims or {}
    checked, last_hash, purged, broken = _walk(run_id, rows, claims)
    if broken is None:
        broken = _end_problem(
            checked=checked,
            last_hash=last_hash,
            recorded=max(claims, default=0),
            head=(head_seq, head_hash, head_mac, summary),
            expected_mac=lambda: seal(
                key, run_id=run_id, seq=head_seq, head_hash=head_hash, summary=summary
            ),
        )
    if broken is not None:
        return ChainReport(
            run_id=run_id,
            ok=False,
            events_checked=checked,
            broken_at=broken[0],
            problem=broken[1],
        )
    return ChainReport(run_id=run_id, ok=True, events_checked=checked, events_purged=purged)


def _walk(
    run_id: str, rows: Iterable[StoredRow], claims: Mapping[int, str]
) -> tuple[int, str, int, tuple[int, str] | None]:
    """Check every link in order.

    Returns the events that passed, the last one's hash, how many of them were purged, and
    the first problem as (sequence number, what is wrong), or None.
    """
    # The loop every event of a store goes through, so it is written for speed: names bound
    # once, no object per event, and an event that passes every check costs its two hashes
    # and a few comparisons. Whatever fails any of them (a purge marker, a format-1 event, a
    # value of the wrong type, a broken link) is judged by `_link_problem`, which alone decides
    # what is wrong, so the messages are the same either way. Comparing a value with a str
    # proves it is one (prev_hash, the stored hash, the digest); the others' types are checked.
    sha256 = hashlib.sha256
    claimed = claims.get
    middle = f"\n{run_id}\n"
    expected_prev = GENESIS
    n = purged = 0
    for _, seq, ts, kind, payload, prev, stored, digest in rows:
        n += 1
        if not (
            seq == n
            and prev == expected_prev
            and type(seq) is int
            and type(ts) is str
            and type(kind) is str
            and type(payload) is str
            and not payload.startswith(PURGED)
            and digest == sha256(payload.encode()).hexdigest()
            and stored
            == sha256(f"{prev}{middle}{seq}\n{ts}\n{kind}\n{digest}".encode()).hexdigest()
        ):
            row = ChainRow(seq, ts, kind, payload, prev, stored, digest)
            problem = _link_problem(run_id, row, n, expected_prev)
            if problem is not None:
                return n - 1, expected_prev, purged, (n, problem)
            purged += digest is not None and is_marker(payload)
        if claimed(n, stored) != stored:
            replaced = (
                f"event {n} is not the one the store's ledger recorded: the chain was replaced "
                "from another copy"
            )
            return n - 1, expected_prev, purged, (n, replaced)
        expected_prev = stored
    return n, expected_prev, purged, None


def _end_problem(
    *,
    checked: int,
    last_hash: str,
    recorded: int,
    head: tuple[object, object, object, object],
    expected_mac: Callable[[], str],
) -> tuple[int, str] | None:
    """What is wrong where a walked chain ends (where, and what); None: nothing.

    The chain must reach the last event the ledger recorded, and its head row (sequence number,
    hash, seal, summary) must name the last event walked, under a seal that verifies.
    """
    head_seq, head_hash, head_mac, summary = head
    if recorded > checked:
        return checked + 1, (
            f"the log ends at event {checked} but the store's ledger recorded event {recorded}: "
            "it was rolled back to an older copy, or cut short"
        )
    if not (
        type(head_seq) is int
        and type(head_hash) is str
        and type(head_mac) is str
        and type(summary) is str
    ):
        return checked + 1, "the head row holds a value of the wrong type"
    if checked != head_seq or last_hash != head_hash:
        return checked + 1, (
            f"the log ends at event {checked} but the run's head says {head_seq}: "
            "events were truncated or the head was rewritten"
        )
    if not hmac.compare_digest(expected_mac(), head_mac):
        return head_seq, (
            "the run's seal does not match: its events were rewritten or truncated, or its "
            "summary row (tenant, status, outcome, cost) was edited"
        )
    return None
