"""The store-wide seal against a tamperer with write access to the database.

One demo store per backend and module, made as `bench/tamper.py` makes it: the demo's ten
disputes, one held refund approved and finished, an identity provider, a revoked person, an
engaged kill switch, and a checkpoint kept outside the database. Each test tampers with a copy
of it the way `bench.tamper` does (its triggers dropped first, foreign keys off) and checks
what `Client.audit` says against the checkpoint. Then the parallel pass (helper processes)
must find exactly what the one-process pass finds, and never more while writers go on.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from bench._tamperings import KINDS, Raw
from bench.tamper import Demo, PostgresCopies, SqliteCopies, build, keys_env
from click.testing import CliRunner

from _factories import RawDb, finished_event, started_event
from charter import Client, Config
from charter.cli import cli
from charter.store import KillSwitch, SqliteStore, SqlStore, open_store
from charter.store._checkpoint import Checkpoint
from pg import database_url as pg_database

if TYPE_CHECKING:
    from collections.abc import Iterator

    from charter.store._audit import StoreReport

BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class Built:
    """The demo store of one backend, and how to copy it."""

    demo: Demo
    copies: SqliteCopies | PostgresCopies

    def config(self, url: str) -> Config:
        return Config.from_env({**keys_env(self.demo.home), "CHARTER_DATABASE_URL": url})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("seal")
    home = work / "home"
    copies: SqliteCopies | PostgresCopies = (
        SqliteCopies(work) if request.param == "sqlite" else PostgresCopies(pg_database(), home)
    )
    try:
        yield Built(demo=build(home, copies), copies=copies)
    finally:
        copies.close()


@pytest.fixture
def copy(built: Built) -> Iterator[str]:
    """A fresh copy of the demo store: its URL."""
    url = built.copies.trial()
    yield url
    built.copies.discard(url)


def tamper(built: Built, url: str, kind: str, seed: int = 0) -> str:
    """Apply one kind of tampering to the copy at `url`; what it hit."""
    if BY_NAME[kind].sqlite_only and built.copies.postgres:
        pytest.skip("PostgreSQL refuses text that is not UTF-8")
    db = Raw(url, backup=built.copies.backup)
    try:
        db.unguard()
        return BY_NAME[kind].apply(db, random.Random(seed))  # noqa: S311 - a target, not a key
    finally:
        db.close()


def audited(built: Built, url: str, *, processes: int | None = None) -> StoreReport:
    """`Client.audit` of the copy, against the demo's checkpoint."""
    checkpoint = Checkpoint.parse(built.demo.checkpoint.read_text(encoding="utf-8"))
    with Client(built.config(url)) as client:
        if processes is None:
            return client.audit(checkpoint=checkpoint)
        store = client.store
        assert isinstance(store, SqlStore)
        return store.audit(checkpoint=checkpoint, processes=processes)


def said(report: StoreReport) -> str:
    """Everything the audit found wrong, one line each."""
    found = report.to_dict()
    lines = [f"{r['run_id']}: {r['problem']}" for r in found["reports"] if not r["ok"]]
    if not report.control.ok:
        lines.append(f"control log: {found['control_log']['problem']}")
    if not report.ledger.ok:
        lines.append(f"ledger: {found['ledger']['problem']}")
    lines += [f"identity {i['id']}: {i['problem']}" for i in found["identities"]]
    return "\n".join(lines + found["problems"])


def caught(built: Built, url: str, kind: str, *phrases: str) -> None:
    """Tamper with the copy; the audit must fail and say every phrase."""
    tamper(built, url, kind)
    report = audited(built, url)
    assert not report.ok
    text = said(report)
    for phrase in phrases:
        assert phrase in text, text


class TestUntouched:
    def test_a_copy_verifies_against_the_checkpoint(self, built, copy):
        """An untouched copy passes, identity provider, revoked person and kill switch included."""
        report = audited(built, copy)
        assert report.ok, said(report)
        assert report.checkpoint is not None

    def test_the_command_exits_0_on_an_untouched_copy(self, built, copy):
        """`charter audit verify --checkpoint FILE --json` says ok and exits 0."""
        result = _cli(built, copy)
        assert (result.exit_code, '"ok": true' in result.stdout) == (0, True), result.output


def _cli(built: Built, url: str) -> Any:
    env = {**keys_env(built.demo.home), "CHARTER_DATABASE_URL": url}
    args = ["--home", str(built.demo.home), "audit", "verify"]
    return CliRunner().invoke(
        cli, [*args, "--checkpoint", str(built.demo.checkpoint), "--json"], env=env
    )


class TestEvents:
    def test_a_byte_of_a_payload(self, built, copy):
        """One character of an event's payload changed: altered."""
        caught(built, copy, "payload-byte", "was altered after it was written")

    def test_an_events_kind(self, built, copy):
        """An event's kind changed: altered."""
        caught(built, copy, "event-kind", "was altered after it was written")

    def test_an_events_time(self, built, copy):
        """An event's timestamp moved: altered."""
        caught(built, copy, "event-ts", "was altered after it was written")

    def test_an_events_number(self, built, copy):
        """An event renumbered past the end: missing where it was."""
        caught(built, copy, "event-seq", "is missing")

    def test_an_event_deleted_from_the_middle(self, built, copy):
        """A middle event deleted: missing."""
        caught(built, copy, "delete-middle", "is missing")

    def test_the_last_event_deleted(self, built, copy):
        """A run's last event deleted: the ledger recorded it."""
        caught(built, copy, "delete-last", "the store's ledger recorded event")

    def test_two_events_swapped(self, built, copy):
        """Two adjacent events' numbers swapped: the first no longer links."""
        caught(built, copy, "swap", "does not link")

    def test_an_event_from_another_run(self, built, copy):
        """An event replaced by another run's of the same number: broken."""
        tamper(built, copy, "other-run")
        assert not audited(built, copy).ok

    def test_an_event_stored_twice(self, built, copy):
        """An event stored twice (uniqueness dropped): the next one is missing."""
        caught(built, copy, "duplicate", "is missing (next stored is")

    def test_an_event_appended_with_a_valid_hash(self, built, copy):
        """An event appended past the sealed head: the head disagrees."""
        caught(built, copy, "append", "but the run's head says")


class TestTruncation:
    def test_cut_short(self, built, copy):
        """A run cut short, its head left: the ledger recorded more."""
        caught(built, copy, "truncate", "rolled back to an older copy, or cut short")

    def test_cut_short_with_the_head_rewritten(self, built, copy):
        """Cut short and its head rewritten to match: the ledger recorded more."""
        caught(built, copy, "truncate-head", "rolled back to an older copy, or cut short")

    def test_rehashed_after_an_edit(self, built, copy):
        """An event edited and the chain rehashed: not what the ledger recorded."""
        caught(built, copy, "rechain", "is not the one the store's ledger recorded")


class TestRuns:
    def test_a_whole_run_deleted(self, built, copy):
        """A run with its events, approvals, votes and payloads deleted: gone."""
        caught(built, copy, "delete-run", "is gone: the ledger recorded its event")

    def test_a_runs_row_deleted(self, built, copy):
        """A run's row deleted, its events left: orphaned."""
        caught(built, copy, "delete-run-row", "its head row is missing")

    def test_a_run_rolled_back_from_a_backup(self, built, copy):
        """A completed run restored from a backup where it waited: rolled back."""
        caught(built, copy, "run-rollback", "rolled back to an older copy")

    def test_a_rollback_hidden_from_the_ledger(self, built, copy):
        """The same, with the ledger's later claims deleted: the ledger breaks."""
        caught(built, copy, "run-rollback-hidden", "ledger: ledger entry")

    def test_a_summary_edited(self, built, copy):
        """Tenant, status, outcome or cost edited: the seal fails."""
        caught(built, copy, "summary", "summary row (tenant, status, outcome, cost) was edited")

    def test_a_seal_replaced(self, built, copy):
        """Another run's seal, or a made-up one: the seal fails."""
        caught(built, copy, "seal", "the run's seal does not match")

    def test_a_run_copied_under_a_new_id(self, built, copy):
        """A copy under a new id: its chain and seal name the old one."""
        caught(built, copy, "run-copy", "was altered after it was written")

    def test_the_store_rolled_back_before_the_checkpoint(self, built, copy):
        """Every table restored from an older backup: only the checkpoint can tell."""
        caught(built, copy, "store-rollback", "does not hold the ledger of the checkpoint")


class TestControlLog:
    def test_wiped(self, built, copy):
        """Entries and head deleted: the ledger recorded them."""
        caught(built, copy, "control-wipe", "control log: the log ends at event 0")

    def test_truncated(self, built, copy):
        """The last entries deleted (head kept or rewritten): the ledger recorded them."""
        caught(built, copy, "control-truncate", "control log: the log ends at event")

    def test_an_entry_edited(self, built, copy):
        """An entry's action, time or payload edited: altered."""
        caught(built, copy, "control-edit", "control log: event")

    def test_a_kill_switch_released_in_the_database(self, built, copy):
        """An engaged switch's row deleted: the log says it is engaged."""
        caught(built, copy, "kill-switch", "is engaged on the control log, but its row is gone")


class TestPrincipals:
    def test_an_identity_inserted(self, built, copy):
        """A forged admin row: no control-log entry made it."""
        caught(built, copy, "identity-insert", "no control-log entry made it")

    def test_roles_edited(self, built, copy):
        """An identity's roles edited: its fields differ from its entry."""
        caught(built, copy, "identity-roles", "its fields differ from its control-log entry")

    def test_a_revoked_identity_unrevoked(self, built, copy):
        """revoked_at cleared: its fields differ from the revocation's entry."""
        caught(built, copy, "identity-unrevoke", "its fields differ from its control-log entry")

    def test_an_identity_deleted(self, built, copy):
        """A row the control log made, deleted: gone."""
        caught(built, copy, "identity-delete", "its row is gone: deleted outside Charter")

    def test_an_identity_of_the_wrong_type(self, built, copy):
        """A name stored as bytes: reported unreadable, not raised."""
        caught(built, copy, "identity-blob", "its row is unreadable")

    def test_an_identity_provider_inserted(self, built, copy):
        """A forged issuer: no control-log entry registered it."""
        caught(built, copy, "idp-insert", "identity provider https://idp.mallory.example")

    def test_an_identity_providers_configuration_edited(self, built, copy):
        """A registered issuer's audience changed: not what was registered."""
        caught(built, copy, "idp-edit", "its configuration differs from what was registered")


class TestLedger:
    def test_an_entry_deleted(self, built, copy):
        """The last entry or one in the middle deleted: the ledger breaks."""
        caught(built, copy, "ledger-delete", "ledger: ")

    def test_an_entry_edited(self, built, copy):
        """A field of an entry edited: the ledger breaks."""
        caught(built, copy, "ledger-edit", "ledger: ledger entry")

    def test_the_head_deleted(self, built, copy):
        """The sealed head deleted: missing."""
        caught(built, copy, "ledger-head", "the ledger's head is missing")

    def test_a_detail_of_the_wrong_type(self, built, copy):
        """A detail stored as a BLOB: a value of the wrong type, not a crash."""
        caught(built, copy, "ledger-detail-blob", "holds a value of the wrong type")


class TestWrongTypes:
    def test_a_payload_stored_as_a_blob(self, built, copy):
        """A payload as bytes: a broken link of the wrong type."""
        caught(built, copy, "payload-blob", "holds a value of the wrong type")

    def test_a_seq_stored_as_text(self, built, copy):
        """A seq as text: broken (SQLite sorts it last, so its place is missing first)."""
        tamper(built, copy, "seq-text")
        assert not audited(built, copy).ok

    def test_a_hash_stored_as_an_integer(self, built, copy):
        """A hash as an integer: a broken link of the wrong type."""
        caught(built, copy, "hash-integer", "holds a value of the wrong type")

    def test_a_head_seq_stored_as_text(self, built, copy):
        """A head_seq as text: the head row holds the wrong type."""
        caught(built, copy, "head-seq-text", "the head row holds a value of the wrong type")

    def test_text_that_is_not_utf8(self, built, copy):
        """A payload whose text is not UTF-8 (SQLite): reported, where the driver would raise."""
        caught(built, copy, "invalid-utf8", "holds a value of the wrong type")

    def test_text_that_is_not_utf8_in_one_runs_verify(self, built, copy):
        """`verify(run_id)` of that run reports it too."""
        tamper(built, copy, "invalid-utf8")
        (broken,) = [r for r in audited(built, copy).runs if not r.ok]
        with Client(built.config(copy)) as client:
            (report,) = client.verify(broken.run_id)
        assert report == broken

    def test_the_command_reports_and_exits_1(self, built, copy):
        """Through the real command: exit 1, ok false, no traceback."""
        tamper(built, copy, "payload-blob")
        result = _cli(built, copy)
        assert (result.exit_code, '"ok": false' in result.stdout) == (1, True), result.output
        assert "Traceback" not in result.output


# One kind for each way the runs' pass (what helper processes share) finds a run broken, and
# the ways helpers are set aside: a ledger not walked to its end, a helper that fails.
RUN_KINDS = [
    "payload-byte",  # altered
    "delete-middle",  # missing
    "duplicate",  # missing, a number seen twice
    "truncate",  # short of what the ledger recorded
    "rechain",  # not what the ledger recorded
    "append",  # past the sealed head
    "delete-run",  # gone
    "delete-run-row",  # orphaned events
    "run-rollback",  # rolled back
    "summary",  # the seal
    "run-copy",  # unknown to the ledger
    "store-rollback",  # the checkpoint
    "payload-blob",  # the wrong type
    "head-seq-text",  # the head row's type
    "ledger-edit",  # the ledger broken: one process walks the runs again
    "invalid-utf8",  # a helper fails (SQLite): the audit reads again, leniently
]


class TestParallel:
    @pytest.mark.parametrize("kind", RUN_KINDS)
    def test_helpers_find_what_one_process_finds(self, built, copy, kind):
        """Three processes report exactly what one does, run by run and in the same order."""
        tamper(built, copy, kind)
        alone = audited(built, copy, processes=1).to_dict()
        assert not alone["ok"]
        assert audited(built, copy, processes=3).to_dict() == alone

    def test_an_untouched_copy_verifies_with_helpers(self, built, copy):
        """With helpers, an untouched copy passes and every event is checked."""
        alone = audited(built, copy, processes=1)
        helped = audited(built, copy, processes=3)
        assert helped.ok
        assert helped.to_dict() == alone.to_dict()

    def test_writers_during_the_audit_are_not_reported(self, built, copy):
        """A run appended to while helpers verify: the snapshot is one, nothing is broken."""
        config = built.config(copy)
        writer = open_store(copy, seal_key=config.seal_key(), keys=config.keys())
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                writer.start_run(f"run_live_{n:04d}", started_event())
                writer.append(f"run_live_{n:04d}", [finished_event()])

        thread = threading.Thread(target=write)
        thread.start()
        try:
            reports = [audited(built, copy, processes=3) for _ in range(3)]
        finally:
            stop.set()
            thread.join()
            writer.close()
        assert all(r.ok for r in reports), [said(r) for r in reports if not r.ok]


class TestKillSwitches:
    def test_engaged_and_released_on_record_verify(self, store):
        """Switches engaged, released and engaged again through the store: nothing to report."""
        switch = _switch(tool="refund")
        store.engage_kill_switch(switch)
        store.release_kill_switch(switch.key, by="oscar", reason="fixed")
        store.engage_kill_switch(_switch(workflow="billing"))
        assert store.audit().problems == []

    def test_a_switch_narrowed_in_the_database(self, store, raw_db: RawDb):
        """A switch's scope edited under its key (refund -> lookup): reported as changed."""
        switch = _switch(tool="refund")
        store.engage_kill_switch(switch)
        raw_db.execute("UPDATE kill_switches SET tool = 'lookup' WHERE key = ?", (switch.key,))
        (problem,) = store.audit().problems
        assert "is not what the control log engaged" in problem

    def test_a_switch_released_in_the_database(self, store, raw_db: RawDb):
        """A switch's row deleted without an entry: reported as released outside Charter."""
        switch = _switch(tenant_id="acme")
        store.engage_kill_switch(switch)
        raw_db.execute("DELETE FROM kill_switches WHERE key = ?", (switch.key,))
        (problem,) = store.audit().problems
        assert "released outside Charter" in problem


def _switch(**scope: str) -> KillSwitch:
    return KillSwitch(
        **scope, reason="incident", created_by="oscar", created_at="2026-11-25T00:00:00"
    )


class TestInMemory:
    def test_helpers_asked_of_an_in_memory_store_verify_in_one_process(self):
        """No file for helpers to open: the audit runs alone and still checks every run."""
        memory = SqliteStore(":memory:", seal_key=b"k" * 32)
        memory.start_run("run_mem", started_event())
        report = memory.audit(processes=3)
        memory.close()
        assert (report.ok, [r.run_id for r in report.runs]) == (True, ["run_mem"])
