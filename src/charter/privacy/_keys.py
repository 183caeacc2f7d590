"""Data keys: where the keys that encrypt raw payloads live, and how they are destroyed.

One key per tenant, workflow, retention class and UTC day
(`acme/billing-refunds/standard/2026-11-24`). Retention purges a day of a class by destroying
its key: every copy of what it sealed, in the database,
in a backup, in a replica, becomes unreadable at once (crypto-shredding).

`KeyProvider` is the interface; `LocalKeyring` keeps keys in a file beside the seal key, and
`MemoryKeyring` in memory, for stores that live only as long as their process. A KMS fits the
same interface: `key(create=True)` is GenerateDataKey (keeping the wrapped key where the
provider likes), `key()` is Decrypt of the wrapped key, `destroy` deletes the wrapped key (or
schedules deletion of a per-day KMS key).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from charter.exceptions import ConfigError, PayloadPurged

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from pathlib import Path

__all__ = ["KeyProvider", "LocalKeyring", "MemoryKeyring", "key_id", "key_parts"]

_NAME = r"[a-z][a-z0-9_.-]{0,63}"
_KEY_ID = re.compile(
    rf"^(?P<tenant>{_NAME})/(?P<workflow>{_NAME})/(?P<cls>{_NAME})/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})$"
)
_KEY_BYTES = 32


def key_id(tenant_id: str, workflow: str, retention: str, day: str) -> str:
    """The key sealing a tenant's raw payloads of a workflow and class written on UTC `day`."""
    return f"{tenant_id}/{workflow}/{retention}/{day}"


def key_parts(kid: str) -> tuple[str, str, str, str] | None:
    """(tenant, workflow, retention class, day) of a key id, or None if it is not one."""
    match = _KEY_ID.match(kid)
    return (match["tenant"], match["workflow"], match["cls"], match["day"]) if match else None


class KeyProvider(Protocol):
    """Where data keys are created, read and destroyed."""

    def key(self, kid: str, *, create: bool = False) -> bytes | None:
        """The key `kid`, made on first use when `create`; None if it does not exist.

        Raises:
            PayloadPurged: `kid` was destroyed; it is never made again.
        """
        ...

    def destroy(self, kids: Collection[str]) -> list[str]:
        """Destroy these keys for good; returns those that existed."""
        ...

    def key_ids(self) -> list[str]:
        """The ids of every live key."""
        ...

    def destroyed(self) -> dict[str, str]:
        """Destroyed key ids, with when each was destroyed."""
        ...


class MemoryKeyring:
    """Keys held in memory: for in-memory stores and tests; gone with the process."""

    def __init__(self) -> None:
        """An empty keyring."""
        self._keys: dict[str, bytes] = {}
        self._destroyed: dict[str, str] = {}
        self._lock = threading.Lock()

    def key(self, kid: str, *, create: bool = False) -> bytes | None:
        """The key `kid`, made on first use when `create`; None if it does not exist."""
        with self._lock:
            if kid in self._destroyed:
                raise _destroyed(kid, self._destroyed[kid])
            if kid not in self._keys and create:
                self._keys[kid] = secrets.token_bytes(_KEY_BYTES)
            return self._keys.get(kid)

    def destroy(self, kids: Collection[str]) -> list[str]:
        """Destroy these keys for good; returns those that existed."""
        now = _now()
        with self._lock:
            gone = [k for k in kids if self._keys.pop(k, None) is not None]
            self._destroyed.update(dict.fromkeys(gone, now))
        return gone

    def key_ids(self) -> list[str]:
        """The ids of every live key."""
        with self._lock:
            return sorted(self._keys)

    def destroyed(self) -> dict[str, str]:
        """Destroyed key ids, with when each was destroyed."""
        with self._lock:
            return dict(self._destroyed)


class LocalKeyring:
    """Keys in a JSON file readable by its owner only, shared by the processes of one machine.

    Writes take an exclusive lock on a sibling lock file, reread the file, and replace it
    atomically (write, fsync, rename), so two workers creating the same day's key agree on one.
    Reads are served from memory and reread the file only for a key this process has not seen.
    Keep it outside the database and back it up apart from it: a backup holding both the
    database and its keys is a backup retention cannot purge.
    """

    def __init__(self, path: Path) -> None:
        """Use (or create, on the first key) the keyring file at `path`.

        A symbolic link is followed once, here: the file is replaced on every write, and the
        link must keep naming it.
        """
        self.path = path.resolve()
        self._lock_path = path.with_name(path.name + ".lock")
        self._keys: dict[str, bytes] = {}
        self._destroyed: dict[str, str] = {}
        self._seen: tuple[int, int] | None = None
        self._mutex = threading.Lock()
        self._reload()

    def key(self, kid: str, *, create: bool = False) -> bytes | None:
        """The key `kid`, made on first use when `create`; None if it does not exist."""
        with self._mutex:
            self._reload()  # cheap when the file is unchanged; another process may have
            # made or destroyed a key since
            found = self._keys.get(kid)
            if found is not None:
                return found
            if kid in self._destroyed:
                raise _destroyed(kid, self._destroyed[kid])
            if kid in self._keys or not create:
                return self._keys.get(kid)
            with self._locked():
                self._reload()
                if kid in self._destroyed:
                    raise _destroyed(kid, self._destroyed[kid])
                if kid not in self._keys:
                    self._keys[kid] = secrets.token_bytes(_KEY_BYTES)
                    self._write()
            return self._keys[kid]

    def destroy(self, kids: Collection[str]) -> list[str]:
        """Destroy these keys for good; returns those that existed."""
        now = _now()
        with self._mutex, self._locked():
            self._reload()
            gone = [k for k in kids if self._keys.pop(k, None) is not None]
            if gone:
                self._destroyed.update(dict.fromkeys(gone, now))
                self._write()
        return gone

    def key_ids(self) -> list[str]:
        """The ids of every live key."""
        with self._mutex:
            self._reload()
            return sorted(self._keys)

    def destroyed(self) -> dict[str, str]:
        """Destroyed key ids, with when each was destroyed."""
        with self._mutex:
            self._reload()
            return dict(self._destroyed)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if self._seen == (stat.st_mtime_ns, stat.st_size):
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            data = json.loads(text)
            self._keys = {k: base64.b64decode(v) for k, v in data["keys"].items()}
            self._destroyed = dict(data["destroyed"])
            self._seen = (stat.st_mtime_ns, stat.st_size)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.path} is not a valid keyring",
                hint="restore it from its backup; without it, raw payloads cannot be read",
            ) from exc

    def _write(self) -> None:
        data = {
            "format": 1,
            "keys": {k: base64.b64encode(v).decode() for k, v in sorted(self._keys.items())},
            "destroyed": dict(sorted(self._destroyed.items())),
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a temporary file left behind keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        self._seen = None  # the next read takes the file as written


def _destroyed(kid: str, when: str) -> PayloadPurged:
    return PayloadPurged(
        f"data key {kid} was destroyed by retention on {when}",
        hint="what it sealed is purged for good; the redacted log still holds what it showed",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
