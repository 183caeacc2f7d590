"""Stages 6 and 7: the rate limit and the budget.

Both decide from what the run knows in memory and, for the shared limits, attach a charge to
the call: a token to take and a reservation to make. The charges ride on the intent's append
(see `charter.store._limits`), so a call that passes costs the limits no round trip of its own.
When a charge does not fit, the append writes nothing and raises; the gate then judges the
call again with `Call.limit_hit` set, and these stages turn that into a denial or a hold.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from charter._decision import CheckResult
from charter.exceptions import BudgetExceeded, RateLimited
from charter.store import Cap, Reserve, TakeToken, dollars, micros

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pydantic import JsonValue

    from charter._contract import Budget, Contract, RateLimit
    from charter.gate._call import Call

__all__ = ["budget_caps", "check_budget", "check_rate_limit", "rate_rule"]


def rate_rule(contract: Contract, tool: str) -> RateLimit | None:
    """The rate limit on `tool`: its own rule, else the contract's `*` rule, else none."""
    fallback = None
    for rule in contract.rate_limits:
        if rule.tool == tool:
            return rule
        if rule.tool == "*":
            fallback = fallback or rule
    return fallback


def check_rate_limit(call: Call) -> CheckResult:
    """Take a token from the (workflow, tenant, tool) bucket shared by every worker."""
    contract = call.run.agent.contract
    rule = rate_rule(contract, call.spec.tool)
    if rule is None:
        return CheckResult.passed("rate_limit", "no rate limit", "contract:rate_limits")
    key = f"{contract.workflow}/{call.run.tenant_id}/{call.spec.tool}"
    source = f"contract:rate_limits.{rule.tool}"
    if call.cached is not None:
        return CheckResult.passed(
            "rate_limit", f"answered from the artifact cache: no token taken from {key}", source
        )
    hit = call.limit_hit
    if isinstance(hit, RateLimited):
        return CheckResult.denied(
            "rate_limit",
            f"rate limit {rule.rate} on {key} reached; next call due in {hit.retry_after_s:.2f}s",
            source,
            retry_after_s=round(hit.retry_after_s, 3),
            on_limit=rule.on_limit,
        )
    call.charges.append(TakeToken(key=key, per_second=rule.per_second, capacity=rule.capacity))
    return CheckResult.passed("rate_limit", f"token taken from {key} ({rule.rate})", source)


def budget_caps(
    contract: Contract, tenant_id: str, clock: Callable[[], datetime]
) -> tuple[Cap, ...]:
    """The shared day caps a call of this contract and tenant counts against, today (UTC)."""
    budget: Budget = contract.budget
    if budget.per_workflow_day_usd is None and budget.per_tenant_day_usd is None:
        return ()
    return _caps(
        contract.workflow,
        budget.per_workflow_day_usd,
        tenant_id,
        budget.per_tenant_day_usd,
        clock().date().isoformat(),
    )


@lru_cache(maxsize=1024)
def _caps(
    workflow: str, workflow_cap: float | None, tenant_id: str, tenant_cap: float | None, day: str
) -> tuple[Cap, ...]:
    # Built once per (workflow, tenant, day): the gate asks on every call.
    caps = []
    if workflow_cap is not None:
        caps.append(Cap(scope=f"workflow:{workflow}", day=day, cap_usd=workflow_cap))
    if tenant_cap is not None:
        caps.append(Cap(scope=f"tenant:{tenant_id}", day=day, cap_usd=tenant_cap))
    return tuple(caps)


def check_budget(call: Call, clock: Callable[[], datetime]) -> CheckResult:
    """Reserve the call's estimated cost against the run's cap and the shared day caps."""
    assert call.tool is not None  # noqa: S101 - earlier stages ran
    budget = call.run.agent.contract.budget
    estimate = 0.0 if call.cached is not None else call.tool.cost_usd
    spent = call.run.spent_usd
    cap = budget.per_run_usd
    hit = call.limit_hit
    # In micro-dollars, as the shared caps: six $0.01 calls fit a $0.06 cap exactly.
    fits = cap is None or micros(spent) + micros(estimate) <= micros(cap)
    if fits and not isinstance(hit, BudgetExceeded):
        if estimate > 0:
            caps = budget_caps(call.run.agent.contract, call.run.tenant_id, clock)
            if caps:
                call.charges.append(
                    Reserve(run_id=call.run.run_id, step=call.step, amount_usd=estimate, caps=caps)
                )
        limit = "no run cap" if cap is None else _cap_text(cap)
        return CheckResult(
            check="budget",
            outcome="pass",
            reason=f"${spent + estimate:.4f} of {limit}",
            source="contract:budget",
            detail={"spent_usd": spent, "estimate_usd": estimate},
        )
    return _over_budget(call, clock, spent, estimate)


@lru_cache(maxsize=256)
def _cap_text(cap: float) -> str:
    return dollars(cap)


def _over_budget(
    call: Call, clock: Callable[[], datetime], spent: float, estimate: float
) -> CheckResult:
    """A call past a cap: denied, or held for an approval to go on (`on_exceeded: escalate`)."""
    budget = call.run.agent.contract.budget
    if isinstance(call.limit_hit, BudgetExceeded):
        over = call.limit_hit.message
    else:
        over = (
            f"would spend {dollars(spent + estimate)} of a {dollars(budget.per_run_usd or 0)} "
            "run budget"
        )
    detail: dict[str, JsonValue] = {
        "spent_usd": spent,
        "estimate_usd": estimate,
        "on_exceeded": budget.on_exceeded,
    }
    if budget.on_exceeded != "escalate" or budget.escalate_tier is None:
        return CheckResult.denied("budget", over, "contract:budget", **detail)
    if call.run.approvals.get(call.step, 0) == 0:
        return CheckResult(
            check="budget",
            outcome="hold",
            reason=f"{over}; an approval is needed to go on",
            source="contract:budget.on_exceeded",
            detail=detail,
            tier=budget.escalate_tier,
        )
    # A person approved going on past the cap: reserve without the cap, so the day's ledger
    # still counts what this call spends.
    caps = budget_caps(call.run.agent.contract, call.run.tenant_id, clock)
    if caps and estimate > 0:
        call.charges.append(
            Reserve(
                run_id=call.run.run_id,
                step=call.step,
                amount_usd=estimate,
                caps=caps,
                enforce=False,
            )
        )
    return CheckResult.passed(
        "budget", f"{over}; going on as approved", "contract:budget", **detail
    )
