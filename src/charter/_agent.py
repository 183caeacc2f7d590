"""An agent: a contract, the tools it grants, the policy in force, and a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter._contract import Contract, load_contract
from charter.exceptions import ContractError, PolicyLoadError
from charter.models import Model, ToolSpec
from charter.policy import CedarPolicy, PolicyEngine

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from charter._tools import Tool

__all__ = ["Agent", "load_policy"]


@dataclass(frozen=True, kw_only=True)
class Agent:
    """Everything a run needs to know about one agent. Build it with `Agent.load`."""

    contract: Contract
    tools: Mapping[str, Tool[Any, Any]]
    policy: PolicyEngine
    model: Model
    instructions: str = ""
    """The system prompt."""
    small_model: Model | None = None
    """The contract's small model: routing rules and `degrade` budgets send steps to it."""
    verifier: Model | None = None
    """The independent verifier judging the contract's sensitive tools' proposals."""

    @classmethod
    def load(
        cls,
        contract: str | Path | Contract,
        *,
        tools: Sequence[Tool[Any, Any]],
        model: Model,
        instructions: str = "",
        policy: PolicyEngine | None = None,
        small_model: Model | None = None,
        verifier: Model | None = None,
        environment: str | None = None,
    ) -> Agent:
        """Load a contract and its Cedar policy, and check the tools against the grants.

        The contract's section for `environment` (by default the contract's own environment)
        is in force (see `Contract.for_environment`). A contract given as a path reads only
        files beside it; to allow other folders, pass `load_contract(path, roots=...)`.

        Raises:
            ContractError: A granted tool is missing, or its effect differs from the grant; or
                the small model or verifier the contract names is missing or misnamed.
            PolicyLoadError: The policy does not load, or names an approval tier the contract
                does not define.
        """
        loaded = contract if isinstance(contract, Contract) else load_contract(contract)
        # The environment's own section (budget, rate limits) is in force, named or not.
        loaded = loaded.for_environment(environment or loaded.environment)
        _check_models(loaded, model, small_model, verifier)
        by_name = {t.name: t for t in tools}
        _check_tools(loaded, by_name)
        if policy is None:
            policy = load_policy(loaded)
        elif isinstance(policy, CedarPolicy):
            _check_tiers(loaded, policy)
        granted = {name: by_name[name] for name in loaded.tools}
        return cls(
            contract=loaded,
            tools=granted,
            policy=policy,
            model=model,
            instructions=instructions,
            small_model=small_model,
            verifier=verifier,
        )

    def tool_specs(self) -> list[ToolSpec]:
        """The granted tools as the model sees them."""
        return [
            ToolSpec(name=t.name, description=t.description, parameters=t.json_schema)
            for t in self.tools.values()
        ]


def load_policy(contract: Contract) -> CedarPolicy:
    """The Cedar policy set a contract names, parsed and validated as an agent loads it.

    Raises:
        ContractError: A file it names lies outside the contract's folder and allowed roots.
        PolicyLoadError: A file is missing, is not Cedar, does not validate against the
            schema, or a policy asks for an approval tier the contract does not define.
    """
    policy = CedarPolicy.from_files(
        policies=contract.resolve(contract.policy.policies, key="policy.policies"),
        schema=contract.resolve(contract.policy.schema_file, key="policy.schema"),
        approvers={name: tier.approvers for name, tier in contract.approval_tiers.items()},
    )
    _check_tiers(contract, policy)
    return policy


def _check_tiers(contract: Contract, policy: CedarPolicy) -> None:
    for policy_id, tier in policy.approval_tiers.items():
        if tier not in contract.approval_tiers:
            raise PolicyLoadError(
                f"policy {policy_id!r} asks for approval tier {tier!r}, which the "
                f"contract {contract.path or contract.agent} does not define"
            )


def _check_models(
    contract: Contract, model: Model, small: Model | None, verifier: Model | None
) -> None:
    """The models the contract names must be the ones supplied, so routing cannot drift."""
    where = contract.path or contract.agent
    wanted = contract.routing.small_model
    if wanted is not None and (small is None or small.name != wanted):
        got = "none" if small is None else repr(small.name)
        raise ContractError(
            f"{where}: routing.small_model is {wanted!r} but the small model supplied is {got}",
            hint="pass small_model= to Agent.load, named as the contract says",
        )
    if contract.verifier is None:
        return
    if verifier is None or verifier.name != contract.verifier.model:
        got = "none" if verifier is None else repr(verifier.name)
        raise ContractError(
            f"{where}: verifier.model is {contract.verifier.model!r} but the verifier supplied "
            f"is {got}",
            hint="pass verifier= to Agent.load, named as the contract says",
        )
    if verifier.name == model.name:
        # A model judging its own proposals is no second opinion.
        raise ContractError(
            f"{where}: the verifier must be another model than the acting one ({model.name})"
        )


def _check_tools(contract: Contract, by_name: Mapping[str, Tool[Any, Any]]) -> None:
    """Every granted tool is supplied, with the effect and arguments the contract names."""
    loaded = contract
    where = loaded.path or loaded.agent
    for name, grant in loaded.tools.items():
        if name not in by_name:
            raise ContractError(
                f"{where}: tools.{name} is granted but no tool named {name!r} was supplied"
            )
        if by_name[name].effect is not grant.effect:
            raise ContractError(
                f"{where}: tools.{name}.effect is {grant.effect.value} but the tool "
                f"declares {by_name[name].effect.value}",
                hint="the contract must state the tool's real effect class",
            )
        fields = by_name[name].input_model.model_fields
        for kind, names in (("bounds", grant.bounds), ("allow", grant.allow)):
            unknown = sorted(set(names) - set(fields))
            if unknown:
                raise ContractError(
                    f"{where}: tools.{name}.{kind} names {unknown}, which "
                    f"{by_name[name].input_model.__name__} does not have",
                    hint=f"arguments of {name}: {', '.join(fields)}",
                )
