"""Policy test tables: request -> expected decision, run by `charter policy test CASES.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from charter._contract import load_contract
from charter.exceptions import PolicyTestError
from charter.policy._cedar import CedarPolicy
from charter.policy._context import AGENT_ENTITY
from charter.policy._engine import EntityRef, PolicyRequest

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


def load_cases(path: str | Path) -> tuple[PolicyCases, CedarPolicy]:
    """Read a case table and load the policy set it names."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        table = PolicyCases.model_validate(raw)
    except OSError as exc:
        raise PolicyTestError(f"{file}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PolicyTestError(f"{file}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyTestError(f"{file}: not a policy test table: {problems}") from exc
    base = file.parent
    if table.contract is not None:
        contract = load_contract(base / table.contract)
        policies = contract.resolve(contract.policy.policies)
        schema = contract.resolve(contract.policy.schema_file)
    elif table.policies and table.schema_file:
        policies, schema = base / table.policies, base / table.schema_file
    else:
        raise PolicyTestError(
            f"{file}: name the policy set with 'contract:' or with both 'policies:' and 'schema:'"
        )
    return table, CedarPolicy.from_files(policies=policies, schema=schema)


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
