"""Several nodes on one store: each "node" here is its own store object with its own
connection (and, for PostgreSQL, its own NOTIFY listener), as separate processes or machines
would have. Races are real: threads on separate connections, meeting in the database.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from _factories import finished_event, started_event
from charter import Agent, ControlPlane
from charter._events import ApprovalRequested, CheckRecorded, RunSuspended
from charter._identity import create_agent_identity, create_human
from charter._time import utcnow
from charter.cli import cli
from charter.engine import Worker, Workflow
from charter.exceptions import ConfigError, SchemaVersionError, StoreError
from charter.gate import Executor
from charter.models import ScriptedModel
from charter.privacy import MemoryKeyring
from charter.store import KillSwitch, SqlStore, open_store
from charter.store._lease import new_owner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from charter.engine import Context
    from charter.store._postgres import PostgresStore

HERE = Path(__file__).resolve().parent
KEY = b"k" * 32
NOTICE_S = 10.0
"""How long a test waits for a notification before it counts as lost (normally ~ms)."""


@pytest.fixture
def nodes(database_url: str, store: SqlStore) -> Iterator[Callable[[], SqlStore]]:
    """Open further nodes on `store`'s database; closed after the test."""
    with ExitStack() as opened:

        def node() -> SqlStore:
            return opened.enter_context(
                closing(open_store(database_url, seal_key=store.seal_key, keys=store.keys))
            )

        yield node


def _check(step: int) -> CheckRecorded:
    return CheckRecorded(
        step=step, check="kill_switch", outcome="pass", reason="none", source="t", duration_us=1
    )


class TestSchema:
    def test_nodes_starting_together_migrate_once(self, database_url, backend):
        """Four nodes open an empty database at once: one migrates, all open, each version once."""
        with ThreadPoolExecutor(4) as pool:
            stores = list(
                pool.map(
                    lambda _: open_store(database_url, seal_key=KEY, keys=MemoryKeyring()), range(4)
                )
            )
        try:
            upgraded = [s.schema.upgraded for s in stores]
            assert upgraded.count(True) == 1, upgraded
            with stores[0]._reading() as db:
                versions = [r[0] for r in db.execute("SELECT version FROM schema_version")]
            assert sorted(versions) == list(range(1, len(stores[0].migrations) + 1))
        finally:
            for s in stores:
                s.close()

    def test_a_node_refuses_a_newer_schema(self, store, raw_db, database_url):
        """A database migrated by a newer Charter is refused, and left as it was."""
        newer = len(store.migrations) + 1
        raw_db.execute("INSERT INTO schema_version VALUES (?)", (newer,))
        with pytest.raises(SchemaVersionError, match=f"schema version {newer} is newer"):
            open_store(database_url, seal_key=KEY, keys=MemoryKeyring())
        assert raw_db.execute("SELECT max(version) FROM schema_version").fetchone()[0] == newer


class TestDbCommands:
    def test_status_then_upgrade_then_status(self, database_url, tmp_path):
        """`charter db status` reports pending migrations and changes nothing; `charter db
        upgrade` applies them; `CHARTER_AUTO_UPGRADE=0` makes other commands refuse meanwhile."""
        env = {"CHARTER_DATABASE_URL": database_url, "CHARTER_AUTO_UPGRADE": "0"}

        def charter(*args: str) -> Any:
            return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), *args], env=env)

        before = charter("db", "status", "--check", "--json")
        assert before.exit_code == 1, before.output
        pending = json.loads(before.stdout)
        assert (pending["version"], pending["pending"]) == (0, pending["latest"])
        refused = charter("runs", "list", "--json")
        assert refused.exit_code == 4  # the store refused: unavailable
        assert json.loads(refused.stdout)["error"]["code"] == "schema_outdated"

        upgraded = charter("db", "upgrade", "--json")
        assert upgraded.exit_code == 0, upgraded.output
        assert json.loads(upgraded.stdout) | {"database": ""} == {
            "database": "",
            "from": 0,
            "to": pending["latest"],
            "upgraded": True,
        }
        after = charter("db", "status", "--check", "--json")
        assert after.exit_code == 0, after.output
        assert json.loads(after.stdout)["pending"] == 0
        assert charter("runs", "list", "--json").exit_code == 0


class TestClaims:
    def test_racing_claimers_never_hold_one_run_at_once(self, store, nodes):
        """Six nodes claim 60 runs as fast as they can: every run is claimed by exactly one."""
        runs = [f"run_{n:03d}" for n in range(60)]
        for run_id in runs:
            store.start_run(run_id, started_event())
        claims: dict[str, list[str]] = {r: [] for r in runs}
        guard = threading.Lock()

        def claim_all(node: SqlStore) -> None:
            owner = new_owner()
            # Until every run is done: a claim finds nothing while the others' claims hold
            # the last rows, which is not the same as nothing being left.
            while any(not node.get_run(r).final for r in runs):
                lease = node.claim_run(owner=owner, workflows=["testing"], now=utcnow(), lease_s=60)
                if lease is None:
                    continue
                with guard:
                    claims[lease.run_id].append(owner)
                # Finishing under the lease (fenced by it) makes the run not runnable.
                node.append(lease.run_id, [finished_event()], owner=owner)
                node.release_run(lease.run_id, owner=owner)

        members = [nodes() for _ in range(6)]
        with ThreadPoolExecutor(len(members)) as pool:
            list(pool.map(claim_all, members))
        assert {r: len(owners) for r, owners in claims.items()} == dict.fromkeys(runs, 1)
        # The claimers passed each other: the work was shared, not served by one at a time.
        assert len({owner for owners in claims.values() for owner in owners}) > 1
        assert all(r.ok for r in store.verify())

    def test_a_live_lease_on_another_host_is_respected(self, store, nodes):
        """A lease held by a worker elsewhere is never taken before it expires."""
        store.start_run("run_far", started_event(), owner="elsewhere/1/abcd", lease_s=300)
        assert (
            nodes().claim_run(owner=new_owner(), workflows=["testing"], now=utcnow(), lease_s=30)
            is None
        )

    def test_an_expired_lease_from_another_host_is_reclaimed(self, store, nodes):
        """A worker on another machine died: its lease runs out and another node takes over."""
        store.start_run("run_far", started_event(), owner="elsewhere/1/abcd", lease_s=-1)
        lease = nodes().claim_run(
            owner=new_owner(), workflows=["testing"], now=utcnow(), lease_s=30
        )
        assert lease is not None
        assert lease.run_id == "run_far"


class TestWorkersOnManyNodes:
    def test_four_workers_run_every_step_once_and_never_together(
        self, store, nodes, make_contract, toolset
    ):
        """Four workers on four nodes share 40 five-step runs: no run is ever in two workers'
        hands at once, every step's effect happens once, every chain verifies."""
        in_flight: dict[str, str] = {}
        overlaps: list[str] = []
        effects: list[str] = []
        guard = threading.Lock()

        def touch(args: Any, ctx: Any) -> dict[str, str]:
            with guard:
                effects.append(ctx.idempotency_key)
            return {"item": args.item}

        tools = [
            dataclasses.replace(t, run=touch) if t.name == "record_write" else t
            for t in toolset.tools
        ]
        agent = Agent.load(make_contract(), tools=tools, model=ScriptedModel([]))

        def five_writes(ctx: Context, task: Any) -> str:
            # The workflow runs in the worker's thread for as long as that worker holds the run.
            me = threading.current_thread().name
            with guard:
                if in_flight.setdefault(ctx.run_id, me) != me:
                    overlaps.append(ctx.run_id)
            try:
                for n in range(5):
                    ctx.tool("record_write", {"item": f"{task}-{n}"})
            finally:
                with guard:
                    if in_flight.get(ctx.run_id) == me:
                        del in_flight[ctx.run_id]
            return "done"

        workflow = Workflow(agent=agent, fn=five_writes)
        cred = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        starter = ControlPlane(store)
        runs = [
            starter.start(workflow, credential=cred.token, tenant_id="acme", task=f"t{n}")
            for n in range(40)
        ]
        starter.close()

        def work(node: SqlStore) -> int:
            plane = ControlPlane(node, executor=Executor(sleep=lambda s: None))
            try:
                return Worker(plane, [workflow]).run(until_idle=True).completed
            finally:
                plane.close()

        with ThreadPoolExecutor(4, thread_name_prefix="worker") as pool:
            completed = sum(pool.map(work, [nodes() for _ in range(4)]))

        assert overlaps == []
        assert completed == 40
        assert len(effects) == len(set(effects)) == 200
        assert {store.get_run(r).status for r in runs} == {"completed"}
        assert [r.run_id for r in store.verify() if not r.ok] == []


class TestBudgetsAcrossNodes:
    def test_a_run_moving_between_workers_never_overspends_its_budget(
        self, store, nodes, make_contract, contract_data, toolset
    ):
        """A run with a $0.05 budget makes $0.01 calls, sleeping between them, so every step
        may be resumed by another of four workers: exactly five calls are allowed, the sixth is
        denied by the budget and ends the run, and the run's recorded cost is the budget."""
        agent = Agent.load(
            make_contract({**contract_data, "budget": {"per_run_usd": 0.05}}),
            tools=toolset.tools,
            model=ScriptedModel([]),
        )

        def spend(ctx: Context, task: Any) -> list[str]:
            kinds = []
            for n in range(10):
                kinds.append(ctx.tool("record_write", {"item": f"i{n}"}).kind)
                ctx.sleep(0.001)  # a durable timer: the run is released and claimed again
            return kinds

        workflow = Workflow(agent=agent, fn=spend)
        cred = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        starter = ControlPlane(store)
        run_id = starter.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        starter.close()

        def work(node: SqlStore) -> None:
            plane = ControlPlane(node, executor=Executor(sleep=lambda s: None))
            try:
                while not node.get_run(run_id).final:
                    Worker(plane, [workflow], poll_s=0.001).run(until_idle=True)
            finally:
                plane.close()

        with ThreadPoolExecutor(4, thread_name_prefix="worker") as pool:
            list(pool.map(work, [nodes() for _ in range(4)]))

        record = store.get_run(run_id)
        assert (record.status, record.outcome) == ("failed", "budget_exceeded")
        assert len(toolset.effects) == 5
        assert round(record.cost_usd, 6) == 0.05
        denied = [e.payload for e in store.events(run_id) if e.kind == "gate.decided"]
        assert [d["decision"] for d in denied].count("denied") == 1


class TestConcurrentAppends:
    def test_appends_from_many_nodes_to_one_run_form_one_chain(self, store, nodes):
        """Eight nodes append to one run at once: one unbroken chain, no sequence lost."""
        store.start_run("run_busy", started_event())

        def append_many(node: SqlStore) -> None:
            for n in range(25):
                node.append("run_busy", [_check(n)])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(append_many, [nodes() for _ in range(8)]))
        events = store.events("run_busy")
        assert [e.seq for e in events] == list(range(1, 202))
        assert store.get_run("run_busy").event_count == 201
        (report,) = store.verify("run_busy")
        assert (report.ok, report.events_checked) == (True, 201)

    def test_two_approvers_voting_at_once_both_count(self, store, nodes):
        """A request needing two approvers, decided by two people on two nodes at the same
        moment: both votes count, and the request ends approved."""
        store.start_run("run_held", started_event())
        store.append("run_held", [_request("apr_two", approvers=2), _waiting_on("apr_two")])
        people = [create_human(store, name=n, roles=["approver"]) for n in ("bob", "carol")]
        barrier = threading.Barrier(2)

        def vote(args: tuple[SqlStore, Any]) -> str:
            node, person = args
            barrier.wait()
            decided = node.decide_approval(
                "apr_two", approver=person.identity, decision="approve", reason="ok", now=utcnow()
            )
            return decided.status

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(vote, [(nodes(), p) for p in people]))
        assert statuses == ["approved", "pending"]
        request = store.get_approval("apr_two")
        assert (request.status, request.granted) == ("approved", 2)
        assert store.get_run("run_held").runnable


@pytest.mark.backends("postgres")
class TestPropagation:
    def test_a_kill_switch_reaches_another_node_by_notify(self, store, nodes):
        """Node B caches the control version (no read per gate call); a kill switch engaged on
        node A reaches it by NOTIFY, and B's next read shows the new version."""
        b: PostgresStore = nodes()  # type: ignore[assignment]
        before = b.control_version()
        assert b._listening().cached() == before  # served from the cache from now on
        b.wait_for_work(0)  # drain the wake-up the listener gave on connecting
        store.engage_kill_switch(_switch())
        assert b.wait_for_work(NOTICE_S), "no notification arrived"
        assert b.control_version() == before + 1
        assert [s.workflow for s in b.kill_switches()] == ["testing"]

    def test_without_the_listener_every_read_goes_to_the_database(self, store, nodes, raw_db):
        """The listener's connection is killed: the cache is dropped, so a kill switch engaged
        meanwhile is seen at B's very next read; then the listener comes back by itself."""
        b: PostgresStore = nodes()  # type: ignore[assignment]
        b.control_version()
        listener = b._listening()
        listener.reconnect_s = 3600.0  # stays deaf until the test says so
        pid = listener.backend_pid
        assert pid is not None
        raw_db.execute("SELECT pg_terminate_backend(?)", (pid,))
        assert listener.lost.wait(NOTICE_S)
        assert listener.cached() is None
        before = b.control_version()
        store.engage_kill_switch(_switch())
        assert b.control_version() == before + 1  # read, not cached: no notification needed
        assert listener.cached() is None  # and still not cached while deaf
        listener.retry.set()
        assert listener._ready.wait(NOTICE_S), "the listener did not reconnect"
        assert listener.backend_pid not in (None, pid)

    def test_a_new_run_wakes_an_idle_worker_on_another_node(self, store, nodes):
        """A run started on node A wakes node B's idle worker at once, not at its next poll."""
        b = nodes()
        b.wait_for_work(0.0)
        b.wait_for_work(0.0)
        store.start_run("run_new", started_event())
        assert b.wait_for_work(NOTICE_S)

    def test_a_decision_wakes_an_idle_worker_on_another_node(self, store, nodes):
        """An approval decided on one node makes the run runnable, and wakes another node."""
        store.start_run("run_held", started_event())
        store.append("run_held", [_request("apr_one", approvers=1), _waiting_on("apr_one")])
        assert not store.get_run("run_held").runnable
        approver = create_human(store, name="bob", roles=["approver"])
        b = nodes()
        b.wait_for_work(0.0)
        store.decide_approval(
            "apr_one", approver=approver.identity, decision="approve", reason="ok", now=utcnow()
        )
        assert b.wait_for_work(NOTICE_S)
        assert b.get_run("run_held").runnable


class TestPostgresFailures:
    @pytest.mark.backends("postgres")
    def test_a_worker_outlives_a_lost_connection(
        self, store, nodes, raw_db, make_contract, toolset
    ):
        """The database drops a worker's connection (a restart, a failover): the worker logs
        it, reconnects on its next call and runs the run to its end."""
        agent = Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))
        workflow = Workflow(agent=agent, fn=lambda ctx, task: ctx.tool("record_write", {}).kind)
        cred = create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        b = nodes()
        with b._reading() as db:  # type: ignore[attr-defined]
            pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        # With a timeout, the call returns once the backend is gone, not once it is told.
        assert raw_db.execute("SELECT pg_terminate_backend(?, 10000)", (pid,)).fetchone()[0]
        starter = ControlPlane(store)
        run_id = starter.start(workflow, credential=cred.token, tenant_id="acme", task=None)
        starter.close()
        done, stop = threading.Event(), threading.Event()
        plane = ControlPlane(b, executor=Executor(sleep=lambda s: None))
        worker = Worker(plane, [workflow], poll_s=0.01, on_result=lambda r: done.set())
        thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
        thread.start()
        try:
            assert done.wait(NOTICE_S), worker.stats.to_dict()
        finally:
            stop.set()
            thread.join()
            plane.close()
        assert worker.stats.errors == 1
        assert store.get_run(run_id).status == "completed"
        assert len(toolset.effects) == 1

    @pytest.mark.backends("postgres")
    def test_a_closed_store_does_not_reconnect(self, store, nodes):
        """After close(), a call fails with StoreError instead of opening a new connection."""
        b = nodes()
        b.close()
        with pytest.raises(StoreError, match="closed"):
            b.get_run("run_x")

    def test_a_malformed_url_is_a_config_error_without_the_password(self):
        """psycopg quotes a URL it cannot parse; Charter's error must not."""
        with pytest.raises(ConfigError) as raised:
            open_store(
                "postgresql://charter:s3cret-pw@[::1/charter", seal_key=KEY, keys=MemoryKeyring()
            )
        assert "s3cret-pw" not in str(raised.value)


def test_tests_start_their_own_postgres_when_none_answers(tmp_path):
    """With nothing at the configured address, the test helper makes a throwaway cluster with
    initdb and pg_ctl, hands out a schema on it, and removes it at exit."""
    script = (
        "import pg, psycopg\n"
        "name, url = pg.new_schema()\n"
        "print(pg.server())\n"
        "print(psycopg.connect(url).execute('SELECT current_schema()').fetchone()[0] == name)\n"
    )
    env = {
        **os.environ,
        "CHARTER_TEST_POSTGRES": "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2",
        "PYTHONPATH": str(HERE),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    url, schema_ok = done.stdout.split()
    assert not url.startswith("postgresql://postgres@127.0.0.1:1/")
    assert schema_ok == "True"


def _switch() -> KillSwitch:
    return KillSwitch(workflow="testing", reason="incident", created_by="oscar", created_at="now")


def _request(request_id: str, *, approvers: int) -> ApprovalRequested:
    return ApprovalRequested(
        step=1,
        request_id=request_id,
        tool="launch",
        tier="ops",
        role="approver",
        approvers=approvers,
        expires_at="2999-01-01T00:00:00Z",
        summary="launch x",
        diff=[],
        excluded=[],
    )


def _waiting_on(request_id: str) -> RunSuspended:
    return RunSuspended(waiting_on=[request_id], reason="approval", active_ms=1)
