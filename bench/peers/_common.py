"""What every system's adapter shares: the workloads, the policy, the effect sink, and the
shape of a measurement.

Each system lives in its own module (`bench/peers/<system>.py`) and exposes the functions of
`Adapter` below. The driver (`python -m bench.peers SYSTEM MEASURE ...`) runs every measurement
in a fresh process of its own, so one system's threads, caches and open files never slow
another's, and a kill only ever takes down the process it aims at.

The same logical work for every system:

- *sequential*: one workflow of `steps` steps run one after another. A step's body is trivial
  (it returns its index); with `policy=True` it first takes a Cedar decision with
  `decide(step)`: the raw cedarpy call a user would bolt onto a step, on pre-parsed policies.
- *concurrent*: `runs` workflows of `steps` steps each, all started at once, in one process.
- *resume*: a process completes `steps` steps of one workflow and is SIGKILLed in the next
  one; a fresh process then recovers the workflow to its end. Timed from opening the system
  (store, connection, launch) to the workflow's result, imports excluded.
- *effects*: a 3-step workflow whose step 2 applies an effect to `EffectSink`, then is killed
  before the system can record that the step finished (only on its first attempt). A fresh
  process recovers the workflow. The sink counts how often the effect ran, and under how many
  distinct keys (the key each system gives a step, or none).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

import cedarpy

if TYPE_CHECKING:
    from pathlib import Path

TENANT = "acme"

SCHEMA = (
    "entity Agent = { agent: String, workflow: String, tenant: String, environment: String };\n"
    "entity Item = { tenant: String };\n"
    "type Context = { approvals_granted: Long, hour_utc: Long, weekday: Long, "
    "amount_minor?: Long };\n"
    "action record appliesTo { principal: Agent, resource: Item, context: Context };\n"
    "action launch appliesTo { principal: Agent, resource: Item, context: Context };\n"
)
POLICIES = """\
@id("tenant-isolation")
forbid (principal, action, resource)
unless { principal.tenant == resource.tenant };

@id("allow-tools")
permit (principal, action in [Action::"record", Action::"launch"], resource);
"""
"""The bench agent's policies (bench/durable.py loads them too): the peers' steps decide with
exactly what Charter's gate decides with."""

_POLICY_SET = cedarpy.PolicySet.from_str(POLICIES)
_SCHEMA = cedarpy.Schema.from_str(SCHEMA)
_PRINCIPAL = {
    "uid": {"type": "Agent", "id": "bench-agent"},
    "attrs": {
        "agent": "bench-agent",
        "workflow": "bench",
        "tenant": TENANT,
        "environment": "production",
    },
    "parents": [],
}


def decide(step: int) -> None:
    """One Cedar decision for `record` on item `step`, as a peer's step would take it.

    Raises:
        PermissionError: Cedar did not allow (it always should here; a refusal means the
            benchmark is broken, not that the step should be skipped).
    """
    resource = {
        "uid": {"type": "Item", "id": f"item-{step}"},
        "attrs": {"tenant": TENANT},
        "parents": [],
    }
    request = {
        "principal": 'Agent::"bench-agent"',
        "action": 'Action::"record"',
        "resource": f'Item::"item-{step}"',
        "context": {"approvals_granted": 0, "hour_utc": 12, "weekday": 2},
    }
    answer = cedarpy.is_authorized(request, _POLICY_SET, [_PRINCIPAL, resource], schema=_SCHEMA)
    if answer.decision is not cedarpy.Decision.Allow:
        raise PermissionError(f"cedar refused step {step}: {answer.diagnostics.errors}")


class EffectSink:
    """The outside world a step acts on: a SQLite table, one row per time the effect ran.

    Opened afresh by each process; every `apply` commits before it returns, so a kill right
    after it never loses the row.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS effects (pid INTEGER, key TEXT)")

    def apply(self, key: str | None) -> None:
        """Apply the effect once, under `key` (None: the system gave the step no key)."""
        self._db.execute("INSERT INTO effects VALUES (?, ?)", (os.getpid(), key))

    def counts(self) -> dict[str, int]:
        """How often the effect ran, and how many distinct keys (None counts as a key each)."""
        rows = self._db.execute("SELECT key FROM effects").fetchall()
        keyed = {r[0] for r in rows if r[0] is not None}
        unkeyed = sum(1 for r in rows if r[0] is None)
        return {"executions": len(rows), "distinct_keys": len(keyed) + unkeyed}


def kill_here() -> None:
    """SIGKILL this process: no cleanup, no flush, as a power cut would look to the system."""
    os.kill(os.getpid(), signal.SIGKILL)


def first_attempt(home: Path, name: str) -> bool:
    """True the first time it is asked for `name` under `home` (a marker file remembers)."""
    marker = home / f"{name}.attempted"
    if marker.exists():
        return False
    marker.touch()
    return True


@dataclass
class Measured:
    """What one measuring process reports back to the driver, as JSON on its last line."""

    values: list[float]
    """Per repetition: µs per step (sequential), steps/s (concurrent), ms (resume)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth reporting: effect counts, versions, the configuration used."""

    def emit(self) -> None:
        """Print as the process's last line of output."""
        print(json.dumps({"values": self.values, "extra": self.extra}), flush=True)


class Adapter(Protocol):
    """The functions a system's module provides; `home` is a fresh directory for its files."""

    def sequential(self, home: Path, *, steps: int, policy: bool, repetitions: int) -> Measured:
        """Warm up with one 100-step workflow, then time `repetitions` workflows of `steps`
        steps; values are µs per step of each (workflow wall time / steps)."""
        ...

    def concurrent(
        self, home: Path, *, runs: int, steps: int, policy: bool, repetitions: int
    ) -> Measured:
        """After one untimed warm-up workflow, per repetition start `runs` workflows of
        `steps` steps at once and wait for all; values are steps/s (runs * steps / wall)."""
        ...

    def resume_prepare(self, home: Path, *, steps: int) -> None:
        """Run a workflow that completes `steps` steps and calls `kill_here()` in the next."""
        ...

    def resume_recover(self, home: Path, *, steps: int) -> Measured:
        """In a fresh process, recover that workflow to its end; values = [ms taken]."""
        ...

    def effects_prepare(self, home: Path) -> None:
        """Run the 3-step workflow whose step 2 applies the effect and is killed (first time)."""
        ...

    def effects_recover(self, home: Path) -> Measured:
        """Recover it; extra = EffectSink(...).counts() plus `"key"`: how the key was formed."""
        ...


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of `packages`, for the report."""
    found: dict[str, str] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
