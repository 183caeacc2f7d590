"""The store's control state: kill switches, the control log and shared limits.

Operators change this state while runs go on; each change bumps the control version (so every
node's gate reloads at its next call) and each kill-switch change is written to the control
log: a hash chain of its own, sealed like a run's, that says who stopped what, when and why.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from charter._time import iso, utcnow
from charter.store._base import ControlEntry, KillSwitch
from charter.store._chain import GENESIS, event_hash, seal
from charter.store._host import SqlHost
from charter.store._ledger import Claim, append_claims
from charter.store._limits import SpendRecord, usd
from charter.store._rows import switch_from_row

if TYPE_CHECKING:
    from charter.store._db import Db

__all__ = ["CONTROL_CHAIN", "ControlSql"]

CONTROL_CHAIN = "(control)"
"""The chain id the control log is hashed and sealed under; no run id can take it."""


class ControlSql(SqlHost):
    """Identities, kill switches, the control log and spend, in SQL shared by both backends."""

    # --- kill switches ---------------------------------------------------------------------
    def engage_kill_switch(self, switch: KillSwitch) -> None:
        """Engage a kill switch, and log who engaged it and why."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO kill_switches (key, agent, workflow, tenant_id, tool, reason, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO "
                "UPDATE SET reason = excluded.reason, created_by = excluded.created_by, "
                "created_at = excluded.created_at",
                (
                    switch.key,
                    switch.agent,
                    switch.workflow,
                    switch.tenant_id,
                    switch.tool,
                    switch.reason,
                    switch.created_by,
                    switch.created_at,
                ),
            )
            self._bump_control(db)
            self._log_control(
                db,
                actor=switch.created_by,
                action="kill",
                detail={"key": switch.key, "reason": switch.reason},
            )

    def release_kill_switch(self, key: str, *, by: str = "", reason: str = "") -> bool:
        """Release a kill switch by its key, log it, and wake the runs it paused."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM kill_switches WHERE key = ?", (key,))
            released = cursor.rowcount > 0
            self._bump_control(db)
            if released:
                # The runs' rows before the log: the log's ledger claim takes the ledger's head,
                # which an append takes last, after its run's row; in the other order the two
                # would wait on each other.
                paused = db.execute(
                    "UPDATE runs SET runnable = 1, paused_by = NULL WHERE paused_by = ?", (key,)
                )
                self._log_control(
                    db, actor=by, action="unkill", detail={"key": key, "reason": reason}
                )
                if paused.rowcount:
                    self._notify(db, "runnable")
            return released

    def kill_switches(self) -> list[KillSwitch]:
        """Every engaged kill switch."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM kill_switches ORDER BY created_at").fetchall()
        return [switch_from_row(r) for r in rows]

    def control_version(self) -> int:
        """The kill-switch and revocation counter."""
        with self._reading() as db:
            row = db.execute("SELECT version FROM control_version").fetchone()
        return int(row[0])

    # --- the control log -------------------------------------------------------------------
    def _log_control(
        self,
        db: Db,
        *,
        actor: str,
        action: str,
        detail: dict[str, Any],
        subject_id: str | None = None,
    ) -> tuple[int, str]:
        """Append one entry (`subject_id`: the identity it changes) and claim it on the ledger.

        Returns the entry's sequence number and hash.
        """
        # Serialised by the control-version row: locked here, so two writers of the log cannot
        # both read the same head (a caller that bumped the version holds the lock already).
        db.execute(f"SELECT version FROM control_version{self._FOR_UPDATE}").fetchone()
        head = db.execute("SELECT seq, hash FROM control_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (head["seq"] + 1, head["hash"]) if head is not None else (1, GENESIS)
        ts = iso(utcnow())
        payload = json.dumps({"actor": actor, **detail}, sort_keys=True)
        digest = event_hash(
            prev_hash=prev, run_id=CONTROL_CHAIN, seq=seq, ts=ts, kind=action, payload=payload
        )
        db.execute(
            "INSERT INTO control_log (seq, ts, action, payload, prev_hash, hash, subject_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, action, payload, prev, digest, subject_id),
        )
        mac = seal(self.seal_key, run_id=CONTROL_CHAIN, seq=seq, head_hash=digest, summary="")
        db.execute(
            "INSERT INTO store_settings (name, value) VALUES ('control_head', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (f"{seq}:{digest}:{mac}",),
        )
        append_claims(
            db,
            self.seal_key,
            [Claim("control", CONTROL_CHAIN, seq, digest, action)],
            ts=ts,
            for_update=self._FOR_UPDATE,
        )
        return seq, digest

    def control_log(self) -> list[ControlEntry]:
        """Every kill and unkill, oldest first: who, what, when and why."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM control_log ORDER BY seq").fetchall()
        return [_entry(r["seq"], r["ts"], r["action"], _payload(r["payload"])) for r in rows]

    # --- shared limits ---------------------------------------------------------------------
    def spend(self, *, day: str | None = None, scope: str | None = None) -> list[SpendRecord]:
        """The shared caps' days: spent and reserved, by scope; filtered by day and scope."""
        sql, params = "SELECT * FROM spend WHERE 1 = 1", list[str]()
        if day is not None:
            sql, params = sql + " AND day = ?", [*params, day]
        if scope is not None:
            sql, params = sql + " AND scope = ?", [*params, scope]
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY day, scope", tuple(params)).fetchall()
        return [
            SpendRecord(
                scope=r["scope"],
                day=r["day"],
                spent_usd=usd(r["spent"]),
                reserved_usd=usd(r["reserved"]),
            )
            for r in rows
        ]


def _payload(text: object) -> dict[str, Any]:
    """An entry's payload, or a placeholder for one altered into something unreadable.

    The listing goes on; `charter audit verify` says which entry was altered.
    """
    try:
        found = json.loads(text)  # type: ignore[arg-type] # checked by the except
    except (TypeError, ValueError):
        return {"actor": "?", "reason": "(unreadable: altered outside Charter)"}
    return found if isinstance(found, dict) else {"actor": "?", "reason": "(unreadable)"}


_ENTRY_FIELDS = frozenset({"actor", "key", "reason", "dropped"})


def _entry(seq: int, ts: str, action: str, payload: dict[str, Any]) -> ControlEntry:
    """A control log row as an entry: its common fields, and the rest as detail."""
    common = {k: v for k, v in payload.items() if k in _ENTRY_FIELDS}
    extra = {k: v for k, v in payload.items() if k not in _ENTRY_FIELDS}
    return ControlEntry(seq=seq, ts=ts, action=action, **common, detail=extra)
