"""Autonomy assessment: from the risks of a workflow's tools to the autonomy its contract grants.

An assessment file rates each tool on five attributes. A fixed rule table (docs/autonomy.md)
turns the ratings into risk points and caps, and the result is a rung of Charter's ladder, with
the reasons that put it there. `lint_contract` then holds a contract against the assessment.
Everything here is deterministic: the same file always gives the same answer, in file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from charter._contract import Autonomy, Effect, Environment, describe_error
from charter._files import read_data
from charter.exceptions import AssessmentError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from charter._contract import Contract

__all__ = [
    "Assessment",
    "Detectability",
    "Finding",
    "Maturity",
    "Recommendation",
    "Reversibility",
    "Rung",
    "Sensitivity",
    "ToolRisk",
    "granted_rung",
    "lint_contract",
    "load_assessment",
    "recommend",
]


class Reversibility(StrEnum):
    """Whether a wrong action can be undone."""

    REVERSIBLE = "reversible"
    """Undone completely, at no cost (a draft reply, a label)."""
    COMPENSABLE = "compensable"
    """Repaired by a counter-action that costs something (a refund reversed, a correction sent)."""
    IRREVERSIBLE = "irreversible"
    """Cannot be undone (money paid out, data deleted, a message to a regulator)."""


class Sensitivity(StrEnum):
    """The most sensitive data the tool reads or writes."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"
    """Personal data (PII), credentials, health or payment data; the file may say `pii`."""


class Detectability(StrEnum):
    """How soon a wrong action would be noticed."""

    IMMEDIATE = "immediate"
    DELAYED = "delayed"
    SILENT = "silent"
    """Only an audit or a complaint would reveal it."""


class Maturity(StrEnum):
    """How much evidence there is that the tool behaves (guidance in docs/autonomy.md)."""

    NEW = "new"
    PILOTED = "piloted"
    PROVEN = "proven"


class Rung(StrEnum):
    """A step of Charter's autonomy ladder, lowest first; each is something a contract can say."""

    DRAFT = "draft"
    """`autonomy: draft`: writes become proposals; nothing executes."""
    SUGGEST = "suggest"
    """`autonomy: suggest` with an approval tier: every write waits for a human."""
    GATED = "autonomous_with_approval"
    """`autonomy: autonomous` with an approval tier: writes above a policy threshold wait."""
    AUTONOMOUS = "autonomous"
    """`autonomy: autonomous`, no approval tier needed."""

    @property
    def rank(self) -> int:
        """Position on the ladder; higher grants more autonomy."""
        return list(Rung).index(self)

    @property
    def autonomy(self) -> Autonomy:
        """The contract's `autonomy` value for this rung."""
        return Autonomy.AUTONOMOUS if self is Rung.GATED else Autonomy(self.value)

    @property
    def approval_required(self) -> bool:
        """Whether the contract must name an approval tier (draft executes nothing to approve)."""
        return self in {Rung.SUGGEST, Rung.GATED}

    @property
    def label(self) -> str:
        """A short human name."""
        return "autonomous + approval" if self is Rung.GATED else self.value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Usd = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
_RATINGS = (
    "financial_impact_usd",
    "reversibility",
    "data_sensitivity",
    "error_detectability",
    "maturity",
)


class ToolRisk(_Strict):
    """The ratings of one tool. A read tool may omit them; a write tool must give all five.

    An irreversible effect implies `reversibility: irreversible` and may not contradict it.
    """

    effect: Effect = Effect.WRITE
    """As in the contract; reads run autonomously whatever their ratings."""
    financial_impact_usd: Usd | None = None
    """The most money one wrong call can lose or move, in USD."""
    reversibility: Reversibility | None = None
    data_sensitivity: Sensitivity | None = None
    error_detectability: Detectability | None = None
    maturity: Maturity | None = None

    @field_validator("data_sensitivity", mode="before")
    @classmethod
    def _pii_is_restricted(cls, value: object) -> object:
        return (
            Sensitivity.RESTRICTED if isinstance(value, str) and value.lower() == "pii" else value
        )

    @model_validator(mode="before")
    @classmethod
    def _irreversible_effect_is_irreversible(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("effect") == Effect.IRREVERSIBLE:
            return {"reversibility": Reversibility.IRREVERSIBLE.value, **data}
        return data

    @model_validator(mode="after")
    def _writes_are_rated(self) -> ToolRisk:
        if (
            self.effect is Effect.IRREVERSIBLE
            and self.reversibility is not Reversibility.IRREVERSIBLE
        ):
            msg = f"effect irreversible contradicts reversibility {self.reversibility}"
            raise ValueError(msg)
        missing = [name for name in _RATINGS if getattr(self, name) is None]
        if self.effect is not Effect.READ and missing:
            msg = f"a {self.effect.value} tool must rate {', '.join(missing)}"
            raise ValueError(msg)
        return self

    @property
    def assessed_effect(self) -> Effect:
        """The effect, raised to irreversible when the tool's action cannot be undone."""
        if self.effect is Effect.WRITE and self.reversibility is Reversibility.IRREVERSIBLE:
            return Effect.IRREVERSIBLE
        return self.effect


class Assessment(_Strict):
    """A validated assessment file. Build one with `load_assessment`."""

    workflow: str | None = None
    """The workflow assessed; lint warns when the contract's differs."""
    environment: Environment | None = None
    """Where the ratings hold; lint warns when the contract's differs. It does not change scores."""
    tools: dict[str, ToolRisk] = Field(min_length=1)


# --- the rule table (docs/autonomy.md mirrors it; a test keeps them equal) -----------------------
class Rule(NamedTuple):
    """Risk points for one rating, and the highest rung it allows (`None`: no cap)."""

    points: int
    cap: Rung | None = None


_MONEY: tuple[tuple[float, Rule], ...] = (  # lower bound in USD (inclusive), first match wins
    (10_000, Rule(4, Rung.SUGGEST)),
    (1_000, Rule(3, Rung.GATED)),
    (100, Rule(2)),
)
_RULES: dict[str, dict[StrEnum, Rule]] = {  # rating -> value -> rule, in reason order
    "reversibility": {
        Reversibility.REVERSIBLE: Rule(0),
        Reversibility.COMPENSABLE: Rule(1),
        Reversibility.IRREVERSIBLE: Rule(3, Rung.SUGGEST),
    },
    "data_sensitivity": {
        Sensitivity.PUBLIC: Rule(0),
        Sensitivity.INTERNAL: Rule(1),
        Sensitivity.CONFIDENTIAL: Rule(2, Rung.GATED),
        Sensitivity.RESTRICTED: Rule(3, Rung.SUGGEST),
    },
    "error_detectability": {
        Detectability.IMMEDIATE: Rule(0),
        Detectability.DELAYED: Rule(1),
        Detectability.SILENT: Rule(2, Rung.GATED),
    },
    "maturity": {Maturity.PROVEN: Rule(0), Maturity.PILOTED: Rule(1), Maturity.NEW: Rule(2)},
}
_SCORE_BANDS: tuple[tuple[int, Rung], ...] = (  # lowest score (inclusive), first match wins
    (10, Rung.DRAFT),
    (7, Rung.SUGGEST),
    (3, Rung.GATED),
    (0, Rung.AUTONOMOUS),
)


def _money(usd: float) -> tuple[str, Rule]:
    """How one call's financial impact reads in a reason, and its rule."""
    shown = f"${usd:,.2f}".removesuffix(".00")
    for floor, rule in _MONEY:
        if usd >= floor:
            return f"{shown} (>= ${floor:,.0f})", rule
    return (f"{shown} (under $100)", Rule(1)) if usd > 0 else ("$0", Rule(0))


def _band(score: int) -> tuple[Rung, str]:
    """The rung a risk score alone gives, and the score range of that band."""
    ceiling = None
    for floor, rung in _SCORE_BANDS:
        if score >= floor:
            return rung, f"{floor}+" if ceiling is None else f"{floor}-{ceiling}"
        ceiling = floor - 1
    raise AssertionError(score)  # pragma: no cover - the last band starts at 0


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The rung the rule table gives one tool, and why."""

    tool: str
    effect: Effect
    rung: Rung
    risk_score: int
    reasons: tuple[str, ...]
    """What decided the rung first, then every rating that added points or a cap."""

    def to_dict(self) -> dict[str, object]:
        """The stable JSON shape of `charter assess --json`."""
        return {
            "tool": self.tool,
            "effect": self.effect.value,
            "autonomy": self.rung.autonomy.value,
            "approval_required": self.rung.approval_required,
            "level": self.rung.value,
            "risk_score": self.risk_score,
            "reasons": list(self.reasons),
        }


def _detail(what: str, rule: Rule, *, applied: bool) -> str | None:
    """One rating's line in the reasons, or `None` when it added nothing."""
    parts = [f"+{rule.points}"] if rule.points else []
    if rule.cap is not None and applied:
        parts.append(f"at most {rule.cap.label}")
    return f"{what}: {', '.join(parts)}" if parts else None


def recommend(tool: str, risk: ToolRisk) -> Recommendation:
    """Apply the rule table to one tool: the lowest of its score band, its caps and its combos."""
    rated: list[tuple[str, Rule]] = []
    if risk.financial_impact_usd is not None:
        shown, rule = _money(risk.financial_impact_usd)
        rated.append((f"financial_impact_usd {shown}", rule))
    for name, table in _RULES.items():
        value: StrEnum | None = getattr(risk, name)
        if value is not None:
            rated.append((f"{name} {value.value}", table[value]))
    if risk.error_detectability is Detectability.SILENT and risk.maturity is Maturity.NEW:
        rated.append(("silent errors from a new tool", Rule(0, Rung.DRAFT)))
    score = sum(rule.points for _, rule in rated)
    band, scores = _band(score)
    is_read = risk.effect is Effect.READ
    if is_read:
        # Charter's stages hold writes only; a risky read is for Cedar policy, not autonomy.
        rung = Rung.AUTONOMOUS
        why = "effect read: autonomy stages govern writes only, so reads run autonomously"
    else:
        rung = min([band, *(r.cap for _, r in rated if r.cap)], key=lambda r: r.rank)
        binding = ", ".join(what for what, r in rated if r.cap is rung)
        if rung is not band:
            why = f"capped at {rung.label} by {binding} (risk score {score} alone: {band.label})"
        else:
            why = f"risk score {score} is in the {scores} band: {band.label}"
            why += f"; also capped there by {binding}" if binding else ""
    details = [_detail(what, rule, applied=not is_read) for what, rule in rated]
    return Recommendation(
        tool=tool,
        effect=risk.effect,
        rung=rung,
        risk_score=score,
        reasons=(why, *(d for d in details if d is not None)),
    )


# --- lint -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing `charter contract lint` reports. Warnings fail the lint; info does not."""

    tool: str | None
    """The tool concerned, or `None` for the contract as a whole."""
    code: str
    message: str
    severity: Literal["warning", "info"] = "warning"

    def to_dict(self) -> dict[str, object]:
        """The stable JSON shape of one finding (the list it sits in gives its severity)."""
        return {"tool": self.tool, "code": self.code, "message": self.message}


_EFFECT_ORDER = (Effect.READ, Effect.WRITE, Effect.IRREVERSIBLE)


def granted_rung(contract: Contract, tool: str) -> Rung:
    """The rung the contract actually grants `tool`, as Charter's gate would enforce it."""
    grant = contract.tools[tool]
    stage = contract.autonomy_for(tool)
    if grant.effect is Effect.READ:
        return Rung.AUTONOMOUS
    if stage is Autonomy.DRAFT:
        return Rung.DRAFT
    if stage is Autonomy.SUGGEST or grant.effect is Effect.IRREVERSIBLE:
        # The gate holds every irreversible call, whatever the stage says.
        return Rung.SUGGEST
    return Rung.GATED if grant.approval is not None else Rung.AUTONOMOUS


def _contract_checks(contract: Contract, *, assessed: bool) -> Iterator[Finding]:
    in_force = contract.for_environment(contract.environment).budget
    if contract.environment is Environment.PROD and not in_force.capped:
        yield Finding(
            tool=None,
            code="prod_without_budget",
            message="a prod contract with no budget cap: a looping run spends without limit",
        )
    for name, grant in contract.tools.items():
        stage = contract.autonomy_for(name)
        if grant.effect is Effect.WRITE and stage is Autonomy.SUGGEST and grant.approval is None:
            yield Finding(
                tool=name,
                code="suggest_without_tier",
                message=f"suggest stage but no tools.{name}.approval: the gate refuses every "
                "write, because no one can approve it",
            )
        elif (
            not assessed
            and grant.effect is Effect.WRITE
            and granted_rung(contract, name) is Rung.AUTONOMOUS
        ):
            yield Finding(
                tool=name,
                code="ungated_write",
                severity="info",
                message="writes run with no approval tier; `charter assess` can confirm it is safe",
            )


def _compare(contract: Contract, assessment: Assessment) -> Iterator[Finding]:
    for key, ours, theirs in (
        ("workflow", contract.workflow, assessment.workflow),
        ("environment", contract.environment, assessment.environment),
    ):
        if theirs is not None and theirs != ours:
            yield Finding(
                tool=None,
                code=f"{key}_mismatch",
                message=f"the assessment is for {key} {theirs!s}, the contract for {ours!s}",
            )
    for name, grant in contract.tools.items():
        risk = assessment.tools.get(name)
        if risk is None:
            message = f"granted ({grant.effect.value}) but not in the assessment"
            yield Finding(tool=name, code="not_assessed", message=message)
            continue
        if _EFFECT_ORDER.index(grant.effect) < _EFFECT_ORDER.index(risk.assessed_effect):
            message = (
                f"the contract declares effect {grant.effect.value}, "
                f"the assessment finds it {risk.assessed_effect.value}"
            )
            yield Finding(tool=name, code="effect_mismatch", message=message)
        wanted = recommend(name, risk)
        granted = granted_rung(contract, name)
        if granted.rank <= wanted.rung.rank:
            continue
        code = "autonomy_above_assessment"
        if granted.autonomy is wanted.rung.autonomy:
            code = "approval_tier_missing"
        message = (
            f"the contract grants {granted.label} (autonomy {contract.autonomy_for(name).value}, "
            f"approval {grant.approval or 'none'}); the assessment recommends "
            f"{wanted.rung.label}: {wanted.reasons[0]}"
        )
        yield Finding(tool=name, code=code, message=message)
    for name in assessment.tools:
        if name not in contract.tools:
            message = "assessed but not granted by the contract"
            yield Finding(tool=name, code="not_granted", severity="info", message=message)


def lint_contract(contract: Contract, assessment: Assessment | None = None) -> list[Finding]:
    """Check a contract on its own and, given an assessment, against its recommendations."""
    found = list(_contract_checks(contract, assessed=assessment is not None))
    if assessment is not None:
        found.extend(_compare(contract, assessment))
    return found


# --- loading ------------------------------------------------------------------------------------
def load_assessment(path: str | Path) -> Assessment:
    """Read and strictly validate an assessment file (YAML, or JSON when it ends in `.json`).

    Raises:
        AssessmentError: The file is missing, does not parse, or does not match the schema; the
            message names the file, every failing key path and what was expected.
    """
    file = Path(path)
    as_json = file.suffix.lower() == ".json"
    raw = read_data(file, error=AssessmentError, what="assessment", as_json=as_json)
    if not isinstance(raw, dict):
        raise AssessmentError(f"{file}: an assessment is a mapping, got {type(raw).__name__}")
    try:
        return Assessment.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {describe_error(e)}" for e in exc.errors())
        raise AssessmentError(
            f"{file}: assessment is invalid ({exc.error_count()} problem(s)):\n{lines}",
            hint="see docs/autonomy.md for every key and its values",
        ) from exc
