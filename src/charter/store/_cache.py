"""The artifact cache's table: reusable answers of model steps and read tools.

Values arrive sealed (encrypted under the tenant's key by the caller) and leave sealed; the
store sees only the key, the scope it belongs to and when it expires. Reading an expired entry
is a miss, whether or not it has been purged yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from charter.store._host import SqlHost

__all__ = ["CacheEntry", "CacheSql"]


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    """One cached answer, as stored: who it belongs to, where it came from, until when."""

    key: str
    """The content hash the answer is found by."""
    tenant_id: str
    workflow: str
    kind: Literal["model", "tool"]
    name: str
    """The model step's label, or the tool's name."""
    source: str
    """`run_id/step` of the step whose answer this is."""
    created_at: str
    expires_at: str
    value: bytes = b""
    """The answer, sealed under the tenant's key; empty in listings."""

    def to_dict(self) -> dict[str, Any]:
        """The entry without its value, for `--json` output."""
        data = asdict(self)
        del data["value"]
        return data


class CacheSql(SqlHost):
    """Reads and writes of the `artifact_cache` table, in SQL shared by both backends."""

    def cache_get(self, key: str, *, now: str) -> CacheEntry | None:
        """The live entry under `key` (expiring after `now`), or None."""
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM artifact_cache WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
        if row is None:
            return None
        return CacheEntry(**{**dict(row), "value": bytes(row["value"])})

    def cache_put(self, entry: CacheEntry) -> None:
        """Store `entry`, replacing any entry under its key (a fresh answer wins)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO artifact_cache (key, tenant_id, workflow, kind, name, source, value, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET source = excluded.source, "
                "value = excluded.value, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                (
                    entry.key,
                    entry.tenant_id,
                    entry.workflow,
                    entry.kind,
                    entry.name,
                    entry.source,
                    entry.value,
                    entry.created_at,
                    entry.expires_at,
                ),
            )

    def cache_entries(
        self, *, workflow: str | None = None, tenant_id: str | None = None
    ) -> list[CacheEntry]:
        """Every entry (values left out), expired ones included, oldest first."""
        sql, params = _scoped(
            "SELECT key, tenant_id, workflow, kind, name, source, created_at, expires_at "
            "FROM artifact_cache",
            workflow,
            tenant_id,
        )
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY created_at, key", params).fetchall()
        return [CacheEntry(**dict(row)) for row in rows]

    def cache_clear(
        self,
        *,
        by: str,
        reason: str,
        workflow: str | None = None,
        tenant_id: str | None = None,
        expired_before: str | None = None,
    ) -> int:
        """Delete entries in a scope (all of them, or those expired by `expired_before`).

        The clearing is a control change: it goes to the control log with who and why.
        Returns how many entries were deleted.
        """
        sql, params = _scoped("DELETE FROM artifact_cache", workflow, tenant_id)
        if expired_before is not None:
            sql += (" AND" if params else " WHERE") + " expires_at <= ?"
            params = (*params, expired_before)
        scope = f"cache:workflow={workflow or '*'},tenant_id={tenant_id or '*'}"
        scope += ",expired" if expired_before is not None else ""
        with self._transaction() as db:
            dropped = int(db.execute(sql, params).rowcount)
            detail = {"key": scope, "reason": reason, "dropped": dropped}
            self._log_control(db, actor=by, action="cache_clear", detail=detail)
        return dropped


def _scoped(sql: str, workflow: str | None, tenant_id: str | None) -> tuple[str, tuple[str, ...]]:
    given = [(c, v) for c, v in (("workflow", workflow), ("tenant_id", tenant_id)) if v is not None]
    if not given:
        return sql, ()
    return sql + " WHERE " + " AND ".join(f"{c} = ?" for c, _ in given), tuple(v for _, v in given)
