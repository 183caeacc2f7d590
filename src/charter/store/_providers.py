"""Identity providers as the store keeps them: registered by an admin, on the control log, sealed.

Trusting an issuer is trusting everyone it vouches for, so a provider is guarded like an
identity: each registration or removal is a control-log entry (subject `idp:<issuer>`), and
the row carries a seal over its configuration and that entry's hash. A provider inserted into
the database without Charter is ignored when tokens are checked, and `charter audit verify`
names it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from charter._time import iso, utcnow
from charter.exceptions import NotFoundError
from charter.store._host import SqlHost

if TYPE_CHECKING:
    from charter.store._db import Db

__all__ = ["ProviderSql"]


def _seal(key: bytes, issuer: str, config: str, log_seq: int, log_hash: str) -> str:
    material = f"charter identity provider\n{issuer}\n{config}\n{log_seq}\n{log_hash}"
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


class ProviderSql(SqlHost):
    """Identity providers in SQL shared by both backends."""

    def add_provider(self, issuer: str, config: str, *, actor: str, reason: str) -> None:
        """Register (or replace) an issuer's configuration (canonical JSON), on record."""
        with self._transaction() as db:
            db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
            digest = hashlib.sha256(config.encode()).hexdigest()
            seq, entry = self._log_control(
                db,
                actor=actor,
                action="idp.add",
                detail={"key": f"idp={issuer}", "reason": reason, "config": digest},
                subject_id=f"idp:{issuer}",
            )
            db.execute("DELETE FROM identity_providers WHERE issuer = ?", (issuer,))
            db.execute(
                "INSERT INTO identity_providers (issuer, config, created_at, log_seq, mac) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    issuer,
                    config,
                    iso(utcnow()),
                    seq,
                    _seal(self.seal_key, issuer, config, seq, entry),
                ),
            )
            self._bump_control(db)

    def remove_provider(self, issuer: str, *, actor: str, reason: str) -> None:
        """Stop trusting an issuer, on record; its tokens are refused from the next call on.

        Raises:
            NotFoundError: No such issuer is registered.
        """
        with self._transaction() as db:
            db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
            gone = db.execute("DELETE FROM identity_providers WHERE issuer = ?", (issuer,))
            if gone.rowcount == 0:
                raise NotFoundError(
                    f"no identity provider {issuer!r} is registered",
                    hint="`charter idp list` shows them",
                )
            self._log_control(
                db,
                actor=actor,
                action="idp.remove",
                detail={"key": f"idp={issuer}", "reason": reason},
                subject_id=f"idp:{issuer}",
            )
            self._bump_control(db)

    def providers(self) -> list[tuple[str, str, str | None]]:
        """Every registered issuer: (issuer, configuration JSON, problem or None).

        A provider whose row does not match its control-log entry has a problem and is never
        trusted.
        """
        with self._reading() as db:
            rows = db.execute("SELECT * FROM identity_providers ORDER BY issuer").fetchall()
            return [
                (str(r["issuer"]), str(r["config"]), self._provider_problem(db, r)) for r in rows
            ]

    def _provider_problem(self, db: Db, row: Any) -> str | None:  # noqa: ANN401 - a Row
        entry = db.execute(
            "SELECT seq, hash, action, payload FROM control_log WHERE subject_id = ? "
            "ORDER BY seq DESC LIMIT 1",
            (f"idp:{row['issuer']}",),
        ).fetchone()
        if entry is None or entry["action"] != "idp.add" or entry["seq"] != row["log_seq"]:
            return "no control-log entry registered it as it is: it was written outside Charter"
        try:
            recorded = json.loads(entry["payload"]).get("config")
        except (TypeError, ValueError, AttributeError):
            recorded = None
        config = row["config"]
        if not isinstance(config, str) or recorded != hashlib.sha256(config.encode()).hexdigest():
            return "its configuration differs from what was registered: changed outside Charter"
        expected = _seal(self.seal_key, row["issuer"], config, entry["seq"], entry["hash"])
        if not isinstance(row["mac"], str) or not hmac.compare_digest(expected, row["mac"]):
            return "its seal does not verify: it was written outside Charter"
        return None
