"""DBOS Transact as a peer: the same workloads as `@DBOS.workflow()` functions over
`@DBOS.step()` steps, with DBOS's system database on SQLite or on PostgreSQL.

Set-up:

- *sqlite*: the system database is `HOME/dbos.sqlite` (`system_database_url="sqlite:///..."`).
- *postgres*: PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres), one database per home
  (`bench_dbos_<hash of home>`), which DBOS creates itself at launch. Measures that do not
  need it afterwards drop it; `resume_prepare`/`effects_prepare` leave it for their recover,
  which drops it when done.

DBOS is a process-wide singleton, so each measuring process constructs and launches it once,
runs all its repetitions on it, and calls `DBOS.destroy()` before returning so the process
ends by itself. Every workflow and step is registered at import time, whatever the measure:
DBOS derives its application version from the registered workflows' source, and only
recovers workflows of the version it is running, so prepare and recover must register the
same set. The only configuration besides the URL is `log_level="WARNING"` (console output
only); pool sizes, timeouts and durability are DBOS's defaults.

Caveats a fair report must carry:

- Durability on SQLite: DBOS sets only `busy_timeout` and `foreign_keys` on its connections
  (dbos/_sys_db_sqlite.py); journal mode and `synchronous` stay at SQLite's defaults. This
  adapter reads them from DBOS's own connection and reports them in `extra` (on a stock build:
  journal_mode=delete, synchronous=2 i.e. FULL, so each commit fsyncs a rollback journal and
  the database file; Charter runs WAL with synchronous=FULL). Each step costs one durable
  write transaction (its output row and an owner check) plus a read transaction that looks
  for an output recorded earlier; DBOS opens both with BEGIN IMMEDIATE, so reads take the
  write lock too, and concurrent workflows on SQLite serialise on it.
- Durability on PostgreSQL: whatever the server runs (`fsync`, `synchronous_commit`, read
  and reported in `extra`); DBOS does not change them.
- Effects: a DBOS step is at-least-once. Its output is recorded after its body returns, so a
  crash in between re-runs the body on recovery. DBOS offers the step a stable identity
  (`DBOS.workflow_id` plus `DBOS.step_id`, the step's position in the workflow) that an
  effect can be keyed by for idempotence. Exactly-once holds only for effects on a database
  DBOS manages as a datasource (`SQLAlchemyDatasource.transaction`, which in 3.x replaces
  `@DBOS.transaction()`): the effect and its output record commit in one transaction. The
  sink here is an outside SQLite file, as a tool call's target would be, so a step is the
  right peer.
- Recovery: `DBOS.launch()` does not run pending workflows itself; a background thread
  re-enqueues them on DBOS's internal queue, whose worker polls once a second. Its first poll
  usually runs before the re-enqueue commits, so the resume time carries about a second of
  waiting whatever the workflow's length (polling its status shows it ENQUEUED until 1.0 to
  1.2 s after launch, for 1 step as for 1000; the rest is replaying the recorded steps and
  running the remaining one). That is DBOS's default recovery path, left as it is. The
  result is awaited with `get_result(polling_interval_sec=0.01)` rather than the 1 s
  default, so the client's own polling adds at most 10 ms.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.peers._common import (
    Adapter,
    EffectSink,
    Measured,
    decide,
    first_attempt,
    kill_here,
    versions,
)

_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
_RESUME_ID = "bench-resume"
_EFFECTS_ID = "bench-effects"
_EFFECTS_KEY = "f'{DBOS.workflow_id}/{DBOS.step_id}' (workflow id / DBOS step id within it)"
_RESULT_POLL_S = 0.01

_sinks: dict[str, EffectSink] = {}


def _sink(home: str) -> EffectSink:
    # Opened on first use, so only the effects measures create effects.db, and kept so the
    # recover process counts on the same connection its re-run step wrote through.
    if home not in _sinks:
        _sinks[home] = EffectSink(Path(home) / "effects.db")
    return _sinks[home]


@DBOS.step()
def _step(index: int, policy: bool) -> int:  # noqa: FBT001 - DBOS passes step args through
    if policy:
        decide(index)
    return index


@DBOS.workflow()
def _workflow(steps: int, policy: bool) -> int:  # noqa: FBT001 - as for _step
    total = 0
    for index in range(1, steps + 1):
        total += _step(index, policy)
    return total


@DBOS.step()
def _resume_step(index: int, last: int, home: str) -> int:
    if index == last and first_attempt(Path(home), "resume"):
        kill_here()
    return index


@DBOS.workflow()
def _resume_workflow(steps: int, home: str) -> int:
    total = 0
    for index in range(1, steps + 2):
        total += _resume_step(index, steps + 1, home)
    return total


@DBOS.step()
def _effects_step(index: int, home: str) -> int:
    if index == 2:
        _sink(home).apply(f"{DBOS.workflow_id}/{DBOS.step_id}")
        if first_attempt(Path(home), "effects"):
            kill_here()
    return index


@DBOS.workflow()
def _effects_workflow(home: str) -> int:
    return sum(_effects_step(index, home) for index in (1, 2, 3))


def _triangle(n: int) -> int:
    return n * (n + 1) // 2


class _DBOSAdapter:
    """`Adapter` for DBOS Transact; `variant` is "sqlite" or "postgres"."""

    def __init__(self, variant: str) -> None:
        if variant not in {"sqlite", "postgres"}:
            raise ValueError(f"unknown DBOS variant {variant!r}")
        self._variant = variant
        if variant == "postgres":
            # Fail here, before any timing, with a message that says what is missing.
            self._pg_admin("SELECT 1")

    # -- set-up ---------------------------------------------------------------------------

    def _pg_name(self, home: Path) -> str:
        digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
        return f"bench_dbos_{digest}"

    def _pg_admin(self, sql: str) -> None:
        import psycopg  # noqa: PLC0415 - only the postgres variant needs it

        try:
            with psycopg.connect(_PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql)
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) is unreachable "
                f"for dbos-postgres: {exc}"
            ) from exc

    def _drop(self, home: Path) -> None:
        if self._variant == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self._pg_name(home)}" WITH (FORCE)')

    def _url(self, home: Path) -> str:
        if self._variant == "sqlite":
            return f"sqlite:///{home.resolve() / 'dbos.sqlite'}"
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self._pg_name(home)}"

    def _launch(self, home: Path) -> DBOS:
        config: DBOSConfig = {
            "name": "bench-peers",
            "system_database_url": self._url(home),
            # Console noise only; no effect on what DBOS records or how.
            "log_level": "WARNING",
        }
        dbos = DBOS(config=config)
        DBOS.launch()
        return dbos

    def _extra(self, dbos: DBOS) -> dict[str, Any]:
        extra: dict[str, Any] = {**versions("dbos"), "backend": self._variant}
        # Read on DBOS's own engine: `synchronous` is per connection, so a connection of
        # ours would only show what SQLite defaults to, not what DBOS runs with.
        engine = dbos._sys_db.engine  # noqa: SLF001 - DBOS exposes no public handle to it
        with engine.connect() as conn:
            if self._variant == "sqlite":
                for pragma in ("journal_mode", "synchronous"):
                    value = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                    extra[f"sqlite_{pragma}"] = value
            else:
                for setting in ("fsync", "synchronous_commit", "wal_sync_method"):
                    extra[f"pg_{setting}"] = conn.exec_driver_sql(f"SHOW {setting}").scalar()
        extra["log_level"] = "WARNING"
        return extra

    def _fresh(self, home: Path) -> DBOS:
        # A previous run under this home must not leave workflows for this one to recover.
        self._drop(home)
        return self._launch(home)

    # -- measures -------------------------------------------------------------------------

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        """Warm up with one 100-step workflow, then time `repetitions` workflows of `steps`
        steps, each called in this thread; values are µs per step."""
        dbos = self._fresh(home)
        try:
            extra = self._extra(dbos)
            _workflow(100, policy)
            values: list[float] = []
            for _ in range(repetitions):
                start = time.perf_counter()
                total = _workflow(steps, policy)
                elapsed = time.perf_counter() - start
                if total != _triangle(steps):
                    raise RuntimeError(f"workflow returned {total}, not {_triangle(steps)}")
                values.append(elapsed * 1e6 / steps)
        finally:
            DBOS.destroy()
        self._drop(home)
        return Measured(values=values, extra={**extra, "policy": policy})

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        """After one untimed 100-step workflow, per repetition start `runs` workflows with
        `DBOS.start_workflow` and wait for every result; values are steps/s."""
        dbos = self._fresh(home)
        try:
            extra = self._extra(dbos)
            _workflow(100, policy)
            values: list[float] = []
            for _ in range(repetitions):
                start = time.perf_counter()
                handles = [DBOS.start_workflow(_workflow, steps, policy) for _ in range(runs)]
                totals = [handle.get_result() for handle in handles]
                elapsed = time.perf_counter() - start
                if totals != [_triangle(steps)] * runs:
                    raise RuntimeError("a concurrent workflow returned a wrong result")
                values.append(runs * steps / elapsed)
        finally:
            DBOS.destroy()
        self._drop(home)
        return Measured(values=values, extra={**extra, "policy": policy, "runs": runs})

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        """Run `_resume_workflow` under a fixed id; it is SIGKILLed in step `steps + 1`."""
        self._fresh(home)
        with SetWorkflowID(_RESUME_ID):
            _resume_workflow(steps, str(home))
        # Only reached if the kill did not happen (e.g. the marker existed already).
        DBOS.destroy()
        raise RuntimeError("resume_prepare finished its workflow instead of being killed")

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        """Open DBOS fresh (its launch recovers the pending workflow) and wait for the
        workflow's result; values = [ms from constructing DBOS to the result]."""
        start = time.perf_counter()
        dbos = self._launch(home)
        try:
            total = DBOS.retrieve_workflow(_RESUME_ID).get_result(
                polling_interval_sec=_RESULT_POLL_S
            )
            elapsed_ms = (time.perf_counter() - start) * 1e3
            if total != _triangle(steps + 1):
                raise RuntimeError(
                    f"recovered workflow returned {total}, not {_triangle(steps + 1)}"
                )
            extra = self._extra(dbos)
        finally:
            DBOS.destroy()
        self._drop(home)
        return Measured(
            values=[elapsed_ms],
            extra={**extra, "steps": steps, "result_polling_interval_s": _RESULT_POLL_S},
        )

    def effects_prepare(self, home: Path) -> None:
        """Run the 3-step effects workflow; step 2 applies the effect and is SIGKILLed."""
        self._fresh(home)
        with SetWorkflowID(_EFFECTS_ID):
            _effects_workflow(str(home))
        DBOS.destroy()
        raise RuntimeError("effects_prepare finished its workflow instead of being killed")

    def effects_recover(self, home: Path) -> Measured:
        """Launch DBOS fresh, wait for the recovered workflow, and report the sink's counts."""
        dbos = self._launch(home)
        try:
            total = DBOS.retrieve_workflow(_EFFECTS_ID).get_result(
                polling_interval_sec=_RESULT_POLL_S
            )
            if total != _triangle(3):
                raise RuntimeError(f"recovered workflow returned {total}, not {_triangle(3)}")
            extra = self._extra(dbos)
        finally:
            DBOS.destroy()
        self._drop(home)
        return Measured(
            values=[], extra={**extra, **_sink(str(home)).counts(), "key": _EFFECTS_KEY}
        )


def adapter(variant: str) -> Adapter:
    """The DBOS adapter for `variant`: "sqlite" or "postgres"."""
    return _DBOSAdapter(variant)
