"""Principals as the store keeps them: each row a projection of its control-log entries, sealed.

Every change to a principal (created, its roles changed, revoked, adopted at an upgrade) is a
control-log entry naming the identity and a digest of the record it leaves, written in the
same transaction as the row. The row then carries a seal (HMAC under the store's seal key) over
its fields and the hash of that entry. So a principal inserted or edited straight into the
database, without Charter, fails in two ways: its seal does not verify (no seal key in the
database), and its latest control-log entry does not describe it. Such a record is returned
with its `problem` set: the gate, the client and `charter audit verify` all refuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from charter._time import iso, utcnow
from charter.exceptions import CharterError, NotFoundError, StateError, StoreError
from charter.identity import Grant, canonical_subject, check_new_subject
from charter.store._base import IdentityRecord
from charter.store._host import SqlHost

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter.store._db import Db, Row

__all__ = ["IdentitySql", "record_digest"]

_COLUMNS = (
    "id",
    "kind",
    "name",
    "subject",
    "agent",
    "workflow",
    "tenant_id",
    "roles",
    "token_hash",
    "created_at",
    "revoked_at",
    "environment",
    "expires_at",
    "issuer",
)
"""The columns a row's digest and seal cover, in this order."""


def _fields(row: Row | dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in _COLUMNS}


def record_digest(fields: dict[str, Any]) -> str:
    """SHA-256 of an identity row's covered fields: what its control-log entry records."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _row_seal(key: bytes, fields: dict[str, Any], log_seq: int, log_hash: str) -> str:
    material = f"charter identity\n{json.dumps(fields, sort_keys=True)}\n{log_seq}\n{log_hash}"
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


class IdentitySql(SqlHost):
    """Principals in SQL shared by both backends, each change on the control log."""

    # --- writing ---------------------------------------------------------------------------
    def add_identity(
        self,
        identity: IdentityRecord,
        *,
        token_hash: str,
        actor: str = "store",
        reason: str = "issued through the store",
        init: dict[str, Any] | None = None,
    ) -> IdentityRecord:
        """Store a new principal and its control-log entry, in one transaction.

        A human's subject must be one no active person has, and must not look like one. With
        `init` (what to record of the store's initialisation), the principal is the store's
        first admin: refused if the store was initialised before.

        Raises:
            StateError: An active identity already exists for this agent scope or subject, or
                `init` is given and the store was initialised already.
            UserError: The subject mixes scripts or looks like another person's.
        """
        record = replace(identity, subject=identity.subject or canonical_subject(identity.name))
        with self._transaction() as db:
            # The control version's row is the lock every identity change takes first, so two
            # creations of look-alike people (or two initialisations) cannot both pass.
            db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
            if init is not None:
                if _initialised(db):
                    raise StateError(
                        "this store was initialised already; it has an admin",
                        hint="ask an admin for a credential (`charter identity create`)",
                    )
                self._log_control(db, actor=actor, action="store.init", detail=init)
            if record.kind == "human":
                self._check_subject(db, record)
            fields = _record_fields(record, token_hash)
            try:
                db.execute(
                    f"INSERT INTO identities ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    tuple(fields.values()),
                )
            except self._UNIQUE_VIOLATION as exc:
                raise StateError(
                    f"an active identity already exists for {record.name}",
                    hint="revoke it first (`charter identity revoke ID`), or list them with "
                    "`charter identity list`",
                ) from exc
            self._record_change(db, fields, actor=actor, action="identity.create", reason=reason)
        return record

    def _check_subject(self, db: Db, record: IdentityRecord) -> None:
        rows = db.execute(
            "SELECT subject, issuer FROM identities WHERE kind = 'human' AND revoked_at IS NULL"
        ).fetchall()
        others = [r["subject"] for r in rows if isinstance(r["subject"], str)]
        if record.issuer == "charter" and any(
            r["subject"] == record.subject and r["issuer"] == "charter" for r in rows
        ):
            raise StateError(
                f"an active person with subject {record.subject!r} already exists",
                hint="a person has one Charter identity: change its roles with "
                "`charter identity update`, or revoke it first",
            )
        check_new_subject(record.subject, others)

    def update_identity(
        self, identity_id: str, *, grants: Sequence[Grant], actor: str, reason: str
    ) -> IdentityRecord:
        """Replace a person's grants, on record.

        Raises:
            NotFoundError: No such identity.
            StateError: It is revoked, or not a person.
        """
        with self._transaction() as db:
            db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
            row = _row_of(db, identity_id, for_update=self._FOR_UPDATE)
            if row["kind"] != "human" or row["revoked_at"] is not None:
                raise StateError(f"{identity_id} is not an active person; its roles cannot change")
            fields = {**_fields(row), "roles": _grants_json(grants)}
            db.execute(
                "UPDATE identities SET roles = ? WHERE id = ?", (fields["roles"], identity_id)
            )
            self._record_change(db, fields, actor=actor, action="identity.update", reason=reason)
            self._bump_control(db)
        return self._loaded(identity_id)

    def revoke_identity(
        self, identity_id: str, *, actor: str = "store", reason: str = "revoked through the store"
    ) -> IdentityRecord:
        """Revoke a credential on record; every node refuses it from its next gate call.

        Raises:
            NotFoundError: No such identity.
        """
        with self._transaction() as db:
            db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
            row = _row_of(db, identity_id, for_update=self._FOR_UPDATE)
            if row["revoked_at"] is None:
                fields = {**_fields(row), "revoked_at": iso(utcnow())}
                db.execute(
                    "UPDATE identities SET revoked_at = ? WHERE id = ?",
                    (fields["revoked_at"], identity_id),
                )
                self._record_change(
                    db, fields, actor=actor, action="identity.revoke", reason=reason
                )
                self._bump_control(db)
        return self._loaded(identity_id)

    def _record_change(
        self, db: Db, fields: dict[str, Any], *, actor: str, action: str, reason: str
    ) -> None:
        """Log a change to an identity and seal its row to that entry."""
        entry = {
            "key": f"identity={fields['id']}",
            "name": fields["name"],
            "kind": fields["kind"],
            "grants": json.loads(fields["roles"]),
            "expires_at": fields["expires_at"],
            "issuer": fields["issuer"],
            "reason": reason,
            "record": record_digest(fields),
        }
        seq, digest = self._log_control(
            db, actor=actor, action=action, detail=entry, subject_id=fields["id"]
        )
        db.execute(
            "UPDATE identities SET log_seq = ?, mac = ? WHERE id = ?",
            (seq, _row_seal(self.seal_key, fields, seq, digest), fields["id"]),
        )

    def _adopt_identities(self, db: Db) -> int:
        """Put every identity an earlier Charter made (unsealed) on record; returns how many."""
        rows = db.execute("SELECT * FROM identities WHERE mac IS NULL ORDER BY created_at, id")
        adopted = 0
        for row in rows.fetchall():
            fields = _fields(row)
            if not fields["subject"]:
                fields["subject"] = _legacy_subject(row)
                db.execute(
                    "UPDATE identities SET subject = ? WHERE id = ?",
                    (fields["subject"], fields["id"]),
                )
            self._record_change(
                db,
                fields,
                actor="charter upgrade",
                action="identity.adopt",
                reason="made by an earlier Charter; put on record at the upgrade",
            )
            adopted += 1
        return adopted

    # --- reading ---------------------------------------------------------------------------
    def initialisation(self) -> dict[str, Any] | None:
        """What was recorded when the store got its first admin; None if it has none yet."""
        with self._reading() as db:
            return _initialised(db)

    def identity_by_token_hash(self, token_hash: str) -> IdentityRecord | None:
        """The principal holding a credential, checked against its record; None if unknown."""
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM identities WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else self._checked(db, row)

    def get_identity(self, identity_id: str) -> IdentityRecord | None:
        """A principal by id, checked against its record; None if unknown."""
        with self._reading() as db:
            row = db.execute("SELECT * FROM identities WHERE id = ?", (identity_id,)).fetchone()
            return None if row is None else self._checked(db, row)

    def list_identities(self, *, include_revoked: bool = False) -> list[IdentityRecord]:
        """Principals, oldest first, each checked against its record."""
        sql = "SELECT * FROM identities"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY created_at, id").fetchall()
            return [self._checked(db, r) for r in rows]

    def _loaded(self, identity_id: str) -> IdentityRecord:
        found = self.get_identity(identity_id)
        if found is None:  # pragma: no cover - read right after its own write
            raise StoreError(f"identity {identity_id} vanished")
        return found

    def _checked(self, db: Db, row: Row) -> IdentityRecord:
        """The record of a row, with `problem` set if the row does not match the log."""
        try:
            record = _record_of(row)
        except (TypeError, ValueError, KeyError, CharterError) as exc:
            return IdentityRecord(
                id=str(row["id"]),
                kind="human",
                name=str(row["name"]),
                problem=f"its row is unreadable ({type(exc).__name__}): altered outside Charter",
            )
        problem = self._row_problem(db, row)
        return record if problem is None else replace(record, problem=problem)

    def _row_problem(self, db: Db, row: Row) -> str | None:
        """Why a row is not what its control-log entries made it; None if it is."""
        entry = db.execute(
            "SELECT seq, hash, payload FROM control_log WHERE subject_id = ? "
            "ORDER BY seq DESC LIMIT 1",
            (row["id"],),
        ).fetchone()
        if entry is None:
            return "no control-log entry made it: it was inserted outside Charter"
        if row["log_seq"] != entry["seq"]:
            return (
                f"it is not what its last control-log entry ({entry['seq']}) made it: it was "
                "changed outside Charter"
            )
        fields = _fields(row)
        try:
            recorded = json.loads(entry["payload"]).get("record")
        except (ValueError, TypeError, AttributeError):
            recorded = None
        seal = _row_seal(self.seal_key, fields, entry["seq"], entry["hash"])
        if recorded != record_digest(fields) or not isinstance(row["mac"], str):
            return "its fields differ from its control-log entry: it was changed outside Charter"
        if not hmac.compare_digest(seal, row["mac"]):
            return "its seal does not verify: it was written outside Charter"
        return None

    def identity_problems(self) -> list[tuple[str, str]]:
        """(identity id, problem) for each principal that does not match the control log.

        An identity the control log made whose row is gone is one of them.
        """
        with self._reading() as db:
            rows = db.execute("SELECT * FROM identities ORDER BY id").fetchall()
            found = [(str(r["id"]), self._checked(db, r).problem) for r in rows]
            logged = db.execute(
                "SELECT DISTINCT subject_id FROM control_log WHERE subject_id IS NOT NULL"
            ).fetchall()
        present = {identity_id for identity_id, _ in found}
        problems = [(i, p) for i, p in found if p is not None]
        problems += [
            (str(r[0]), "the control log made it, but its row is gone: deleted outside Charter")
            for r in logged
            if r[0] not in present
        ]
        return problems


def _initialised(db: Db) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT ts, payload FROM control_log WHERE action = 'store.init' ORDER BY seq LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    try:
        detail = json.loads(row["payload"])
    except (TypeError, ValueError):
        detail = {}
    return {"ts": row["ts"], **(detail if isinstance(detail, dict) else {})}


def _row_of(db: Db, identity_id: str, *, for_update: str) -> Row:
    row = db.execute(
        f"SELECT * FROM identities WHERE id = ?{for_update}", (identity_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"identity {identity_id!r} does not exist",
            hint="`charter identity list --all` shows the identities",
        )
    found: Row = row
    return found


def _grants_json(grants: Sequence[Grant]) -> str:
    return json.dumps([str(g) for g in grants])


def _record_fields(record: IdentityRecord, token_hash: str) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "name": record.name,
        "subject": record.subject,
        "agent": record.agent,
        "workflow": record.workflow,
        "tenant_id": record.tenant_id,
        "roles": _grants_json(record.grants),
        "token_hash": token_hash,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
        "environment": record.environment,
        "expires_at": record.expires_at,
        "issuer": record.issuer,
    }


def _legacy_subject(row: Row) -> str:
    try:
        return canonical_subject(str(row["name"]))
    except CharterError:
        return str(row["id"])


def _record_of(row: Row) -> IdentityRecord:
    grants = tuple(Grant.parse(g) for g in json.loads(row["roles"]))
    return IdentityRecord(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        subject=row["subject"] or "",
        agent=row["agent"],
        workflow=row["workflow"],
        tenant_id=row["tenant_id"],
        grants=grants,
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        environment=row["environment"] or "dev",
        expires_at=row["expires_at"],
        issuer=row["issuer"] or "charter",
    )
