"""The chaos scenario: workers killed with SIGKILL at random, then the ledgers and chains checked.

Two halves, one copy, shared by `tests/test_chaos.py` and `bench/chaos.py`:

* the app `charter worker --app chaos_app:workflows` runs (with this folder on PYTHONPATH):
  `workflows(config)` gives one deterministic workflow, `dispute`, that looks up a charge,
  refunds part of it and replies on the ticket, with the billing example's contract, Cedar
  policies and tools over the sandboxes in `<home>/sandbox`. With `CHARTER_CHAOS_KILL_P` set,
  `refund` and `send_macro` kill their own process with that probability *after* the sandbox
  made the effect and *before* the gate records the result: the worst moment to die. Each such
  kill leaves a line in `<home>/chaos-kills.jsonl` first, so the checks know where it struck.
* `Scenario` is the driver: it seeds the sandboxes, starts the runs, runs workers in
  subprocesses (several at once on one store: a SQLite file or PostgreSQL), kills them from
  outside at random moments, restarts them until every run is final, and reads back the
  evidence (`Report`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter import Agent, Client, ControlPlane
from charter._config import Config
from charter._decision import Allowed
from charter._identity import create_agent_identity
from charter.engine import Finish, Workflow
from charter.examples import BILLING, payments_tools, support_tools
from charter.models import ScriptedModel
from charter.policy import CedarPolicy
from charter.sandbox import PaymentsSandbox, SupportSandbox

if TYPE_CHECKING:
    from charter._tools import Tool, ToolContext
    from charter.engine import Context
    from charter.store import Store, StoredEvent

KILL_P_ENV = "CHARTER_CHAOS_KILL_P"
"""Probability that `refund` or `send_macro` kills its worker between effect and record."""
SEED_ENV = "CHARTER_CHAOS_SEED"
"""Seeds a worker's kill decisions (the driver gives each worker its own)."""
KILLS_FILE = "chaos-kills.jsonl"
"""Under the home folder: one JSON line per kill a tool made, written before it dies."""
TENANTS = ("acme", "globex")
CHARGE_MINOR = 4000
"""Each run's charge. Refunds are at most half of it, so a duplicate would succeed and show."""
HERE = Path(__file__).resolve().parent


# --- the app ------------------------------------------------------------------------------------
def dispute(ctx: Context, task: dict[str, Any]) -> Finish:
    """Look up the charge, refund part of it, reply on the ticket; fail on anything but allow."""
    decisions = [
        ctx.tool("lookup_charge", {"charge_id": task["charge_id"]}),
        ctx.tool(
            "refund",
            {
                "charge_id": task["charge_id"],
                "amount_minor": task["amount_minor"],
                "reason": "chaos dispute",
            },
        ),
        ctx.tool("send_macro", {"ticket_id": task["ticket_id"], "macro_id": "refund_issued"}),
    ]
    for decision in decisions:
        if not isinstance(decision, Allowed):
            return Finish(
                status="failed",
                outcome="failed",
                reason=f"step {decision.step} ({decision.tool}) was {type(decision).__name__}",
                code="chaos_unexpected",
            )
    return Finish(reason="refunded and replied")


def _killing(
    tool: Tool[Any, Any], kill_p: float, rng: random.Random, marks: Path
) -> Tool[Any, Any]:
    """`tool`, dying with SIGKILL (probability `kill_p`) once its effect is made, unrecorded."""
    effect = tool.run

    def run(args: Any, ctx: ToolContext) -> Any:
        output = effect(args, ctx)
        if rng.random() < kill_p:
            mark = {"run_id": ctx.run_id, "step": ctx.step, "key": ctx.idempotency_key}
            with marks.open("a", encoding="utf-8") as out:
                out.write(json.dumps({**mark, "tool": tool.name}) + "\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return output

    return dataclasses.replace(tool, run=run)


def chaos_workflow(config: Config, *, kill_p: float = 0.0, seed: int = 0) -> Workflow:
    """The billing agent (no model: it is never asked) running `dispute`, maybe killing itself."""
    sandbox = config.home / "sandbox"
    tools = [
        *payments_tools(PaymentsSandbox(sandbox / "payments.db")),
        *support_tools(SupportSandbox(sandbox / "support.db")),
    ]
    if kill_p > 0:
        rng = random.Random(seed)  # noqa: S311 - chaos, not cryptography
        marks = config.home / KILLS_FILE
        tools = [
            _killing(t, kill_p, rng, marks) if t.name in ("refund", "send_macro") else t
            for t in tools
        ]
    agent = Agent.load(
        BILLING / "contract.yaml",
        tools=tools,
        model=ScriptedModel([], name="chaos-unused"),
        policy=CedarPolicy.from_files(
            policies=BILLING / "policies.cedar", schema=BILLING / "schema.cedarschema"
        ),
    )
    return Workflow(agent=agent, fn=dispute)


def workflows(config: Config) -> list[Workflow]:
    """The app's workflows; reads the chaos settings (called by the CLI, not at import)."""
    kill_p = float(os.environ.get(KILL_P_ENV) or 0)
    return [chaos_workflow(config, kill_p=kill_p, seed=int(os.environ.get(SEED_ENV) or 0))]


# --- the driver ---------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Report:
    """What a chaos scenario did and what the ledgers and logs show afterwards."""

    seed: int
    runs: int
    rounds: int = 0
    """Rounds of worker processes started."""
    completed: int = 0
    """Runs that ended completed and resolved."""
    external_kills: int = 0
    tool_kills: int = 0
    """Kills between a sandbox effect and its record (the tools' own SIGKILLs)."""
    tool_kills_finished: int = 0
    """Tool kills whose step a later worker finished, with the same idempotency key."""
    resumed_runs: int = 0
    """Runs picked up more than once: a worker died holding them."""
    resumed_after_external_kill: int = 0
    """Runs whose worker was killed from outside while it held them."""
    interrupted_steps: int = 0
    """Steps whose allowed intent was followed by a new resumption before their result."""
    duplicate_refunds: int = 0
    missing_refunds: int = 0
    duplicate_messages: int = 0
    missing_messages: int = 0
    mismatched_results: int = 0
    """Runs whose recorded refund results are not exactly the charge's refunds in the ledger."""
    chains_ok: int = 0
    chains_broken: int = 0
    wall_s: float = 0.0
    """Everything: seeding, starting, working under fire, checking."""
    work_s: float = 0.0
    """The workers' part: from the first spawn until every run is final."""
    problems: list[str] = field(default_factory=list)
    """Details: unfinished runs, odd worker exits, broken chains, unfinished kills."""
    killed_pids: set[int] = field(default_factory=set, repr=False)
    """Workers killed from outside."""

    @property
    def kills(self) -> int:
        """Every SIGKILL a worker received."""
        return self.external_kills + self.tool_kills

    def summary(self) -> str:
        """One line for assertion messages, with the seed that reproduces the kill schedule."""
        hidden = ("problems", "killed_pids")
        shown = {k: v for k, v in dataclasses.asdict(self).items() if k not in hidden}
        head = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{head}; problems: {self.problems[:10]} (rerun with CHAOS_SEED={self.seed})"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """How many runs, how hard to kill, and how many workers share the store."""

    home: Path
    runs: int = 200
    seed: int = 0
    tool_kill_p: float = 0.04
    """Each worker's chance to die between effect and record, per refund or macro."""
    external_kill_p: float = 0.8
    """Each worker's chance to be killed from outside, at a moment drawn from `kill_window`."""
    kill_window: tuple[float, float] = (0.25, 1.0)
    """Seconds after spawn within which an outside kill lands (start-up takes ~0.3 s of it)."""
    workers: int = 3
    """Worker processes at once, on one store."""
    database_url: str | None = None
    """The store every process uses (default: the SQLite file in `home`)."""
    max_rounds: int = 100
    """Gives up (leaving runs unfinished, for the checks to report) after this many rounds."""
    hang_s: float = 120.0
    """A worker still alive this long after spawn, unkilled, counts as hung."""

    def run(self) -> Report:
        """Seed, start the runs, work them under fire until all are final, and check."""
        began = time.perf_counter()
        config = Config.from_env(self._environ(), home=self.home)
        tasks = self._seed(config)
        report = Report(seed=self.seed, runs=self.runs)
        with Client(config) as client:
            working = time.perf_counter()
            self._work(client.store, report)
            report.work_s = round(time.perf_counter() - working, 2)
            _check(client.store, config.home, tasks, report)
        report.wall_s = round(time.perf_counter() - began, 2)
        return report

    def _environ(self) -> dict[str, str]:
        """The Charter settings every process of the scenario shares."""
        return {"CHARTER_DATABASE_URL": self.database_url} if self.database_url else {}

    def _seed(self, config: Config) -> dict[str, dict[str, Any]]:
        """Charges and tickets, one each per run; identities; the runs, started. By run id."""
        sandbox = config.home / "sandbox"
        payments = PaymentsSandbox(sandbox / "payments.db")
        support = SupportSandbox(sandbox / "support.db")
        planned: list[tuple[str, dict[str, Any]]] = []
        for n in range(self.runs):
            tenant = TENANTS[n % len(TENANTS)]
            charge = payments.create_charge(
                tenant_id=tenant,
                customer_id=f"cus_{n}",
                customer_email=f"customer{n}@{tenant}-customer.example",
                amount_minor=CHARGE_MINOR,
                currency="USD",
                charge_id=f"ch_{tenant}_{n:05d}",
            )
            ticket = support.create_ticket(
                tenant_id=tenant,
                requester_email=f"customer{n}@{tenant}-customer.example",
                subject=f"Dispute {n}",
                body=f"Please refund part of {charge.id}.",
                tags=["dispute"],
                idempotency_key=f"seed-ticket-{n}",
            )
            # Varied amounts, all at most half the charge and under the $50 approval line.
            amount = 500 + (n * 37) % (CHARGE_MINOR // 2 - 500)
            task = {"charge_id": charge.id, "amount_minor": amount, "ticket_id": ticket.id}
            planned.append((tenant, task))
        payments.close()
        support.close()
        workflow = chaos_workflow(config)
        contract = workflow.agent.contract
        tasks: dict[str, dict[str, Any]] = {}
        with Client(config) as client:
            tokens = {
                t: create_agent_identity(
                    client.store,
                    agent=contract.agent,
                    workflow=contract.workflow,
                    tenant_id=t,
                    environment=contract.environment.value,
                ).token
                for t in TENANTS
            }
            plane = ControlPlane(client.store)
            try:
                for tenant, task in planned:
                    run_id = plane.start(
                        workflow, credential=tokens[tenant], tenant_id=tenant, task=task
                    )
                    tasks[run_id] = task
            finally:
                plane.close()
        return tasks

    def _work(self, store: Store, report: Report) -> None:
        """Rounds of workers, some killed from outside, until no run is left or rounds run out."""
        rng = random.Random(self.seed)  # noqa: S311 - a reproducible kill schedule
        logs = self.home / "worker-logs"
        logs.mkdir(exist_ok=True)
        while report.rounds < self.max_rounds and _unfinished(store, self.runs):
            report.rounds += 1
            batch: list[tuple[float, float | None, subprocess.Popen[bytes], Path]] = []
            for n in range(self.workers):
                kill_after = rng.uniform(*self.kill_window)
                outside = rng.random() < self.external_kill_p
                stderr = logs / f"round{report.rounds}-{n}.err"
                proc = self._spawn(stderr, seed=rng.getrandbits(32))
                deadline = time.monotonic() + (kill_after if outside else self.hang_s)
                batch.append((deadline, kill_after if outside else None, proc, stderr))
            for deadline, kill_after, proc, stderr in sorted(batch, key=lambda b: b[0]):
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    if kill_after is None:
                        report.problems.append(f"worker {proc.pid} hung for {self.hang_s}s")
                    else:
                        report.external_kills += 1
                        report.killed_pids.add(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    continue
                if proc.returncode not in (0, -signal.SIGKILL):
                    tail = stderr.read_text(errors="replace")[-2000:]
                    report.problems.append(f"worker {proc.pid} exited {proc.returncode}: {tail}")

    def _spawn(self, stderr: Path, *, seed: int) -> subprocess.Popen[bytes]:
        # `python -m charter.cli` would only import the module (it has no __main__ guard).
        command = [
            sys.executable,
            "-c",
            "from charter.cli import main; main()",
            "--home",
            str(self.home),
            "worker",
            "--app",
            "chaos_app:workflows",
            "--until-idle",
            "--lease",
            "30",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
        env.update(self._environ())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
        env[KILL_P_ENV] = str(self.tool_kill_p)
        env[SEED_ENV] = str(seed)
        with stderr.open("wb") as err:
            return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _unfinished(store: Store, runs: int) -> bool:
    return any(not r.final for r in store.list_runs(limit=runs + 1))


def _pid(owner: str) -> int:
    """The process id in a lease owner's name (host/pid/nonce)."""
    return int(owner.split("/")[1])


def _interrupted(events: list[StoredEvent]) -> set[int]:
    """Steps whose allowed intent saw a new resumption before its result: re-executed steps."""
    pending: set[int] = set()
    interrupted: set[int] = set()
    for stored in events:
        payload = stored.payload
        if stored.kind == "gate.decided" and payload["decision"] == "allowed":
            pending.add(payload["step"])
        elif stored.kind == "tool.completed":
            pending.discard(payload["step"])
        elif stored.kind == "run.resumed":
            interrupted |= pending
    return interrupted


def _check(store: Store, home: Path, tasks: dict[str, dict[str, Any]], report: Report) -> None:
    """Compare every run's log with the sandboxes' ledgers and verify every chain."""
    sandbox = home / "sandbox"
    payments = PaymentsSandbox(sandbox / "payments.db")
    support = SupportSandbox(sandbox / "support.db")
    completed: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for run_id, task in tasks.items():
            record = store.get_run(run_id)
            if (record.status, record.outcome) == ("completed", "resolved"):
                report.completed += 1
            else:
                report.problems.append(
                    f"{run_id}: {record.status} {record.outcome} {record.reason}"
                )
            events = store.events(run_id)
            resumed_by = [_pid(e.payload["worker"]) for e in events if e.kind == "run.resumed"]
            report.resumed_runs += len(resumed_by) > 1
            report.resumed_after_external_kill += any(
                pid in report.killed_pids for pid in resumed_by[:-1]
            )
            report.interrupted_steps += len(_interrupted(events))
            results = [e.payload for e in events if e.kind == "tool.completed"]
            completed.update({(run_id, r["step"]): r for r in results})
            refunds = payments.refunds(task["charge_id"])
            report.duplicate_refunds += max(0, len(refunds) - 1)
            report.missing_refunds += not refunds
            recorded = [(r["output"] or {}).get("id") for r in results if r["tool"] == "refund"]
            if [r.id for r in refunds] != recorded:
                report.mismatched_results += 1
            messages = support.message_count(task["ticket_id"])
            report.duplicate_messages += max(0, messages - 1)
            report.missing_messages += messages == 0
    finally:
        payments.close()
        support.close()
    _check_kills(store, home, completed, report)
    for chain in store.verify():
        if chain.ok:
            report.chains_ok += 1
        else:
            report.chains_broken += 1
            report.problems.append(f"{chain.run_id}: chain broken at {chain.broken_at}")


def _check_kills(
    store: Store,
    home: Path,
    completed: dict[tuple[str, int], dict[str, Any]],
    report: Report,
) -> None:
    """Each tool kill's step must have been re-executed and finished with the same key."""
    marks = home / KILLS_FILE
    lines = marks.read_text(encoding="utf-8").splitlines() if marks.exists() else []
    for line in lines:
        mark = json.loads(line)
        report.tool_kills += 1
        run_id, step = mark["run_id"], mark["step"]
        result = completed.get((run_id, step))
        redone = step in _interrupted(store.events(run_id))
        if redone and result is not None and result["idempotency_key"] == mark["key"]:
            report.tool_kills_finished += 1
        else:
            report.problems.append(f"{run_id} step {step}: killed after its effect, not finished")
