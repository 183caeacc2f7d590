"""Retention: what is past its time under the contracts, and purging it.

Raw payloads are purged by destroying data keys (crypto-shredding). A key seals one tenant's
payloads of one workflow, retention class and UTC day, so it is due once that day plus the
class's `raw` duration has passed. A key still sealing a payload of a run that has not ended
is held, not destroyed: that run could not resume without it.

A run's redacted payloads are dropped once the run ended more than its class's `redacted`
duration ago (the class of the environment it ran in). Each event keeps its sequence number,
time, kind and hash, so the chain still verifies.

Every purge is one entry in the control log, written before anything is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from charter._time import iso
from charter.privacy import key_parts

if TYPE_CHECKING:
    from collections.abc import Sequence

    from charter._contract import Contract
    from charter.store import Store
    from charter.store._privacy import PurgeCounts

__all__ = ["RetentionPlan", "apply_retention", "plan_retention"]


@dataclass(frozen=True, kw_only=True)
class RetentionPlan:
    """What a retention run would purge at `now`, and what it leaves, and why."""

    now: str
    keys: list[str] = field(default_factory=list)
    """Data keys past their raw retention: destroyed, their payloads deleted."""
    held: dict[str, list[str]] = field(default_factory=dict)
    """Keys past their raw retention still sealing payloads of runs that have not ended."""
    redacted_runs: list[str] = field(default_factory=list)
    """Runs whose redacted payloads are past their tier: dropped, chain kept."""
    legacy_runs: list[str] = field(default_factory=list)
    """Runs holding format-1 raw payloads (no data key) past their raw retention: deleted."""
    unknown: list[str] = field(default_factory=list)
    """Workflows or retention classes no given contract describes: nothing of theirs is
    touched."""

    @property
    def empty(self) -> bool:
        """Nothing is due."""
        return not (self.keys or self.redacted_runs or self.legacy_runs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def plan_retention(store: Store, contracts: Sequence[Contract], *, now: datetime) -> RetentionPlan:
    """What is due at `now` under `contracts` (the contract of each workflow to purge)."""
    by_workflow = {c.workflow: c for c in contracts}
    unknown: set[str] = set()
    due: list[str] = []
    for kid in store.keys.key_ids():
        parts = key_parts(kid)
        if parts is None:
            continue
        _tenant, workflow, retention, day = parts
        contract = by_workflow.get(workflow)
        kept = _raw_duration(contract, retention, unknown, workflow)
        if kept is not None and _day_end(day) + kept <= now:
            due.append(kid)
    open_holders = store.keys_held_open()
    held = {kid: open_holders[kid] for kid in due if kid in open_holders}
    keys = [kid for kid in due if kid not in held]

    # No run ended more recently than the shortest raw duration of any class has anything due.
    shortest = min(
        (durations.raw for c in contracts for durations in c.retention.classes.values()),
        default=None,
    )
    redacted: list[str] = []
    legacy: list[str] = []
    if shortest is not None:
        for run in store.ended_runs(before=iso(now - timedelta(seconds=shortest))):
            contract = by_workflow.get(run.workflow)
            if contract is None:
                unknown.add(f"workflow {run.workflow}")
                continue
            view = contract.for_environment(run.environment or contract.environment)
            durations = view.retention.classes.get(view.retention_class)
            if durations is None:
                unknown.add(f"{run.workflow}: class {view.retention_class}")
                continue
            ended = datetime.fromisoformat(run.ended_at)
            if run.legacy_payloads and ended + timedelta(seconds=durations.raw) <= now:
                legacy.append(run.run_id)
            if ended + timedelta(seconds=durations.redacted) <= now:
                redacted.append(run.run_id)
    return RetentionPlan(
        now=iso(now),
        keys=keys,
        held=held,
        redacted_runs=redacted,
        legacy_runs=legacy,
        unknown=sorted(unknown),
    )


def apply_retention(store: Store, plan: RetentionPlan, *, by: str, reason: str) -> PurgeCounts:
    """Purge what `plan` names: log it, delete and drop in one transaction, then destroy keys.

    The keys go last: if the process dies before, the log and the database already say the
    payloads are gone, and the next run destroys the keys (they are still due).
    """
    counts = store.purge(
        by=by,
        reason=reason,
        keys=plan.keys,
        legacy_runs=plan.legacy_runs,
        redacted_runs=plan.redacted_runs,
        cache_expired_before=plan.now,
    )
    store.keys.destroy(plan.keys)
    return counts


def _raw_duration(
    contract: Contract | None, retention: str, unknown: set[str], workflow: str
) -> timedelta | None:
    if contract is None:
        unknown.add(f"workflow {workflow}")
        return None
    durations = contract.retention.classes.get(retention)
    if durations is None:
        unknown.add(f"{workflow}: class {retention}")
        return None
    return timedelta(seconds=durations.raw)


def _day_end(day: str) -> datetime:
    """The end of a key's UTC day: its last payload was sealed before then."""
    start = date.fromisoformat(day)
    return datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=1)
