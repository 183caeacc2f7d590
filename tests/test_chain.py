"""Tamper detection: edits made directly to the database file are caught by `Store.verify`.

The events table is append-only by trigger, so every tamperer here drops the triggers first,
as a real one with write access to the file would.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from _factories import started_event
from charter._events import (
    CheckRecorded,
    ModelResponded,
    RunFinished,
    ToolProposed,
)
from charter.exceptions import ConfigError
from charter.store import SqlStore, event_hash, open_store

if TYPE_CHECKING:
    from charter.store import ChainReport
    from conftest import RawDb

RUN = "run_chain"


@pytest.fixture
def run(store: SqlStore) -> str:
    """A run of five events: started, model, proposed, check, finished."""
    store.start_run(RUN, started_event())
    store.append(
        RUN,
        [
            ModelResponded(
                step=1,
                model="scripted:default",
                request_hash="r" * 64,
                text="",
                tool_calls=[],
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=0.0,
                latency_ms=1.0,
            ),
            ToolProposed(
                step=1,
                call_id="call_1_1",
                tool="record_write",
                effect="write",
                arguments={"item": "x"},
                input_hash="i" * 64,
                idempotency_key="chk_1",
            ),
            CheckRecorded(
                step=1,
                check="kill_switch",
                outcome="pass",
                reason="no kill switch engaged",
                source="kill_switches",
                duration_us=3,
            ),
        ],
    )
    store.append(
        RUN,
        [
            RunFinished(
                status="completed",
                outcome="resolved",
                reason="done",
                cost_usd=0.0,
                prompt_tokens=10,
                completion_tokens=5,
            )
        ],
    )
    return RUN


@pytest.fixture
def tamper(raw_db: RawDb, run: str) -> RawDb:
    """A second connection to the database, with the append-only triggers dropped."""
    raw_db.drop_append_only()
    return raw_db


def _report(store: SqlStore, run_id: str = RUN) -> ChainReport:
    (report,) = store.verify(run_id)
    return report


def _hash_of(db: RawDb, seq: int) -> str:
    return db.execute(
        "SELECT hash FROM events WHERE run_id = ? AND seq = ?", (RUN, seq)
    ).fetchone()[0]


class TestCleanChain:
    def test_untouched_run_verifies(self, store, run):
        """A run nobody touched verifies, with every event checked."""
        report = _report(store)
        assert (report.ok, report.events_checked, report.broken_at) == (True, 5, None)

    def test_verify_without_run_id_checks_every_run(self, store, run):
        """verify() with no run id reports one result per run."""
        store.start_run("run_other", started_event())
        assert [(r.run_id, r.ok) for r in store.verify()] == [(RUN, True), ("run_other", True)]

    def test_a_node_with_another_seal_key_is_refused(self, store, database_url, run):
        """A node holding another seal key cannot open the store: it could not verify its
        runs, and the runs it sealed could not be verified by any other node."""
        with pytest.raises(ConfigError, match="seal key"):
            open_store(database_url, seal_key=b"x" * 32, keys=store.keys)
        assert _report(store).ok

    def test_a_forged_head_seal_fails(self, store, tamper):
        """A head seal not made with the store's key does not verify."""
        tamper.execute("UPDATE runs SET head_mac = ? WHERE run_id = ?", ("0" * 64, RUN))
        report = _report(store)
        assert not report.ok
        assert "seal" in (report.problem or "")


class TestTampering:
    def test_edited_payload_is_detected_at_its_seq(self, store, tamper):
        """Changing one event's payload breaks the chain at that event."""
        tamper.execute(
            "UPDATE events SET payload = replace(payload, '\"step\":1', '\"step\":2') "
            "WHERE run_id = ? AND seq = 2",
            (RUN,),
        )
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 2)
        assert "altered" in (report.problem or "")

    def test_deleted_middle_event_is_detected(self, store, tamper):
        """Deleting an event from the middle reports it missing."""
        tamper.execute("DELETE FROM events WHERE run_id = ? AND seq = 3", (RUN,))
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 3)
        assert "missing" in (report.problem or "")

    def test_swapped_events_are_detected(self, store, tamper):
        """Swapping two events' sequence numbers breaks the link at the first of them."""
        for old, new in ((2, -1), (3, 2), (-1, 3)):
            tamper.execute(
                "UPDATE events SET seq = ? WHERE run_id = ? AND seq = ?", (new, RUN, old)
            )
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 2)
        assert "does not link" in (report.problem or "")

    def test_deleted_last_event_is_detected(self, store, tamper):
        """Deleting the last event (a milestone: the run's end) disagrees with the ledger."""
        tamper.execute("DELETE FROM events WHERE run_id = ? AND seq = 5", (RUN,))
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 5)
        assert "ledger recorded event 5" in (report.problem or "")

    def test_deleted_last_event_is_detected_by_the_head_without_the_ledger(self, store, tamper):
        """With the ledger's claims gone too, the run's head still disagrees."""
        tamper.execute("DELETE FROM events WHERE run_id = ? AND seq = 5", (RUN,))
        tamper.forget_claims(RUN)
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 5)
        assert "truncated" in (report.problem or "")

    def test_truncation_with_rewritten_head_is_detected_by_the_seal(self, store, tamper):
        """Truncating and rewriting head_seq/head_hash to match still fails the HMAC seal."""
        tamper.execute("DELETE FROM events WHERE run_id = ? AND seq = 5", (RUN,))
        tamper.execute(
            "UPDATE runs SET head_seq = 4, head_hash = ? WHERE run_id = ?",
            (_hash_of(tamper, 4), RUN),
        )
        tamper.forget_claims(RUN)  # else the ledger's claim on event 5 catches it first
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 4)
        assert "seal" in (report.problem or "")

    def test_recomputed_chain_after_edit_is_detected_by_the_seal(self, store, tamper):
        """An edit followed by a full sha256 rehash of the chain (payload digests included) and
        head still fails the seal."""
        tamper.execute(
            "UPDATE events SET payload = replace(payload, '\"step\":1', '\"step\":2') "
            "WHERE run_id = ? AND seq = 2",
            (RUN,),
        )
        prev = _hash_of(tamper, 1)
        rows = tamper.execute(
            "SELECT seq, ts, kind, payload FROM events WHERE run_id = ? AND seq > 1 ORDER BY seq",
            (RUN,),
        ).fetchall()
        for seq, ts, kind, payload in rows:
            covered = hashlib.sha256(payload.encode()).hexdigest()
            digest = event_hash(
                prev_hash=prev, run_id=RUN, seq=seq, ts=ts, kind=kind, payload=covered
            )
            tamper.execute(
                "UPDATE events SET prev_hash = ?, hash = ?, digest = ? "
                "WHERE run_id = ? AND seq = ?",
                (prev, digest, covered, RUN, seq),
            )
            prev = digest
        tamper.execute("UPDATE runs SET head_hash = ? WHERE run_id = ?", (prev, RUN))
        tamper.forget_claims(RUN)  # else the ledger's claims catch the rewritten events first
        report = _report(store)
        assert (report.ok, report.events_checked) == (False, 5)
        assert "seal" in (report.problem or "")

    @pytest.mark.parametrize(
        ("column", "value"),
        [("tenant_id", "globex"), ("status", "failed"), ("cost_usd", 9.99), ("outcome", "x")],
    )
    def test_edited_summary_row_is_detected_by_the_seal(self, store, tamper, column, value):
        """Rewriting the run's summary row (tenant, status, cost, outcome) fails the seal."""
        tamper.execute(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (value, RUN))
        report = _report(store)
        assert not report.ok
        assert "summary row" in (report.problem or "")

    def test_deleted_run_row_is_reported_by_verify_all(self, store, tamper):
        """A run whose head row is deleted (events left behind) is reported, not skipped."""
        tamper.without_foreign_keys()
        tamper.execute("DELETE FROM runs WHERE run_id = ?", (RUN,))
        (report,) = store.verify()
        assert (report.run_id, report.ok, report.broken_at) == (RUN, False, 1)
        assert "head row is missing" in (report.problem or "")

    def test_one_broken_run_among_many_is_singled_out(self, store, tamper):
        """Verifying every run in one pass keeps each run's verdict its own, in start order."""
        for n in range(3):
            store.start_run(f"run_z{n}", started_event())
        tamper.execute("UPDATE events SET payload = payload || ' ' WHERE run_id = 'run_z1'")
        verdicts = [(r.run_id, r.ok, r.events_checked) for r in store.verify()]
        assert verdicts == [
            (RUN, True, 5),
            ("run_z0", True, 1),
            ("run_z1", False, 0),
            ("run_z2", True, 1),
        ]


@pytest.mark.backends("sqlite")  # PostgreSQL's columns hold one type each
class TestValuesOfTheWrongType:
    @pytest.mark.parametrize("column", ["payload", "ts", "kind", "prev_hash", "hash", "digest"])
    def test_a_blob_in_any_text_field_is_a_broken_link(self, store, tamper, column):
        """A BLOB in any text field of an event breaks the chain there, and nothing raises."""
        tamper.execute(
            f"UPDATE events SET {column} = CAST({column} AS BLOB) WHERE run_id = ? AND seq = 3",
            (RUN,),
        )
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 3)
        assert "holds a value of the wrong type" in (report.problem or "")

    def test_a_seq_stored_as_text_leaves_its_place_empty(self, store, tamper):
        """A seq that is text (SQLite sorts it after every number): its place is missing."""
        tamper.execute(
            "UPDATE events SET seq = seq || char(8203) WHERE run_id = ? AND seq = 3", (RUN,)
        )
        report = _report(store)
        assert (report.ok, report.broken_at) == (False, 3)
        assert "event 3 is missing" in (report.problem or "")


class TestAppendOnlyTriggers:
    def test_update_is_refused(self, store, run, raw_db):
        """With the triggers in place, UPDATE on events aborts."""
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute("UPDATE events SET payload = '{}' WHERE run_id = ?", (RUN,))

    def test_delete_is_refused(self, store, run, raw_db):
        """With the triggers in place, DELETE on events aborts."""
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute("DELETE FROM events WHERE run_id = ?", (RUN,))

    @pytest.mark.backends("postgres")
    def test_truncate_is_refused(self, store, run, raw_db):
        """PostgreSQL's TRUNCATE skips row triggers; a statement trigger refuses it."""
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute("TRUNCATE events")

    def test_refused_edit_leaves_the_chain_intact(self, store, run, raw_db):
        """A refused UPDATE changes nothing: the run still verifies."""
        with pytest.raises(raw_db.errors):
            raw_db.execute("UPDATE events SET kind = 'x' WHERE run_id = ?", (RUN,))
        assert _report(store).ok
