"""What agents cost, per agent, contract version, tenant or outcome: read from the runs' events.

The run row carries a cost too, but it is a projection; the figures here are recomputed from
the events, which also say what the row cannot: which spend was the verifier's, how many tool
attempts were retries, how long people took to approve.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from charter._events import (
    OUTCOMES,
    SUCCESSFUL_OUTCOMES,
    ApprovalDecided,
    ApprovalExpired,
    ApprovalRequested,
    CheckRecorded,
    GateDecided,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCompleted,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from charter.store import RunRecord, Store, StoredEvent

__all__ = [
    "GROUP_BY",
    "IN_FLIGHT",
    "CostReport",
    "GroupBy",
    "GroupCosts",
    "RunCosts",
    "cost_report",
    "group_runs",
    "run_costs",
]

GroupBy = Literal["agent", "version", "tenant", "outcome"]
"""What a report's rows are: `version` is `agent@contract_version`, for staged rollouts."""

GROUP_BY: tuple[GroupBy, ...] = ("agent", "version", "tenant", "outcome")

IN_FLIGHT = "in_flight"
"""The `--by outcome` group of runs that have not finished (running or waiting)."""

# Only these kinds carry a figure; skipping the rest spares parsing most of a long log.
_KINDS = frozenset(
    {"run.started", "model.responded", "gate.decided", "check.recorded", "tool.completed"}
    | {"approval.requested", "approval.decided", "approval.expired", "run.finished"}
)


@dataclass(frozen=True, kw_only=True)
class RunCosts:
    """One run's figures, as its events record them."""

    run_id: str
    agent: str
    contract_version: str
    tenant_id: str
    outcome: str | None
    """The final outcome; None while the run is in flight."""
    model_usd: float = 0.0
    """Turns of the acting model."""
    verification_usd: float = 0.0
    """Turns of the verifier model, or verifier checks that carry their own cost."""
    tool_usd: float = 0.0
    model_calls: int = 0
    verification_calls: int = 0
    cache_hits: int = 0
    """Model turns and read-tool calls answered from the artifact cache, at no cost."""
    tool_calls: int = 0
    retries: int = 0
    """Tool attempts beyond each call's first."""
    retried_calls: int = 0
    failed_tool_calls: int = 0
    failed_tool_usd: float = 0.0
    """What tool calls that ended in an error cost: paid for, nothing usable bought."""
    approval_requests: int = 0
    approval_waits_s: tuple[float, ...] = ()
    """Request to decision (or expiry), for each request that got one."""

    @property
    def total_usd(self) -> float:
        """Model, verification and tool cost together."""
        return self.model_usd + self.verification_usd + self.tool_usd

    def key(self, by: GroupBy) -> str:
        """The group this run falls in."""
        match by:
            case "agent":
                return self.agent
            case "version":
                return f"{self.agent}@{self.contract_version}"
            case "tenant":
                return self.tenant_id
            case "outcome":
                return self.outcome or IN_FLIGHT


def run_costs(record: RunRecord, events: Sequence[StoredEvent]) -> RunCosts:
    """Add up one run's figures from its events; `record` names the run if its start is missing."""
    tally = _Tally(agent=record.agent, version=record.contract_version, tenant=record.tenant_id)
    for stored in events:
        if stored.kind in _KINDS:
            tally.see(stored)
    for step, costs in tally.verifier_checks.items():
        # A verifier turn recorded as a model turn is authoritative; its step's checks record
        # the same spend again. Only steps without such turns are costed from their checks.
        if step not in tally.verify_steps:
            tally.add("verification_usd", sum(costs))
            tally.add("verification_calls", len(costs))
    return RunCosts(
        run_id=record.run_id,
        agent=tally.agent,
        contract_version=tally.version,
        tenant_id=tally.tenant,
        outcome=tally.outcome,
        approval_waits_s=tuple(tally.waits),
        **tally.figures,
    )


@dataclass(kw_only=True)
class _Tally:
    """The running sums of one run's events."""

    agent: str
    version: str
    tenant: str
    outcome: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    """`RunCosts` fields by name; ints stay ints, money is float."""
    requested: dict[str, datetime] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    verifier_checks: dict[int, list[float]] = field(default_factory=dict)
    """By step, the cost of each verifier check that carries one."""
    verify_steps: set[int] = field(default_factory=set)
    """Steps with a verifier turn recorded as a model turn."""

    def add(self, name: str, amount: float = 1) -> None:
        self.figures[name] = self.figures.get(name, 0) + amount

    def see(self, stored: StoredEvent) -> None:
        match stored.event:
            case RunStarted() as e:
                self.agent, self.version, self.tenant = e.agent, e.contract_version, e.tenant_id
            case ModelResponded() as e:
                kind = "verification" if e.purpose == "verify" else "model"
                if e.purpose == "verify":
                    self.verify_steps.add(e.step)
                self.add(f"{kind}_usd", e.cost_usd)
                # A cached answer is a hit, not a call: no provider was asked.
                self.add("cache_hits" if e.cached else f"{kind}_calls")
            case GateDecided() as e:
                for check in e.checks:
                    self.verifier(e.step, check.check, check.detail)
            case CheckRecorded() as e:
                self.verifier(e.step, e.check, e.detail)
            case ToolCompleted() as e:
                self.tool(e)
            case ApprovalRequested() | ApprovalDecided() | ApprovalExpired() as e:
                self.approval(e, _moment(stored.ts))
            case RunFinished() as e:
                self.outcome = None if e.outcome == "pending" else e.outcome

    def tool(self, event: ToolCompleted) -> None:
        self.add("tool_usd", event.cost_usd)
        self.add("cache_hits" if event.cached else "tool_calls")
        self.add("retries", max(event.attempts - 1, 0))
        self.add("retried_calls", int(event.attempts > 1))
        if event.status == "error":
            self.add("failed_tool_calls")
            self.add("failed_tool_usd", event.cost_usd)

    def approval(
        self, event: ApprovalRequested | ApprovalDecided | ApprovalExpired, at: datetime
    ) -> None:
        if isinstance(event, ApprovalRequested):
            self.add("approval_requests")
            self.requested[event.request_id] = at
        elif isinstance(event, ApprovalExpired) or event.status != "pending":
            asked = self.requested.pop(event.request_id, None)
            if asked is not None:
                self.waits.append((at - asked).total_seconds())

    def verifier(self, step: int, check: str, detail: dict[str, Any]) -> None:
        cost = detail.get("cost_usd")
        if check != "verifier" or isinstance(cost, bool) or not isinstance(cost, int | float):
            return
        # Each check is a call of its own: an approved step is judged afresh, verifier included.
        self.verifier_checks.setdefault(step, []).append(float(cost))


def _moment(ts: str) -> datetime:
    moment = datetime.fromisoformat(ts)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(kw_only=True)
class GroupCosts:
    """The figures of a group of runs; rates and per-outcome costs are None when undefined."""

    group: str
    runs: list[RunCosts] = field(default_factory=list)

    def _usd(self, name: str) -> float:
        return float(sum(getattr(r, name) for r in self.runs))

    def _tally(self, name: str) -> int:
        return int(sum(getattr(r, name) for r in self.runs))

    def _count(self, outcome: str) -> int:
        return sum(1 for r in self.runs if r.outcome == outcome)

    @property
    def outcomes(self) -> dict[str, int]:
        """Finished runs per outcome: every outcome of the taxonomy, then any other recorded."""
        counts = {name: self._count(name) for name in OUTCOMES}
        for run in self.runs:
            if run.outcome is not None and run.outcome not in counts:
                counts[run.outcome] = self._count(run.outcome)
        return counts

    @property
    def finished(self) -> int:
        """Runs with a final outcome."""
        return sum(1 for r in self.runs if r.outcome is not None)

    @property
    def successes(self) -> int:
        """Resolved and deflected runs: the units of work bought."""
        return sum(1 for r in self.runs if r.outcome in SUCCESSFUL_OUTCOMES)

    @property
    def total_usd(self) -> float:
        """Everything the group's runs spent, failed and unfinished runs included."""
        return float(sum(r.total_usd for r in self.runs))

    @property
    def approval_waits_s(self) -> list[float]:
        """Every resolved approval request's wait, in seconds."""
        return [w for r in self.runs for w in r.approval_waits_s]

    def to_dict(self) -> dict[str, Any]:
        """The group's figures, JSON-ready: money in USD, waits in seconds, rates as fractions."""
        total, finished, outcomes = self.total_usd, self.finished, self.outcomes
        waits, requests = self.approval_waits_s, self._tally("approval_requests")
        return {
            "group": self.group,
            "runs": len(self.runs),
            "in_flight": len(self.runs) - finished,
            "finished": finished,
            "outcomes": outcomes,
            "successes": self.successes,
            "cost_usd": total,
            "model_usd": self._usd("model_usd"),
            "verification_usd": self._usd("verification_usd"),
            "tool_usd": self._usd("tool_usd"),
            "cost_per_success_usd": _ratio(total, self.successes),
            "cost_per_resolution_usd": _ratio(total, outcomes["resolved"]),
            "cost_per_deflection_usd": _ratio(total, outcomes["deflected"]),
            "resolution_rate": _ratio(outcomes["resolved"], finished),
            "deflection_rate": _ratio(outcomes["deflected"], finished),
            "error_rate": _ratio(outcomes["failed"], finished),
            "escalation_rate": _ratio(outcomes["escalated"], finished),
            "model_calls": self._tally("model_calls"),
            "verification_calls": self._tally("verification_calls"),
            "cache_hits": self._tally("cache_hits"),
            "tool_calls": self._tally("tool_calls"),
            "retries": self._tally("retries"),
            "retried_calls": self._tally("retried_calls"),
            "failed_tool_calls": self._tally("failed_tool_calls"),
            "failed_tool_usd": self._usd("failed_tool_usd"),
            "approval_requests": requests,
            "approvals_per_run": _ratio(requests, len(self.runs)),
            "approvals_open": requests - len(waits),
            "approval_wait_total_s": float(sum(waits)),
            "approval_wait_median_s": statistics.median(waits) if waits else None,
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """A cost report: one `GroupCosts` per group, largest spend first, and the totals."""

    by: GroupBy
    since: datetime | None
    groups: list[GroupCosts]
    totals: GroupCosts
    truncated: bool
    """The run limit was reached: older runs in the window are not counted."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "by": self.by,
            "truncated": self.truncated,
            "groups": [g.to_dict() for g in self.groups],
            "totals": self.totals.to_dict(),
        }


def group_runs(runs: Iterable[RunCosts], *, by: GroupBy) -> tuple[list[GroupCosts], GroupCosts]:
    """Runs grouped by `by`, largest spend first, and one group of them all."""
    groups: dict[str, GroupCosts] = {}
    totals = GroupCosts(group="total")
    for run in runs:
        key = run.key(by)
        groups.setdefault(key, GroupCosts(group=key)).runs.append(run)
        totals.runs.append(run)
    ordered = sorted(groups.values(), key=lambda g: (-g.total_usd, g.group))
    return ordered, totals


def cost_report(
    store: Store, *, by: GroupBy = "agent", since: datetime | None = None, limit: int = 10_000
) -> CostReport:
    """Compute the cost report of the runs started since `since` (all runs if None).

    Args:
        store: The store to read, through `list_runs` and `events` only.
        by: What to group by.
        since: Count runs started at or after this moment.
        limit: Read at most this many runs, newest first; `truncated` says if it was reached.
    """
    records = store.list_runs(limit=limit)
    # Newest first: the listing may be cut by the limit, never by the window.
    kept = [r for r in records if since is None or _moment(r.started_at) >= since]
    truncated = len(records) == limit and len(kept) == len(records)
    costs = [run_costs(r, store.events(r.run_id)) for r in kept]
    groups, totals = group_runs(costs, by=by)
    return CostReport(by=by, since=since, groups=groups, totals=totals, truncated=truncated)
