"""LangGraph with its SQLite checkpointer, doing the peers' work (see `_common`).

Set-up, as a user who wants LangGraph to survive a crash would write it:

- A workflow is a `StateGraph` over `{"done": int, "steps": int}` with one node, `step`, that
  takes the next index (after `decide(index)` when the policy is on) and stores it in `done`;
  a conditional edge loops back to `step` until `done == steps`. Every step is therefore one
  super-step, and LangGraph checkpoints after each super-step. `recursion_limit` (LangGraph's
  cap on super-steps per invocation) is raised above the workflow's length.
- The checkpointer is `SqliteSaver` on `sqlite3.connect(home / "langgraph.db",
  check_same_thread=False)`, the construction its own docstring shows. Its `setup()` turns on
  `journal_mode=WAL`; it never touches `synchronous`, so that stays at the SQLite library's
  default. We read both pragmas back from the saver's connection and, if `synchronous` is
  weaker than FULL, set FULL ourselves, to match Charter (WAL + synchronous=FULL). `extra`
  says what was found and whether we changed it.
- Every invocation passes `durability="sync"`, the strongest mode LangGraph 1.x offers: the
  loop (`langgraph/pregel/main.py`, `Pregel.stream`) waits on the checkpoint's future after
  each super-step, so step N's checkpoint is committed before step N+1 starts. The default,
  "async", lets the next step run while the save is still in flight.
- Recovery is the LangGraph idiom: a fresh process compiles the same graph on the same
  database and calls `graph.invoke(None, config)` with the workflow's `thread_id`, which
  continues from the thread's latest checkpoint.

Caveats a fair report must carry:

- Recovery loads only the latest checkpoint (state is a snapshot, not an event log), so its
  cost does not grow with the number of steps already done.
- A node interrupted mid-way is re-run from its start on recovery: LangGraph records a node's
  writes only after it returns. Side effects inside a node are at-least-once; the
  `effects` measure shows 2 executions. LangGraph does give the step a stable identity
  (thread_id, node name and super-step number survive the restart), which a user can pass as
  an idempotency key, as we do; the sink then sees one distinct key.
- `SqliteSaver` is one `sqlite3.Connection` behind a `threading.Lock`: every checkpoint read
  and write, from every thread, is serialised on it. That makes sharing it across threads
  safe (hence `check_same_thread=False`), but its docstring says it "does not scale to
  multiple threads"; `concurrent` measures exactly that shared-saver set-up, as a service
  built on it would run. `AsyncSqliteSaver` (aiosqlite) is the async alternative, not
  measured here.
- Each super-step commits two SQLite transactions (the node's pending writes, then the
  checkpoint), each an fsync of the WAL under synchronous=FULL.
- Measured times include LangGraph's own per-step machinery (channel versioning, task
  preparation, serialisation, a background executor per invocation), which is the point.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from bench.peers._common import (
    EffectSink,
    Measured,
    decide,
    first_attempt,
    kill_here,
    versions,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from langchain_core.runnables import RunnableConfig
    from langgraph.graph.state import CompiledStateGraph

    from bench.peers._common import Adapter

DURABILITY = "sync"
"""LangGraph's strongest durability mode: each checkpoint is saved before the next step."""

WARMUP_STEPS = 100
_DB = "langgraph.db"
_RESUME_THREAD = "resume"
_EFFECTS_THREAD = "effects"
_EFFECTS_STEPS = 3
_EFFECT_STEP = 2
_KEY_HOW = (
    "f'{thread_id}/{langgraph_node}/{langgraph_step}': the workflow's thread_id from "
    "config['configurable'] plus the node name and super-step number LangGraph puts in the "
    "node's config['metadata'] (restored from the checkpoint, so the same on the re-run)"
)
_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_FULL = 2


class _State(TypedDict):
    done: int
    steps: int


def _open(home: Path) -> tuple[SqliteSaver, dict[str, Any]]:
    """Open the saver on `home`'s database, durable like Charter; also say what was found."""
    conn = sqlite3.connect(home / _DB, check_same_thread=False)
    saver = SqliteSaver(conn)
    # setup() would run lazily on the first checkpoint anyway; running it now lets us read
    # the pragmas as the saver leaves them (it sets WAL) before any step is taken.
    saver.setup()
    with saver.lock:
        left = conn.execute("PRAGMA synchronous").fetchone()[0]
        if left < _FULL:
            conn.execute("PRAGMA synchronous=FULL")
        pragmas = {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": _SYNC_NAMES[conn.execute("PRAGMA synchronous").fetchone()[0]],
            "synchronous_left_by_saver": _SYNC_NAMES[left],
            "synchronous_set_by_adapter": left < _FULL,
        }
    return saver, pragmas


def _graph(
    saver: SqliteSaver, *, policy: bool, hook: Callable[[int, RunnableConfig], None] | None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The one-node looping workflow; `hook(index, config)` runs inside step `index`."""

    def step(state: _State, config: RunnableConfig) -> dict[str, int]:
        index = state["done"] + 1
        if policy:
            decide(index)
        if hook is not None:
            hook(index, config)
        return {"done": index}

    def route(state: _State) -> str:
        return "step" if state["done"] < state["steps"] else END

    builder = StateGraph(_State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", route, ["step", END])
    return builder.compile(checkpointer=saver)


def _config(thread_id: str, steps: int) -> RunnableConfig:
    # One super-step per step plus the input's; the margin keeps the cap out of the way.
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 100}


def _run(graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str, steps: int) -> None:
    """Run a fresh workflow of `steps` steps to its end, checking that it got there."""
    result = graph.invoke(
        {"done": 0, "steps": steps}, _config(thread_id, steps), durability=DURABILITY
    )
    if result["done"] != steps:
        raise RuntimeError(f"{thread_id}: {result['done']} of {steps} steps done")


def _resume(graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str, steps: int) -> None:
    """Continue `thread_id` from its latest checkpoint to its end, checking all steps ran."""
    result = graph.invoke(None, _config(thread_id, steps), durability=DURABILITY)
    if result is None or result.get("done") != steps:
        raise RuntimeError(f"{thread_id} recovered to {result!r}, not {steps} steps done")


def _extra(pragmas: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "versions": versions("langgraph", "langgraph-checkpoint-sqlite"),
        "durability": DURABILITY,
        "pragmas": pragmas,
        **more,
    }


class _LangGraphSqlite:
    """LangGraph + SqliteSaver: the `Adapter` functions (see `_common.Adapter`)."""

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        """µs per step of `repetitions` workflows, after one untimed 100-step warm-up."""
        saver, pragmas = _open(home)
        graph = _graph(saver, policy=policy, hook=None)
        _run(graph, "warmup", WARMUP_STEPS)
        values = []
        for rep in range(repetitions):
            start = time.perf_counter()
            _run(graph, f"seq-{rep}", steps)
            values.append((time.perf_counter() - start) / steps * 1e6)
        with saver.lock:
            rows = {
                table: saver.conn.execute(
                    f"SELECT count(*) FROM {table} WHERE thread_id = 'seq-0'"
                ).fetchone()[0]
                for table in ("checkpoints", "writes")
            }
        return Measured(values=values, extra=_extra(pragmas, rows_per_workflow=rows))

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        """Steps/s of `runs` threads, one workflow each, on one compiled graph and saver."""
        saver, pragmas = _open(home)
        graph = _graph(saver, policy=policy, hook=None)
        # Untimed, so lazy imports and first-use caches are not charged to the first rep.
        _run(graph, "warmup", WARMUP_STEPS)
        values = []
        for rep in range(repetitions):
            with ThreadPoolExecutor(max_workers=runs) as pool:
                start = time.perf_counter()
                futures = [pool.submit(_run, graph, f"c{rep}-{i}", steps) for i in range(runs)]
                for future in futures:
                    future.result()
                values.append(runs * steps / (time.perf_counter() - start))
        return Measured(
            values=values,
            extra=_extra(
                pragmas,
                threads=runs,
                warmup=f"one untimed {WARMUP_STEPS}-step workflow",
                saver_sharing="one SqliteSaver (one connection, one lock) for all threads",
            ),
        )

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        """Run `steps + 1` steps under thread `resume`; step `steps + 1` kills the process."""
        saver, _ = _open(home)
        graph = _graph(saver, policy=False, hook=_killer(home, steps + 1))
        _run(graph, _RESUME_THREAD, steps + 1)

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        """Ms from opening the database to the resumed workflow's result."""
        ran = []
        killer = _killer(home, steps + 1)

        def hook(index: int, config: RunnableConfig) -> None:
            ran.append(index)
            killer(index, config)

        start = time.perf_counter()
        saver, pragmas = _open(home)
        graph = _graph(saver, policy=False, hook=hook)
        _resume(graph, _RESUME_THREAD, steps + 1)
        elapsed = (time.perf_counter() - start) * 1e3
        return Measured(
            values=[elapsed],
            extra=_extra(
                pragmas,
                steps_run_in_recovery=len(ran),
                timed="sqlite3.connect + SqliteSaver.setup + compile + invoke(None, config)",
            ),
        )

    def effects_prepare(self, home: Path) -> None:
        """Run the 3-step workflow; step 2 applies the effect, then dies (first time only)."""
        saver, _ = _open(home)
        graph = _graph(saver, policy=False, hook=_effect(home))
        _run(graph, _EFFECTS_THREAD, _EFFECTS_STEPS)

    def effects_recover(self, home: Path) -> Measured:
        """Resume the effects workflow; report how often the effect ran, under which keys."""
        saver, pragmas = _open(home)
        graph = _graph(saver, policy=False, hook=_effect(home))
        _resume(graph, _EFFECTS_THREAD, _EFFECTS_STEPS)
        counts = EffectSink(home / "effects.db").counts()
        return Measured(values=[], extra=_extra(pragmas, **counts, key=_KEY_HOW))


def _killer(home: Path, at: int) -> Callable[[int, RunnableConfig], None]:
    """A hook that SIGKILLs the process in step `at`, on the first attempt only."""

    def hook(index: int, _config: RunnableConfig) -> None:
        if index == at and first_attempt(home, "resume"):
            kill_here()

    return hook


def _effect(home: Path) -> Callable[[int, RunnableConfig], None]:
    """A hook that applies the effect in step 2 under LangGraph's step identity, then dies
    (first attempt only) before LangGraph can record that the step finished."""
    sink = EffectSink(home / "effects.db")

    def hook(index: int, config: RunnableConfig) -> None:
        if index != _EFFECT_STEP:
            return
        thread_id = config["configurable"]["thread_id"]
        meta = config["metadata"]
        sink.apply(f"{thread_id}/{meta['langgraph_node']}/{meta['langgraph_step']}")
        if first_attempt(home, "effects"):
            kill_here()

    return hook


def adapter(variant: str) -> Adapter:
    """The LangGraph adapter; the only variant is "sqlite" (SqliteSaver)."""
    if variant != "sqlite":
        raise ValueError(f"langgraph has no variant {variant!r}; only 'sqlite'")
    return _LangGraphSqlite()
