"""Settings, built once in the CLI layer from flags and environment; nothing reads env at import."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from charter.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Config"]


@dataclass(frozen=True, kw_only=True)
class Config:
    """Where Charter keeps its state."""

    home: Path
    """Folder for the default database, the seal key and sandbox state."""
    database_url: str
    """`sqlite://` followed by the file's path (default: `<home>/charter.db`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, home: str | Path | None = None) -> Config:
        """Build from `CHARTER_HOME` and `CHARTER_DATABASE_URL`; `home` overrides the former."""
        folder = Path(home or environ.get("CHARTER_HOME") or ".charter").resolve()
        url = environ.get("CHARTER_DATABASE_URL") or f"sqlite://{folder / 'charter.db'}"
        return cls(home=folder, database_url=url)

    def seal_key(self) -> bytes:
        """The key that seals run heads, created on first use, readable by the owner only.

        It lives beside, not inside, the database: a database-only tamperer cannot forge seals.
        """
        path = self.home / "seal.key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        try:
            return bytes.fromhex(path.read_text().strip())
        except ValueError as exc:
            raise ConfigError(
                f"{path} is not a valid seal key",
                hint="restore it from backup; without it, run seals cannot be verified",
            ) from exc
