"""Where Charter keeps runs, their hash-chained events, identities and kill switches.

`open_store(url)` picks the backend by URL scheme: one local SQLite file by default, or one
PostgreSQL database shared by many nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from charter.exceptions import ConfigError
from charter.store._base import (
    ApprovalRecord,
    ControlEntry,
    IdentityRecord,
    KillSwitch,
    RunRecord,
    Store,
    StoredEvent,
)
from charter.store._cache import CacheEntry
from charter.store._chain import GENESIS, ChainReport, event_hash
from charter.store._limits import (
    Cap,
    Charge,
    ReleaseRun,
    Reserve,
    Settle,
    SpendRecord,
    TakeToken,
    dollars,
    micros,
    usd,
)
from charter.store._sql import SchemaState, SqlStore
from charter.store._sqlite import SqliteStore

if TYPE_CHECKING:
    from charter.privacy import KeyProvider

__all__ = [
    "GENESIS",
    "ApprovalRecord",
    "CacheEntry",
    "Cap",
    "ChainReport",
    "Charge",
    "ControlEntry",
    "IdentityRecord",
    "KillSwitch",
    "ReleaseRun",
    "Reserve",
    "RunRecord",
    "SchemaState",
    "Settle",
    "SpendRecord",
    "SqlStore",
    "SqliteStore",
    "Store",
    "StoredEvent",
    "TakeToken",
    "dollars",
    "event_hash",
    "micros",
    "open_store",
    "usd",
]


def open_store(
    url: str, *, seal_key: bytes, keys: KeyProvider | None = None, upgrade: bool = True
) -> SqlStore:
    """Open the store a database URL names, upgrading its schema unless `upgrade` is off.

    `sqlite:///path/to/file.db`, a bare path, `sqlite://:memory:`, or
    `postgresql://user@host:port/dbname` (the `postgres` extra: `pip install 'charter[postgres]'`).
    `keys` holds the raw payloads' data keys: a SQLite store defaults to a keyring file beside
    its database; a PostgreSQL store's nodes must share one, so it has no default.

    Raises:
        ConfigError: The scheme is unknown, the PostgreSQL driver is not installed, or a
            PostgreSQL store is opened without `keys`.
        SchemaVersionError: The database is newer than this Charter.
    """
    if url.startswith("sqlite://"):
        target = url.removeprefix("sqlite://")
        target = target.removeprefix("/") if target.startswith("/:memory:") else target
        return SqliteStore(target or ":memory:", seal_key=seal_key, keys=keys, upgrade=upgrade)
    if url.startswith(("postgres://", "postgresql://")):
        try:
            from charter.store._postgres import PostgresStore  # noqa: PLC0415 - optional
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL store needs psycopg",
                hint="pip install 'charter[postgres]'",
            ) from exc
        if keys is None:
            raise ConfigError(
                "a PostgreSQL store needs the keyring its nodes share",
                hint="set CHARTER_KEYRING_FILE to a keyring every node reads, or pass keys=",
            )
        return PostgresStore(url, seal_key=seal_key, keys=keys, upgrade=upgrade)
    if "://" in url:
        raise ConfigError(
            f"unsupported database URL {url.split('://', maxsplit=1)[0]}://...",
            hint="use sqlite:///path/to/charter.db or postgresql://user@host/dbname",
        )
    return SqliteStore(Path(url), seal_key=seal_key, keys=keys, upgrade=upgrade)
