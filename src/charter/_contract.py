"""Agent contracts: the versioned file that says what one agent may do.

A contract is YAML, validated strictly: an unknown key or a wrong type is an error that names
the file, the key path and what was expected. Nothing in a contract is a warning.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from charter.exceptions import ContractError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

__all__ = [
    "ApprovalTier",
    "Autonomy",
    "Budget",
    "Contract",
    "Effect",
    "Environment",
    "PolicyFiles",
    "Timeouts",
    "ToolGrant",
    "load_contract",
]

CONTRACT_FORMAT = 1
"""The contract file format this Charter reads (the `charter:` key)."""

_DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>[smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = r"^[a-z][a-z0-9_.-]{0,63}$"


class Effect(StrEnum):
    """What a tool does to the world; the higher, the more scrutiny."""

    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


class Autonomy(StrEnum):
    """How much an agent may do alone with a write tool."""

    DRAFT = "draft"
    """Writes become stored proposals; nothing executes."""
    SUGGEST = "suggest"
    """Every write waits for an approval."""
    AUTONOMOUS = "autonomous"
    """Policy thresholds decide which writes need an approval."""


class Environment(StrEnum):
    """Where the agent runs; policies and limits may differ per environment."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


def _parse_duration(value: object) -> object:
    """Accept `90`, `"90s"`, `"15m"`, `"72h"` or `"7d"` and return seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match is None:
            msg = f"a duration like '30s', '15m', '72h' or '7d', got {value!r}"
            raise ValueError(msg)
        return int(match["n"]) * _SECONDS[match["unit"]]
    return value


Seconds = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ApprovalTier(_Strict):
    """Who may approve an action held at this tier, and for how long the request stands."""

    role: str = "approver"
    """The role a human principal must hold to approve."""
    approvers: int = Field(default=1, ge=1, le=5)
    """How many distinct approvers must agree."""
    expires_after: Seconds = 72 * 3600
    """Seconds until the request expires (YAML accepts '72h')."""
    on_expiry: Literal["deny", "escalate"] = "deny"
    """What an expired request becomes."""
    escalate_to: str | None = None
    """The tier an expired request moves to when `on_expiry` is 'escalate'."""

    _duration = field_validator("expires_after", mode="before")(_parse_duration)

    @model_validator(mode="after")
    def _escalation_has_target(self) -> ApprovalTier:
        if self.on_expiry == "escalate" and self.escalate_to is None:
            msg = "on_expiry 'escalate' needs escalate_to: the tier to escalate to"
            raise ValueError(msg)
        return self


class Bound(_Strict):
    """Inclusive numeric bounds on one argument of a tool."""

    min: float | None = None
    max: float | None = None


class ToolGrant(_Strict):
    """One tool this agent may call, and the limits around it."""

    effect: Effect
    """Must match the tool's own declared effect; a mismatch is a load error."""
    autonomy: Autonomy | None = None
    """Overrides the contract's default autonomy stage for this tool."""
    approval: str | None = None
    """The approval tier this tool's writes need when policy or autonomy holds them."""
    bounds: dict[str, Bound] = Field(default_factory=dict)
    """Argument name -> inclusive bounds, checked by the deterministic verifiers."""
    allow: dict[str, list[str | int]] = Field(default_factory=dict)
    """Argument name -> allowed values, checked by the deterministic verifiers."""


class Budget(_Strict):
    """Spend limits; `None` means unlimited."""

    per_run_usd: float | None = Field(default=None, ge=0)
    """Total model and tool cost one run may reach."""


class Timeouts(_Strict):
    """Time limits in seconds (YAML accepts '30s', '10m')."""

    tool: Seconds = 30.0
    """Default per-call timeout for tools that do not declare their own."""
    run: Seconds = 3600.0
    """Running-time limit for one run; time waiting for approvals or timers does not count."""
    model: Seconds = 120.0
    """Limit for one model call; a model that does not answer in time fails the run."""

    _duration = field_validator("tool", "run", "model", mode="before")(_parse_duration)


class PolicyFiles(_Strict):
    """Where the Cedar policies and schema live, relative to the contract file."""

    policies: str
    schema_file: str = Field(alias="schema")


class Contract(_Strict):
    """A validated agent contract. Build one with `load_contract`."""

    charter: Literal[1]
    """Contract file format; only 1 exists."""
    agent: Annotated[str, Field(pattern=_NAME)]
    version: str
    """The contract's own version, recorded on every run."""
    workflow: Annotated[str, Field(pattern=_NAME)]
    owner: str | None = None
    """The human accountable for this agent; never an approver of its actions."""
    tenants: list[Annotated[str, Field(pattern=_NAME)]] = Field(min_length=1)
    environment: Environment = Environment.DEV
    autonomy: Autonomy = Autonomy.AUTONOMOUS
    max_turns: int = Field(default=12, ge=1, le=1000)
    """Model turns after which the run stops as failed."""
    budget: Budget = Field(default_factory=Budget)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    policy: PolicyFiles
    approval_tiers: dict[str, ApprovalTier] = Field(default_factory=dict)
    tools: dict[str, ToolGrant] = Field(min_length=1)

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _tiers_exist_and_irreversible_is_gated(self) -> Contract:
        for name, tier in self.approval_tiers.items():
            if tier.escalate_to is not None and tier.escalate_to not in self.approval_tiers:
                msg = f"approval_tiers.{name}.escalate_to names unknown tier {tier.escalate_to!r}"
                raise ValueError(msg)
            upper = self.approval_tiers.get(tier.escalate_to or "")
            if upper is not None and upper.approvers < tier.approvers:
                # An expiry must never make an action easier to approve than it was.
                msg = (
                    f"approval_tiers.{name} escalates to {tier.escalate_to!r}, which needs fewer "
                    f"approvers ({upper.approvers} < {tier.approvers})"
                )
                raise ValueError(msg)
        for name, grant in self.tools.items():
            if grant.approval is not None and grant.approval not in self.approval_tiers:
                known = ", ".join(sorted(self.approval_tiers)) or "none defined"
                msg = f"tools.{name}.approval names unknown tier {grant.approval!r} ({known})"
                raise ValueError(msg)
            if grant.effect is Effect.IRREVERSIBLE and grant.approval is None:
                # Irreversible effects are never one-click: the contract must say who signs.
                msg = f"tools.{name} is irreversible and needs an approval tier (approval: ...)"
                raise ValueError(msg)
        return self

    def autonomy_for(self, tool: str) -> Autonomy:
        """The autonomy stage that applies to `tool`."""
        grant = self.tools[tool]
        return grant.autonomy or self.autonomy

    @property
    def path(self) -> Path | None:
        """The file this contract was loaded from (not part of its hash)."""
        return self._source

    def resolve(self, relative: str) -> Path:
        """A path named in the contract, resolved against the contract's folder."""
        base = self._source.parent if self._source is not None else Path.cwd()
        return (base / relative).resolve()

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the contract: the hash recorded on every run."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (remove it or check its spelling)"
    if kind == "missing":
        return f"{loc}: required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{loc}: {error['msg']}{shown}"


def load_contract(path: str | Path) -> Contract:
    """Read and strictly validate a contract file.

    Raises:
        ContractError: The file is missing, is not YAML, or does not match the contract schema;
            the message names the file, every failing key path and what was expected.
    """
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractError(f"{file}: cannot read contract: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(
            f"{file}: not valid YAML: {exc}", hint="check indentation and quoting"
        ) from exc
    if not isinstance(raw, dict):
        raise ContractError(f"{file}: a contract is a YAML mapping, got {type(raw).__name__}")
    if raw.get("charter") != CONTRACT_FORMAT or isinstance(raw.get("charter"), bool):
        raise ContractError(
            f"{file}: charter: expected contract format {CONTRACT_FORMAT}, "
            f"got {raw.get('charter')!r}",
            hint=f"start the file with 'charter: {CONTRACT_FORMAT}'",
        )
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {_describe(e)}" for e in exc.errors())
        raise ContractError(
            f"{file}: contract is invalid ({exc.error_count()} problem(s)):\n{lines}",
            hint="see docs/contracts.md for every key and its type",
        ) from exc
    contract._source = file.resolve()  # noqa: SLF001 - the loader is the one writer
    return contract
