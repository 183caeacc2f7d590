"""Retention and break-glass, end to end on a real store (both backends).

* Retention through the Python API: runs sealed under the key of a day long past, purged at a
  `now` past their class. Chains still verify (purged events counted), copies of raw payloads
  taken before no longer open, the keyring file forgets the key and remembers it destroyed, the
  control log names what was purged, and the database kept every event's place and hash.
* What retention leaves: keys held by a run still waiting (which later resumes and finishes),
  anything before its time (to the microsecond), raw payloads whose redacted tier passed first,
  and workflows no given contract describes.
* The database still refuses every change to an event but a purge marker on a format-2 event;
  tampering after a purge is still caught by `verify`.
* The CLI: `charter break-glass` (operators only, logged before anything is decrypted) and
  `charter retention apply` (`--dry-run` needs no credential; purging needs an operator's).
* `LocalKeyring` shared by two instances, and the contract's `retention:` section.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from _cli import Home, acts, as_json, invoke, make_home
from charter import Agent, Client, Config
from charter._contract import load_contract
from charter._identity import create_agent_identity
from charter._retention import RetentionPlan, apply_retention, plan_retention
from charter.engine import Worker, Workflow, agent_loop
from charter.exceptions import ConfigError, ContractError, PayloadPurged
from charter.models import ScriptedModel, ScriptedTurn
from charter.privacy import LocalKeyring, Vault, key_id
from charter.store._chain import PURGED

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from click.testing import Result

    from charter import ControlPlane, RunResult
    from charter._contract import Contract
    from charter.store import SqlStore
    from charter.store._privacy import PurgeCounts

call = ScriptedTurn.call
say = ScriptedTurn.say

SHORT = {"classes": {"short": {"raw": "1s", "redacted": "1s"}}}
"""A `retention:` section whose class `short` keeps raw and redacted payloads one second."""
LONG_AGO = timedelta(days=100)
"""How far back the plane's clock is set for runs whose keys must be of a day long past."""
EMAIL = "jane.doe@example.com"
"""An address redaction replaces by `[email]` in the log; only sealed copies hold it."""


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def build(make_contract, contract_data, toolset) -> Callable[..., Agent]:
    """An agent playing `turns` then 'done', under `CONTRACT` (environment dev) whose
    environment uses retention class `env_class` of `retention` (default: `SHORT`); `top`
    replaces other top-level keys. Each agent has a fresh model: build one per run."""

    def build(
        *turns: ScriptedTurn,
        retention: dict[str, Any] | None = None,
        env_class: str = "short",
        **top: Any,
    ) -> Agent:
        data = {
            **contract_data,
            "retention": retention or SHORT,
            "environments": {"dev": {"retention": env_class}},
            **top,
        }
        model = ScriptedModel([*turns, say("done")])
        return Agent.load(make_contract(data), tools=toolset.tools, model=model)

    return build


@pytest.fixture
def run(plane: ControlPlane, store: SqlStore) -> Callable[..., RunResult]:
    """Run an agent for a tenant here until it rests, with a credential of its workflow."""
    tokens: dict[tuple[str, str], str] = {}

    def run(agent: Agent, *, tenant: str = "acme", task: str = "look it up") -> RunResult:
        scope = (agent.contract.workflow, tenant)
        if scope not in tokens:
            tokens[scope] = create_agent_identity(
                store, agent="test-agent", workflow=scope[0], tenant_id=tenant
            ).token
        return plane.run(agent, credential=tokens[scope], tenant_id=tenant, task=task)

    return run


@pytest.fixture
def home(tmp_path: Path, database_url: str, store: SqlStore) -> Home:
    """A home on `store`'s database and keyring, with operators oscar and olive, approver bob."""
    return make_home(tmp_path / "home", database_url, store)


@pytest.fixture
def client(home: Home) -> Iterator[Client]:
    """A client on `store`'s database, seal key and keyring."""
    config = Config.from_env({"CHARTER_DATABASE_URL": home.database_url}, home=home.path)
    with Client(config) as opened:
        yield opened


# --- helpers ----------------------------------------------------------------------------------
def _long_ago(clock) -> str:
    """Set the plane's clock `LONG_AGO`; the UTC day its keys will be of."""
    clock.now = datetime.now(UTC) - LONG_AGO
    return clock.now.date().isoformat()


def _later(days: float = 2) -> datetime:
    """A moment `days` from now: past every run ended so far by more than a second."""
    return datetime.now(UTC) + timedelta(days=days)


def _kid(tenant: str, day: str, *, workflow: str = "testing", cls: str = "short") -> str:
    return key_id(tenant, workflow, cls, day)


def _event_rows(raw_db, run_id: str) -> list[tuple[Any, ...]]:
    """A run's events as stored: seq, ts, kind, prev_hash, hash, digest, step, payload."""
    rows = raw_db.execute(
        "SELECT seq, ts, kind, prev_hash, hash, digest, step, payload FROM events "
        "WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    return [tuple(r) for r in rows.fetchall()]


def _payload_rows(raw_db, run_id: str) -> list[tuple[Any, ...]]:
    """A run's raw payload rows as stored: name, sealed bytes, key id."""
    rows = raw_db.execute(
        "SELECT name, data, key_id FROM payloads WHERE run_id = ? ORDER BY name", (run_id,)
    )
    return [(name, bytes(data), kid) for name, data, kid in rows.fetchall()]


def _opened(store: SqlStore, run_id: str, sealed: dict[str, bytes]) -> dict[str, Any]:
    """Each sealed payload of a run opened by a fresh vault on the store's keyring."""
    vault = Vault.for_store(store)
    tenant = store.get_run(run_id).tenant_id
    return {
        name: vault.open(tenant_id=tenant, run_id=run_id, name=name, data=data)
        for name, data in sealed.items()
    }


def _entries(store: SqlStore, action: str) -> list[Any]:
    return [e for e in store.control_log() if e.action == action]


def _verified(store: SqlStore, run_id: str) -> Any:
    """The run's one chain report, which must be ok."""
    (report,) = store.verify(run_id)
    assert report.ok, report.problem
    return report


def _retention(
    store: SqlStore, contracts: list[Contract], now: datetime
) -> tuple[RetentionPlan, PurgeCounts]:
    plan = plan_retention(store, contracts, now=now)
    return plan, apply_retention(store, plan, by="oscar", reason="retention schedule")


# --- 1. retention end to end ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Purged:
    """Three runs (two of acme, one of globex) of a day long past, and what retention did."""

    runs: list[str]
    keys: list[str]
    """The two data keys (acme's and globex's of that day) the runs were sealed under."""
    events: dict[str, list[tuple[Any, ...]]]
    """Each run's event rows before the purge."""
    sealed: dict[str, dict[str, bytes]]
    """Copies of each run's raw payloads taken before the purge."""
    cached: int
    """Artifact cache entries before the purge."""
    contract: Contract
    plan: RetentionPlan
    counts: PurgeCounts


class TestRetentionEndToEnd:
    @pytest.fixture
    def purged(self, build, run, store, clock, raw_db) -> Purged:
        day = _long_ago(clock)
        turns = (call("read_notes", item="n1"), call("record_write", item="w1"))
        # read_notes is cached for ten years: its entries expire long after `now`, so only the
        # key they were sealed under can take them.
        cache = [{"tool": "read_notes", "ttl": "3650d"}]
        results = [run(build(*turns, cache=cache), tenant=t) for t in ("acme", "acme", "globex")]
        assert [r.status for r in results] == ["completed"] * 3, [r.reason for r in results]
        runs = [r.run_id for r in results]
        contract = build(cache=cache).contract
        events = {r: _event_rows(raw_db, r) for r in runs}
        sealed = {r: store.raw_payloads(r) for r in runs}
        cached = len(store.cache_entries())
        assert cached > 0
        keys = [_kid("acme", day), _kid("globex", day)]
        assert store.keys.key_ids() == keys
        plan, counts = _retention(store, [contract], _later())
        return Purged(
            runs=runs,
            keys=keys,
            events=events,
            sealed=sealed,
            cached=cached,
            contract=contract,
            plan=plan,
            counts=counts,
        )

    def test_the_plan_names_the_keys_and_runs_and_the_counts_add_up(self, purged, store):
        """Both keys of the day long past are due, none held; every run's redacted payloads
        are due; the purge counts every payload row, every event and every cache entry. Once
        purged, nothing of these runs is due again."""
        plan = purged.plan
        assert (plan.keys, plan.held, plan.legacy_runs, plan.unknown) == (purged.keys, {}, [], [])
        assert sorted(plan.redacted_runs) == sorted(purged.runs)
        assert purged.counts.payloads == sum(len(s) for s in purged.sealed.values())
        assert purged.counts.events == sum(len(e) for e in purged.events.values())
        assert purged.counts.cache_entries == purged.cached
        again = plan_retention(store, [purged.contract], now=_later(3))
        assert again.empty
        assert again.held == {}

    def test_every_chain_still_verifies_with_its_events_purged(self, purged, store):
        """Each run's chain verifies, every one of its events counted purged; the events read
        back purged, and their typed form raises PayloadPurged."""
        for run_id in purged.runs:
            report = _verified(store, run_id)
            assert report.events_purged == report.events_checked == len(purged.events[run_id])
            stored = store.events(run_id)
            assert all(e.purged for e in stored)
            with pytest.raises(PayloadPurged, match="purged by retention"):
                _ = stored[0].event

    def test_copies_of_raw_payloads_no_longer_open(self, purged, store, keyring_file):
        """The payload rows are gone; copies taken before the purge (a backup) raise
        PayloadPurged in a fresh vault, and in one on a fresh keyring read from the file."""
        fresh = Vault(store.seal_key, LocalKeyring(keyring_file))
        for run_id in purged.runs:
            assert store.raw_payloads(run_id) == {}
            tenant = store.get_run(run_id).tenant_id
            for name, data in purged.sealed[run_id].items():
                for vault in (Vault.for_store(store), fresh):
                    with pytest.raises(PayloadPurged, match="destroyed by retention"):
                        vault.open(tenant_id=tenant, run_id=run_id, name=name, data=data)
        assert store.cache_entries() == []

    def test_the_keyring_file_forgets_the_keys_and_lists_them_destroyed(
        self, purged, store, keyring_file
    ):
        """The keyring file holds neither key any more and lists both under `destroyed`; the
        store's keyring agrees, and refuses to make either again."""
        data = json.loads(keyring_file.read_text())
        assert data["keys"] == {}
        assert sorted(data["destroyed"]) == purged.keys
        assert sorted(store.keys.destroyed()) == purged.keys
        assert store.keys.key_ids() == []
        for kid in purged.keys:
            with pytest.raises(PayloadPurged):
                store.keys.key(kid, create=True)

    def test_the_control_log_names_the_keys_and_runs(self, purged, store):
        """One `retention` entry, by whom and why, naming the keys and the runs; the control
        log's own chain verifies."""
        (entry,) = _entries(store, "retention")
        assert (entry.actor, entry.reason) == ("oscar", "retention schedule")
        assert entry.detail["keys"] == purged.keys
        assert entry.detail["runs"] == sorted(purged.runs)
        assert store.verify_control_log().ok

    def test_markers_replace_payloads_and_nothing_else_changes(self, purged, raw_db):
        """In the database each payload is now a marker (when, which rule); seq, ts, kind,
        hashes, digest and step are as they were."""
        for run_id in purged.runs:
            after = _event_rows(raw_db, run_id)
            assert [r[:-1] for r in after] == [r[:-1] for r in purged.events[run_id]]
            for row in after:
                assert row[-1].startswith(PURGED)
                marker = json.loads(row[-1])
                assert set(marker) == {"purged", "reason"}
                assert marker["reason"] == "retention schedule"
            # ...and the marker is no longer what the digest covers.
            assert all(r[-1] != b[-1] for r, b in zip(after, purged.events[run_id], strict=True))


# --- 2. a waiting run holds its key -----------------------------------------------------------
BIG_WRITE = call("record_write", item="x", amount=75)
"""Above 50, so the `big-needs-ops` policy holds it for tier ops."""


class TestHeldByAWaitingRun:
    @pytest.fixture
    def waiting(self, build, run, clock) -> tuple[Agent, str, str, str]:
        """A run of a day long past waiting on an approval (whose request stands for ten
        years), and a completed run of the same day under the same key; their key id."""
        day = _long_ago(clock)
        tiers = {"ops": {"approvers": 1, "expires_after": "3650d"}}
        agent = build(BIG_WRITE, approval_tiers=tiers)
        held = run(agent)
        done = run(build(call("read_notes"), approval_tiers=tiers))
        assert (held.status, done.status) == ("waiting", "completed")
        return agent, held.run_id, done.run_id, _kid("acme", day)

    def test_the_plan_holds_the_key_and_destroys_nothing(self, waiting, store):
        """The due key is listed held by the waiting run, not to destroy; after the purge it
        still exists and every payload under it (the ended run's too) still opens. Only the
        ended run's redacted payloads are dropped."""
        agent, held, done, kid = waiting
        sealed = {r: store.raw_payloads(r) for r in (held, done)}
        events = store.events(held)
        plan, counts = _retention(store, [agent.contract], _later())
        assert (plan.keys, plan.held, plan.redacted_runs) == ([], {kid: [held]}, [done])
        assert counts.payloads == 0
        assert counts.events == len(store.events(done))
        assert store.keys.key_ids() == [kid]
        assert store.keys.destroyed() == {}
        for run_id in (held, done):
            assert store.raw_payloads(run_id) == sealed[run_id]
            assert _opened(store, run_id, sealed[run_id])
        assert store.events(held) == events
        (entry,) = _entries(store, "retention")
        assert (entry.detail["keys"], entry.detail["runs"]) == ([], [done])

    def test_after_approval_it_resumes_and_finishes(
        self, waiting, store, plane, client, home, toolset
    ):
        """Approved after the purge, the waiting run resumes (its raw payloads replay) and
        completes, the write made once; then its key is due, and destroyed."""
        agent, held, _done, kid = waiting
        _retention(store, [agent.contract], _later())
        (request,) = client.approvals(run_id=held)
        client.decide(
            request.request_id,
            approver="bob",
            token=home.tokens["bob"],
            decision="approve",
            reason="checked",
        )
        stats = Worker(plane, [Workflow(agent=agent, fn=agent_loop)]).run(until_idle=True)
        assert (stats.completed, stats.errors) == (1, 0)
        assert store.get_run(held).status == "completed"
        assert [tool for tool, _ in toolset.effects] == ["record_write"]
        _verified(store, held)
        plan, _ = _retention(store, [agent.contract], _later())
        assert (plan.keys, plan.held) == ([kid], {})
        assert store.keys.destroyed().keys() == {kid}


# --- 3. nothing before its time ---------------------------------------------------------------
class TestNothingBeforeItsTime:
    def test_inside_the_raw_window_nothing_is_due_and_nothing_changes(
        self, build, run, store, raw_db
    ):
        """With `now` an hour on, inside a two-day raw window: the plan is empty, and applying
        it purges nothing: events identical, the key live, payloads open as before."""
        contract_retention = {"classes": {"short": {"raw": "2d", "redacted": "3d"}}}
        agent = build(call("record_write"), retention=contract_retention)
        run_id = run(agent).run_id
        events, sealed = _event_rows(raw_db, run_id), store.raw_payloads(run_id)
        keys, opened = store.keys.key_ids(), _opened(store, run_id, sealed)

        plan, counts = _retention(store, [agent.contract], _later(days=1 / 24))
        assert plan.empty
        assert (plan.keys, plan.held, plan.redacted_runs, plan.unknown) == ([], {}, [], [])
        assert (counts.payloads, counts.events, counts.cache_entries) == (0, 0, 0)
        assert _event_rows(raw_db, run_id) == events
        assert store.keys.key_ids() == keys
        assert store.keys.destroyed() == {}
        assert _opened(store, run_id, store.raw_payloads(run_id)) == opened
        assert _verified(store, run_id).events_purged == 0

    def test_a_key_is_due_exactly_when_its_day_plus_raw_has_passed(self, build, run, store, clock):
        """A key of day D with raw one day is due at D+2 00:00 UTC, not a microsecond before."""
        clock.now = (datetime.now(UTC) - LONG_AGO).replace(hour=12, minute=0)
        day = clock.now.date().isoformat()
        agent = build(
            call("record_write"),
            retention={"classes": {"short": {"raw": "1d", "redacted": "400d"}}},
        )
        run(agent)
        due = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=2)
        before = plan_retention(store, [agent.contract], now=due - timedelta(microseconds=1))
        at = plan_retention(store, [agent.contract], now=due)
        assert before.keys == []
        assert at.keys == [_kid("acme", day)]

    def test_redacted_payloads_are_due_exactly_their_tier_after_the_run_ended(
        self, build, run, store
    ):
        """A run that ended at T with redacted two days is due at T+2d, not a microsecond
        before."""
        agent = build(
            call("record_write"), retention={"classes": {"short": {"raw": "1d", "redacted": "2d"}}}
        )
        run_id = run(agent).run_id
        ended = datetime.fromisoformat(store.get_run(run_id).updated_at)
        due = ended + timedelta(days=2)
        before = plan_retention(store, [agent.contract], now=due - timedelta(microseconds=1))
        at = plan_retention(store, [agent.contract], now=due)
        assert (before.redacted_runs, at.redacted_runs) == ([], [run_id])


# --- 4. redacted tiers, and workflows no contract describes --------------------------------------
class TestWhatRetentionLeaves:
    def test_redacted_payloads_go_while_raw_payloads_stay_in_their_window(
        self, build, run, store, clock
    ):
        """Raw and redacted both kept a day: a day (and two hours) after the run ended its
        redacted payloads are dropped, and its cache entry (an hour's TTL) too, while its key
        (of a later day: the plane's clock is a day ahead) is not yet due: the chain verifies
        purged, and the raw payloads still open."""
        clock.advance(days=1)
        agent = build(
            call("read_notes"),
            call("record_write"),
            retention={"classes": {"short": {"raw": "1d", "redacted": "1d"}}},
            cache=[{"tool": "read_notes", "ttl": "1h"}],
        )
        run_id = run(agent, task=f"mail {EMAIL}").run_id
        sealed = store.raw_payloads(run_id)
        assert len(store.cache_entries()) == 1
        ended = datetime.fromisoformat(store.get_run(run_id).updated_at)
        plan, counts = _retention(store, [agent.contract], ended + timedelta(days=1, hours=2))
        assert (plan.keys, plan.redacted_runs) == ([], [run_id])
        assert (counts.payloads, counts.events) == (0, len(store.events(run_id)))
        assert (counts.cache_entries, store.cache_entries()) == (1, [])
        report = _verified(store, run_id)
        assert report.events_purged == report.events_checked
        assert store.raw_payloads(run_id) == sealed
        assert _opened(store, run_id, sealed)["0:input"] == f"mail {EMAIL}"

    def test_a_class_the_given_contract_lacks_is_untouched(
        self, build, run, store, clock, make_contract, contract_data
    ):
        """A key of class `brief`, which the contract given for its workflow does not define
        (the contract changed since), is not destroyed: the plan names the class unknown."""
        day = _long_ago(clock)
        run(
            build(
                call("record_write"),
                retention={"classes": {"brief": {"raw": "1s", "redacted": "1s"}}},
                env_class="brief",
            )
        )
        kid = _kid("acme", day, cls="brief")
        assert store.keys.key_ids() == [kid]
        changed = load_contract(make_contract(contract_data))
        plan, counts = _retention(store, [changed], _later())
        assert plan.unknown == ["testing: class brief"]
        assert (plan.keys, plan.held, counts.payloads, counts.events) == ([], {}, 0, 0)
        assert store.keys.key_ids() == [kid]

    def test_a_workflow_without_a_contract_given_is_untouched(self, build, run, store, clock):
        """Runs of workflow `other`, whose contract is not given, keep their events, key and
        raw payloads; the plan names the workflow as unknown; `testing` is purged."""
        day = _long_ago(clock)
        other = build(call("record_write"), workflow="other")
        kept = run(other).run_id
        testing = build(call("record_write"))
        gone = run(testing).run_id
        events, sealed = store.events(kept), store.raw_payloads(kept)

        plan, _ = _retention(store, [testing.contract], _later())
        assert plan.unknown == ["workflow other"]
        assert plan.keys == [_kid("acme", day)]
        assert plan.redacted_runs == [gone]
        assert store.events(kept) == events
        assert store.raw_payloads(kept) == sealed
        assert _opened(store, kept, sealed)["0:input"] == "look it up"
        assert store.keys.key_ids() == [_kid("acme", day, workflow="other")]
        assert _verified(store, kept).events_purged == 0
        assert _verified(store, gone).events_purged > 0


# --- 5. the database keeps events append-only -------------------------------------------------
MARKER = '{"purged":"2020-01-01T00:00:00.000000+00:00","reason":"retention schedule"}'
"""A retention marker, as `apply_retention` writes one."""


class TestAppendOnly:
    @pytest.fixture
    def ended(self, build, run, raw_db) -> str:
        """A completed run whose events are format 2 (each has a digest)."""
        run_id = run(build(call("record_write"))).run_id
        assert all(row[5] is not None for row in _event_rows(raw_db, run_id))
        return run_id

    def test_any_other_update_is_refused(self, ended, raw_db, store):
        """Only a marker alone may replace a payload: any other change to an event, with a
        marker or without, and any deletion, is refused by the database, and the chain stays
        as it was."""
        before = _event_rows(raw_db, ended)
        for sets, values in [
            ("payload = ?", ('{"kind":"run.started","task":"forged"}',)),
            ("payload = ?", (" " + MARKER,)),
            ("hash = ?", ("0" * 64,)),
            ("prev_hash = ?", ("0" * 64,)),
            ("payload = ?, ts = ?", (MARKER, "2020-01-01")),
            ("payload = ?, hash = ?", (MARKER, "0" * 64)),
            ("payload = ?, digest = ?", (MARKER, "0" * 64)),
            ("payload = ?, kind = ?", (MARKER, "x")),
            ("payload = ?, seq = ?", (MARKER, 99)),
        ]:
            with pytest.raises(raw_db.errors, match="append-only"):
                raw_db.execute(
                    f"UPDATE events SET {sets} WHERE run_id = ? AND seq = 2", (*values, ended)
                )
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute("DELETE FROM events WHERE run_id = ? AND seq = 2", (ended,))
        assert _event_rows(raw_db, ended) == before
        _verified(store, ended)

    def test_a_marker_alone_is_let_through_but_only_retention_makes_it_a_purge(
        self, ended, raw_db, store
    ):
        """The one change the database allows, for contrast: a marker replacing a format-2
        payload. Unless a retention entry of the (sealed) control log names the run, `verify`
        reports the event as hidden, not purged."""
        raw_db.execute(
            "UPDATE events SET payload = ? WHERE run_id = ? AND seq = 2", (MARKER, ended)
        )
        (report,) = store.verify(ended)
        assert (report.ok, report.events_purged) == (False, 1)
        assert "hidden, not purged" in (report.problem or "")

    def test_a_marker_on_a_format_1_event_is_refused(self, ended, raw_db):
        """An event without a digest (format 1, whose hash covers its payload) never takes a
        marker."""
        raw_db.execute(
            "INSERT INTO events (run_id, seq, ts, kind, payload, prev_hash, hash, step, digest) "
            "VALUES (?, 999, '2020-01-01', 'run.note', ?, ?, ?, NULL, NULL)",
            (ended, '{"kind":"run.note"}', "a" * 64, "b" * 64),
        )
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute(
                "UPDATE events SET payload = ? WHERE run_id = ? AND seq = 999", (MARKER, ended)
            )

    def test_a_marker_cannot_take_the_digest_with_it(self, ended, raw_db):
        """A marker that also clears the digest (making the event pass for format 1) is a
        change to more than the payload, and refused."""
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute(
                "UPDATE events SET payload = ?, digest = NULL WHERE run_id = ? AND seq = 2",
                (MARKER, ended),
            )

    def test_a_marker_must_match_the_prefix_exactly(self, ended, raw_db):
        """`{"PURGED": ...}` is not a marker: replacing a payload by it is refused."""
        with pytest.raises(raw_db.errors, match="append-only"):
            raw_db.execute(
                "UPDATE events SET payload = ? WHERE run_id = ? AND seq = 2",
                (MARKER.upper(), ended),
            )

    def test_a_malformed_marker_is_refused_or_reported(self, ended, raw_db, store):
        """A 'marker' that is not JSON is not what retention writes: the database refuses it,
        or failing that `verify` reports the event."""
        try:
            raw_db.execute(
                "UPDATE events SET payload = ? WHERE run_id = ? AND seq = 2",
                ('{"purged": not json', ended),
            )
        except raw_db.errors:
            return
        (report,) = store.verify(ended)
        assert (report.ok, report.broken_at) == (False, 2)


# --- 6. tampering after a purge ------------------------------------------------------------------
class TestTamperingAfterAPurge:
    @pytest.fixture
    def purged(self, build, run, store, clock, raw_db) -> tuple[str, str]:
        """A run of `testing` purged and one of `other` kept; the append-only triggers then
        dropped, as a tamperer with write access would."""
        _long_ago(clock)
        kept = run(build(call("record_write"), workflow="other")).run_id
        testing = build(call("record_write"))
        gone = run(testing).run_id
        _retention(store, [testing.contract], _later())
        raw_db.drop_append_only()
        return gone, kept

    def test_an_edited_kept_payload_is_caught(self, purged, store, raw_db):
        """Editing a kept event of the other run breaks its chain at that event; the purged
        run still verifies."""
        gone, kept = purged
        (payload,) = raw_db.execute(
            "SELECT payload FROM events WHERE run_id = ? AND seq = 1", (kept,)
        ).fetchone()
        forged = payload.replace("look it up", "look it up, then wire $1M")
        assert forged != payload
        raw_db.execute("UPDATE events SET payload = ? WHERE run_id = ? AND seq = 1", (forged, kept))
        (report,) = store.verify(kept)
        assert (report.ok, report.broken_at) == (False, 1)
        assert "altered" in report.problem
        _verified(store, gone)

    def test_a_marker_replaced_by_a_forged_payload_is_caught(self, purged, store, raw_db):
        """A purged event given back a payload of the tamperer's choosing fails its digest."""
        gone, _ = purged
        raw_db.execute(
            "UPDATE events SET payload = ? WHERE run_id = ? AND seq = 2",
            ('{"kind":"model.responded","text":"forged"}', gone),
        )
        (report,) = store.verify(gone)
        assert (report.ok, report.broken_at) == (False, 2)

    def test_a_purged_events_hash_is_still_checked(self, purged, store, raw_db):
        """A marker keeps its event's hash in the chain: changing that hash breaks the link."""
        gone, _ = purged
        raw_db.execute("UPDATE events SET hash = ? WHERE run_id = ? AND seq = 2", ("f" * 64, gone))
        (report,) = store.verify(gone)
        assert (report.ok, report.broken_at) == (False, 2)


# --- 7. break-glass through the CLI -------------------------------------------------------------
def _break_glass(home: Home, run_id: str, *args: str, **who: str) -> Result:
    """`charter break-glass RUN ARGS --json` with `who`'s credential (or a `token`)."""
    return invoke(home, "break-glass", run_id, *args, "--json", **who)


def _refusal(result: Result) -> tuple[int, str]:
    """A refused command's exit code and error code."""
    return result.exit_code, json.loads(result.stdout)["error"]["code"]


class TestBreakGlassCli:
    @pytest.fixture
    def mailed(self, build, run) -> str:
        """A completed run whose task holds an email address."""
        return run(build(call("record_write")), task=f"refund the order of {EMAIL}").run_id

    def test_a_refused_reading_exits_and_is_not_logged(self, home, store, mailed):
        """Without an operator's own credential, without a reason, or for a run that does not
        exist, nothing is shown or logged: the error envelope, exit code 3 (2 for bad input)."""
        for run_id, args, who, refused in [
            (mailed, ("--reason", "INC-9"), {}, (3, "credential_invalid")),
            (mailed, ("--reason", "INC-9"), {"token": "chr_forged"}, (3, "credential_invalid")),
            (mailed, ("--reason", "INC-9"), {"who": "bob"}, (3, "not_authorized")),
            (
                mailed,
                ("--reason", "INC-9", "--as", "olive"),
                {"who": "oscar"},
                (3, "credential_invalid"),
            ),
            (mailed, ("--reason", "  "), {"who": "oscar"}, (2, "reason_invalid")),
            ("run_nosuch", ("--reason", "INC-9"), {"who": "oscar"}, (2, "not_found")),
        ]:
            result = _break_glass(home, run_id, *args, **who)
            assert _refusal(result) == refused, (args, who)
            assert EMAIL not in result.output
        assert acts(store.control_log()) == []

    def test_an_operator_sees_the_raw_values_and_the_reading_is_logged(self, home, store, mailed):
        """The log holds `[email]` where the task had the address; oscar's break-glass shows
        the address (as JSON, and as text), and the control log records who read which
        payloads of which run, and why (the CLI's log shows it, its chain verified)."""
        (started, *_) = store.events(mailed)
        assert "[email]" in started.payload["task"]
        assert EMAIL not in started.data

        opened = as_json(
            _break_glass(home, mailed, "--reason", "INC-9 refund dispute", who="oscar")
        )
        assert (opened["run_id"], opened["tenant_id"]) == (mailed, "acme")
        assert (opened["opened_by"], opened["reason"]) == ("oscar", "INC-9 refund dispute")
        names = sorted(store.raw_payloads(mailed))
        assert sorted(opened["payloads"]) == names
        assert opened["payloads"]["0:input"] == f"refund the order of {EMAIL}"

        log = as_json(invoke(home, "kill-switches", "--log", "--json"))
        (entry,) = acts(log["entries"])
        assert (entry["action"], entry["actor"], entry["reason"]) == (
            "break_glass",
            "oscar",
            "INC-9 refund dispute",
        )
        assert (entry["key"], entry["detail"]["payloads"]) == (f"run={mailed}", names)
        assert log["chain_ok"] is True

        # Without --json too, the values are printed, and the reading is said to be logged.
        text = invoke(home, "break-glass", mailed, "--reason", "INC-10", who="oscar")
        assert text.exit_code == 0, text.output
        assert EMAIL in text.output
        assert "logged to the control log" in text.output
        assert [e.reason for e in _entries(store, "break_glass")] == [
            "INC-9 refund dispute",
            "INC-10",
        ]

    def test_payloads_under_a_destroyed_key_show_as_purged(
        self, home, store, build, run, clock, raw_db
    ):
        """Payload rows restored from a backup taken before retention destroyed their key are
        shown `{"purged": true}`, each of them; the reading is logged all the same."""
        _long_ago(clock)
        agent = build(call("record_write"))
        run_id = run(agent, task=f"mail {EMAIL}").run_id
        backup = _payload_rows(raw_db, run_id)
        _retention(store, [agent.contract], _later())
        assert store.raw_payloads(run_id) == {}
        for name, data, kid in backup:
            raw_db.execute(
                "INSERT INTO payloads (run_id, name, data, key_id) VALUES (?, ?, ?, ?)",
                (run_id, name, data, kid),
            )
        opened = as_json(_break_glass(home, run_id, "--reason", "INC-9", who="oscar"))
        assert opened["payloads"] == {name: {"purged": True} for name, _, _ in backup}
        assert [e.actor for e in _entries(store, "break_glass")] == ["oscar"]

    def test_the_reading_is_logged_before_a_payload_fails_to_open(
        self, home, store, mailed, raw_db
    ):
        """A payload altered in the database fails break-glass (store_error, exit 1), yet the
        reading was logged first."""
        (data,) = raw_db.execute(
            "SELECT data FROM payloads WHERE run_id = ? AND name = '0:input'", (mailed,)
        ).fetchone()
        altered = bytearray(bytes(data))
        altered[-1] ^= 0x01
        raw_db.execute(
            "UPDATE payloads SET data = ? WHERE run_id = ? AND name = '0:input'",
            (bytes(altered), mailed),
        )
        result = _break_glass(home, mailed, "--reason", "INC-9", who="oscar")
        assert _refusal(result) == (4, "store_error")
        assert EMAIL not in result.output
        (entry,) = _entries(store, "break_glass")
        assert (entry.actor, entry.key, entry.reason) == ("oscar", f"run={mailed}", "INC-9")
        assert "0:input" in entry.detail["payloads"]


# --- 8. retention through the CLI ---------------------------------------------------------------
TINY = {"classes": {"short": {"raw": 0.000001, "redacted": 0.000001}}}
"""A class keeping raw and redacted payloads a microsecond: what ended is due by the time the
CLI reads the clock."""


class TestRetentionCli:
    @pytest.fixture
    def due(self, build, run, store, clock, make_contract, contract_data) -> tuple[Path, str, str]:
        """A completed run of a day long past; the contract file (class `TINY`) under which
        it is due; its key id."""
        day = _long_ago(clock)
        agent = build(call("record_write"), retention=TINY)
        run_id = run(agent).run_id
        path = make_contract(
            {**contract_data, "retention": TINY, "environments": {"dev": {"retention": "short"}}}
        )
        return path, run_id, _kid("acme", day)

    def apply(self, home: Home, path: Path, *args: str, **who: str) -> Result:
        return invoke(home, "retention", "apply", "--contract", str(path), *args, "--json", **who)

    def test_a_dry_run_needs_no_credential_and_purges_nothing(self, home, store, due):
        """`--dry-run` without any credential lists the due key and run, and purges nothing:
        the key lives, the payloads and events stay, nothing is logged."""
        path, run_id, kid = due
        events, sealed = store.events(run_id), store.raw_payloads(run_id)
        shown = as_json(self.apply(home, path, "--dry-run"))
        assert (shown["dry_run"], shown["purged"]) == (True, None)
        assert (shown["keys"], shown["redacted_runs"], shown["held"]) == ([kid], [run_id], {})
        text = invoke(home, "retention", "apply", "--contract", str(path), "--dry-run")
        assert "dry run: nothing purged" in text.output
        assert store.keys.key_ids() == [kid]
        assert (store.events(run_id), store.raw_payloads(run_id)) == (events, sealed)
        assert acts(store.control_log()) == []

    def test_purging_needs_an_operator(self, home, store, due):
        """Without an operator's credential (none, or an approver's) the purge is refused
        (exit 3) and nothing is purged or logged."""
        path, run_id, kid = due
        events = store.events(run_id)
        for who, code in (({}, "credential_invalid"), ({"who": "bob"}, "not_authorized")):
            assert _refusal(self.apply(home, path, **who)) == (3, code), who
        assert store.keys.key_ids() == [kid]
        assert store.events(run_id) == events
        assert acts(store.control_log()) == []

    def test_an_operator_purges_and_the_counts_are_reported(self, home, store, due):
        """oscar's purge destroys the key, drops the run's payloads and events, reports the
        counts in its JSON, and logs itself with his reason."""
        path, run_id, kid = due
        payloads, events = len(store.raw_payloads(run_id)), len(store.events(run_id))
        done = as_json(self.apply(home, path, "--reason", "quarterly purge", who="oscar"))
        assert (done["dry_run"], done["keys"], done["redacted_runs"]) == (False, [kid], [run_id])
        assert done["purged"] == {"payloads": payloads, "events": events, "cache_entries": 0}
        assert (store.keys.key_ids(), list(store.keys.destroyed())) == ([], [kid])
        assert _verified(store, run_id).events_purged == events
        (entry,) = _entries(store, "retention")
        assert (entry.actor, entry.reason, entry.detail["keys"]) == (
            "oscar",
            "quarterly purge",
            [kid],
        )


# --- 9. the keyring file ------------------------------------------------------------------------
KID = key_id("acme", "testing", "short", "2020-01-01")


class TestLocalKeyring:
    def test_two_instances_on_one_file_agree(self, tmp_path):
        """A key one instance makes, another (already open) reads, and does not make anew."""
        path = tmp_path / "keyring.json"
        first, second = LocalKeyring(path), LocalKeyring(path)
        assert second.key(KID) is None
        made = first.key(KID, create=True)
        assert made is not None
        assert len(made) == 32
        assert second.key(KID) == made
        assert second.key(KID, create=True) == made
        assert second.key_ids() == [KID]

    def test_racing_instances_make_one_key(self, tmp_path):
        """Eight instances asking for the same new key at once (as the workers of one store
        do at midnight) all get the one key that is kept in the file."""
        path = tmp_path / "keyring.json"
        keyrings = [LocalKeyring(path) for _ in range(8)]
        start = threading.Barrier(len(keyrings))

        def make(keyring: LocalKeyring) -> bytes | None:
            start.wait()
            return keyring.key(KID, create=True)

        with ThreadPoolExecutor(len(keyrings)) as pool:
            made = set(pool.map(make, keyrings))
        assert made == {LocalKeyring(path).key(KID)}

    def test_a_key_destroyed_by_one_is_gone_for_the_other(self, tmp_path):
        """A key destroyed through one instance raises PayloadPurged in another that had read
        it, and no instance, old or new, ever makes it again."""
        path = tmp_path / "keyring.json"
        first, second = LocalKeyring(path), LocalKeyring(path)
        first.key(KID, create=True)
        second.key(KID)
        assert first.destroy([KID, "acme/testing/short/2020-01-02"]) == [KID]
        for keyring in (first, second, LocalKeyring(path)):
            with pytest.raises(PayloadPurged, match=KID):
                keyring.key(KID)
            with pytest.raises(PayloadPurged, match=KID):
                keyring.key(KID, create=True)
            assert keyring.key_ids() == []
            assert list(keyring.destroyed()) == [KID]
        assert first.destroy([KID]) == []

    def test_the_file_is_readable_by_its_owner_only(self, tmp_path):
        """Even under a umask that lets everyone read, the file is written 0600, and stays so
        when rewritten."""
        path = tmp_path / "keyring.json"
        previous = os.umask(0)
        try:
            keyring = LocalKeyring(path)
            keyring.key(KID, create=True)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            keyring.destroy([KID])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        finally:
            os.umask(previous)

    def test_a_stale_temporary_file_does_not_widen_the_mode(self, tmp_path):
        """A temporary file left behind with a wider mode (a restored folder) does not make the
        keyring readable by others."""
        path = tmp_path / "keyring.json"
        stale = tmp_path / "keyring.json.tmp"
        stale.write_text("{}")
        stale.chmod(0o644)
        LocalKeyring(path).key(KID, create=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("", id="empty"),
            pytest.param("{not json", id="not-json"),
            pytest.param("[]", id="a-list"),
            pytest.param('{"keys": {}}', id="no-destroyed"),
            pytest.param('{"keys": {"' + KID + '": "a"}, "destroyed": {}}', id="bad-base64"),
            pytest.param('{"keys": [], "destroyed": {}}', id="keys-a-list"),
        ],
    )
    def test_a_corrupt_file_is_a_config_error(self, tmp_path, text):
        """A keyring file that is not one is a ConfigError naming the file, not a crash."""
        path = tmp_path / "keyring.json"
        path.write_text(text)
        with pytest.raises(ConfigError, match="not a valid keyring"):
            LocalKeyring(path)

    def test_a_file_corrupted_later_is_a_config_error_too(self, tmp_path):
        """An instance already open meets the corruption on its next read."""
        path = tmp_path / "keyring.json"
        keyring = LocalKeyring(path)
        keyring.key(KID, create=True)
        path.write_text("{truncated")
        with pytest.raises(ConfigError, match="not a valid keyring"):
            keyring.key("acme/testing/short/2020-01-02")


# --- 10. the contract's retention section ------------------------------------------------------
class TestRetentionContract:
    def test_defaults_and_overrides(self, make_contract, contract_data):
        """Without a section the three default classes apply and the environment's class is
        `standard`; redefining one class keeps the others; data classes map to classes."""
        plain = load_contract(make_contract(contract_data))
        day = 86400
        assert {n: (c.raw, c.redacted) for n, c in plain.retention.classes.items()} == {
            "short": (7 * day, 90 * day),
            "standard": (30 * day, 365 * day),
            "long": (365 * day, 2555 * day),
        }
        assert plain.retention_class == "standard"
        custom = load_contract(
            make_contract(
                {
                    **contract_data,
                    "retention": {
                        "classes": {"short": {"raw": "1h", "redacted": "2d"}},
                        "data_classes": {"customer_pii": "long"},
                    },
                    "environments": {"dev": {"retention": "short"}},
                }
            )
        )
        assert (
            custom.retention.classes["short"].raw,
            custom.retention.classes["short"].redacted,
        ) == (
            3600,
            2 * day,
        )
        assert custom.retention.classes["standard"].raw == 30 * day
        assert (custom.retention_class, custom.retention_for()) == ("short", "short")
        assert (custom.retention_for("customer_pii"), custom.retention_for("public")) == (
            "long",
            "short",
        )

    @pytest.mark.parametrize(
        ("top", "message"),
        [
            pytest.param(
                {"environments": {"dev": {"retention": "nosuch"}}},
                "environments.dev.retention names unknown retention class 'nosuch'",
                id="unknown-env-class",
            ),
            pytest.param(
                {"retention": {"data_classes": {"customer_pii": "nosuch"}}},
                "retention.data_classes.customer_pii names unknown retention class 'nosuch'",
                id="unknown-data-class",
            ),
            pytest.param(
                {"retention": {"classes": {"x": {"raw": "2d", "redacted": "1d"}}}},
                "redacted must be kept at least as long as raw",
                id="redacted-shorter",
            ),
            pytest.param(
                {"retention": {"classes": {"x": {"raw": "2 weeks", "redacted": "30d"}}}},
                "a duration like",
                id="bad-duration",
            ),
            pytest.param(
                {"retention": {"classes": {"x": {"raw": 0, "redacted": "30d"}}}},
                "retention.classes.x.raw",
                id="zero-raw",
            ),
            pytest.param(
                {"redaction": {"patterns": {"order_ref": "ORD-("}}},
                "redaction pattern 'order_ref' does not compile",
                id="bad-regex",
            ),
            pytest.param(
                {"redaction": {"patterns": {"email": "x+"}}},
                "not a built-in detector",
                id="built-in-name",
            ),
        ],
    )
    def test_a_bad_section_is_a_contract_error(self, make_contract, contract_data, top, message):
        """Each mistake is a ContractError naming what is wrong."""
        with pytest.raises(ContractError) as raised:
            load_contract(make_contract({**contract_data, **top}))
        assert message in str(raised.value)
