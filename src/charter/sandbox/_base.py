"""Plumbing every sandbox service shares: connections, errors, idempotency and faults.

Everything here works on an open connection inside the caller's transaction;
`SandboxService` (in `_service`) owns the connection and the transactions.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeAlias, cast

if TYPE_CHECKING:
    from collections.abc import Mapping

    from _typeshed import DataclassInstance

__all__ = [
    "SCHEMA",
    "Clock",
    "Effect",
    "Record",
    "SandboxError",
    "add_fault",
    "connect",
    "new_id",
    "not_found",
    "require_text",
    "run_idempotent",
    "take_fault",
]

Clock: TypeAlias = Callable[[], datetime]
"""Returns the current time as an aware datetime; tests pass a fixed one."""

Effect: TypeAlias = Callable[[sqlite3.Connection], dict[str, Any]]
"""Performs a write's changes and returns its JSON-ready response."""

BUSY_TIMEOUT_MS = 10_000

_ERROR_FIELDS = ("code", "status", "message", "retryable")

SCHEMA = (
    # What the first request with each key answered: exactly one of response and error.
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, request_hash TEXT NOT NULL,
        response TEXT, error TEXT, created_at TEXT NOT NULL,
        CHECK ((response IS NULL) <> (error IS NULL))
    )""",
    # A table, not an attribute, so a fault a test injects reaches the process under test.
    """CREATE TABLE IF NOT EXISTS faults (
        id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, status INTEGER NOT NULL,
        code TEXT NOT NULL, remaining INTEGER NOT NULL CHECK (remaining > 0)
    )""",
)


class Record:
    """Mixin giving the frozen dataclasses the sandboxes return their JSON round trip."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, the body a real API would send."""
        return asdict(cast("DataclassInstance", self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a record from `to_dict()` output or a database row with the same columns."""
        return cls(**data)


class SandboxError(Exception):
    """An API error, shaped like the HTTP error the real service would return.

    Attributes:
        code: Machine-readable error code, e.g. `resource_missing`.
        status: The HTTP status the real API would answer with (400, 404, 409, 429, 500...).
        retryable: Whether the same request may succeed if sent again.
        message: Human-readable explanation.
    """

    def __init__(
        self, *, code: str, status: int, message: str, retryable: bool | None = None
    ) -> None:
        """Create an error; `retryable` defaults to True exactly for 429 and 5xx."""
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.retryable = (status == 429 or status >= 500) if retryable is None else retryable  # noqa: PLR2004

    def __reduce__(self) -> tuple[Any, ...]:
        # The constructor is keyword-only, so default pickling (replaying `args`) would fail.
        return (type(self).from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready dict, the body a real API would send."""
        return {name: getattr(self, name) for name in _ERROR_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild an error from `to_dict()` output."""
        return cls(**{name: data[name] for name in _ERROR_FIELDS})


def connect(path: str | Path) -> sqlite3.Connection:
    """Open a SQLite connection set up for several processes writing one file.

    Args:
        path: The database file (created with its parent directories), or ':memory:'.

    Returns:
        A connection in autocommit mode; callers run writes in explicit transactions.
    """
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None stops the sqlite3 module from opening transactions implicitly; writes
    # use an explicit BEGIN IMMEDIATE so the idempotency check and the effect commit together.
    # check_same_thread=False: a service object may be shared by threads; its lock serialises.
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    # First, so that the pragmas below and the schema set-up wait for another process's lock
    # instead of failing with "database is locked".
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # WAL: readers (tests counting effects) never block a writer, and a writer never blocks them.
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged effect is on disk before the call returns, so after a crash a key is
    # never found without its effect, nor an effect without its key.
    db.execute("PRAGMA synchronous=FULL")
    # SQLite leaves foreign keys off by default; a refund must never point at a missing charge.
    db.execute("PRAGMA foreign_keys=ON")
    return db


def new_id(prefix: str) -> str:
    """A Stripe-style id: `prefix`, an underscore and 24 random hex characters."""
    return f"{prefix}_{secrets.token_hex(12)}"


def not_found(kind: str, ident: object) -> SandboxError:
    """The 404 every sandbox answers for an unknown resource."""
    return SandboxError(code="resource_missing", status=404, message=f"no such {kind}: {ident!r}")


def require_text(**fields: str) -> None:
    """Reject blank required string parameters with a 400 `parameter_missing`."""
    for name, value in fields.items():
        if not value.strip():
            raise SandboxError(
                code="parameter_missing", status=400, message=f"{name} must not be blank"
            )


def add_fault(db: sqlite3.Connection, endpoint: str, *, status: int, code: str, times: int) -> None:
    """Queue a fault: the next `times` calls of `endpoint` raise `status`/`code` at once.

    Raises:
        ValueError: A status below 400, a blank code or `times` < 1.
    """
    if status < 400 or not code.strip() or times < 1:  # noqa: PLR2004
        raise ValueError("a fault needs status >= 400, a code and times >= 1")
    db.execute(
        "INSERT INTO faults (endpoint, status, code, remaining) VALUES (?, ?, ?, ?)",
        (endpoint, status, code, times),
    )


def take_fault(db: sqlite3.Connection, endpoint: str) -> SandboxError | None:
    """Consume the oldest fault queued for `endpoint` and return it as an error, if any."""
    row = db.execute(
        "SELECT id, status, code, remaining FROM faults WHERE endpoint = ? ORDER BY id LIMIT 1",
        (endpoint,),
    ).fetchone()
    if row is None:
        return None
    if row["remaining"] > 1:
        db.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
    else:
        db.execute("DELETE FROM faults WHERE id = ?", (row["id"],))
    return SandboxError(code=row["code"], status=row["status"], message=f"injected on {endpoint}")


def _replay(
    db: sqlite3.Connection, key: str, request: tuple[str, str]
) -> dict[str, Any] | SandboxError | None:
    row = db.execute(
        "SELECT endpoint, request_hash, response, error FROM idempotency_keys WHERE key = ?",
        (key,),
    ).fetchone()
    if row is None:
        return None
    if (row["endpoint"], row["request_hash"]) != request:
        return SandboxError(
            code="idempotency_key_reused",
            status=400,
            message=f"idempotency key {key!r} was already used with different parameters",
        )
    if row["error"] is not None:
        return SandboxError.from_dict(json.loads(row["error"]))
    response: dict[str, Any] = json.loads(row["response"])
    return response


def _run_effect(db: sqlite3.Connection, effect: Effect) -> dict[str, Any] | SandboxError:
    db.execute("SAVEPOINT effect")
    try:
        response = effect(db)
    except SandboxError as error:
        # A failed request leaves no trace but (maybe) its stored error.
        db.execute("ROLLBACK TO effect")
        db.execute("RELEASE effect")
        return error
    db.execute("RELEASE effect")
    return response


def _store(
    db: sqlite3.Connection,
    key: str,
    request: tuple[str, str],
    outcome: dict[str, Any] | SandboxError,
    created_at: str,
) -> dict[str, Any] | SandboxError:
    """Record the outcome of a request that ran; return it exactly as a replay will see it."""
    insert = "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)"
    if isinstance(outcome, SandboxError):
        # As on Stripe, a 429 or 5xx says nothing about the request, so it is not kept: a retry
        # with the same key gets a fresh attempt.
        if outcome.status != 429 and outcome.status < 500:  # noqa: PLR2004
            db.execute(insert, (key, *request, None, json.dumps(outcome.to_dict()), created_at))
        return outcome
    body = json.dumps(outcome, sort_keys=True)
    db.execute(insert, (key, *request, body, None, created_at))
    replayed: dict[str, Any] = json.loads(body)
    return replayed


def run_idempotent(
    db: sqlite3.Connection,
    *,
    endpoint: str,
    key: str,
    params: Mapping[str, Any],
    effect: Effect,
    created_at: str,
) -> dict[str, Any] | SandboxError:
    """Run `effect` at most once per idempotency key, with Stripe's semantics.

    An injected fault for `endpoint` comes first. A key seen before with the same endpoint and
    `params` replays the stored response or error without running `effect`; with other params
    it is `idempotency_key_reused`. Otherwise `effect` runs (its writes undone if it raises
    `SandboxError`) and its outcome is stored with the key, unless it is a 429 or 5xx.

    Call inside a `BEGIN IMMEDIATE` transaction and commit whatever this returns, error or
    not: a consumed fault and a stored error must persist.

    Returns:
        The response, exactly as a replay would return it, or the error to raise.

    Raises:
        SandboxError: `idempotency_key_required` for a missing or blank key.
    """
    # Checked at run time too: adapters pass keys straight from JSON, where one may be null.
    if not isinstance(key, str) or not key.strip():
        raise SandboxError(
            code="idempotency_key_required",
            status=400,
            message=f"{endpoint} is a write and needs an idempotency key",
        )
    canonical = json.dumps(params, sort_keys=True)
    request = (endpoint, hashlib.sha256(canonical.encode()).hexdigest())
    outcome = take_fault(db, endpoint) or _replay(db, key, request)
    if outcome is None:
        outcome = _store(db, key, request, _run_effect(db, effect), created_at)
    return outcome
