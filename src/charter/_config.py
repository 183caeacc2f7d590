"""Settings, built once in the CLI layer from flags and environment; nothing reads env at import."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from charter.exceptions import ConfigError
from charter.privacy import LocalKeyring
from charter.store._checkpoint import load_signing_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Config"]


@dataclass(frozen=True, kw_only=True)
class Config:
    """Where Charter keeps its state."""

    home: Path
    """Folder for the default database, the seal key and sandbox state."""
    database_url: str
    """`sqlite://` followed by the file's path (default: `<home>/charter.db`), or
    `postgresql://user@host:port/dbname` for a store shared by many nodes."""
    seal_key_file: Path | None = None
    """Where the seal key is (default: `<home>/seal.key`); every node of one store needs it."""
    keyring_file: Path | None = None
    """Where the data keys of raw payloads are (default: `<home>/keyring.json`); every node of
    one store needs the same keyring. Back it up apart from the database."""
    auto_upgrade: bool = True
    """Apply pending schema migrations when the store opens; off, a node refuses an old one."""
    signing_key_file: Path | None = None
    """The Ed25519 key checkpoints are signed with (default: `<home>/signing.key`). Keep it
    apart from the database and the seal key in production: whoever holds it can sign."""
    policy_roots: tuple[Path, ...] = ()
    """Folders besides a contract's own in which the files it names (policies, schema, prices)
    may lie; by default none, so a contract reads only files beside it."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, home: str | Path | None = None) -> Config:
        """Build from the environment; `home` overrides `CHARTER_HOME`.

        `CHARTER_HOME`, `CHARTER_DATABASE_URL`, `CHARTER_SEAL_KEY_FILE`,
        `CHARTER_SIGNING_KEY_FILE`,
        `CHARTER_KEYRING_FILE`, `CHARTER_AUTO_UPGRADE` (`0` leaves migrations to
        `charter db upgrade`), and `CHARTER_POLICY_ROOTS` (folders, `os.pathsep`-separated).

        Raises:
            ConfigError: `CHARTER_AUTO_UPGRADE` is neither 0 nor 1.
        """
        folder = Path(home or environ.get("CHARTER_HOME") or ".charter").resolve()
        url = environ.get("CHARTER_DATABASE_URL") or f"sqlite://{folder / 'charter.db'}"
        key_file = environ.get("CHARTER_SEAL_KEY_FILE")
        signing = environ.get("CHARTER_SIGNING_KEY_FILE")
        keyring = environ.get("CHARTER_KEYRING_FILE")
        upgrade = environ.get("CHARTER_AUTO_UPGRADE", "1").strip()
        if upgrade not in ("0", "1"):
            raise ConfigError(
                f"CHARTER_AUTO_UPGRADE={upgrade!r} is not 0 or 1",
                hint="set it to 0 to leave schema migrations to `charter db upgrade`",
            )
        return cls(
            home=folder,
            database_url=url,
            seal_key_file=Path(key_file).resolve() if key_file else None,
            keyring_file=Path(keyring).resolve() if keyring else None,
            auto_upgrade=upgrade == "1",
            signing_key_file=Path(signing).resolve() if signing else None,
            policy_roots=tuple(
                Path(root).resolve()
                for root in environ.get("CHARTER_POLICY_ROOTS", "").split(os.pathsep)
                if root.strip()
            ),
        )

    def signing_key(self) -> Ed25519PrivateKey:
        """The key checkpoints are signed with, created (owner-only) on first use."""
        return load_signing_key(self.signing_key_file or self.home / "signing.key")

    def keys(self) -> LocalKeyring:
        """The keyring holding the raw payloads' data keys."""
        return LocalKeyring(self.keyring_file or self.home / "keyring.json")

    def seal_key(self) -> bytes:
        """The key that seals run heads, created on first use, readable by the owner only.

        It lives beside, not inside, the database: a database-only tamperer cannot forge seals.
        """
        path = self.seal_key_file or self.home / "seal.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
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
