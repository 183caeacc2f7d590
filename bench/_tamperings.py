"""The tamperings `bench.tamper` draws from: each one way an attacker with write access to the
database could change a store, applied through a connection of its own outside Charter.

Each `Kind` picks its target with the random generator it is given, makes ONE change, and says
what it hit. `tests/test_seal.py` runs every kind on both backends.
"""

from __future__ import annotations

import functools
import json
import random
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from charter.store import event_hash
from charter.store._chain import payload_digest

TEXT_ONLY = "PostgreSQL refuses text that is not UTF-8"
"""Why the invalid-UTF-8 kind does not apply to PostgreSQL."""


# --- the tamperer's connection ------------------------------------------------------------------
class Raw:
    """A connection to one trial's database outside Charter: what a tamperer holds.

    Statements use `?` placeholders on both backends; `old(table)` names a table of the backup.
    """

    def __init__(self, url: str, *, backup: str) -> None:
        self.postgres = not url.startswith("sqlite://")
        self.conn: Any
        if self.postgres:
            import psycopg  # noqa: PLC0415 - only PostgreSQL trials need it

            self.conn = psycopg.connect(url, autocommit=True)
            self._old = f'"{backup}".'
        else:
            self.conn = sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)
            self.conn.execute("ATTACH DATABASE ? AS old", (backup,))
            self._old = "old."

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Execute a statement; the rows it changed."""
        if self.postgres:
            return int(self.conn.execute(sql.replace("?", "%s"), params or None).rowcount)
        return int(self.conn.execute(sql, params).rowcount)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        if self.postgres:
            return [tuple(r) for r in self.conn.execute(sql.replace("?", "%s"), params or None)]
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        """The first row a query returns."""
        return self.rows(sql, params)[0]

    def old(self, table: str) -> str:
        """`table` of the backup copy (an attached file, or another schema)."""
        return self._old + table

    def tables(self) -> list[str]:
        """The store's tables."""
        if self.postgres:
            found = self.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        else:
            found = self.rows(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        return [r[0] for r in found]

    def columns(self, table: str) -> list[str]:
        """A table's columns, in order."""
        if self.postgres:
            found = self.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = ? ORDER BY ordinal_position",
                (table,),
            )
            return [r[0] for r in found]
        return [r[1] for r in self.rows(f"PRAGMA main.table_info({table})")]

    def unguard(self) -> None:
        """Drop the store's triggers and stop enforcing foreign keys on this connection."""
        if self.postgres:
            triggers = self.rows(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = "
                "t.tgrelid WHERE NOT t.tgisinternal AND c.relnamespace = "
                "current_schema()::regnamespace"
            )
            for name, table in triggers:
                self.run(f'DROP TRIGGER "{name}" ON "{table}"')
            self.run("SET session_replication_role = replica")
        else:
            for (name,) in self.rows("SELECT name FROM main.sqlite_master WHERE type = 'trigger'"):
                self.run(f'DROP TRIGGER "{name}"')
            self.run("PRAGMA foreign_keys=OFF")

    def close(self) -> None:
        self.conn.close()


# --- picking targets ----------------------------------------------------------------------------
def _run(db: Raw, rng: random.Random, least: int = 1) -> tuple[str, int]:
    """A random run with at least `least` events: its id and last sequence number."""
    runs = db.rows(
        "SELECT run_id, head_seq FROM runs WHERE head_seq >= ? ORDER BY run_id", (least,)
    )
    return rng.choice(runs)


def _event(db: Raw, run_id: str, seq: int, columns: str = "*") -> tuple[Any, ...]:
    return db.one(f"SELECT {columns} FROM events WHERE run_id = ? AND seq = ?", (run_id, seq))


def _other(rng: random.Random, choices: list[Any], current: object) -> Any:
    """A random choice that differs from `current`."""
    return rng.choice([c for c in choices if c != current])


def _edited(text: str, rng: random.Random) -> tuple[str, int]:
    """`text` with one character replaced by another; the text and the position."""
    at = rng.randrange(len(text))
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return text[:at] + _other(rng, list(letters), text[at]) + text[at + 1 :], at


def _moved(ts: str, rng: random.Random) -> str:
    """An ISO timestamp moved by up to an hour either way (never by nothing)."""
    shift = timedelta(seconds=rng.choice((-1, 1)) * rng.randint(1, 3600))
    return (datetime.fromisoformat(ts) + shift).isoformat()


# --- events -------------------------------------------------------------------------------------
Tamper = Callable[[Raw, random.Random], str]
"""Tamper with the database; returns what it hit."""


def _edit_event(column: str, change: Callable[[Any, Raw, random.Random], Any]) -> Tamper:
    """A tampering that sets one random event's `column` to `change(old value)`."""

    def edit(db: Raw, rng: random.Random) -> str:
        run, last = _run(db, rng)
        seq = rng.randint(1, last)
        (value,) = _event(db, run, seq, column)
        new = change(value, db, rng)
        db.run(f"UPDATE events SET {column} = ? WHERE run_id = ? AND seq = ?", (new, run, seq))
        return f"{run} event {seq}"

    return edit


def _kinds_but(kind: str, db: Raw, rng: random.Random) -> str:
    return _other(rng, [r[0] for r in db.rows("SELECT DISTINCT kind FROM events")], kind)


def _sql(sql: str, least: int, params: Callable[[int, random.Random], tuple[Any, ...]]) -> Tamper:
    """A tampering that runs `sql` on one random run with at least `least` events.

    Its parameters: the run's id, then `params(the run's last seq, rng)`.
    """

    def run_sql(db: Raw, rng: random.Random) -> str:
        run, last = _run(db, rng, least)
        extra = params(last, rng)
        db.run(sql, (run, *extra))
        return f"{run} {extra}"

    return run_sql


def swap(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng, least=2)
    seq = rng.randint(1, last - 1)
    for old, new in ((seq, -1), (seq + 1, seq), (-1, seq + 1)):
        db.run("UPDATE events SET seq = ? WHERE run_id = ? AND seq = ?", (new, run, old))
    return f"{run} events {seq} and {seq + 1}"


def from_other_run(db: Raw, rng: random.Random) -> str:
    runs = db.rows("SELECT run_id, head_seq FROM runs ORDER BY run_id")
    (run, last), (donor, donor_last) = rng.sample(runs, 2)
    seq = rng.randint(1, min(last, donor_last))
    values = _event(db, donor, seq, "ts, kind, payload, prev_hash, hash, step, digest")
    db.run(
        "UPDATE events SET ts = ?, kind = ?, payload = ?, prev_hash = ?, hash = ?, step = ?, "
        "digest = ? WHERE run_id = ? AND seq = ?",
        (*values, run, seq),
    )
    return f"{run} event {seq}, from {donor}"


def duplicate(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng)
    seq = rng.randint(1, last)
    unique = (
        "ALTER TABLE events DROP CONSTRAINT events_pkey"
        if db.postgres
        else "DROP INDEX events_by_run"
    )
    db.run(unique)
    db.run("INSERT INTO events SELECT * FROM events WHERE run_id = ? AND seq = ?", (run, seq))
    return f"{run} event {seq}, stored twice"


def truncate_head(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng, least=2)
    keep = rng.randint(1, last - 1)
    db.run("DELETE FROM events WHERE run_id = ? AND seq > ?", (run, keep))
    (digest,) = _event(db, run, keep, "hash")
    db.run("UPDATE runs SET head_seq = ?, head_hash = ? WHERE run_id = ?", (keep, digest, run))
    return f"{run} cut from {last} to {keep} events, head rewritten"


def rechain(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng)
    seq = rng.randint(1, last)
    payload, prev = _event(db, run, seq, "payload, prev_hash")
    db.run(
        "UPDATE events SET payload = ? WHERE run_id = ? AND seq = ?",
        (_edited(payload, rng)[0], run, seq),
    )
    rows = db.rows(
        "SELECT seq, ts, kind, payload FROM events WHERE run_id = ? AND seq >= ? ORDER BY seq",
        (run, seq),
    )
    for n, ts, kind, text in rows:
        covered = payload_digest(text)
        digest = event_hash(prev_hash=prev, run_id=run, seq=n, ts=ts, kind=kind, payload=covered)
        db.run(
            "UPDATE events SET prev_hash = ?, hash = ?, digest = ? WHERE run_id = ? AND seq = ?",
            (prev, digest, covered, run, n),
        )
        prev = digest
    db.run("UPDATE runs SET head_hash = ? WHERE run_id = ?", (prev, run))
    return f"{run} event {seq} edited, events {seq}-{last} rehashed, head rewritten"


def forged_append(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng)
    ts, prev = _event(db, run, last, "ts, hash")
    payload = json.dumps({"kind": "run.resumed", "worker": "mallory"})
    covered, seq = payload_digest(payload), last + 1
    digest = event_hash(
        prev_hash=prev, run_id=run, seq=seq, ts=ts, kind="run.resumed", payload=covered
    )
    db.run(
        "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step, digest) "
        "VALUES (?, ?, ?, 'run.resumed', ?, ?, ?, NULL, ?)",
        (run, seq, ts, payload, prev, digest, covered),
    )
    return f"{run} event {seq} appended with a valid hash"


# --- runs ---------------------------------------------------------------------------------------
_RUN_TABLES = ("approval_votes", "approvals", "payloads", "events", "runs")
"""A run's rows, children first."""


def _of_run(table: str, source: str) -> str:
    """The condition selecting one run's rows of `table` (found at `source`)."""
    if table == "approval_votes":
        approvals = source.replace("approval_votes", "approvals")
        return f"request_id IN (SELECT request_id FROM {approvals} WHERE run_id = ?)"
    return "run_id = ?"


def delete_run(db: Raw, rng: random.Random) -> str:
    run, last = _run(db, rng)
    for table in _RUN_TABLES:
        db.run(f"DELETE FROM {table} WHERE {_of_run(table, table)}", (run,))
    return f"{run} ({last} events) and its rows"


def run_rollback(db: Raw, rng: random.Random, *, hide: bool = False) -> str:
    """A run the backup holds in an older state, restored from it (its later ledger claims
    deleted too, if `hide`)."""
    run, was, now = rng.choice(
        db.rows(
            f"SELECT r.run_id, o.status, r.status FROM runs r JOIN {db.old('runs')} o "
            "ON o.run_id = r.run_id WHERE o.head_seq <> r.head_seq ORDER BY r.run_id"
        )
    )
    for table in _RUN_TABLES:
        db.run(f"DELETE FROM {table} WHERE {_of_run(table, table)}", (run,))
    for table in reversed(_RUN_TABLES):
        old = db.old(table)
        db.run(f"INSERT INTO {table} SELECT * FROM {old} WHERE {_of_run(table, old)}", (run,))
    if hide:
        later = f"seq > (SELECT max(seq) FROM {db.old('ledger')})"
        db.run(f"DELETE FROM ledger WHERE subject = ? AND {later}", (run,))
    return f"{run} restored from the backup ({now} -> {was})"


def summary_edit(db: Raw, rng: random.Random) -> str:
    run, _ = _run(db, rng)
    column, choices = rng.choice(
        [
            ("tenant_id", ["acme", "globex", "initech"]),
            ("status", ["completed", "failed", "waiting", "cancelled"]),
            ("outcome", ["resolved", "escalated", "refused", "pending"]),
            ("cost_usd", [0.0, 0.0001, 1.5, 99.0]),
        ]
    )
    (value,) = db.one(f"SELECT {column} FROM runs WHERE run_id = ?", (run,))
    db.run(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (_other(rng, choices, value), run))
    return f"{run} {column}"


def seal_replace(db: Raw, rng: random.Random) -> str:
    run, _ = _run(db, rng)
    macs = [r[0] for r in db.rows("SELECT head_mac FROM runs WHERE run_id <> ?", (run,))]
    db.run(
        "UPDATE runs SET head_mac = ? WHERE run_id = ?",
        (rng.choice([*macs, secrets.token_hex(32)]), run),
    )
    return run


def run_copy(db: Raw, rng: random.Random) -> str:
    run, new = _run(db, rng)[0], f"run_{secrets.token_hex(8)}"
    for table in ("runs", "events"):
        columns = ", ".join(c for c in db.columns(table) if c != "run_id")
        db.run(
            f"INSERT INTO {table} (run_id, {columns}) SELECT ?, {columns} FROM {table} "
            "WHERE run_id = ?",
            (new, run),
        )
    return f"{run} copied as {new}"


def store_rollback(db: Raw, rng: random.Random) -> str:
    del rng  # one backup: the whole store
    for table in db.tables():
        db.run(f"DELETE FROM {table}")
        db.run(f"INSERT INTO {table} SELECT * FROM {db.old(table)}")
    return "every table restored from the backup"


# --- the control log, kill switches -------------------------------------------------------------
def _fixed(*statements: str) -> Tamper:
    """A tampering that runs these statements, whatever the draw."""

    def run_all(db: Raw, rng: random.Random) -> str:
        del rng
        return ", ".join(f"{db.run(sql)} row(s)" for sql in statements)

    return run_all


def control_truncate(db: Raw, rng: random.Random) -> str:
    (last,) = db.one("SELECT max(seq) FROM control_log")
    keep = rng.randint(1, last - 1)
    db.run("DELETE FROM control_log WHERE seq > ?", (keep,))
    if rng.random() < 0.5:  # half the time, the head is rewritten to match (with the old seal)
        (digest,) = db.one("SELECT hash FROM control_log WHERE seq = ?", (keep,))
        (head,) = db.one("SELECT value FROM store_settings WHERE name = 'control_head'")
        mac = head.split(":")[2]
        db.run(
            "UPDATE store_settings SET value = ? WHERE name = 'control_head'",
            (f"{keep}:{digest}:{mac}",),
        )
    return f"cut from {last} to {keep} entries"


def _edit_entry(table: str, columns: dict[str, Callable[[Any, random.Random], Any]]) -> Tamper:
    """A tampering that changes one column (of `columns`) of one random entry of `table`."""

    def edit(db: Raw, rng: random.Random) -> str:
        (last,) = db.one(f"SELECT max(seq) FROM {table}")
        seq = rng.randint(1, last)
        column = rng.choice(sorted(columns))
        (value,) = db.one(f"SELECT {column} FROM {table} WHERE seq = ?", (seq,))
        db.run(f"UPDATE {table} SET {column} = ? WHERE seq = ?", (columns[column](value, rng), seq))
        return f"entry {seq} {column}"

    return edit


def _text(value: str, rng: random.Random) -> str:
    return _edited(value, rng)[0] if value else "x"


# --- identities ---------------------------------------------------------------------------------
def identity_insert(db: Raw, rng: random.Random) -> str:
    columns = db.columns("identities")
    humans = db.rows(
        f"SELECT {', '.join(columns)} FROM identities WHERE kind = 'human' AND revoked_at IS NULL"
    )
    forged = dict(zip(columns, rng.choice(humans), strict=True))
    forged.update(id=f"usr_{secrets.token_hex(6)}", name="mallory", subject="mallory")
    forged.update(token_hash=secrets.token_hex(32), roles='["admin"]')
    marks = ", ".join("?" * len(forged))
    db.run(f"INSERT INTO identities ({', '.join(forged)}) VALUES ({marks})", tuple(forged.values()))
    return f"admin {forged['id']}"


def identity_roles(db: Raw, rng: random.Random) -> str:
    identity, roles = rng.choice(db.rows("SELECT id, roles FROM identities ORDER BY id"))
    choices = ['["admin"]', '["approver"]', '["operator"]', "[]"]
    db.run("UPDATE identities SET roles = ? WHERE id = ?", (_other(rng, choices, roles), identity))
    return identity


def _one_row(sql: str, pick: str) -> Tamper:
    """A tampering that runs `sql` with the key of one random row `pick` selects."""

    def run_sql(db: Raw, rng: random.Random) -> str:
        (key,) = rng.choice(db.rows(pick))
        db.run(sql, (key,))
        return str(key)

    return run_sql


def idp_insert(db: Raw, rng: random.Random) -> str:
    issuer, config, created, log_seq, mac = rng.choice(
        db.rows("SELECT issuer, config, created_at, log_seq, mac FROM identity_providers")
    )
    forged = "https://idp.mallory.example"
    db.run(
        "INSERT INTO identity_providers (issuer, config, created_at, log_seq, mac) "
        "VALUES (?, ?, ?, ?, ?)",
        (forged, config.replace(issuer, forged), created, log_seq, mac),
    )
    return forged


def idp_edit(db: Raw, rng: random.Random) -> str:
    issuer, config = rng.choice(db.rows("SELECT issuer, config FROM identity_providers"))
    edited = json.dumps({**json.loads(config), "audience": "mallory"}, separators=(",", ":"))
    db.run("UPDATE identity_providers SET config = ? WHERE issuer = ?", (edited, issuer))
    return issuer


def ledger_delete(db: Raw, rng: random.Random) -> str:
    (last,) = db.one("SELECT max(seq) FROM ledger")
    seq = last if rng.random() < 0.5 else rng.randint(2, last - 1)
    db.run("DELETE FROM ledger WHERE seq = ?", (seq,))
    return f"entry {seq} of {last}"


# --- values of the wrong type -------------------------------------------------------------------
# SQLite keeps a BLOB in any column, and text that does not read as a number in an INTEGER one
# (a zero-width space after the digits, which looks the same); PostgreSQL's columns hold one
# type, so its tamperer changes the column's type.
def _retyped(table: str, column: str, sqlite: str, postgres: str | None) -> Tamper:
    """A tampering that gives `column` a value of the wrong type.

    On SQLite, one random row's value becomes the expression `sqlite`; on PostgreSQL, the
    column's type becomes `postgres` (a type and its USING conversion).
    """

    def retype(db: Raw, rng: random.Random) -> str:
        if db.postgres:
            db.run(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {postgres}")
            return f"{table}.{column}: {postgres}"
        (rowid,) = rng.choice(db.rows(f"SELECT rowid FROM {table} ORDER BY rowid"))
        db.run(f"UPDATE {table} SET {column} = {sqlite} WHERE rowid = ?", (rowid,))
        return f"{table} row {rowid}"

    return retype


def hash_integer(db: Raw, rng: random.Random) -> str:
    if db.postgres:
        db.run(
            "ALTER TABLE events ALTER COLUMN hash TYPE bigint "
            "USING ('x' || substr(hash, 1, 15))::bit(60)::bigint"
        )
        return "events.hash: bigint"
    # TEXT affinity turns a number back into text: the tamperer rebuilds the table untyped.
    columns = "run_id, seq, ts, kind, payload, prev_hash, hash, step, digest"
    db.run('ALTER TABLE events RENAME TO "events_typed"')
    db.run(f"CREATE TABLE events ({columns})")
    db.run(f'INSERT INTO events SELECT {columns} FROM "events_typed"')
    db.run('DROP TABLE "events_typed"')
    db.run("CREATE UNIQUE INDEX events_by_run ON events (run_id, seq)")
    return _retyped("events", "hash", "length(hash)", None)(db, rng)


@dataclass(frozen=True)
class Kind:
    """One way of tampering with the store."""

    name: str
    what: str
    """What it does, for the table."""
    apply: Tamper
    sqlite_only: bool = False


payload_byte = _edit_event("payload", lambda v, _, rng: _edited(v, rng)[0])
event_ts = _edit_event("ts", lambda v, _, rng: _moved(v, rng))
event_seq = _edit_event("seq", lambda _, __, rng: 10_000 + rng.randint(1, 3))
delete_middle = _sql(
    "DELETE FROM events WHERE run_id = ? AND seq = ?", 3, lambda n, rng: (rng.randint(2, n - 1),)
)
delete_last = _sql("DELETE FROM events WHERE run_id = ? AND seq = ?", 1, lambda n, _: (n,))
truncate = _sql(
    "DELETE FROM events WHERE run_id = ? AND seq > ?", 2, lambda n, rng: (rng.randint(1, n - 1),)
)
delete_run_row = _sql("DELETE FROM runs WHERE run_id = ?", 1, lambda _, __: ())
control_wipe = _fixed(
    "DELETE FROM control_log", "DELETE FROM store_settings WHERE name = 'control_head'"
)
control_edit = _edit_entry(
    "control_log",
    {
        "action": lambda v, rng: _other(rng, ["kill", "unkill", "identity.create"], v),
        "ts": _moved,
        "payload": _text,
    },
)
kill_switch = _one_row(
    "DELETE FROM kill_switches WHERE key = ?", "SELECT key FROM kill_switches ORDER BY key"
)
unrevoke = _one_row(
    "UPDATE identities SET revoked_at = NULL WHERE id = ?",
    "SELECT id FROM identities WHERE revoked_at IS NOT NULL ORDER BY id",
)
identity_delete = _one_row(
    "DELETE FROM identities WHERE id = ?", "SELECT id FROM identities ORDER BY id"
)
ledger_edit = _edit_entry(
    "ledger",
    {
        "ts": _moved,
        "subject": _text,
        "head_seq": lambda v, rng: v + rng.choice((-1, 1)),
        "head_hash": _text,
        "detail": _text,
    },
)
ledger_head = _fixed("DELETE FROM store_settings WHERE name = 'ledger_head'")
_BYTEA = "bytea USING convert_to({}, 'UTF8')"
payload_blob = _retyped("events", "payload", "CAST(payload AS BLOB)", _BYTEA.format("payload"))
seq_text = _retyped("events", "seq", "seq || char(8203)", "text")
head_seq_text = _retyped("runs", "head_seq", "head_seq || char(8203)", "text")
detail_blob = _retyped("ledger", "detail", "CAST(detail AS BLOB)", _BYTEA.format("detail"))
identity_blob = _retyped("identities", "name", "CAST(name AS BLOB)", _BYTEA.format("name"))
not_utf8 = _retyped("events", "payload", "CAST(CAST(payload AS BLOB) || X'FF' AS TEXT)", None)

KINDS = (
    Kind("payload-byte", "one character of an event's payload changed", payload_byte),
    Kind("event-kind", "an event's kind changed", _edit_event("kind", _kinds_but)),
    Kind("event-ts", "an event's timestamp moved", event_ts),
    Kind("event-seq", "an event renumbered past the end", event_seq),
    Kind("delete-middle", "an event deleted from the middle of a run", delete_middle),
    Kind("delete-last", "a run's last event deleted", delete_last),
    Kind("swap", "two adjacent events' sequence numbers swapped", swap),
    Kind("other-run", "an event replaced by another run's of the same number", from_other_run),
    Kind("duplicate", "an event stored twice (uniqueness dropped)", duplicate),
    Kind("truncate", "a run cut short, its head left", truncate),
    Kind("truncate-head", "a run cut short, its head_seq and head_hash rewritten", truncate_head),
    Kind("rechain", "an event edited, the chain after it rehashed, the head rewritten", rechain),
    Kind("append", "an event appended with a valid hash", forged_append),
    Kind("delete-run", "a whole run deleted (row, events, approvals, votes, payloads)", delete_run),
    Kind("delete-run-row", "a run's row deleted, its events left", delete_run_row),
    Kind(
        "run-rollback", "a run restored from an older backup (completed -> waiting)", run_rollback
    ),
    Kind(
        "run-rollback-hidden",
        "the same, and the ledger's later claims on it deleted",
        functools.partial(run_rollback, hide=True),
    ),
    Kind("summary", "a run's tenant, status, outcome or cost edited", summary_edit),
    Kind("seal", "a run's seal replaced (another run's, or made up)", seal_replace),
    Kind("run-copy", "a run copied under a new id", run_copy),
    Kind(
        "store-rollback",
        "the whole store restored from a backup older than the checkpoint",
        store_rollback,
    ),
    Kind("control-wipe", "the control log wiped (entries and head)", control_wipe),
    Kind(
        "control-truncate",
        "the control log's last entries deleted (head kept or rewritten)",
        control_truncate,
    ),
    Kind("control-edit", "a control-log entry's action, time or payload edited", control_edit),
    Kind("kill-switch", "an engaged kill switch's row deleted", kill_switch),
    Kind(
        "identity-insert", "an admin identity inserted (a copy of a person's row)", identity_insert
    ),
    Kind("identity-roles", "an identity's roles edited", identity_roles),
    Kind("identity-unrevoke", "a revoked identity un-revoked", unrevoke),
    Kind("identity-delete", "an identity deleted", identity_delete),
    Kind("idp-insert", "an identity provider inserted (a copy of another's row)", idp_insert),
    Kind("idp-edit", "a registered identity provider's configuration edited", idp_edit),
    Kind("ledger-delete", "a ledger entry deleted (the last, or one in the middle)", ledger_delete),
    Kind("ledger-edit", "a ledger entry's time, subject, head or detail edited", ledger_edit),
    Kind("ledger-head", "the ledger's head deleted", ledger_head),
    Kind("payload-blob", "an event payload stored as a BLOB", payload_blob),
    Kind("seq-text", "an event's seq stored as text", seq_text),
    Kind("hash-integer", "an event's hash stored as an integer", hash_integer),
    Kind("head-seq-text", "a run's head_seq stored as text", head_seq_text),
    Kind("ledger-detail-blob", "a ledger entry's detail stored as a BLOB", detail_blob),
    Kind("identity-blob", "an identity's name stored as a BLOB", identity_blob),
    Kind(
        "invalid-utf8", "an event payload made text that is not UTF-8", not_utf8, sqlite_only=True
    ),
)
