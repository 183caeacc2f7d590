"""Shared limits: budget reservations and token buckets, charged inside a run's appends.

A charge rides on the append that records the decision it depends on, in the same
transaction: the intent of a tool call carries its budget reservation and its rate-limit token,
and the result that follows carries the settlement. So a reservation exists exactly when its
intent does, a crash can neither leak nor double one, and the limits cost a few statements in a
transaction the step opens anyway, not a transaction of their own.

A charge that does not fit raises `BudgetExceeded` or `RateLimited` and the whole append rolls
back: nothing of the call is written, and the gate judges it again knowing the limit.

Money is kept in integer micro-dollars, so a cap of $0.05 holds exactly five $0.01 calls.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from charter.exceptions import BudgetExceeded, RateLimited

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter.store._db import Db

__all__ = [
    "Cap",
    "Charge",
    "ReleaseRun",
    "Reserve",
    "Settle",
    "SpendRecord",
    "TakeToken",
    "apply_charges",
    "dollars",
    "micros",
    "usd",
]


_UNCAPPED = 2**62
"""A limit no reservation reaches, for reservations a person approved past the cap."""


def dollars(amount: float) -> str:
    """`amount` in dollars to the micro-dollar, with at least cents: $0.005, $1.00, $0.0101."""
    whole, _, fraction = f"{amount:.6f}".rstrip("0").partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def micros(amount_usd: float) -> int:
    """USD as integer micro-dollars, rounded up: a reservation never under-counts."""
    return math.ceil(round(amount_usd * 1_000_000, 6))


def usd(amount_micros: int) -> float:
    """Micro-dollars as USD."""
    return amount_micros / 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Cap:
    """One shared spend cap: `scope` names it (`workflow:billing`, `tenant:acme`)."""

    scope: str
    day: str
    """The UTC day (YYYY-MM-DD) the cap counts."""
    cap_usd: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Reserve:
    """Hold `amount_usd` of every cap in `caps` for step `step` of run `run_id`.

    A step reserved again (judged anew after an approval) replaces its earlier reservation.
    """

    run_id: str
    step: int
    amount_usd: float
    caps: tuple[Cap, ...]
    enforce: bool = True
    """False: count the reservation even past the caps (a person approved going on)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Settle:
    """Turn step `step`'s reservation into its real cost (which may differ either way)."""

    run_id: str
    step: int
    cost_usd: float
    reserved: Reserve | None = None
    """The reservation this append's step committed, when the caller holds it: the store then
    need not read it back. None (after a crash, say): the store reads what was reserved."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReleaseRun:
    """Drop whatever the run still holds reserved (it ended; nothing more will be settled)."""

    run_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TakeToken:
    """Take one token from the bucket `key`, refilled at `per_second` up to `capacity`."""

    key: str
    per_second: float
    capacity: float


Charge = Reserve | Settle | ReleaseRun | TakeToken
"""What an append may charge against the shared limits."""


@dataclass(frozen=True, kw_only=True)
class SpendRecord:
    """One cap's day: what is spent and what is reserved for calls in flight."""

    scope: str
    day: str
    spent_usd: float
    reserved_usd: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def apply_charges(db: Db, charges: Sequence[Charge], *, now: float, for_update: str) -> None:
    """Apply charges in order inside the caller's transaction.

    Each charge that fits is one conditional UPDATE per row it touches: the check and the
    update are one statement, so concurrent appends cannot both pass a check that only one
    of them fits (the row lock serialises them). A row's first charge of the day inserts it.
    `for_update` is the backend's row-lock clause, used on the refusal path to read what
    refused.

    Raises:
        BudgetExceeded: A reservation does not fit a cap.
        RateLimited: A bucket has no token.
    """
    for charge in charges:
        match charge:
            case Reserve():
                _reserve(db, charge, for_update)
            case Settle():
                _settle(db, charge)
            case ReleaseRun():
                _release(db, charge.run_id, None)
            case TakeToken():
                _take(db, charge, now=now, for_update=for_update)


@lru_cache(maxsize=256)
def _scopes_text(caps: tuple[Cap, ...]) -> str:
    return json.dumps(sorted([c.scope, c.day] for c in caps))


@lru_cache(maxsize=256)
def _scopes_of(text: str) -> list[tuple[str, str]]:
    return [(scope, day) for scope, day in json.loads(text)]


def _reserve(db: Db, charge: Reserve, for_update: str) -> None:
    amount = micros(charge.amount_usd)
    scopes = _scopes_text(charge.caps)
    added = db.execute(
        "INSERT INTO reservations (run_id, step, scopes, amount) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (run_id, step) DO NOTHING",
        (charge.run_id, charge.step, scopes, amount),
    )
    if added.rowcount == 0:
        # The step is judged again (after an approval): its earlier hold is replaced.
        _release(db, charge.run_id, charge.step)
        db.execute(
            "INSERT INTO reservations (run_id, step, scopes, amount) VALUES (?, ?, ?, ?)",
            (charge.run_id, charge.step, scopes, amount),
        )
    # In scope order: every charge locks rows in the same order, so two appends on
    # PostgreSQL cannot deadlock on a workflow cap and a tenant cap.
    for cap in sorted(charge.caps, key=lambda c: c.scope):
        limit = micros(cap.cap_usd) if charge.enforce else _UNCAPPED
        if not _hold(db, cap, amount, limit):
            row = db.execute(
                f"SELECT spent, reserved FROM spend WHERE scope = ? AND day = ?{for_update}",
                (cap.scope, cap.day),
            ).fetchone()
            raise _exceeded(cap, amount, 0 if row is None else row["spent"] + row["reserved"])


def _hold(db: Db, cap: Cap, amount: int, limit: int) -> bool:
    """Add `amount` to the cap's reserved sum if it fits under `limit`; False if it does not."""
    held = "UPDATE spend SET reserved = reserved + ?, cap = ? WHERE scope = ? AND day = ? "
    held += "AND spent + reserved + ? <= ?"
    params = (amount, limit, cap.scope, cap.day, amount, limit)
    if db.execute(held, params).rowcount:
        return True
    if amount > limit:
        return False  # over the cap alone, whatever the day holds
    first = db.execute(
        "INSERT INTO spend (scope, day, spent, reserved, cap) VALUES (?, ?, 0, ?, ?) "
        "ON CONFLICT (scope, day) DO NOTHING",
        (cap.scope, cap.day, amount, limit),
    )
    # Not inserted: the row exists (another append made it meanwhile); its sums decide.
    return bool(first.rowcount) or bool(db.execute(held, params).rowcount)


def _exceeded(cap: Cap, amount: int, committed: int) -> BudgetExceeded:
    return BudgetExceeded(
        f"{cap.scope} has {dollars(usd(committed))} of its {dollars(cap.cap_usd)} cap for "
        f"{cap.day} spent or reserved; {dollars(usd(amount))} more does not fit",
        scope=cap.scope,
        cap_usd=cap.cap_usd,
        committed_usd=usd(committed),
    )


def _settle(db: Db, charge: Settle) -> None:
    cost = micros(charge.cost_usd)
    known = charge.reserved
    if known is not None:
        # Deleting without RETURNING costs a third of deleting with it on SQLite.
        gone = db.execute(
            "DELETE FROM reservations WHERE run_id = ? AND step = ?", (charge.run_id, charge.step)
        )
        if gone.rowcount:
            scopes = sorted((c.scope, c.day) for c in known.caps)
            _adjust(db, scopes, reserved=-micros(known.amount_usd), spent=cost)
        return
    row = db.execute(
        "DELETE FROM reservations WHERE run_id = ? AND step = ? RETURNING scopes, amount",
        (charge.run_id, charge.step),
    ).fetchone()
    if row is None:
        return  # nothing was reserved: no shared cap applied when the call was made
    # Settled even past the cap: the money is spent, and the ledger must say so.
    _adjust(db, _scopes_of(row["scopes"]), reserved=-row["amount"], spent=cost)


def _release(db: Db, run_id: str, step: int | None) -> None:
    where, params = (
        ("run_id = ?", (run_id,)) if step is None else ("run_id = ? AND step = ?", (run_id, step))
    )
    rows = db.execute(
        f"DELETE FROM reservations WHERE {where} RETURNING scopes, amount", params
    ).fetchall()
    for row in rows:
        _adjust(db, _scopes_of(row["scopes"]), reserved=-row["amount"], spent=0)


def _adjust(db: Db, scopes: list[tuple[str, str]], *, reserved: int, spent: int) -> None:
    """Add to the reserved and spent amounts of these (scope, day) rows, in scope order."""
    for scope, day in scopes:
        db.execute(
            "UPDATE spend SET reserved = reserved + ?, spent = spent + ? "
            "WHERE scope = ? AND day = ?",
            (reserved, spent, scope, day),
        )


# The refill, as SQL: the bucket's tokens now, capped at its capacity.
_REFILLED = (
    "CASE WHEN rate_buckets.tokens + (CASE WHEN ? > rate_buckets.updated "
    "THEN ? - rate_buckets.updated ELSE 0 END) * ? > ? THEN ? "
    "ELSE rate_buckets.tokens + (CASE WHEN ? > rate_buckets.updated "
    "THEN ? - rate_buckets.updated ELSE 0 END) * ? END"
)


def _take(db: Db, charge: TakeToken, *, now: float, for_update: str) -> None:
    rate, capacity = charge.per_second, charge.capacity
    refill = (now, now, rate, capacity, capacity, now, now, rate)
    take = f"UPDATE rate_buckets SET tokens = {_REFILLED} - 1, updated = ? "
    take += f"WHERE key = ? AND {_REFILLED} >= 1"
    params = (*refill, now, charge.key, *refill)
    if db.execute(take, params).rowcount:
        return
    first = db.execute(
        "INSERT INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO NOTHING",
        (charge.key, capacity - 1.0, now),
    )
    # Not inserted: the bucket exists (another append made it meanwhile); its tokens decide.
    if first.rowcount or db.execute(take, params).rowcount:
        return
    row = db.execute(
        f"SELECT tokens, updated FROM rate_buckets WHERE key = ?{for_update}", (charge.key,)
    ).fetchone()
    tokens = 0.0 if row is None else row["tokens"] + max(0.0, now - row["updated"]) * rate
    wait = max(0.0, (1.0 - min(capacity, tokens)) / rate)
    raise RateLimited(
        f"rate limit {charge.key} is exhausted; the next call is due in {wait:.2f}s",
        scope=charge.key,
        retry_after_s=wait,
    )
