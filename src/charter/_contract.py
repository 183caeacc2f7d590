"""Agent contracts: the versioned file that says what one agent may do.

A contract is YAML, validated strictly: an unknown key or a wrong type is an error that names
the file, the key path and what was expected. Nothing in a contract is a warning.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from charter._files import read_data
from charter.exceptions import ContractError
from charter.privacy import Redactor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic_core import ErrorDetails


__all__ = [
    "ApprovalTier",
    "Autonomy",
    "Budget",
    "CacheRule",
    "Contract",
    "Effect",
    "Environment",
    "EnvironmentSection",
    "PolicyFiles",
    "RateLimit",
    "Redaction",
    "Retention",
    "RetentionClass",
    "RouteRule",
    "Routing",
    "Timeouts",
    "ToolGrant",
    "Verifier",
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
    """Spend caps in USD; `None` means unlimited.

    The day caps are shared by every run on the store: before a model or tool call its estimated
    cost is reserved against them in the store, and settled at its real cost afterwards, so
    concurrent runs on any number of workers cannot overspend them together.
    """

    per_run_usd: float | None = Field(default=None, ge=0)
    """Total model and tool cost one run may reach."""
    per_workflow_day_usd: float | None = Field(default=None, ge=0)
    """What all runs of this workflow may spend in one UTC day, every tenant together."""
    per_tenant_day_usd: float | None = Field(default=None, ge=0)
    """What all runs for one tenant may spend in one UTC day, every workflow together."""
    on_exceeded: Literal["stop", "degrade", "escalate"] = "stop"
    """What a call that would pass a cap does: `stop` ends the run (budget_exceeded);
    `degrade` switches model calls to the contract's small model (`routing.small_model`) and
    stops when even that does not fit; `escalate` holds the call for an approval to go on
    (tier `escalate_tier`)."""
    escalate_tier: str | None = None
    """The approval tier that may let a run go past its budget (with `on_exceeded: escalate`)."""

    @property
    def capped(self) -> bool:
        """Whether any cap is set."""
        return any(
            cap is not None
            for cap in (self.per_run_usd, self.per_workflow_day_usd, self.per_tenant_day_usd)
        )


_RATE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*/\s*(?P<unit>s|m|h|d)$")


class RateLimit(_Strict):
    """A token bucket per (workflow, tenant, tool), shared by every worker on the store."""

    tool: str
    """A granted tool, or `*` for each tool (every tool gets its own bucket)."""
    rate: str
    """Sustained calls per period: '10/s', '30/m', '500/h', '1000/d'."""
    burst: int | None = Field(default=None, ge=1)
    """How many calls may come at once; by default the calls of one period (at least 1)."""
    on_limit: Literal["wait", "deny"] = "deny"
    """`wait` holds the call until a token is due (up to `max_wait`), then denies."""
    max_wait: Seconds = 30.0
    """The longest `wait` holds a call (YAML accepts '30s')."""

    _duration = field_validator("max_wait", mode="before")(_parse_duration)

    @field_validator("rate")
    @classmethod
    def _rate_parses(cls, value: str) -> str:
        if _RATE.match(value.strip()) is None:
            msg = f"a rate like '10/s', '30/m', '500/h' or '1000/d', got {value!r}"
            raise ValueError(msg)
        return value.strip()

    @cached_property
    def per_second(self) -> float:
        """Tokens added per second."""
        match = _RATE.match(self.rate)
        assert match is not None  # noqa: S101 - validated on load
        return float(match["n"]) / _SECONDS[match["unit"]]

    @cached_property
    def capacity(self) -> float:
        """The bucket's size."""
        if self.burst is not None:
            return float(self.burst)
        match = _RATE.match(self.rate)
        assert match is not None  # noqa: S101
        return max(1.0, float(match["n"]))


class RouteRule(_Strict):
    """Model steps that go to the small model. Every key given must match."""

    step: str | None = None
    """A model step's label, as the workflow names it: `ctx.model(..., label="triage")`."""
    after_tool: str | None = None
    """A model step that reads the result of this tool (the step just before it)."""


class Routing(_Strict):
    """Which model answers which step: the agent's model by default, the small one by rule."""

    small_model: str | None = None
    """The small model's name, as the agent's `small_model` reports it (checked on load)."""
    small_for: list[RouteRule] = Field(default_factory=list)
    """Rules sending a model step to the small model."""
    escalate_below: float | None = Field(default=None, gt=0, le=1)
    """A small-model answer with confidence below this is asked again of the agent's model."""


class Verifier(_Strict):
    """The independent verifier: a second model that judges action proposals of chosen tools.

    Its verdict is one more check. It can deny or hold a call for approval, never allow one
    that policy denied or held: it only tightens.
    """

    tools: list[str] = Field(min_length=1)
    """The sensitive tools whose proposals the verifier judges."""
    model: str
    """The verifier model's name, as the agent's `verifier` reports it; must differ from the
    acting model (checked on load)."""
    tier: str
    """The approval tier an `escalate` verdict (or a verifier failure) holds the call for."""


class CacheRule(_Strict):
    """Steps whose answers are stable enough to reuse: one model label or one read tool.

    An entry is keyed by a hash of everything that shapes the answer (the model or tool, the
    full input, the agent, workflow and tenant), so it is only reused for the very same
    question from the same tenant. A hit is recorded like any step, at zero cost.
    """

    label: str | None = None
    """Model steps with this label (`ctx.model(..., label=...)`): structured outputs."""
    tool: str | None = None
    """A granted read tool, whose results (retrieval, lookups) are reused."""
    ttl: Seconds
    """How long an entry is reused (YAML accepts '15m', '24h')."""

    _duration = field_validator("ttl", mode="before")(_parse_duration)

    @model_validator(mode="after")
    def _one_target(self) -> CacheRule:
        if (self.label is None) == (self.tool is None):
            msg = "a cache rule names exactly one of label (a model step) or tool (a read tool)"
            raise ValueError(msg)
        return self


class EnvironmentSection(_Strict):
    """What differs in one environment: limits and how long its data is kept."""

    budget: Budget | None = None
    """Replaces the contract's budget in this environment."""
    rate_limits: list[RateLimit] | None = None
    """Replace the contract's rate limits in this environment."""
    retention: str = "standard"
    """The retention class of this environment's runs: one of `retention.classes`."""


class RetentionClass(_Strict):
    """How long one class of data is kept."""

    raw: Seconds
    """Raw payloads (prompts, tool inputs and outputs, encrypted): past this their keys are
    destroyed, and no copy of them, backups included, can be read again."""
    redacted: Seconds
    """The log's redacted payloads: past this they are dropped; each event keeps its place,
    time, kind and hash, so the chain still verifies."""

    _duration = field_validator("raw", "redacted", mode="before")(_parse_duration)

    @model_validator(mode="after")
    def _redacted_outlives_raw(self) -> RetentionClass:
        if self.redacted < self.raw:
            msg = "redacted must be kept at least as long as raw (the log outlives the vault)"
            raise ValueError(msg)
        return self


def _default_classes() -> dict[str, RetentionClass]:
    day = 86400.0
    return {
        "short": RetentionClass(raw=7 * day, redacted=90 * day),
        "standard": RetentionClass(raw=30 * day, redacted=365 * day),
        "long": RetentionClass(raw=365 * day, redacted=7 * 365 * day),
    }


class Retention(_Strict):
    """Retention classes, and the data classes kept by a class other than their environment's."""

    classes: dict[Annotated[str, Field(pattern=_NAME)], RetentionClass] = Field(
        default_factory=_default_classes
    )
    """Named durations; `short`, `standard` and `long` exist unless redefined here."""
    data_classes: dict[str, str] = Field(default_factory=dict)
    """A tool call's data class (`customer_pii`, `financial`) to the retention class its raw
    payloads are kept by, in place of the environment's."""

    @field_validator("classes", mode="after")
    @classmethod
    def _with_defaults(cls, value: dict[str, RetentionClass]) -> dict[str, RetentionClass]:
        return {**_default_classes(), **value}


class Redaction(_Strict):
    """Patterns of this agent's own sensitive values, redacted beside the built-in detectors."""

    patterns: dict[str, str] = Field(default_factory=dict)
    """A marker name (lowercase) to a regular expression: `order_ref: 'ORD-\\d{6}'`."""


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
    max_argument_bytes: int = Field(default=1_048_576, ge=1)
    """The most one tool call's arguments may weigh, as compact JSON in UTF-8 (default 1 MiB).
    A larger call is denied (check `input_size`) before anything reads it, and only a small
    stand-in of it is recorded."""
    on_kill: Literal["stop", "pause"] = "stop"
    """What a run in flight does when a kill switch matches it: `stop` ends it (outcome killed);
    `pause` suspends it until the switch is released."""
    budget: Budget = Field(default_factory=Budget)
    rate_limits: list[RateLimit] = Field(default_factory=list)
    routing: Routing = Field(default_factory=Routing)
    verifier: Verifier | None = None
    cache: list[CacheRule] = Field(default_factory=list)
    """Model steps and read tools whose answers are reused for a while (the artifact cache)."""
    environments: dict[Environment, EnvironmentSection] = Field(default_factory=dict)
    """Per-environment limits and retention; the section of the contract's `environment`
    applies (see `for_environment`)."""
    retention: Retention = Field(default_factory=Retention)
    redaction: Redaction = Field(default_factory=Redaction)
    prices: str | None = None
    """A price table file (relative to the contract) pricing the agent's models."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    policy: PolicyFiles
    approval_tiers: dict[str, ApprovalTier] = Field(default_factory=dict)
    tools: dict[str, ToolGrant] = Field(min_length=1)

    _source: Path | None = PrivateAttr(default=None)
    _roots: tuple[Path, ...] = PrivateAttr(default=())
    """Folders besides the contract's own that the files it names may lie in."""
    _redactor: Redactor = PrivateAttr(default_factory=Redactor)
    _base: Contract | None = PrivateAttr(default=None)
    """The contract as written, when this one is its view for an environment."""

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
        self._check_budgets()
        self._check_named_tools()
        self._check_cache()
        self._check_retention()
        try:
            self._redactor = Redactor(self.redaction.patterns)
        except ValueError as exc:
            raise ValueError(f"redaction.patterns: {exc}") from None
        return self

    def _check_retention(self) -> None:
        known = self.retention.classes
        named = [
            (f"environments.{e.value}.retention", s.retention) for e, s in self.environments.items()
        ]
        named += [
            (f"retention.data_classes.{d}", c) for d, c in self.retention.data_classes.items()
        ]
        for where, name in named:
            if name not in known:
                msg = f"{where} names unknown retention class {name!r} ({', '.join(sorted(known))})"
                raise ValueError(msg)

    def _check_cache(self) -> None:
        seen: set[tuple[str, str]] = set()
        for i, rule in enumerate(self.cache):
            target = ("label", rule.label) if rule.label is not None else ("tool", str(rule.tool))
            if target in seen:
                msg = f"cache[{i}] repeats {target[0]} {target[1]!r}; give each one rule"
                raise ValueError(msg)
            seen.add(target)
            if rule.tool is None:
                continue
            grant = self.tools.get(rule.tool)
            if grant is None:
                msg = f"cache[{i}].tool names {rule.tool!r}, which is not granted"
                raise ValueError(msg)
            if grant.effect is not Effect.READ:
                # Reusing a write's result would skip the write: only reads are answers.
                msg = (
                    f"cache[{i}].tool {rule.tool!r} has effect {grant.effect.value}; "
                    "only read tools can be cached"
                )
                raise ValueError(msg)

    def cache_ttl(self, *, label: str | None = None, tool: str | None = None) -> float | None:
        """The cache TTL in seconds for a model step's label or a tool; None: not cached."""
        for rule in self.cache:
            if (label is not None and rule.label == label) or (
                tool is not None and rule.tool == tool
            ):
                return rule.ttl
        return None

    def _check_budgets(self) -> None:
        budgets = [("budget", self.budget)] + [
            (f"environments.{env.value}.budget", section.budget)
            for env, section in self.environments.items()
            if section.budget is not None
        ]
        for where, budget in budgets:
            if budget.on_exceeded == "degrade" and self.routing.small_model is None:
                msg = f"{where}.on_exceeded 'degrade' needs routing.small_model to degrade to"
                raise ValueError(msg)
            if budget.on_exceeded == "escalate" and budget.escalate_tier not in self.approval_tiers:
                msg = f"{where}.on_exceeded 'escalate' needs escalate_tier: a defined tier"
                raise ValueError(msg)

    def _check_named_tools(self) -> None:
        rules = [("rate_limits", r) for r in self.rate_limits] + [
            (f"environments.{env.value}.rate_limits", r)
            for env, section in self.environments.items()
            for r in section.rate_limits or []
        ]
        named: list[tuple[str, str | None]] = [(w, r.tool) for w, r in rules if r.tool != "*"]
        named += [("routing.small_for.after_tool", r.after_tool) for r in self.routing.small_for]
        if self.verifier is not None:
            named += [("verifier.tools", t) for t in self.verifier.tools]
            if self.verifier.tier not in self.approval_tiers:
                msg = f"verifier.tier names unknown tier {self.verifier.tier!r}"
                raise ValueError(msg)
        for where, tool in named:
            if tool is not None and tool not in self.tools:
                msg = f"{where} names {tool!r}, which is not granted"
                raise ValueError(msg)

    def for_environment(self, environment: Environment | str) -> Contract:
        """This contract as it applies in `environment`: that section's limits in force.

        Raises:
            ContractError: The environment is not one Charter knows.
        """
        try:
            env = Environment(environment)
        except ValueError:
            known = ", ".join(e.value for e in Environment)
            raise ContractError(
                f"unknown environment {environment!r}", hint=f"one of {known}"
            ) from None
        base = self._base or self  # always derived from the file's own limits
        section = base.environments.get(env)
        changes: dict[str, object] = {"environment": env}
        if section is not None and section.budget is not None:
            changes["budget"] = section.budget
        if section is not None and section.rate_limits is not None:
            changes["rate_limits"] = section.rate_limits
        derived = base.model_copy(update=changes)
        derived._source = base._source  # noqa: SLF001 - same file, another view of it
        derived._roots = base._roots  # noqa: SLF001
        derived._base = base  # noqa: SLF001
        return derived

    @property
    def retention_class(self) -> str:
        """The retention class of the contract's environment."""
        section = self.environments.get(self.environment)
        return section.retention if section is not None else "standard"

    def retention_for(self, data_class: str | None = None) -> str:
        """The retention class of raw payloads of this `data_class` (None: the environment's)."""
        if data_class is not None and data_class in self.retention.data_classes:
            return self.retention.data_classes[data_class]
        return self.retention_class

    @property
    def redactor(self) -> Redactor:
        """The built-in detectors plus this contract's own patterns."""
        return self._redactor

    def autonomy_for(self, tool: str) -> Autonomy:
        """The autonomy stage that applies to `tool`."""
        grant = self.tools[tool]
        return grant.autonomy or self.autonomy

    @property
    def path(self) -> Path | None:
        """The file this contract was loaded from (not part of its hash)."""
        return self._source

    @property
    def roots(self) -> tuple[Path, ...]:
        """Where the files the contract names may lie: its own folder, then the allowed roots."""
        base = self._source.parent if self._source is not None else Path.cwd().resolve()
        return (base, *self._roots)

    def named_files(self) -> list[tuple[str, str]]:
        """(key path, file) for every file the contract names: policies, schema, prices."""
        named = [
            ("policy.policies", self.policy.policies),
            ("policy.schema", self.policy.schema_file),
        ]
        return named if self.prices is None else [*named, ("prices", self.prices)]

    def resolve(self, relative: str, *, key: str = "a path") -> Path:
        """A file named in the contract (`key`), resolved against the contract's folder.

        It must lead, after `..` and symlinks, into the contract's folder or an allowed root
        (see `load_contract`): a contract cannot make Charter read files elsewhere.

        Raises:
            ContractError: The path leads anywhere else, or is no usable path.
        """
        roots = self.roots
        allowed = ", ".join(str(root) for root in roots)
        try:
            path = (roots[0] / relative).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
            raise ContractError(
                f"{self._source or self.agent}: {key} {relative!r} is not a usable path "
                f"({type(exc).__name__})"
            ) from None
        if not any(path.is_relative_to(root) for root in roots):
            raise ContractError(
                f"{self._source or self.agent}: {key} {relative!r} leads outside the allowed "
                f"folders ({allowed})",
                hint="keep the file beside the contract, or add its folder to "
                "CHARTER_POLICY_ROOTS (load_contract(..., roots=...) in code)",
            )
        return path

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the contract: the hash recorded on every run."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def describe_error(error: ErrorDetails) -> str:
    """One validation problem as a line naming the key path and what was expected.

    Shared by every strictly validated file (contracts, assessments).
    """
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (remove it or check its spelling)"
    if kind == "missing":
        return f"{loc}: required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {_clip(got)})"
    return f"{loc}: {error['msg'].removeprefix('Value error, ')}{shown}"


def _clip(value: object, limit: int = 80) -> str:
    """A value's repr, cut short: a message must not grow with its input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_contract(path: str | Path, *, roots: Sequence[str | Path] = ()) -> Contract:
    """Read and strictly validate a contract file.

    The files it names (`policy.policies`, `policy.schema`, `prices`) must lie, after `..` and
    symlinks, in the contract's own folder or in one of `roots` (the CLI passes
    `Config.policy_roots`, from `CHARTER_POLICY_ROOTS`).

    Raises:
        ContractError: The file is missing, is not YAML, or does not match the contract schema;
            the message names the file, every failing key path and what was expected. Or a file
            it names lies outside its folder and `roots`: the message names the key and the
            allowed folders.
    """
    file = Path(path)
    raw = read_data(file, error=ContractError, what="contract")
    if not isinstance(raw, dict):
        raise ContractError(f"{file}: a contract is a YAML mapping, got {type(raw).__name__}")
    if raw.get("charter") != CONTRACT_FORMAT or isinstance(raw.get("charter"), bool):
        raise ContractError(
            f"{file}: charter: expected contract format {CONTRACT_FORMAT}, "
            f"got {_clip(raw.get('charter'))}",
            hint=f"start the file with 'charter: {CONTRACT_FORMAT}'",
        )
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {describe_error(e)}" for e in exc.errors())
        raise ContractError(
            f"{file}: contract is invalid ({exc.error_count()} problem(s)):\n{lines}",
            hint="see docs/contracts.md for every key and its type",
        ) from exc
    contract._source = file.resolve()  # noqa: SLF001 - the loader is the one writer
    contract._roots = tuple(Path(root).resolve() for root in roots)  # noqa: SLF001
    for key, named in contract.named_files():
        contract.resolve(named, key=key)
    return contract
