"""Policy test tables: request -> expected decision, run by `charter policy test CASES.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from charter._contract import describe_error, load_contract
from charter._files import read_data
from charter.exceptions import PolicyTestError
from charter.policy._cedar import CedarPolicy
from charter.policy._context import AGENT_ENTITY
from charter.policy._engine import EntityRef, PolicyRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CaseResult", "PolicyCase", "PolicyCases", "load_cases", "run_cases"]

Scalar = str | int | bool


class _Principal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = "agent-under-test"
    agent: str
    workflow: str
    tenant: str
    environment: str = "prod"


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    id: str
    tenant: str = ""


class PolicyCase(BaseModel):
    """One row: a request and the decision it must get."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    principal: _Principal
    action: str
    resource: _Resource
    context: dict[str, Scalar] = Field(default_factory=dict)
    expect: Literal["allow", "deny", "approval"]
    tier: str | None = None
    """With `expect: approval`, the tier that must be asked for."""
    policies: list[str] | None = None
    """The `@id`s that must determine the decision (exactly these), when given."""


class PolicyCases(BaseModel):
    """A table of cases against one policy set (named directly or through a contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    contract: str | None = None
    policies: str | None = None
    schema_file: str | None = Field(default=None, alias="schema")
    defaults: dict[str, Scalar] = Field(default_factory=dict)
    """Context values every case starts from."""
    cases: list[PolicyCase] = Field(min_length=1)


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """What one case got, and whether it matched."""

    name: str
    ok: bool
    expected: str
    got: str
    policy_ids: tuple[str, ...]
    reason: str


def load_cases(
    path: str | Path, *, roots: Sequence[str | Path] = ()
) -> tuple[PolicyCases, CedarPolicy]:
    """Read a case table and load the policy set it names.

    The files the table names (`contract`, or `policies` and `schema`), and those the contract
    names, must lie in their own file's folder or in one of `roots`, as `load_contract` says.

    Raises:
        PolicyTestError: The table cannot be read or is not a case table, or a file it names
            lies outside its folder and `roots`.
        ContractError: The contract it names does not load.
        PolicyLoadError: The policy set does not load.
    """
    file = Path(path)
    raw = read_data(file, error=PolicyTestError, what="policy test table")
    try:
        table = PolicyCases.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        raise PolicyTestError(f"{file}: not a policy test table: {problems}") from exc
    allowed = (file.resolve().parent, *(Path(root).resolve() for root in roots))
    approvers: dict[str, int] | None = None
    if table.contract is not None:
        contract = load_contract(_confined(file, "contract", table.contract, allowed), roots=roots)
        policies = contract.resolve(contract.policy.policies, key="policy.policies")
        schema = contract.resolve(contract.policy.schema_file, key="policy.schema")
        # The gate's strictest-tier rule, so a table expects the tier the gate will ask for.
        approvers = {name: tier.approvers for name, tier in contract.approval_tiers.items()}
    elif table.policies and table.schema_file:
        policies = _confined(file, "policies", table.policies, allowed)
        schema = _confined(file, "schema", table.schema_file, allowed)
    else:
        raise PolicyTestError(
            f"{file}: name the policy set with 'contract:' or with both 'policies:' and 'schema:'"
        )
    return table, CedarPolicy.from_files(policies=policies, schema=schema, approvers=approvers)


def _confined(file: Path, key: str, named: str, allowed: tuple[Path, ...]) -> Path:
    """A file the table names, resolved; it must lie in one of the `allowed` folders."""
    try:
        path = (allowed[0] / named).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise PolicyTestError(
            f"{file}: {key} {named!r} is not a usable path ({type(exc).__name__})"
        ) from None
    if not any(path.is_relative_to(root) for root in allowed):
        raise PolicyTestError(
            f"{file}: {key} {named!r} leads outside the allowed folders "
            f"({', '.join(map(str, allowed))})",
            hint="keep the file beside the table, or add its folder to CHARTER_POLICY_ROOTS",
        )
    return path


def run_cases(table: PolicyCases, engine: CedarPolicy) -> list[CaseResult]:
    """Evaluate every case; a mismatch is a failed result, not an exception."""
    results = []
    for case in table.cases:
        p, r = case.principal, case.resource
        decision = engine.evaluate(
            PolicyRequest(
                principal=EntityRef(
                    type=AGENT_ENTITY,
                    id=p.id,
                    attrs={
                        "agent": p.agent,
                        "workflow": p.workflow,
                        "tenant": p.tenant,
                        "environment": p.environment,
                    },
                ),
                action=case.action,
                resource=EntityRef(type=r.type, id=r.id, attrs={"tenant": r.tenant}),
                context={**table.defaults, **case.context},
            )
        )
        ok = decision.effect == case.expect
        if ok and case.expect == "approval" and case.tier is not None:
            ok = decision.tier == case.tier
        if ok and case.policies is not None:
            ok = sorted(decision.policy_ids) == sorted(case.policies)
        got = decision.effect + (f" ({decision.tier})" if decision.tier else "")
        expected = case.expect + (f" ({case.tier})" if case.tier else "")
        results.append(
            CaseResult(
                name=case.name,
                ok=ok,
                expected=expected,
                got=got,
                policy_ids=decision.policy_ids,
                reason=decision.reason,
            )
        )
    return results
