"""Data protection in the store: retention's reads and purge, and the break-glass record.

`charter._retention` decides what is due; these methods find the candidates and purge them in
one transaction whose first write is the purge's entry in the control log, so nothing is
purged unrecorded. A break-glass reading of a run's raw payloads is logged the same way, and
committed before anything is decrypted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from charter._time import iso, utcnow
from charter.privacy._vault import sealed_key_id
from charter.store._chain import PURGED, purged_marker
from charter.store._host import SqlHost

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["EndedRun", "PrivacySql", "PurgeCounts"]

_OPEN = "('running', 'waiting')"
"""Statuses of runs that may still be resumed: their raw payloads are never purged."""


@dataclass(frozen=True, kw_only=True)
class EndedRun:
    """A run that ended, with what retention needs to judge it."""

    run_id: str
    workflow: str
    tenant_id: str
    ended_at: str
    environment: str
    """The environment its contract ran in (from its first event): its retention class."""
    legacy_payloads: bool
    """It holds raw payloads sealed before data keys existed, which only deletion purges."""


@dataclass(frozen=True, kw_only=True)
class PurgeCounts:
    """How much one purge removed."""

    payloads: int
    """Raw payload rows deleted (their keys are destroyed next)."""
    events: int
    """Events whose redacted payload was replaced by a retention marker."""
    cache_entries: int
    """Artifact cache entries deleted: expired, or sealed under a destroyed key."""


class PrivacySql(SqlHost):
    """Retention's reads, its one purge transaction, and the break-glass record."""

    def record_break_glass(self, run_id: str, *, by: str, reason: str, names: list[str]) -> None:
        """Log, durably, that operator `by` is about to read `run_id`'s raw payloads, and why."""
        with self._transaction() as db:
            self._log_control(
                db,
                actor=by,
                action="break_glass",
                detail={"key": f"run={run_id}", "reason": reason, "payloads": names},
            )

    def keys_held_open(self) -> dict[str, list[str]]:
        """Data key ids sealing payloads of runs that have not ended, with those runs."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT DISTINCT p.key_id, p.run_id FROM payloads p "
                "JOIN runs r ON r.run_id = p.run_id "
                f"WHERE p.key_id IS NOT NULL AND r.status IN {_OPEN} ORDER BY p.key_id, p.run_id"
            ).fetchall()
        held: dict[str, list[str]] = {}
        for row in rows:
            held.setdefault(row["key_id"], []).append(row["run_id"])
        return held

    def ended_runs(self, *, before: str) -> list[EndedRun]:
        """Runs that ended at or before `before` and still hold something retention purges."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT r.run_id, r.workflow, r.tenant_id, r.updated_at, e.payload, "
                "EXISTS (SELECT 1 FROM payloads p WHERE p.run_id = r.run_id "
                "AND p.key_id IS NULL) AS legacy "
                "FROM runs r JOIN events e ON e.run_id = r.run_id AND e.seq = 1 "
                f"WHERE r.status NOT IN {_OPEN} AND r.updated_at <= ? "
                f"AND (e.payload NOT LIKE '{PURGED}%' OR EXISTS "
                "(SELECT 1 FROM payloads p WHERE p.run_id = r.run_id)) "
                "ORDER BY r.updated_at",
                (before,),
            ).fetchall()
        return [
            EndedRun(
                run_id=r["run_id"],
                workflow=r["workflow"],
                tenant_id=r["tenant_id"],
                ended_at=r["updated_at"],
                environment=_environment(r["payload"]),
                legacy_payloads=bool(r["legacy"]),
            )
            for r in rows
        ]

    def purge(
        self,
        *,
        by: str,
        reason: str,
        keys: Sequence[str],
        legacy_runs: Sequence[str],
        redacted_runs: Sequence[str],
        cache_expired_before: str,
    ) -> PurgeCounts:
        """Purge, in one transaction that first logs who purged what and why.

        Deletes the raw payloads sealed under `keys` (the caller destroys the keys after) and
        the format-1 raw payloads of `legacy_runs`; replaces the redacted payloads of
        `redacted_runs` with retention markers (their hashes and places stay, so their chains
        verify); deletes cache entries expired by `cache_expired_before` or sealed under `keys`.
        """
        ts = iso(utcnow())
        doomed = set(keys)
        with self._transaction() as db:
            self._log_control(
                db,
                actor=by,
                action="retention",
                detail={
                    "key": "retention",
                    "reason": reason,
                    "keys": sorted(doomed),
                    "runs": sorted(redacted_runs),
                    "legacy_runs": sorted(legacy_runs),
                },
            )
            payloads = 0
            for kid in sorted(doomed):
                payloads += db.execute("DELETE FROM payloads WHERE key_id = ?", (kid,)).rowcount
            for run_id in legacy_runs:
                payloads += db.execute(
                    "DELETE FROM payloads WHERE run_id = ? AND key_id IS NULL", (run_id,)
                ).rowcount
            marker = purged_marker(ts, reason)
            events = 0
            for run_id in redacted_runs:
                events += db.execute(
                    "UPDATE events SET payload = ? WHERE run_id = ? AND digest IS NOT NULL "
                    f"AND payload NOT LIKE '{PURGED}%'",
                    (marker, run_id),
                ).rowcount
            cached = db.execute(
                "DELETE FROM artifact_cache WHERE expires_at <= ?", (cache_expired_before,)
            ).rowcount
            if doomed:
                for row in db.execute("SELECT key, value FROM artifact_cache").fetchall():
                    if sealed_key_id(bytes(row["value"])) in doomed:
                        cached += db.execute(
                            "DELETE FROM artifact_cache WHERE key = ?", (row["key"],)
                        ).rowcount
        return PurgeCounts(payloads=payloads, events=events, cache_entries=cached)


def _environment(first_payload: str) -> str:
    if first_payload.startswith(PURGED):
        return ""
    value = json.loads(first_payload).get("environment", "")
    return str(value)
