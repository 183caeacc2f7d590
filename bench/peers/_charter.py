"""Charter on its embedded SQLite store (WAL, `synchronous=FULL`): the row the peers are
measured against.

Every step is `ctx.tool("record", {"item": ...})` of bench/durable.py's agent: it passes the
whole gate (kill switch, identity, grant, schema, one Cedar decision, budget, verifiers,
approval tier), its intent is durable before the tool runs, and its result rides on the next
append (group commit). Charter has no ungoverned step, so the trivial and the policy workloads
are the same work for it; the report says so.

Concurrency is threads in one process sharing one store, as the peers' rows run: 64 runs
started at once, each resumed on its own thread. Recovery is what a restarted node does: a
`Worker` claims every runnable run (a dead process's lease is reclaimed at once) and resumes
it from its log.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.durable import CONTRACT, ItemIn, Receipt, load_agent, write_agent
from bench.peers._common import TENANT, EffectSink, Measured, first_attempt, kill_here, versions
from charter import Agent, ControlPlane
from charter._identity import create_agent_identity
from charter.engine import Worker, Workflow
from charter.privacy import LocalKeyring
from charter.store import SqlStore, open_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from charter import ToolContext
    from charter.engine import Context

WARMUP_STEPS = 100


@dataclass
class Node:
    """One Charter node: a store (a file in `home`, or `url`), its plane, an agent credential."""

    store: SqlStore
    plane: ControlPlane
    credential: str

    def close(self) -> None:
        self.plane.close()
        self.store.close()


def open_node(home: Path, url: str | None = None) -> Node:
    """Open (or create) the node's store; the seal key and credential persist in `home`.

    `url` names a shared store (PostgreSQL); by default it is `home`'s SQLite file.
    """
    key_file, cred_file = home / "seal.key", home / "credential"
    if not key_file.exists():
        key_file.write_bytes(secrets.token_bytes(32))
    store = open_store(
        url or f"sqlite://{home / 'charter.db'}",
        seal_key=key_file.read_bytes(),
        keys=LocalKeyring(home / "keyring.json"),
    )
    if not cred_file.exists():
        issued = create_agent_identity(
            store, agent=CONTRACT["agent"], workflow=CONTRACT["workflow"], tenant_id=TENANT
        )
        cred_file.write_text(issued.token, encoding="utf-8")
    return Node(store=store, plane=ControlPlane(store), credential=cred_file.read_text("utf-8"))


def agent(home: Path, body: Callable[[ItemIn, ToolContext], None] | None = None) -> Agent:
    """The bench agent, its `record` tool running `body` before it answers."""
    # Written once per home: worker processes load it while others start, and a rewrite
    # under a reader's feet would hand it half a contract.
    if not (home / "agent" / "contract.yaml").exists():
        write_agent(home / "agent")

    def run(args: ItemIn, ctx: ToolContext) -> Receipt:
        if body is not None:
            body(args, ctx)
        return Receipt(item=args.item)

    return load_agent(home / "agent", run)


def steps_workflow(agent_: Agent, steps: int) -> Workflow:
    """`steps` sequential governed `record` calls, then the run completes."""

    def fn(ctx: Context, _task: object) -> int:
        for n in range(steps):
            ctx.tool("record", {"item": f"item-{n}"})
        return steps

    return Workflow(agent=agent_, fn=fn)


def run_inline(node: Node, workflow: Workflow) -> None:
    """Start a run and resume it here to its end; raise unless it completed."""
    run_id = node.plane.start(workflow, credential=node.credential, tenant_id=TENANT, task="")
    result = node.plane.resume(run_id, workflow)
    if result.status != "completed":
        raise RuntimeError(f"{run_id} ended {result.status}: {result.reason}")


def open_warm(home: Path, steps: int, url: str | None = None) -> tuple[Node, Workflow]:
    """The node and a `steps`-step workflow, after one untimed warm-up run of the agent."""
    node = open_node(home, url)
    workflow = steps_workflow(agent(home), steps)
    run_inline(node, steps_workflow(workflow.agent, WARMUP_STEPS))
    return node, workflow


def extra(**more: object) -> dict[str, object]:
    return {
        "versions": versions("cedarpy", "pydantic"),
        "store": "SQLite, WAL, synchronous=FULL; intent durable before effect, result "
        "group-committed with the next append",
        "policy": "every step: the whole gate with one Cedar decision (also without --policy)",
        **more,
    }


class CharterAdapter:
    """The `Adapter` for Charter on SQLite."""

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        del policy  # Charter decides on every step either way
        node, workflow = open_warm(home, steps)
        values: list[float] = []
        for _ in range(repetitions):
            started = time.perf_counter_ns()
            run_inline(node, workflow)
            values.append((time.perf_counter_ns() - started) / 1e3 / steps)
        node.close()
        return Measured(values=values, extra=extra())

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        del policy
        node, workflow = open_warm(home, steps)
        values: list[float] = []
        with ThreadPoolExecutor(max_workers=runs) as pool:
            for _ in range(repetitions):
                gate = threading.Barrier(runs + 1)

                def one(gate: threading.Barrier = gate) -> None:
                    gate.wait()
                    run_inline(node, workflow)

                futures = [pool.submit(one) for _ in range(runs)]
                gate.wait()
                started = time.perf_counter_ns()
                for future in futures:
                    future.result()
                values.append(runs * steps / ((time.perf_counter_ns() - started) / 1e9))
        node.close()
        return Measured(values=values, extra=extra(threads=runs))

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        def body(args: ItemIn, _ctx: ToolContext) -> None:
            if args.item == f"item-{steps}" and first_attempt(home, "resume"):
                kill_here()

        node = open_node(home)
        run_inline(node, steps_workflow(agent(home, body), steps + 1))
        raise RuntimeError("the run finished: the kill in its last step never came")

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        a = agent(home)  # building the agent (contract, policies) is start-up, not recovery
        workflow = steps_workflow(a, steps + 1)
        started = time.perf_counter_ns()
        node = open_node(home)
        stats = Worker(node.plane, [workflow]).run(until_idle=True)
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if stats.completed != 1:
            raise RuntimeError(f"recovery did not complete the run: {stats.to_dict()}")
        node.close()
        return Measured(values=[elapsed], extra=extra(recovered_by="Worker.run(until_idle=True)"))

    def effects_prepare(self, home: Path) -> None:
        sink = EffectSink(home / "effects.db")

        def body(args: ItemIn, ctx: ToolContext) -> None:
            if args.item == "item-1":
                sink.apply(ctx.idempotency_key)
                if first_attempt(home, "effects"):
                    kill_here()

        node = open_node(home)
        run_inline(node, steps_workflow(agent(home, body), 3))
        raise RuntimeError("the run finished: the kill in step 2 never came")

    def effects_recover(self, home: Path) -> Measured:
        sink = EffectSink(home / "effects.db")

        def body(args: ItemIn, ctx: ToolContext) -> None:
            if args.item == "item-1":
                sink.apply(ctx.idempotency_key)

        node = open_node(home)
        stats = Worker(node.plane, [steps_workflow(agent(home, body), 3)]).run(until_idle=True)
        if stats.completed != 1:
            raise RuntimeError(f"recovery did not complete the run: {stats.to_dict()}")
        node.close()
        return Measured(
            values=[],
            extra=extra(
                **sink.counts(),
                key="ctx.idempotency_key: Charter's key for (run, step), given to every tool call",
            ),
        )


def adapter(variant: str) -> CharterAdapter:
    """Charter's adapter; only the embedded SQLite store exists yet."""
    if variant != "sqlite":
        raise ValueError(f"no Charter store {variant!r} yet")
    return CharterAdapter()
