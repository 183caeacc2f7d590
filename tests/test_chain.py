"""Tamper detection: edits made directly to the database file are caught by `Store.verify`.

The events table is append-only by trigger, so every tamperer here drops the triggers first,
as a real one with write access to the file would.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

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
from charter.store._chain import (
    GENESIS,
    PURGED,
    is_marker,
    purged_marker,
    seal,
    verify_chain,
)

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


# --- the formats, pinned --------------------------------------------------------------------------
# An upgrade that changed how an event is hashed, sealed or marked would make every stored run
# fail to verify (or, worse, verify what it should not); each format is spelled out here as
# literal bytes, never computed by the code under test.
KEY = b"k" * 32


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _stored(payloads: list[str], *, run_id: str = "run_f") -> list[tuple[object, ...]]:
    """Format-2 events as the database returns them, chained by hand (see `event_hash`)."""
    rows: list[tuple[object, ...]] = []
    prev = "0" * 64
    for seq, payload in enumerate(payloads, start=1):
        digest = hashlib.sha256(payload.encode()).hexdigest()
        material = f"{prev}\n{run_id}\n{seq}\n2026-01-01T00:00:0{seq}Z\nk{seq}\n{digest}"
        link = hashlib.sha256(material.encode()).hexdigest()
        rows.append(
            (run_id, seq, f"2026-01-01T00:00:0{seq}Z", f"k{seq}", payload, prev, link, digest)
        )
        prev = link
    return rows


def _verified(
    rows: list[tuple[object, ...]],
    *,
    run_id: str = "run_f",
    claims: dict[int, str] | None = None,
    head: tuple[int, str] | None = None,
) -> ChainReport:
    """`verify_chain` over `rows`, with a head that names their last event, sealed with KEY."""
    seq, last = head or (len(rows), str(rows[-1][6]) if rows else "0" * 64)
    mac = hmac.new(KEY, f"{run_id}\n{seq}\n{last}\nsummary".encode(), hashlib.sha256).hexdigest()
    return verify_chain(
        run_id=run_id,
        rows=rows,
        head_seq=seq,
        head_hash=last,
        head_mac=mac,
        summary="summary",
        key=KEY,
        claims=claims,
    )


class TestFormats:
    def test_event_hash_is_sha256_of_the_fields_one_a_line(self):
        """The link format: previous hash, run, seq, time, kind, payload digest, newline-joined."""
        material = b"p\nrun_1\n3\n2026-01-01T00:00:00Z\ntool.executed\nd"
        expected = hashlib.sha256(material).hexdigest()
        found = event_hash(
            prev_hash="p",
            run_id="run_1",
            seq=3,
            ts="2026-01-01T00:00:00Z",
            kind="tool.executed",
            payload="d",
        )
        assert found == expected
        first = event_hash(
            prev_hash=GENESIS,
            run_id="run_1",
            seq=1,
            ts="2026-01-01T00:00:00Z",
            kind="run.started",
            payload="d",
        )
        assert first == "0ad673b45d3cd8fd05b9d20fdad6fceb3b0a0fc3a87dc285a04cdf34dcdfc243"

    def test_a_stored_run_begins_at_genesis(self, store):
        """A run's first event links to 64 zeros, whatever version wrote it."""
        store.start_run("run_g", started_event())
        (first,) = store.events("run_g")
        assert first.prev_hash == "0" * 64

    def test_seal_is_hmac_sha256_of_the_head_and_summary(self):
        """The seal format: HMAC-SHA256 over run, seq, head hash and summary, newline-joined."""
        expected = hmac.new(KEY, b"run_1\n4\nh\ns", hashlib.sha256).hexdigest()
        assert seal(KEY, run_id="run_1", seq=4, head_hash="h", summary="s") == expected

    def test_purged_marker_format(self):
        """What retention writes in place of a payload: compact JSON, `purged` first."""
        assert (
            purged_marker("2026-01-01", "pii-30d") == '{"purged":"2026-01-01","reason":"pii-30d"}'
        )
        assert PURGED == '{"purged":'


class TestMarkers:
    """Only a marker exactly as retention writes it stands for a dropped payload: anything else
    in its place is an altered event, whatever it begins with."""

    def test_a_marker_as_written_is_one(self):
        assert is_marker(purged_marker("2026-01-01", "pii-30d")) is True

    @pytest.mark.parametrize(
        "payload",
        [
            '{"purged":"2026-01-01"}',
            '{"purged":"2026-01-01","reason":"r","extra":1}',
            '{"purged":"2026-01-01", "reason":"r"}',
            '{"purged":1,"reason":"r"}',
            '{"purged":"2026-01-01","reason":2}',
            '{"purged":"x","reason":"r"} ',
            '{"purged":',
            '{"reason":"r","purged":"x"}',
            '{"purged":"x","":"r"}',
            '{"":"x","reason":"r"}',
            '{"kind":"run.started"}',
        ],
    )
    def test_anything_else_is_not(self, payload):
        assert is_marker(payload) is False


class TestVerifyChain:
    """`verify_chain` on rows as the database returns them, the store left out."""

    def test_a_whole_chain_verifies(self):
        report = _verified(_stored(["a", "b", "c"]))
        assert (report.ok, report.events_checked, report.events_purged) == (True, 3, 0)

    def test_an_empty_chain_with_an_empty_head_verifies(self):
        report = _verified([], head=(0, "0" * 64))
        assert (report.ok, report.events_checked, report.broken_at) == (True, 0, None)

    def test_a_payload_retention_dropped_still_verifies_and_is_counted(self):
        rows = _stored(["a", "b", "c"])
        rows[1] = (*rows[1][:4], purged_marker("2026-01-01", "pii-30d"), *rows[1][5:])
        report = _verified(rows)
        assert (report.ok, report.events_checked, report.events_purged) == (True, 3, 1)

    def test_a_marker_with_a_broken_link_is_caught(self):
        """A marker spares its payload's digest, never its event's hash."""
        rows = _stored(["a", "b", "c"])
        rows[1] = (*rows[1][:3], "edited", purged_marker("t", "r"), *rows[1][5:])
        report = _verified(rows)
        assert (report.ok, report.broken_at) == (False, 2)
        assert "altered" in (report.problem or "")

    def test_a_payload_that_only_looks_like_a_marker_is_an_edit(self):
        rows = _stored(["a", "b", "c"])
        rows[1] = (*rows[1][:4], '{"purged":"t","reason":"r","x":1}', *rows[1][5:])
        report = _verified(rows)
        assert (report.ok, report.broken_at) == (False, 2)
        assert "altered" in (report.problem or "")

    def test_a_format_1_event_is_hashed_over_its_payload(self):
        """Events written before payload digests link over the payload's text itself."""
        material = f"{'0' * 64}\nrun_f\n1\nts\nkind\n{{}}".encode()
        link = hashlib.sha256(material).hexdigest()
        good = [("run_f", 1, "ts", "kind", "{}", "0" * 64, link, None)]
        assert _verified(good).ok
        bad = [("run_f", 1, "ts", "kind", '{"x":1}', "0" * 64, link, None)]
        report = _verified(bad, head=(1, link))
        assert (report.ok, report.broken_at) == (False, 1)
        assert "altered" in (report.problem or "")

    def test_a_claim_the_chain_no_longer_holds_is_caught(self):
        rows = _stored(["a", "b", "c"])
        report = _verified(rows, claims={2: "f" * 64})
        assert (report.ok, report.broken_at, report.events_checked) == (False, 2, 1)
        assert "ledger recorded" in (report.problem or "")

    def test_a_chain_shorter_than_its_claims_is_caught(self):
        rows = _stored(["a", "b", "c"])
        report = _verified(rows[:2], claims={3: str(rows[2][6])})
        assert (report.ok, report.broken_at) == (False, 3)
        assert "rolled back" in (report.problem or "")

    def test_claims_the_chain_holds_pass(self):
        rows = _stored(["a", "b", "c"])
        assert _verified(rows, claims={1: str(rows[0][6]), 3: str(rows[2][6])}).ok

    def test_a_head_naming_another_event_is_caught(self):
        rows = _stored(["a", "b", "c"])
        report = _verified(rows, head=(2, str(rows[1][6])))
        assert (report.ok, report.broken_at) == (False, 4)
        assert "head says 2" in (report.problem or "")

    def test_a_wrong_seal_is_caught(self):
        rows = _stored(["a"])
        report = verify_chain(
            run_id="run_f",
            rows=rows,
            head_seq=1,
            head_hash=str(rows[0][6]),
            head_mac="0" * 64,
            summary="summary",
            key=KEY,
        )
        assert (report.ok, report.broken_at) == (False, 1)
        assert "seal" in (report.problem or "")

    @pytest.mark.parametrize("field", ["head_seq", "head_hash", "head_mac", "summary"])
    def test_a_head_of_the_wrong_type_is_a_broken_end_not_a_crash(self, field):
        rows = _stored(["a", "b"])
        head: dict[str, Any] = {
            "head_seq": 2,
            "head_hash": str(rows[1][6]),
            "head_mac": "m" * 64,
            "summary": "summary",
        }
        head[field] = b"\x00" if field != "head_seq" else "2"
        report = verify_chain(run_id="run_f", rows=rows, key=KEY, **head)
        assert (report.ok, report.broken_at, report.events_checked) == (False, 3, 2)
        assert report.problem == "the head row holds a value of the wrong type"

    def _rehashed(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`rows` with every link recomputed over the values as they now stand, as a tamperer
        who can run SHA-256 (but holds no seal key) would leave them."""
        out = []
        for run_id, seq, ts, kind, payload, prev, _, digest in rows:
            material = f"{prev}\n{run_id}\n{seq}\n{ts}\n{kind}\n{digest}"
            out.append((run_id, seq, ts, kind, payload, prev, sha(material), digest))
        return out

    def test_a_gap_in_the_numbers_is_reported_though_every_hash_holds(self):
        rows = _stored(["a", "b", "c"])
        gapped = [rows[0], (*rows[2][:5], rows[0][6], *rows[2][6:])]
        gapped = self._rehashed(gapped)
        report = _verified(gapped)
        assert (report.ok, report.broken_at) == (False, 2)
        assert report.problem == "event 2 is missing (next stored is 3)"

    def test_a_link_to_the_wrong_event_is_reported_though_every_hash_holds(self):
        rows = _stored(["a", "b", "c"])
        rows[2] = (*rows[2][:5], "e" * 64, *rows[2][6:])
        report = _verified(self._rehashed(rows))
        assert (report.ok, report.broken_at) == (False, 3)
        assert report.problem == "event 3 does not link to event 2"

    @pytest.mark.parametrize(("column", "value"), [(1, True), (2, b"ts"), (3, b"kind")])
    def test_a_value_of_the_wrong_type_is_reported_though_its_hash_holds(self, column, value):
        """A driver may hand back a bool or bytes once a column's type was changed; hashing
        their text must not make them pass."""
        rows = _stored(["a", "b"])
        rows[0] = (*rows[0][:column], value, *rows[0][column + 1 :])
        report = _verified(self._rehashed(rows))
        assert (report.ok, report.broken_at) == (False, 1)
        assert "wrong type" in (report.problem or "")

    def test_a_payload_that_is_a_marker_counts_as_dropped_whatever_its_digest(self):
        """The audit then asks the control log which retention dropped it."""
        marker = purged_marker("2026-01-01", "pii-30d")
        rows = _stored(["a", marker, "c"])
        report = _verified(rows)
        assert (report.ok, report.events_purged) == (True, 1)

    def test_a_head_with_the_right_count_and_another_hash_is_caught(self):
        rows = _stored(["a", "b", "c"])
        report = _verified(rows, head=(3, "f" * 64))
        assert (report.ok, report.broken_at) == (False, 4)
        assert "head says 3" in (report.problem or "")
