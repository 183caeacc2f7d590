"""The SQLite store: run projection, listing, typed events, identities, kill switches, schema."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from _factories import finished_event, started_event
from charter._events import ModelResponded, ToolCompleted
from charter._identity import create_agent_identity
from charter.exceptions import (
    ConfigError,
    NotFoundError,
    SchemaVersionError,
    StateError,
    StoreError,
)
from charter.gate import hash_token
from charter.identity import Grant
from charter.privacy import MemoryKeyring
from charter.store import GENESIS, IdentityRecord, KillSwitch, SqliteStore, event_hash, open_store
from charter.store._chain import seal
from charter.store._migrations import SQLITE_MIGRATIONS as MIGRATIONS

if TYPE_CHECKING:
    from pathlib import Path

KEY = b"k" * 32


def _model(cost: float, prompt: int, completion: int) -> ModelResponded:
    return ModelResponded(
        step=1,
        model="scripted:default",
        request_hash="r" * 64,
        text="",
        tool_calls=[],
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        latency_ms=1.0,
    )


def _completed(cost: float) -> ToolCompleted:
    return ToolCompleted(
        step=1,
        tool="record_write",
        status="ok",
        output={"item": "x"},
        output_hash="o" * 64,
        attempts=1,
        latency_ms=1.0,
        cost_usd=cost,
        idempotency_key="chk_1",
    )


def _switch(**scope: str) -> KillSwitch:
    return KillSwitch(**scope, reason="incident", created_by="sre", created_at="2026-01-01T00:00Z")


class TestRunProjection:
    def test_new_run_is_running(self, store):
        """A started run is 'running' with its RunStarted fields and one event."""
        store.start_run("run_1", started_event())
        run = store.get_run("run_1")
        assert (run.status, run.tenant_id, run.event_count) == ("running", "acme", 1)

    def test_cost_and_tokens_are_summed_from_events(self, store):
        """Model and tool costs and model tokens add up on the run record."""
        store.start_run("run_1", started_event())
        store.append("run_1", [_model(0.01, 10, 5), _model(0.02, 20, 7), _completed(0.5)])
        run = store.get_run("run_1")
        assert run.cost_usd == pytest.approx(0.53)
        assert (run.prompt_tokens, run.completion_tokens, run.event_count) == (30, 12, 4)

    def test_run_finished_sets_status_and_outcome(self, store):
        """RunFinished moves the run to its final status, outcome and reason."""
        store.start_run("run_1", started_event())
        store.append("run_1", [finished_event("failed")])
        run = store.get_run("run_1")
        assert (run.status, run.outcome, run.reason) == ("failed", "failed", "done")

    def test_unknown_run_is_not_found(self, store):
        """get_run on an unknown id raises NotFoundError."""
        with pytest.raises(NotFoundError):
            store.get_run("run_missing")

    def test_duplicate_run_id_is_refused(self, store):
        """Starting a run id twice raises StoreError."""
        store.start_run("run_1", started_event())
        with pytest.raises(StoreError, match="already exists"):
            store.start_run("run_1", started_event())

    def test_append_to_unknown_run_is_not_found(self, store):
        """Appending to a run that does not exist raises NotFoundError."""
        with pytest.raises(NotFoundError):
            store.append("run_missing", [_model(0.0, 1, 1)])


class TestListRuns:
    @pytest.fixture
    def runs(self, store):
        store.start_run("run_a", started_event("acme"))
        store.start_run("run_b", started_event("globex"))
        store.start_run("run_c", started_event("acme"))
        store.append("run_c", [finished_event()])

    def test_newest_first(self, store, runs):
        """Runs are listed newest first."""
        assert [r.run_id for r in store.list_runs()] == ["run_c", "run_b", "run_a"]

    def test_filter_by_tenant(self, store, runs):
        """tenant_id keeps only that tenant's runs."""
        assert [r.run_id for r in store.list_runs(tenant_id="acme")] == ["run_c", "run_a"]

    def test_filter_by_status(self, store, runs):
        """status keeps only runs in that status."""
        assert [r.run_id for r in store.list_runs(status="completed")] == ["run_c"]

    def test_limit(self, store, runs):
        """limit caps the number of runs returned."""
        assert len(store.list_runs(limit=2)) == 2


class TestEvents:
    def test_events_roundtrip_to_typed_events(self, store):
        """Stored events come back as the same typed events, in order."""
        written = [_model(0.01, 10, 5), _completed(0.5), finished_event()]
        store.start_run("run_1", started_event())
        store.append("run_1", written)
        stored = store.events("run_1")
        assert [e.seq for e in stored] == [1, 2, 3, 4]
        assert [e.event for e in stored] == [started_event(), *written]

    def test_events_link_by_hash(self, store):
        """Each stored event's prev_hash is the previous event's hash."""
        store.start_run("run_1", started_event())
        store.append("run_1", [_model(0.0, 1, 1), finished_event()])
        stored = store.events("run_1")
        assert [e.prev_hash for e in stored[1:]] == [e.hash for e in stored[:-1]]


class TestIdentities:
    def test_lookup_by_token_hash(self, store):
        """An issued credential finds its identity by the token's hash."""
        issued = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        found = store.identity_by_token_hash(hash_token(issued.token))
        assert found == issued.identity

    def test_unknown_token_hash_is_none(self, store):
        """An unknown token hash finds nothing."""
        assert store.identity_by_token_hash(hash_token("chr_nobody")) is None

    def test_revoke_marks_revoked_and_bumps_control_version(self, store):
        """Revoking sets revoked_at and bumps the control version."""
        issued = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        before = store.control_version()
        revoked = store.revoke_identity(issued.identity.id)
        assert not revoked.active
        assert store.control_version() == before + 1

    def test_revoked_identity_is_still_found_by_hash(self, store):
        """Lookup by hash returns a revoked identity, marked inactive."""
        issued = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        store.revoke_identity(issued.identity.id)
        found = store.identity_by_token_hash(hash_token(issued.token))
        assert found is not None
        assert not found.active

    def test_revoking_twice_bumps_once(self, store):
        """A second revocation of the same identity changes nothing."""
        issued = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        store.revoke_identity(issued.identity.id)
        version = store.control_version()
        store.revoke_identity(issued.identity.id)
        assert store.control_version() == version

    def test_revoke_unknown_is_not_found(self, store):
        """Revoking an unknown identity raises NotFoundError."""
        with pytest.raises(NotFoundError):
            store.revoke_identity("agt_missing")

    def test_one_active_agent_identity_per_scope(self, store):
        """A second active identity for the same agent/workflow/tenant is refused: bad input."""
        create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        with pytest.raises(StateError, match="already exists"):
            create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")

    def test_new_identity_allowed_after_revocation(self, store):
        """Once the active identity is revoked, a new one may be issued."""
        first = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        store.revoke_identity(first.identity.id)
        second = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        assert [i.id for i in store.list_identities()] == [second.identity.id]

    def test_other_tenant_gets_its_own_identity(self, store):
        """The same agent and workflow may hold one identity per tenant."""
        create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        create_agent_identity(store, agent="a", workflow="w", tenant_id="globex")
        assert len(store.list_identities()) == 2

    def test_list_includes_revoked_on_request(self, store):
        """include_revoked lists revoked identities too."""
        issued = create_agent_identity(store, agent="a", workflow="w", tenant_id="acme")
        store.revoke_identity(issued.identity.id)
        assert store.list_identities() == []
        assert len(store.list_identities(include_revoked=True)) == 1

    def test_humans_keep_their_roles(self, store):
        """A human identity's roles survive the roundtrip."""
        human = IdentityRecord(
            id="usr_1", kind="human", name="ann", grants=(Grant(role="approver", tenant="acme"),)
        )
        store.add_identity(human, token_hash=hash_token("chr_ann"))
        found = store.identity_by_token_hash(hash_token("chr_ann"))
        assert found == replace(human, subject="ann")
        assert found.roles == ("approver",)


class TestKillSwitches:
    def test_engage_and_list(self, store):
        """An engaged switch is listed and bumps the control version."""
        before = store.control_version()
        store.engage_kill_switch(_switch(tenant_id="acme"))
        assert [s.key for s in store.kill_switches()] == [
            "agent=*,workflow=*,tenant_id=acme,tool=*"
        ]
        assert store.control_version() > before

    def test_reengage_replaces_reason(self, store):
        """Engaging the same scope again keeps one switch with the new reason."""
        store.engage_kill_switch(_switch(tool="purge"))
        store.engage_kill_switch(
            KillSwitch(tool="purge", reason="still bad", created_by="sre", created_at="later")
        )
        assert [s.reason for s in store.kill_switches()] == ["still bad"]

    def test_release(self, store):
        """Releasing an engaged switch removes it and returns True."""
        switch = _switch(workflow="testing")
        store.engage_kill_switch(switch)
        assert store.release_kill_switch(switch.key) is True
        assert store.kill_switches() == []

    def test_release_unknown_is_false(self, store):
        """Releasing a switch that is not engaged returns False."""
        assert store.release_kill_switch("agent=*,workflow=*,tenant_id=*,tool=*") is False

    @pytest.mark.parametrize(
        ("scope", "stopped"),
        [
            ({}, True),
            ({"tenant_id": "acme"}, True),
            ({"tenant_id": "globex"}, False),
            ({"workflow": "testing", "tool": "purge"}, True),
            ({"workflow": "testing", "tool": "launch"}, False),
            ({"agent": "other"}, False),
        ],
    )
    def test_matches_with_none_as_wildcard(self, scope, stopped):
        """Set fields must match the call; None matches anything."""
        call = {"agent": "test-agent", "workflow": "testing", "tenant_id": "acme", "tool": "purge"}
        assert _switch(**scope).matches(**call) is stopped


class TestSchemaVersion:
    def test_newer_schema_is_refused(self, tmp_path):
        """A database whose schema_version is above the known one raises SchemaVersionError."""
        path = tmp_path / "charter.db"
        SqliteStore(path, seal_key=KEY).close()
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("INSERT INTO schema_version VALUES (999)")
        with pytest.raises(SchemaVersionError, match="999"):
            SqliteStore(path, seal_key=KEY)

    def test_reopening_keeps_data(self, tmp_path):
        """Reopening a current database migrates nothing and keeps its runs."""
        path = tmp_path / "charter.db"
        with closing(SqliteStore(path, seal_key=KEY)) as first:
            first.start_run("run_1", started_event())
        with closing(SqliteStore(path, seal_key=KEY, verify_only=True)) as again:
            assert again.get_run("run_1").event_count == 1

    def test_events_moved_to_a_rowid_table_keep_their_chains(self, tmp_path):
        """Migration 4 rebuilds the events table: a version-3 file's runs still verify, and
        the table stays append-only and one event per (run, seq)."""
        current = tmp_path / "current.db"
        with closing(SqliteStore(current, seal_key=KEY)) as source:
            source.start_run("run_1", started_event())
            source.append("run_1", [finished_event()])
            summary = source.get_run("run_1").sealed_summary()
        _as_format_1(current, "run_1", summary)
        old = tmp_path / "old.db"
        with closing(sqlite3.connect(old, isolation_level=None)) as db:
            db.execute("CREATE TABLE schema_version (version INTEGER)")
            for version, statements in enumerate(MIGRATIONS[:3], start=1):
                for statement in statements:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            db.execute("ATTACH DATABASE ? AS src", (str(current),))
            for table in ("runs", "events", "payloads"):
                # The columns of the old table: later migrations added more.
                columns = ", ".join(r[1] for r in db.execute(f"PRAGMA main.table_info({table})"))
                db.execute(f"INSERT INTO {table} SELECT {columns} FROM src.{table}")
            db.execute("DETACH DATABASE src")
        with closing(SqliteStore(old, seal_key=KEY)) as upgraded:
            assert [(r.run_id, r.ok, r.events_checked) for r in upgraded.verify()] == [
                ("run_1", True, 2)
            ]
            assert [e.kind for e in upgraded.events("run_1")] == ["run.started", "run.finished"]
        with closing(sqlite3.connect(old, isolation_level=None)) as db:
            latest = db.execute("SELECT max(version) FROM schema_version").fetchone()
            assert latest == (len(MIGRATIONS),)
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute("UPDATE events SET kind = 'x'")
            with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
                db.execute("INSERT INTO events SELECT * FROM events LIMIT 1")

    def test_verify_only_refuses_an_unmigrated_file(self, tmp_path):
        """verify_only on a fresh file refuses to migrate it."""
        with pytest.raises(StoreError, match="schema version 0"):
            SqliteStore(tmp_path / "fresh.db", seal_key=KEY, verify_only=True)


class TestOpenStore:
    def test_sqlite_url(self, tmp_path):
        """sqlite:///abs/path opens a SQLite store at that absolute path."""
        path = tmp_path / "a.db"
        with closing(open_store(f"sqlite://{path}", seal_key=KEY)) as opened:
            assert isinstance(opened, SqliteStore)
            assert opened.path == str(path)
        assert path.exists()

    def test_bare_path(self, tmp_path):
        """A bare path opens a SQLite store at that path."""
        path = tmp_path / "sub" / "b.db"
        with closing(open_store(str(path), seal_key=KEY)) as opened:
            assert isinstance(opened, SqliteStore)
        assert path.exists()

    def test_in_memory(self):
        """sqlite://:memory: opens a throwaway in-memory store."""
        with closing(open_store("sqlite://:memory:", seal_key=KEY)) as opened:
            assert opened.path == ":memory:"  # type: ignore[attr-defined]

    @pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
    def test_unreachable_postgres_is_a_store_error_without_the_password(self, scheme):
        """A PostgreSQL URL nobody answers at fails with a hint, and never shows the password."""
        url = f"{scheme}://charter:s3cret-pw@127.0.0.1:1/charter?connect_timeout=2"
        with pytest.raises(StoreError, match="cannot connect") as raised:
            open_store(url, seal_key=KEY, keys=MemoryKeyring())
        assert "s3cret-pw" not in str(raised.value)
        assert "127.0.0.1:1/charter" in raised.value.message

    def test_unknown_scheme_is_a_config_error(self):
        """An unknown scheme raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="mysql://"):
            open_store("mysql://db/charter", seal_key=KEY)


def _as_format_1(path: Path, run_id: str, summary: str) -> None:
    """Rewrite a run's chain as Charter wrote it before payload digests: each hash over the
    payload text itself, no digest, and the head resealed to match."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TRIGGER events_append_only_update")
        prev = GENESIS
        rows = db.execute(
            "SELECT seq, ts, kind, payload FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        for seq, ts, kind, payload in rows:
            digest = event_hash(
                prev_hash=prev, run_id=run_id, seq=seq, ts=ts, kind=kind, payload=payload
            )
            db.execute(
                "UPDATE events SET prev_hash = ?, hash = ?, digest = NULL "
                "WHERE run_id = ? AND seq = ?",
                (prev, digest, run_id, seq),
            )
            prev = digest
        mac = seal(KEY, run_id=run_id, seq=len(rows), head_hash=prev, summary=summary)
        db.execute(
            "UPDATE runs SET head_hash = ?, head_mac = ? WHERE run_id = ?", (prev, mac, run_id)
        )
