"""Where Charter keeps runs, their hash-chained events, identities and kill switches.

`open_store(url)` picks the backend by URL scheme; the default is one local SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from charter.exceptions import ConfigError
from charter.store._base import (
    ApprovalRecord,
    IdentityRecord,
    KillSwitch,
    RunRecord,
    Store,
    StoredEvent,
)
from charter.store._chain import GENESIS, ChainReport, event_hash
from charter.store._sqlite import SqliteStore

__all__ = [
    "GENESIS",
    "ApprovalRecord",
    "ChainReport",
    "IdentityRecord",
    "KillSwitch",
    "RunRecord",
    "SqliteStore",
    "Store",
    "StoredEvent",
    "event_hash",
    "open_store",
]


def open_store(url: str, *, seal_key: bytes) -> Store:
    """Open the store a database URL names.

    `sqlite:///path/to/file.db`, a bare path, or `sqlite://:memory:`.

    Raises:
        ConfigError: The scheme is not supported by this version.
    """
    if url.startswith("sqlite://"):
        target = url.removeprefix("sqlite://")
        target = target.removeprefix("/") if target.startswith("/:memory:") else target
        return SqliteStore(target or ":memory:", seal_key=seal_key)
    if url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            "the PostgreSQL store is not part of this version of Charter",
            hint="use the SQLite default (unset CHARTER_DATABASE_URL)",
        )
    if "://" in url:
        raise ConfigError(
            f"unsupported database URL {url.split('://', maxsplit=1)[0]}://...",
            hint="use sqlite:///path/to/charter.db",
        )
    return SqliteStore(Path(url), seal_key=seal_key)
