"""Incident response and economics, end to end on a real store (both backends).

* Kill switches: `charter kill | unkill | kill-switches` as an operator, refusals that engage
  nothing, the sealed control log and what tampering does to it; a switch engaged from this
  process reaching a run in flight in a `charter worker` subprocess (it stops, or pauses and
  resumes after `unkill` with every effect once).
* Environments: per-environment credentials and the limits of a contract's environment section.
* The independent verifier: reject, escalate, approve (and its cost), never loosening a hold,
  failing closed.
* Routing: label and after-tool rules, low-confidence escalation, and replay of routed runs.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import incident_app
from _cli import Home, acts, as_json, invoke, make_home
from charter import Agent, Client, Config, ControlPlane, Denied, NeedsApproval
from charter._identity import create_agent_identity, create_human
from charter.engine import Finish, Worker, Workflow, agent_loop, replay_run
from charter.exceptions import ContractError, ModelError
from charter.gate import Executor, idempotency_key
from charter.models import Message, ScriptedModel, ScriptedTurn
from charter.store import KillSwitch, open_store
from charter.store._chain import event_hash

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

    from charter import RunResult
    from charter.engine import Context
    from charter.store import SqlStore

HERE = Path(__file__).resolve().parent
call = ScriptedTurn.call
SCOPE = "agent=*,workflow=testing,tenant_id=acme,tool=*"
"""The key of a switch on workflow `testing` for tenant acme."""


def _events(store: SqlStore, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in store.events(run_id) if e.kind == kind]


def _verified(store: SqlStore, run_id: str) -> bool:
    return [r.ok for r in store.verify(run_id)] == [True]


def _switch(**scope: str) -> KillSwitch:
    return KillSwitch(**scope, reason="incident", created_by="sre", created_at="now")


# --- the CLI ------------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, database_url: str, store: SqlStore) -> Home:
    """A home whose seal key is `store`'s, with operators oscar and olive, approver bob."""
    return make_home(tmp_path / "home", database_url, store)


def kill(home: Home, *scope: str, who: str = "oscar", reason: str = "incident 42") -> Result:
    return invoke(home, "kill", *scope, "--as", who, "--reason", reason, "--json", who=who)


def unkill(home: Home, *scope: str, who: str = "oscar", reason: str = "mitigated") -> Result:
    return invoke(home, "unkill", *scope, "--as", who, "--reason", reason, "--json", who=who)


ACME = ("--workflow", "testing", "--tenant", "acme")


class TestKillCli:
    def test_kill_engages_a_listed_switch(self, home):
        """An operator's `kill` engages the switch; `kill-switches --json` lists it."""
        engaged = as_json(kill(home, *ACME))
        assert (engaged["key"], engaged["created_by"], engaged["reason"]) == (
            SCOPE,
            "oscar",
            "incident 42",
        )
        (listed,) = as_json(invoke(home, "kill-switches", "--json"))
        assert (listed["key"], listed["workflow"], listed["tenant_id"]) == (
            SCOPE,
            "testing",
            "acme",
        )
        assert (listed["agent"], listed["tool"]) == (None, None)

    def test_the_log_shows_who_and_why_and_verifies(self, home):
        """`kill-switches --log --json` has the entry with actor and reason, and chain_ok."""
        kill(home, *ACME)
        log = as_json(invoke(home, "kill-switches", "--log", "--json"))
        (entry,) = acts(log["entries"])
        assert (entry["action"], entry["actor"]) == ("kill", "oscar")
        assert (entry["key"], entry["reason"]) == (SCOPE, "incident 42")
        assert (log["chain_ok"], log["problem"]) == (True, None)

    def test_the_switch_stops_the_next_run_of_its_scope_only(
        self, home, store, make_contract, toolset
    ):
        """A CLI kill stops acme's run before any step; globex's run goes on."""
        kill(home, *ACME)
        agent = Agent.load(
            make_contract(),
            tools=toolset.tools,
            model=ScriptedModel([call("record_write"), ScriptedTurn.say("done")]),
        )
        plane = ControlPlane(store, executor=Executor(sleep=lambda s: None))
        try:
            outcomes = {}
            for tenant in ("acme", "globex"):
                token = create_agent_identity(
                    store, agent="test-agent", workflow="testing", tenant_id=tenant
                ).token
                result = plane.run(agent, credential=token, tenant_id=tenant, task="t")
                outcomes[tenant] = (result.status, result.outcome)
        finally:
            plane.close()
        assert outcomes == {"acme": ("cancelled", "killed"), "globex": ("completed", "resolved")}
        assert [tool for tool, _ in toolset.effects] == ["record_write"]

    @pytest.mark.parametrize(
        ("args", "token_of", "code"),
        [
            pytest.param((*ACME, "--as", "bob"), "bob", "not_authorized", id="approver"),
            pytest.param((*ACME, "--as", "oscar"), "bob", "credential_invalid", id="others-token"),
            pytest.param((*ACME, "--as", "oscar"), "", "credential_invalid", id="no-token"),
            pytest.param((*ACME, "--as", "oscar"), "chr_x", "credential_invalid", id="bad-token"),
            pytest.param(("--as", "oscar"), "oscar", "user_error", id="no-scope"),
            pytest.param(
                (*ACME, "--as", "oscar", "--reason", "  "),
                "oscar",
                "reason_invalid",
                id="blank-reason",
            ),
        ],
    )
    def test_a_refused_kill_exits_and_engages_nothing(self, home, store, args, token_of, code):
        """A refused kill prints the error envelope, exits 3 for a refused credential (else 2),
        and neither engages nor logs."""
        token = home.tokens.get(token_of, token_of)
        reason = () if "--reason" in args else ("--reason", "stop it")
        result = invoke(home, "kill", *args, *reason, "--json", token=token)
        refused = code in ("credential_invalid", "not_authorized")
        assert result.exit_code == (3 if refused else 2), result.output
        assert json.loads(result.stdout)["error"]["code"] == code
        assert store.kill_switches() == []
        assert acts(store.control_log()) == []

    def test_a_revoked_operator_cannot_kill(self, home, store):
        """An operator whose credential was revoked is refused with credential_invalid."""
        (oscar,) = [i for i in store.list_identities() if i.name == "oscar"]
        store.revoke_identity(oscar.id)
        result = kill(home, *ACME)
        assert result.exit_code == 3
        assert json.loads(result.stdout)["error"]["code"] == "credential_invalid"
        assert store.kill_switches() == []

    def test_unkill_of_the_same_scope_releases_and_logs(self, home):
        """`unkill` with the scope of the kill releases it; the log shows both, verified."""
        kill(home, *ACME)
        released = as_json(unkill(home, *ACME, who="olive"))
        assert released == {"released": SCOPE, "by": "olive", "reason": "mitigated"}
        assert as_json(invoke(home, "kill-switches", "--json")) == []
        log = as_json(invoke(home, "kill-switches", "--log", "--json"))
        assert [(e["action"], e["actor"], e["reason"]) for e in acts(log["entries"])] == [
            ("kill", "oscar", "incident 42"),
            ("unkill", "olive", "mitigated"),
        ]
        assert log["chain_ok"] is True

    @pytest.mark.parametrize(
        "scope",
        [
            pytest.param(ACME, id="nothing-engaged"),
            pytest.param(("--workflow", "testing"), id="wider-scope"),
            pytest.param((*ACME, "--tool", "launch"), id="narrower-scope"),
        ],
    )
    def test_unkill_of_a_scope_not_engaged_is_not_found(self, home, store, scope):
        """Only the exact engaged scope releases; another is not_found and changes nothing."""
        if scope != ACME:
            kill(home, *ACME)
        before = (store.kill_switches(), acts(store.control_log()))
        result = unkill(home, *scope)
        assert result.exit_code == 2, result.output
        assert json.loads(result.stdout)["error"]["code"] == "not_found"
        assert (store.kill_switches(), acts(store.control_log())) == before

    def test_unkill_by_a_non_operator_is_refused(self, home, store):
        """An approver cannot release a switch; it stays engaged and unlogged."""
        kill(home, *ACME)
        result = unkill(home, *ACME, who="bob")
        assert json.loads(result.stdout)["error"]["code"] == "not_authorized"
        assert [s.key for s in store.kill_switches()] == [SCOPE]
        assert [e.action for e in acts(store.control_log())] == ["kill"]


class TestControlLogTampering:
    @pytest.fixture
    def logged(self, home, raw_db):
        """A control log of a kill and an unkill, and a raw connection to its database."""
        kill(home, *ACME)
        unkill(home, *ACME)
        return raw_db

    def _drop_triggers(self, raw_db) -> None:
        if raw_db.backend == "postgres":
            raw_db.execute("DROP TRIGGER control_log_append_only ON control_log")
        else:
            raw_db.execute("DROP TRIGGER control_log_append_only_update")
            raw_db.execute("DROP TRIGGER control_log_append_only_delete")

    @staticmethod
    def _kill_seq(store) -> int:
        return acts(store.control_log())[0].seq

    def test_updates_are_refused_by_the_database(self, logged, store):
        """While its triggers stand, the control log cannot be edited."""
        with pytest.raises(logged.errors, match="append-only"):
            logged.execute("UPDATE control_log SET payload = '{}' WHERE seq = 1")
        assert store.verify_control_log().ok

    def test_an_edited_reason_breaks_the_chain(self, logged, store, home):
        """A reason rewritten past the triggers is caught at that entry, and by the CLI."""
        self._drop_triggers(logged)
        seq = self._kill_seq(store)
        payload = logged.execute("SELECT payload FROM control_log WHERE seq = ?", (seq,))
        forged = payload.fetchone()[0].replace("incident 42", "routine test")
        logged.execute("UPDATE control_log SET payload = ? WHERE seq = ?", (forged, seq))
        report = store.verify_control_log()
        assert (report.ok, report.broken_at) == (False, seq)
        log = as_json(invoke(home, "kill-switches", "--log", "--json"))
        assert acts(log["entries"])[0]["reason"] == "routine test"
        assert log["chain_ok"] is False
        assert "altered" in log["problem"]

    def test_a_deleted_entry_breaks_the_chain(self, logged, store):
        """Dropping the unkill entry leaves the log shorter than its sealed head."""
        self._drop_triggers(logged)
        logged.execute("DELETE FROM control_log WHERE seq = ?", (self._kill_seq(store) + 1,))
        assert not store.verify_control_log().ok

    def test_a_rehashed_rewrite_fails_the_seal(self, logged, store):
        """Rewriting an entry, rehashing the chain and its head, still fails: no seal key."""
        self._drop_triggers(logged)
        rows = logged.execute("SELECT seq, ts, action, payload FROM control_log ORDER BY seq")
        prev = "0" * 64
        for seq, ts, action, payload in rows.fetchall():
            forged = payload.replace("oscar", "mallory")
            digest = event_hash(
                prev_hash=prev, run_id="(control)", seq=seq, ts=ts, kind=action, payload=forged
            )
            logged.execute(
                "UPDATE control_log SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (forged, prev, digest, seq),
            )
            prev = digest
        head = logged.execute("SELECT value FROM store_settings WHERE name = 'control_head'")
        seq, _, mac = head.fetchone()[0].split(":")
        logged.execute(
            "UPDATE store_settings SET value = ? WHERE name = 'control_head'",
            (f"{seq}:{prev}:{mac}",),
        )
        assert acts(store.control_log())[0].actor == "mallory"
        logged.forget_claims("(control)")  # else the ledger's claims catch the rewrite first
        report = store.verify_control_log()
        assert not report.ok
        assert "seal" in (report.problem or "")


# --- a kill switch reaching a worker in another process -----------------------------------------
ITEMS = 12
"""How many items a stamping run stamps, one step each."""
STAMP_SCOPE = f"agent=*,workflow={incident_app.WORKFLOW},tenant_id=acme,tool=*"
"""The key of the switch `_kill_from_here` engages."""


@dataclass(frozen=True, kw_only=True)
class Stamping:
    """One run of `incident_app`'s stamping workflow, started and waiting for a worker."""

    home: Home
    contract: Path
    ledger: Path
    run_id: str
    operator_token: str

    def spawn(self, *, hold: bool) -> subprocess.Popen[bytes]:
        """`charter worker --until-idle` in a subprocess; with `hold`, its stdin is ours."""
        command = [
            sys.executable,
            "-c",
            "from charter.cli import main; main()",
            "--home",
            str(self.home.path),
            "worker",
            "--app",
            "incident_app:workflows",
            "--until-idle",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
        env["CHARTER_DATABASE_URL"] = self.home.database_url
        env[incident_app.CONTRACT_ENV] = str(self.contract)
        env[incident_app.LEDGER_ENV] = str(self.ledger)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
        stderr = (self.home.path / f"worker-{time.monotonic_ns()}.err").open("wb")
        with stderr:
            return subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE if hold else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                bufsize=0,  # unbuffered: select() must see every line the worker wrote
            )

    def effects(self) -> list[str]:
        """The idempotency keys of the stamps made, in order (repeats included)."""
        return self.ledger.read_text().split() if self.ledger.exists() else []

    def keys(self, *steps: int) -> list[str]:
        return [idempotency_key(self.run_id, s) for s in steps]

    def client(self) -> Client:
        return Client(
            Config.from_env({"CHARTER_DATABASE_URL": self.home.database_url}, home=self.home.path)
        )


def await_in_flight(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> str:
    """Wait for the worker's IN_FLIGHT line: its stamp is now blocked inside the tool."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while selector.select(max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline().decode()
            if not line:
                break  # the worker ended without holding
            if line.startswith(incident_app.IN_FLIGHT):
                return line.split()[1]
    proc.kill()
    proc.wait()
    pytest.fail("the worker never reported its call in flight")


def finish(proc: subprocess.Popen[bytes]) -> int:
    """Let a held call go (if held) and wait for the worker to exit."""
    if proc.stdin is not None:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def stamping(home: Home, store: SqlStore, tmp_path: Path) -> Callable[..., Stamping]:
    """Start one stamping run of `ITEMS` items under a contract with `on_kill`."""

    def start(on_kill: str = "stop") -> Stamping:
        contract = incident_app.write_agent(tmp_path / "incident", on_kill=on_kill)
        ledger = tmp_path / "ledger.txt"
        workflow = incident_app.stamping(contract, ledger)
        token = create_agent_identity(
            store, agent=incident_app.AGENT, workflow=incident_app.WORKFLOW, tenant_id="acme"
        ).token
        plane = ControlPlane(store)
        try:
            run_id = plane.start(
                workflow,
                credential=token,
                tenant_id="acme",
                task={"items": [f"i{n}" for n in range(ITEMS)]},
            )
        finally:
            plane.close()
        return Stamping(
            home=home,
            contract=contract,
            ledger=ledger,
            run_id=run_id,
            operator_token=home.tokens["oscar"],
        )

    return start


def _kill_from_here(run: Stamping, *, release: bool = False) -> None:
    with run.client() as client:
        action = client.unkill if release else client.kill
        action(
            reason="bad deploy" if not release else "rolled back",
            by="oscar",
            token=run.operator_token,
            workflow=incident_app.WORKFLOW,
            tenant_id="acme",
        )


def _stopped_at(store: SqlStore, run: Stamping) -> int:
    """The step at which the run met the kill switch; every step before it completed once."""
    completed = [c["step"] for c in _events(store, run.run_id, "tool.completed")]
    assert completed == list(range(1, len(completed) + 1))
    assert run.effects() == run.keys(*completed)
    return len(completed) + 1


class TestKillReachesAnotherProcess:
    # The call in flight (step 2) always finishes. On SQLite the next step meets the switch;
    # on PostgreSQL the worker may judge a call more before the switch's NOTIFY reaches it,
    # which `TestKillAtTheNextCall` pins down. Either way it stops long before the end.

    def test_a_run_in_flight_stops_killed_after_its_current_call(self, stamping, store):
        """Killed while a call is in flight: that call finishes on record, no later one runs."""
        run = stamping()
        proc = run.spawn(hold=True)
        assert await_in_flight(proc) == run.run_id
        _kill_from_here(run)
        assert finish(proc) == 0

        record = store.get_run(run.run_id)
        assert (record.status, record.outcome) == ("cancelled", "killed")
        assert "bad deploy" in (record.reason or "")
        stop = _stopped_at(store, run)
        assert 3 <= stop < ITEMS
        last = _events(store, run.run_id, "gate.decided")[-1]
        assert (last["step"], last["decision"], last["check"]) == (stop, "denied", "kill_switch")
        assert _verified(store, run.run_id)

    def test_with_on_kill_pause_the_run_waits_then_resumes_once_released(self, stamping, store):
        """on_kill: pause: the run waits on the switch; after unkill a worker finishes it."""
        run = stamping(on_kill="pause")
        proc = run.spawn(hold=True)
        await_in_flight(proc)
        _kill_from_here(run)
        assert finish(proc) == 0

        record = store.get_run(run.run_id)
        assert (record.status, record.outcome) == ("waiting", "pending")
        assert "kill switch" in (record.reason or "")
        assert "bad deploy" in (record.reason or "")
        assert not record.runnable
        suspended = _events(store, run.run_id, "run.suspended")[-1]
        assert suspended["waiting_on"] == [f"kill_switch:{STAMP_SCOPE}"]
        # Nothing lost: the call in flight is on record; the paused one was not even proposed.
        stop = _stopped_at(store, run)
        assert 3 <= stop < ITEMS
        assert [p["step"] for p in _events(store, run.run_id, "tool.proposed")] == list(
            range(1, stop)
        )

        _kill_from_here(run, release=True)
        assert store.get_run(run.run_id).runnable
        assert finish(run.spawn(hold=False)) == 0
        record = store.get_run(run.run_id)
        assert (record.status, record.outcome) == ("completed", "resolved")
        assert run.effects() == run.keys(*range(1, ITEMS + 1))
        assert _verified(store, run.run_id)


class TestKillAtTheNextCall:
    def test_a_switch_engaged_on_another_node_refuses_the_very_next_call(
        self, plane, store, database_url, make_contract, toolset
    ):
        """Once `engage` returned on node B, node A's next gate call is refused: the switch
        reaches every node at its next gate check (README, `charter kill --help`), with no
        window in which a node still trusts what it had cached. Eight runs, one switch each."""
        agent = Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))
        outcomes: list[tuple[str, str, str]] = []
        with closing(open_store(database_url, seal_key=store.seal_key, keys=store.keys)) as other:
            for tenant in ("acme", "globex"):
                token = create_agent_identity(
                    store, agent="test-agent", workflow="testing", tenant_id=tenant
                ).token
                for tool in ("record_write", "flaky", "bad_output", "broken"):

                    def fn(ctx: Context, task: Any, tenant: str = tenant, tool: str = tool) -> str:
                        ctx.tool("read_notes", {"item": "n"})  # node A's view is fresh here
                        other.engage_kill_switch(_switch(tenant_id=tenant, tool=tool))
                        return ctx.tool(tool, {"item": "x"}).kind

                    workflow = Workflow(agent=agent, fn=fn)
                    run_id = plane.start(workflow, credential=token, tenant_id=tenant, task=None)
                    outcomes.append((tenant, tool, plane.resume(run_id, workflow).outcome))
        assert outcomes == [(t, x, "killed") for t, x, _ in outcomes]
        assert toolset.effects == []


# --- kill switches in this process --------------------------------------------------------------
def _counting(turns: list[ScriptedTurn], calls: list[int], name: str = "default") -> ScriptedModel:
    """A scripted model that counts its calls in `calls`."""

    def script(messages: list[Message]) -> ScriptedTurn:
        calls.append(1)
        return turns[sum(m.role == "assistant" for m in messages)]

    return ScriptedModel(script, name=name)


class TestPause:
    def test_a_pause_at_a_model_step_calls_no_model_and_resumes_after_unkill(
        self, plane, store, cred, make_contract, toolset
    ):
        """on_kill: pause before the first model step: nothing is asked; unkill lets it finish."""
        calls: list[int] = []
        model = _counting([call("record_write"), ScriptedTurn.say("done")], calls)
        agent = Agent.load(make_contract(on_kill="pause"), tools=toolset.tools, model=model)
        store.engage_kill_switch(_switch(workflow="testing"))
        key = "agent=*,workflow=testing,tenant_id=*,tool=*"

        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="t")
        assert (result.status, result.waiting_on) == ("waiting", [f"kill_switch:{key}"])
        assert calls == []
        workflow = Workflow(agent=agent, fn=agent_loop)
        assert Worker(plane, [workflow]).run(until_idle=True).resumed == 0

        assert store.release_kill_switch(key, by="sre", reason="ok")
        assert Worker(plane, [workflow]).run(until_idle=True).completed == 1
        assert store.get_run(result.run_id).status == "completed"
        assert toolset.effects == [("record_write", idempotency_key(result.run_id, 2))]

    @pytest.mark.parametrize(
        ("on_kill", "status", "outcome"),
        [("stop", "cancelled", "killed"), ("pause", "waiting", "pending")],
    )
    def test_a_switch_reaches_a_run_at_its_next_timer(
        self, plane, store, cred, make_contract, toolset, on_kill, status, outcome
    ):
        """A workflow-wide switch engaged while a run sleeps between calls stops (or pauses)
        it at its next timer, before the timer is even recorded; no later call is made."""

        def sleepy(ctx: Context, _task: object) -> str:
            ctx.tool("record_write", {"item": "a"})
            store.engage_kill_switch(_switch(workflow="testing"))
            ctx.sleep(60)
            ctx.tool("record_write", {"item": "b"})
            return "done"

        agent = Agent.load(
            make_contract(on_kill=on_kill), tools=toolset.tools, model=ScriptedModel([])
        )
        workflow = Workflow(agent=agent, fn=sleepy)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="t")
        Worker(plane, [workflow]).run(until_idle=True)
        record = store.get_run(run_id)
        assert (record.status, record.outcome) == (status, outcome)
        assert _events(store, run_id, "timer.started") == []
        assert len(toolset.effects) == 1
        assert _verified(store, run_id)

    def test_releasing_another_switch_does_not_wake_the_run(
        self, plane, store, cred, make_contract, toolset
    ):
        """A run paused by one switch stays paused when a different switch is released."""
        agent = Agent.load(
            make_contract(on_kill="pause"), tools=toolset.tools, model=ScriptedModel([])
        )
        store.engage_kill_switch(_switch(workflow="testing"))
        store.engage_kill_switch(_switch(tool="purge"))
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="t")
        assert result.status == "waiting"
        assert store.release_kill_switch("agent=*,workflow=*,tenant_id=*,tool=purge")
        assert not store.get_run(result.run_id).runnable

    def test_a_tool_scoped_switch_pauses_at_that_tool(
        self, plane, store, cred, make_contract, toolset
    ):
        """A switch on one tool lets the model and other tools run, and pauses at that tool."""
        turns = [call("read_notes"), call("record_write"), ScriptedTurn.say("done")]
        agent = Agent.load(
            make_contract(on_kill="pause"), tools=toolset.tools, model=ScriptedModel(turns)
        )
        store.engage_kill_switch(_switch(tool="record_write"))
        result = plane.run(agent, credential=cred.token, tenant_id="acme", task="t")
        key = "agent=*,workflow=*,tenant_id=*,tool=record_write"
        assert (result.status, result.waiting_on) == ("waiting", [f"kill_switch:{key}"])
        assert [d.tool for d in result.decisions] == ["read_notes"]
        assert toolset.effects == []

    def test_an_approved_step_judged_while_killed_pauses_under_on_kill_pause(
        self, plane, store, cred, make_contract, toolset, clock
    ):
        """on_kill: pause also covers a held step approved during the incident: it pauses,
        and runs once after unkill, rather than ending the run killed."""
        turns = [call("record_write", amount=75), ScriptedTurn.say("done")]
        agent = Agent.load(
            make_contract(on_kill="pause"), tools=toolset.tools, model=ScriptedModel(turns)
        )
        held = plane.run(agent, credential=cred.token, tenant_id="acme", task="t")
        (request,) = held.waiting_on
        store.engage_kill_switch(_switch(workflow="testing"))
        approver = create_human(store, name="ann", roles=["approver"])
        store.decide_approval(
            request, approver=approver.identity, decision="approve", reason="ok", now=clock()
        )
        workflow = Workflow(agent=agent, fn=agent_loop)

        paused = plane.resume(held.run_id, workflow)
        assert (paused.status, paused.outcome) == ("waiting", "pending")
        assert toolset.effects == []
        store.release_kill_switch("agent=*,workflow=testing,tenant_id=*,tool=*")
        done = plane.resume(held.run_id, workflow)
        assert (done.status, done.outcome) == ("completed", "resolved")
        assert toolset.effects == [("record_write", idempotency_key(held.run_id, 2))]


# --- environments -------------------------------------------------------------------------------
ENVIRONMENTS = {
    "dev": {
        "budget": {"per_run_usd": 0.005},
        "rate_limits": [{"tool": "record_write", "rate": "1/h", "burst": 1}],
        "retention": "short",
    },
    "prod": {"budget": {"per_run_usd": 5.0}, "retention": "long"},
}


def _one_call(make_contract, toolset, *, load_as: str | None = None, **top: Any) -> Agent:
    """An agent making one record_write, its contract `CONTRACT` with `top`, loaded for
    environment `load_as` (if given)."""
    model = ScriptedModel([call("record_write"), ScriptedTurn.say("done")])
    return Agent.load(make_contract(**top), tools=toolset.tools, model=model, environment=load_as)


def _cred(store, environment: str):
    return create_agent_identity(
        store, agent="test-agent", workflow="testing", tenant_id="acme", environment=environment
    )


class TestEnvironments:
    def test_a_dev_credential_is_denied_on_a_prod_contract(
        self, plane, store, make_contract, toolset
    ):
        """A dev identity acting for a prod contract is denied at principal, saying why."""
        agent = _one_call(make_contract, toolset, environment="prod")
        result = plane.run(agent, credential=_cred(store, "dev").token, tenant_id="acme", task="t")
        (decision,) = result.decisions
        assert isinstance(decision, Denied)
        assert decision.check == "principal"
        assert "dev credential" in decision.reason
        assert "prod" in decision.reason
        assert toolset.effects == []

    def test_a_prod_credential_acts_on_a_prod_contract(self, plane, store, make_contract, toolset):
        """The prod identity is allowed, and the run records environment prod."""
        agent = _one_call(make_contract, toolset, environment="prod")
        result = plane.run(agent, credential=_cred(store, "prod").token, tenant_id="acme", task="t")
        assert [d.kind for d in result.decisions] == ["allowed"]
        (started,) = _events(store, result.run_id, "run.started")
        assert started["environment"] == "prod"

    def test_a_prod_credential_is_denied_on_a_dev_contract(
        self, plane, store, make_contract, toolset
    ):
        """Credentials are per environment both ways: prod's key does not act in dev."""
        agent = _one_call(make_contract, toolset)
        result = plane.run(agent, credential=_cred(store, "prod").token, tenant_id="acme", task="t")
        (decision,) = result.decisions
        assert (decision.kind, decision.check) == ("denied", "principal")

    @pytest.mark.parametrize(("env", "kind"), [("dev", "denied"), ("prod", "allowed")])
    def test_loading_for_prod_makes_the_gate_want_prod_credentials(
        self, plane, store, make_contract, toolset, env, kind
    ):
        """A dev contract loaded with environment='prod' acts as prod: only prod keys act."""
        agent = _one_call(make_contract, toolset, load_as="prod")
        assert agent.contract.environment.value == "prod"
        result = plane.run(agent, credential=_cred(store, env).token, tenant_id="acme", task="t")
        assert [d.kind for d in result.decisions] == [kind]

    def test_for_environment_applies_that_sections_limits(self, make_contract, toolset):
        """for_environment('dev') puts dev's budget and rate limits in force; staging, having
        no section, keeps the contract's own."""
        agent = _one_call(make_contract, toolset, environments=ENVIRONMENTS)
        dev = agent.contract.for_environment("dev")
        assert dev.environment.value == "dev"
        assert dev.budget.per_run_usd == 0.005
        assert [(r.tool, r.rate, r.burst) for r in dev.rate_limits] == [("record_write", "1/h", 1)]
        assert dev.retention_class == "short"
        staging = agent.contract.for_environment("staging")
        assert (staging.budget.per_run_usd, staging.rate_limits) == (1.0, [])
        assert staging.retention_class == "standard"
        prod = agent.contract.for_environment("prod")
        assert (prod.budget.per_run_usd, prod.retention_class) == (5.0, "long")

    def test_the_dev_budget_is_enforced_in_dev(self, plane, store, make_contract, toolset):
        """Loaded for dev, a call costing more than dev's run budget is denied at budget."""
        agent = _one_call(make_contract, toolset, load_as="dev", environments=ENVIRONMENTS)
        result = plane.run(agent, credential=_cred(store, "dev").token, tenant_id="acme", task="t")
        assert [(d.kind, getattr(d, "check", None)) for d in result.decisions] == [
            ("denied", "budget")
        ]

    def test_the_dev_rate_limit_is_enforced_in_dev(self, plane, store, make_contract, toolset):
        """Loaded for dev, dev's 1/h limit lets one write through and denies the next."""
        turns = [call("record_write"), call("record_write"), ScriptedTurn.say("done")]
        agent = Agent.load(
            make_contract(environments={"dev": ENVIRONMENTS["dev"] | {"budget": None}}),
            tools=toolset.tools,
            model=ScriptedModel(turns),
            environment="dev",
        )
        result = plane.run(agent, credential=_cred(store, "dev").token, tenant_id="acme", task="t")
        assert [(d.kind, getattr(d, "check", None)) for d in result.decisions] == [
            ("allowed", None),
            ("denied", "rate_limit"),
        ]

    def test_the_contracts_own_environment_section_is_in_force(
        self, plane, store, make_contract, toolset
    ):
        """A prod contract loaded as is runs under its prod section (as `charter assess`
        judges it): a tighter prod budget denies the call."""
        sections = {"prod": {"budget": {"per_run_usd": 0.005}}}
        agent = _one_call(make_contract, toolset, environment="prod", environments=sections)
        assert agent.contract.budget.per_run_usd == 0.005
        result = plane.run(agent, credential=_cred(store, "prod").token, tenant_id="acme", task="t")
        assert [(d.kind, getattr(d, "check", None)) for d in result.decisions] == [
            ("denied", "budget")
        ]

    def test_an_unknown_environment_is_a_contract_error(self, make_contract, toolset):
        """for_environment and Agent.load refuse an environment Charter does not know."""
        agent = _one_call(make_contract, toolset)
        with pytest.raises(ContractError, match="unknown environment 'moon'"):
            agent.contract.for_environment("moon")
        with pytest.raises(ContractError, match="moon"):
            _one_call(make_contract, toolset, load_as="moon")

    def test_a_section_for_an_unknown_environment_does_not_load(self, make_contract, toolset):
        """`environments: {moon: ...}` is a contract error naming the key."""
        with pytest.raises(ContractError, match="environments"):
            _one_call(make_contract, toolset, environments={"moon": {"retention": "short"}})


AGENT_ID = ("--agent", "test-agent", "--workflow", "testing", "--tenant", "acme")


WHY = ("--reason", "a new agent")


class TestIdentityEnvCli:
    def test_identity_create_records_the_environment(self, home):
        """`identity create --env prod` issues a prod credential; `identity list` shows it."""
        created = as_json(
            invoke(
                home, "identity", "create", *AGENT_ID, "--env", "prod", *WHY, "--json", who="ada"
            )
        )
        assert created["identity"]["environment"] == "prod"
        listed = as_json(invoke(home, "identity", "list", "--json"))
        envs = {i["id"]: i["environment"] for i in listed}
        assert envs[created["identity"]["id"]] == "prod"

    def test_the_default_environment_is_dev(self, home):
        """Without --env an agent credential is for dev."""
        created = as_json(invoke(home, "identity", "create", *AGENT_ID, *WHY, "--json", who="ada"))
        assert created["identity"]["environment"] == "dev"

    def test_an_unknown_environment_is_refused(self, home, store):
        """`--env moon` is a usage error; no identity is created."""
        before = store.list_identities()
        result = invoke(home, "identity", "create", *AGENT_ID, "--env", "moon", *WHY, who="ada")
        assert result.exit_code == 2
        assert store.list_identities() == before


# --- the verifier -------------------------------------------------------------------------------
JUDGE = "scripted:judge"
VERIFIER = {"tools": ["record_write", "launch"], "model": JUDGE, "tier": "risk"}
VERIFY_PRICE = 2000.0
"""USD per million completion tokens of the verifier: a verdict of ~40 characters costs ~$0.02."""


def _judge(answer: str | Exception, seen: list[list[Message]] | None = None) -> ScriptedModel:
    """A verifier answering `answer` (or raising it), keeping what it was asked in `seen`."""

    def script(messages: list[Message]) -> ScriptedTurn:
        if seen is not None:
            seen.append(list(messages))
        if isinstance(answer, Exception):
            raise answer
        return ScriptedTurn.say(answer)

    return ScriptedModel(script, name="judge", usd_per_mtok_out=VERIFY_PRICE)


def _verdict(verdict: str, *reasons: str) -> str:
    return json.dumps({"verdict": verdict, "reasons": list(reasons)})


@pytest.fixture
def verified(make_contract, contract_data, toolset) -> Callable[..., Agent]:
    """An agent playing `turns` then 'done', whose contract has a verifier answering `answer`."""

    def build(*turns: ScriptedTurn, answer: str | Exception, **top: Any) -> Agent:
        data = contract_data
        data["approval_tiers"]["risk"] = {"approvers": 2, "expires_after": "1h"}
        data["verifier"] = VERIFIER
        return Agent.load(
            make_contract(data, **top),
            tools=toolset.tools,
            model=ScriptedModel([*turns, ScriptedTurn.say("done")]),
            verifier=_judge(answer),
        )

    return build


def _run(plane, cred, agent: Agent) -> RunResult:
    result = plane.run(agent, credential=cred.token, tenant_id="acme", task="refund the order")
    assert _verified(plane.store, result.run_id)
    return result


def _verifier_check(store, run_id: str) -> dict[str, Any]:
    (decided,) = _events(store, run_id, "gate.decided")
    (check,) = [c for c in decided["checks"] if c["check"] == "verifier"]
    return check


class TestVerifier:
    def test_reject_denies_at_verifier_with_the_reasons(
        self, plane, cred, verified, toolset, store
    ):
        """A reject verdict denies the call at check verifier, quoting the reasons."""
        agent = verified(call("record_write"), answer=_verdict("reject", "not asked for", "odd"))
        (decision,) = _run(plane, cred, agent).decisions
        assert isinstance(decision, Denied)
        assert (decision.check, decision.source) == ("verifier", f"verifier:{JUDGE}")
        assert decision.reason == "verifier rejected: not asked for; odd"
        assert toolset.effects == []

    def test_escalate_holds_at_the_verifier_tier(self, plane, cred, verified, toolset, store):
        """An escalate verdict holds the call for the contract's verifier tier."""
        agent = verified(call("record_write"), answer=_verdict("escalate", "unsure"))
        result = _run(plane, cred, agent)
        (decision,) = result.decisions
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "risk"
        assert "verifier escalated: unsure" in decision.reason
        (approval,) = store.list_approvals()
        assert (approval.tier, approval.run_id) == ("risk", result.run_id)
        assert toolset.effects == []

    def test_an_escalated_call_runs_once_its_tier_approves(
        self, plane, cred, verified, toolset, store, clock
    ):
        """Escalated to tier risk (two approvers): once both approve, the call runs, once."""
        agent = verified(call("record_write"), answer=_verdict("escalate", "unsure"))
        held = _run(plane, cred, agent)
        (request,) = held.waiting_on
        for name in ("ann", "ben"):
            person = create_human(store, name=name, roles=["approver"])
            store.decide_approval(
                request, approver=person.identity, decision="approve", reason="ok", now=clock()
            )
        done = plane.resume(held.run_id, Workflow(agent=agent, fn=agent_loop))
        assert (done.status, done.outcome) == ("completed", "resolved")
        assert toolset.effects == [("record_write", idempotency_key(held.run_id, 2))]
        assert _verified(store, held.run_id)

    def test_approve_executes_and_the_verification_is_paid_for(
        self, plane, cred, verified, toolset, store
    ):
        """Approved: the call runs once; the verifier's turn is a model.responded event with
        purpose verify, and its cost is in the run's cost."""
        agent = verified(call("record_write"), answer=_verdict("approve", "as asked"))
        result = _run(plane, cred, agent)
        assert [d.kind for d in result.decisions] == ["allowed"]
        assert toolset.effects == [("record_write", idempotency_key(result.run_id, 2))]
        (verify,) = [
            e for e in _events(store, result.run_id, "model.responded") if e["purpose"] == "verify"
        ]
        assert (verify["model"], verify["step"]) == (JUDGE, 2)
        assert verify["cost_usd"] > 0
        # Its time is inside the step's (the decide span); the event carries none of its own.
        assert (verify["latency_ms"], verify["request_hash"], verify["tool_calls"]) == (0.0, "", [])
        record = store.get_run(result.run_id)
        assert record.cost_usd == pytest.approx(0.01 + verify["cost_usd"])
        assert _verifier_check(store, result.run_id)["outcome"] == "pass"

    def test_a_rejection_is_paid_for_too(self, plane, cred, verified, store):
        """A rejected call's verification is recorded, and costs the run."""
        agent = verified(call("record_write"), answer=_verdict("reject", "no"))
        result = _run(plane, cred, agent)
        (verify,) = [
            e for e in _events(store, result.run_id, "model.responded") if e["purpose"] == "verify"
        ]
        assert store.get_run(result.run_id).cost_usd == pytest.approx(verify["cost_usd"])

    def test_the_verifier_sees_the_task_and_the_proposal(
        self, plane, cred, make_contract, contract_data, toolset
    ):
        """The verifier is asked about the run's task and the proposed call, redacted."""
        seen: list[list[Message]] = []
        data = contract_data
        data["approval_tiers"]["risk"] = {"approvers": 2, "expires_after": "1h"}
        data["verifier"] = VERIFIER
        agent = Agent.load(
            make_contract(data),
            tools=toolset.tools,
            model=ScriptedModel(
                [call("record_write", item="mail alice@example.com"), ScriptedTurn.say("done")]
            ),
            verifier=_judge(_verdict("approve"), seen),
        )
        _run(plane, cred, agent)
        ((system, user),) = seen
        assert system.role == "system"
        assert "independent verifier" in system.content
        shown = json.loads(user.content)
        assert (shown["task"], shown["tool"], shown["tenant"]) == (
            "refund the order",
            "record_write",
            "acme",
        )
        assert shown["arguments"] == {"item": "mail [email]"}
        assert "alice@example.com" not in user.content
        # Canonical (keys sorted): the same proposal is the same question, on resume as well.
        assert user.content == json.dumps(shown, sort_keys=True)

    def test_other_tools_are_not_verified(self, plane, cred, verified, store):
        """A tool outside verifier.tools passes without asking the verifier."""
        agent = verified(call("read_notes"), answer=_verdict("reject", "never"))
        result = _run(plane, cred, agent)
        assert [d.kind for d in result.decisions] == ["allowed"]
        assert [e["purpose"] for e in _events(store, result.run_id, "model.responded")] == [
            "act",
            "act",
        ]

    @pytest.mark.parametrize(
        ("turn", "top"),
        [
            pytest.param(call("record_write"), {"autonomy": "suggest"}, id="suggest-autonomy"),
            pytest.param(call("launch"), {}, id="irreversible"),
            pytest.param(call("record_write", amount=75), {}, id="policy-hold"),
        ],
    )
    def test_approve_never_releases_a_hold(self, plane, cred, verified, toolset, store, turn, top):
        """The verifier approving a call that autonomy, the effect or policy holds: still held."""
        agent = verified(turn, answer=_verdict("approve", "fine"), **top)
        result = _run(plane, cred, agent)
        (decision,) = result.decisions
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "ops"
        assert _verifier_check(store, result.run_id)["outcome"] == "pass"
        assert toolset.effects == []

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(RuntimeError("verifier crashed"), id="raises"),
            pytest.param(ModelError("provider down"), id="model-error"),
            pytest.param("looks fine to me", id="prose"),
            pytest.param('{"verdict": "maybe"}', id="unknown-verdict"),
            pytest.param("{not json}", id="broken-json"),
        ],
    )
    def test_a_failing_verifier_holds_the_call(self, plane, cred, verified, toolset, answer):
        """A verifier that raises or answers nothing readable holds the call for a person."""
        (decision,) = _run(plane, cred, verified(call("record_write"), answer=answer)).decisions
        assert isinstance(decision, NeedsApproval)
        assert decision.tier == "risk"
        assert toolset.effects == []

    def test_a_resumed_run_still_counts_its_verification_spend(
        self, plane, cred, make_contract, contract_data, toolset, clock, store
    ):
        """After a resume, the verifier's spend still counts against the run budget: the
        second write would pass $0.035 (0.01 + the verification ~0.02 + 0.01) and is denied."""
        data = contract_data
        data["approval_tiers"]["risk"] = {"approvers": 2, "expires_after": "1h"}
        data["verifier"] = VERIFIER
        data["budget"] = {"per_run_usd": 0.035}
        agent = Agent.load(
            make_contract(data),
            tools=toolset.tools,
            model=ScriptedModel([]),
            verifier=_judge(_verdict("approve", "ok")),
        )

        def write_sleep_write(ctx: Context, task: Any) -> Finish:
            ctx.tool("record_write", {"item": "first"})
            ctx.sleep(60)
            second = ctx.tool("record_write", {"item": "second"})
            return Finish(reason=second.kind)

        workflow = Workflow(agent=agent, fn=write_sleep_write)
        run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="t")
        assert plane.resume(run_id, workflow).status == "waiting"
        first_cost = store.get_run(run_id).cost_usd
        assert first_cost > 0.025  # the write and its verification
        clock.advance(seconds=61)
        done = plane.resume(run_id, workflow)
        assert (done.status, done.outcome) == ("failed", "budget_exceeded")
        assert [tool for tool, _ in toolset.effects] == ["record_write"]

    def test_load_refuses_the_acting_model_as_verifier(self, make_contract, contract_data, toolset):
        """A verifier named as the acting model is refused: no model judges itself."""
        data = contract_data
        data["approval_tiers"]["risk"] = {"approvers": 2}
        data["verifier"] = VERIFIER | {"model": "scripted:default"}
        with pytest.raises(ContractError, match="another model than the acting one"):
            Agent.load(
                make_contract(data),
                tools=toolset.tools,
                model=ScriptedModel([]),
                verifier=ScriptedModel([], name="default"),
            )

    @pytest.mark.parametrize(
        "verifier",
        [
            pytest.param(ScriptedModel([], name="other"), id="misnamed"),
            pytest.param(None, id="missing"),
        ],
    )
    def test_load_refuses_a_verifier_other_than_the_contracts(
        self, make_contract, contract_data, toolset, verifier
    ):
        """The verifier supplied must be the one verifier.model names."""
        data = contract_data
        data["approval_tiers"]["risk"] = {"approvers": 2}
        data["verifier"] = VERIFIER
        with pytest.raises(ContractError, match=r"verifier\.model is 'scripted:judge'"):
            Agent.load(
                make_contract(data),
                tools=toolset.tools,
                model=ScriptedModel([]),
                verifier=verifier,
            )


# --- routing ------------------------------------------------------------------------------------
SMALL = "scripted:small"
BIG = "scripted:default"


@dataclass
class Models:
    """The acting (big) and small models, each answering by a function and counting calls."""

    big_confidence: float | None = None
    small_confidence: float | None = None
    big_calls: int = 0
    small_calls: int = 0

    def big(self) -> ScriptedModel:
        def script(messages: list[Message]) -> ScriptedTurn:
            self.big_calls += 1
            return ScriptedTurn(text="big answer", confidence=self.big_confidence)

        return ScriptedModel(script, name="default", usd_per_mtok_out=100.0)

    def small(self) -> ScriptedModel:
        def script(messages: list[Message]) -> ScriptedTurn:
            self.small_calls += 1
            return ScriptedTurn(text="small answer", confidence=self.small_confidence)

        return ScriptedModel(script, name="small", usd_per_mtok_out=1.0)


@pytest.fixture
def models() -> Models:
    return Models()


@pytest.fixture
def routed(make_contract, toolset, models) -> Callable[..., Agent]:
    """An agent whose contract routes by `small_for` (and `escalate_below`, if given)."""

    def build(*rules: dict[str, str], escalate_below: float | None = None) -> Agent:
        routing: dict[str, Any] = {"small_model": SMALL, "small_for": list(rules)}
        if escalate_below is not None:
            routing["escalate_below"] = escalate_below
        return Agent.load(
            make_contract(routing=routing),
            tools=toolset.tools,
            model=models.big(),
            small_model=models.small(),
        )

    return build


def _ask(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def _model_steps(store, run_id: str) -> list[tuple[int, str, str | None]]:
    return [(e["step"], e["model"], e["route"]) for e in _events(store, run_id, "model.responded")]


def _go(plane, cred, agent: Agent, fn: Callable[[Context, Any], Any]) -> tuple[str, Workflow]:
    workflow = Workflow(agent=agent, fn=fn)
    run_id = plane.start(workflow, credential=cred.token, tenant_id="acme", task="t")
    plane.resume(run_id, workflow)
    return run_id, workflow


class TestRouting:
    def test_a_labelled_step_goes_to_the_small_model(self, plane, cred, routed, store):
        """`ctx.model(..., label="triage")` is answered by the small model under small_for[0];
        an unlabelled step by the agent's model."""

        def fn(ctx: Context, task: Any) -> str:
            first = ctx.model(_ask("classify"), label="triage")
            second = ctx.model(_ask("answer"))
            return f"{first.text} / {second.text}"

        run_id, _ = _go(plane, cred, routed({"step": "triage"}), fn)
        assert _model_steps(store, run_id) == [(1, SMALL, "small_for[0]"), (2, BIG, None)]
        assert store.get_run(run_id).reason == "small answer / big answer"

    def test_an_after_tool_rule_routes_the_step_reading_that_tool(self, plane, cred, routed, store):
        """The model step right after read_notes goes small; after record_write, or after
        another model step, it does not."""

        def fn(ctx: Context, task: Any) -> None:
            ctx.tool("read_notes", {"item": "n"})
            ctx.model(_ask("summarise the notes"))
            ctx.model(_ask("and then?"))
            ctx.tool("record_write", {"item": "w"})
            ctx.model(_ask("done?"))

        agent = routed({"step": "triage"}, {"after_tool": "read_notes"})
        run_id, _ = _go(plane, cred, agent, fn)
        assert _model_steps(store, run_id) == [
            (2, SMALL, "small_for[1]"),
            (3, BIG, None),
            (5, BIG, None),
        ]

    def test_a_low_confidence_small_answer_is_asked_again_of_the_big_model(
        self, plane, cred, routed, models, store
    ):
        """Below escalate_below, the small answer is followed by a step asking the agent's
        model the same conversation; the workflow gets the big answer."""
        models.small_confidence = 0.2

        def fn(ctx: Context, task: Any) -> str:
            return ctx.model(_ask("classify"), label="triage").text

        run_id, _ = _go(plane, cred, routed({"step": "triage"}, escalate_below=0.5), fn)
        assert _model_steps(store, run_id) == [(1, SMALL, "small_for[0]"), (2, BIG, None)]
        hashes = {e["request_hash"] for e in _events(store, run_id, "model.responded")}
        assert len(hashes) == 1
        assert store.get_run(run_id).reason == "big answer"
        assert (models.small_calls, models.big_calls) == (1, 1)

    def test_a_confident_small_answer_stands(self, plane, cred, routed, models, store):
        """At or above escalate_below the small answer is used; the big model is not asked."""
        models.small_confidence = 0.5

        def fn(ctx: Context, task: Any) -> str:
            return ctx.model(_ask("classify"), label="triage").text

        run_id, _ = _go(plane, cred, routed({"step": "triage"}, escalate_below=0.5), fn)
        assert _model_steps(store, run_id) == [(1, SMALL, "small_for[0]")]
        assert models.big_calls == 0

    def test_a_low_confidence_big_answer_is_not_escalated(self, plane, cred, routed, models, store):
        """Only routed (small) answers escalate: the agent's own model is not asked twice."""
        models.big_confidence = 0.1

        def fn(ctx: Context, task: Any) -> str:
            return ctx.model(_ask("answer")).text

        run_id, _ = _go(plane, cred, routed({"step": "triage"}, escalate_below=0.5), fn)
        assert _model_steps(store, run_id) == [(1, BIG, None)]

    def test_an_escalated_run_replays_step_for_step(self, plane, cred, routed, models, store):
        """replay_run of a run with an escalation matches every step and calls no model."""
        models.small_confidence = 0.2

        def fn(ctx: Context, task: Any) -> str:
            first = ctx.model(_ask("classify"), label="triage")
            ctx.tool("read_notes", {"item": first.text})
            return ctx.model(_ask("answer")).text

        run_id, workflow = _go(plane, cred, routed({"step": "triage"}, escalate_below=0.5), fn)
        calls = (models.small_calls, models.big_calls)
        report = replay_run(store, run_id, [workflow])
        assert report.ok, report.lines()
        assert [(s.step, s.kind, s.verdict) for s in report.steps] == [
            (1, "model", "match"),
            (2, "model", "match"),
            (3, "tool", "match"),
            (4, "model", "match"),
        ]
        assert (models.small_calls, models.big_calls) == calls

    def test_an_escalated_run_resumes_without_asking_again(
        self, plane, cred, routed, models, store, clock
    ):
        """Resumed after a timer, the routed and re-asked steps come from the log."""
        models.small_confidence = 0.2

        def fn(ctx: Context, task: Any) -> str:
            first = ctx.model(_ask("classify"), label="triage")
            ctx.sleep(60)
            return f"{first.text} then {ctx.model(_ask('answer')).text}"

        run_id, workflow = _go(plane, cred, routed({"step": "triage"}, escalate_below=0.5), fn)
        assert store.get_run(run_id).status == "waiting"
        clock.advance(seconds=61)
        done = plane.resume(run_id, workflow)
        assert (done.status, done.reason) == ("completed", "big answer then big answer")
        assert (models.small_calls, models.big_calls) == (1, 2)
        assert _model_steps(store, run_id) == [
            (1, SMALL, "small_for[0]"),
            (2, BIG, None),
            (4, BIG, None),
        ]
        assert _verified(store, run_id)

    @pytest.mark.parametrize(
        "small",
        [
            pytest.param(ScriptedModel([], name="tiny"), id="misnamed"),
            pytest.param(None, id="missing"),
        ],
    )
    def test_load_refuses_a_small_model_other_than_the_contracts(
        self, make_contract, toolset, small
    ):
        """The small model supplied must be named as routing.small_model says."""
        routing = {"small_model": SMALL, "small_for": [{"step": "triage"}]}
        with pytest.raises(ContractError, match=r"routing\.small_model is 'scripted:small'"):
            Agent.load(
                make_contract(routing=routing),
                tools=toolset.tools,
                model=ScriptedModel([]),
                small_model=small,
            )


def test_a_kill_switch_engaged_mid_run_stops_the_next_call_before_the_verifier_is_paid(
    plane, cred, make_contract, contract_data, toolset, store
):
    """Every call reads the control version first: a switch engaged between two calls denies
    the second at kill_switch, and the verifier is asked about the first only."""
    seen: list[list[Message]] = []
    data = contract_data
    data["approval_tiers"]["risk"] = {"approvers": 2, "expires_after": "1h"}
    data["verifier"] = VERIFIER
    turns = iter([call("record_write", item="one"), call("record_write", item="two")])

    def script(messages: list[Message]) -> ScriptedTurn:
        if len(seen) == 1 and not store.kill_switches():
            store.engage_kill_switch(_switch(tool="record_write"))
        return next(turns, ScriptedTurn.say("done"))

    agent = Agent.load(
        make_contract(data),
        tools=toolset.tools,
        model=ScriptedModel(script),
        verifier=_judge(_verdict("approve"), seen),
    )
    result = _run(plane, cred, agent)
    assert len(seen) == 1
    assert toolset.effects == [("record_write", idempotency_key(result.run_id, 2))]
    decided = _events(store, result.run_id, "gate.decided")
    assert [d["decision"] for d in decided][-1] == "denied"
    assert decided[-1]["checks"][-1]["check"] == "kill_switch"


def test_what_the_verifier_costs_counts_against_the_run_budget(plane, cred, verified, toolset):
    """Two $0.01 writes under a $0.035 budget: the first one's verdict ($0.018) leaves too
    little for the second, which is denied at budget."""
    agent = verified(
        call("record_write", item="one"),
        call("record_write", item="two"),
        answer=_verdict("approve"),
        budget={"per_run_usd": 0.035},
    )
    result = _run(plane, cred, agent)
    decisions = [(d.kind, getattr(d, "check", None)) for d in result.decisions]
    assert decisions == [("allowed", None), ("denied", "budget")]
    assert len(toolset.effects) == 1
