"""Typed tools: the only way an agent touches the world.

A tool declares an input model, an output model and an effect class. Writes must accept an
idempotency key (the gate derives it from the run and step, so a retry or a resumed run can
never do the effect twice). `facts()` resolves the risk attributes the policy judges, from the
system of record rather than from what the agent claims; `preview()` returns the explicit diff
an approver sees.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from charter._contract import Effect
from charter.exceptions import ToolDefinitionError

__all__ = [
    "Change",
    "Facts",
    "Tool",
    "ToolContext",
    "Verifier",
    "tool",
]

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)

_TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Facts(BaseModel):
    """Risk attributes of one proposed call, as the policy sees them.

    Each field becomes a Cedar context attribute of the same name when it is set; `resource_*`
    fields describe the Cedar resource. Amounts are integers in minor units (cents) because
    Cedar has no floating point.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    resource_type: str = "Resource"
    resource_id: str = "unknown"
    resource_tenant: str | None = None
    """The tenant that owns the resource; compared with the agent's tenant by policy."""
    amount_minor: int | None = None
    currency: str | None = None
    customer_tier: str | None = None
    geography: str | None = None
    data_class: str | None = None
    severity: int | None = None
    environment: str | None = None
    in_change_window: bool | None = None
    extra: dict[str, str | int | bool] = Field(default_factory=dict)
    """Tool-specific attributes, passed to the policy context as they are."""


class Change(BaseModel):
    """One line of an action proposal's diff: what a field is now and what it would become."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    before: JsonValue
    after: JsonValue


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool knows about the call it is serving."""

    run_id: str
    step: int
    tenant_id: str
    idempotency_key: str
    """Stable for (run, step): pass it to the downstream API so a repeat does nothing."""
    attempt: int = 1


Verifier = Callable[[Any, Facts], str | None]
"""A deterministic check: returns why the call is refused, or None when it passes."""


@dataclass(frozen=True, kw_only=True)
class Tool(Generic[InT, OutT]):
    """A typed tool. Build one with the `tool` decorator or directly."""

    name: str
    description: str
    input_model: type[InT]
    output_model: type[OutT]
    effect: Effect
    run: Callable[[InT, ToolContext], OutT | dict[str, Any]]
    """Does the work. May return the output model or a dict; either is validated."""
    facts: Callable[[InT, ToolContext], Facts] | None = None
    preview: Callable[[InT, ToolContext], list[Change]] | None = None
    verifiers: tuple[Verifier, ...] = ()
    idempotent: bool = False
    """True when `run` passes `ctx.idempotency_key` downstream. Required for writes."""
    timeout_s: float | None = None
    """None: the contract's default tool timeout."""
    cost_usd: float = 0.0
    """Cost of one attempt, counted against the run's budget (a retried call pays each)."""
    max_attempts: int = 3
    """Attempts for retryable errors, including the first."""
    _schema: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Reject inconsistent declarations at definition time, not at the first call."""
        if not _TOOL_NAME.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} must be lower_snake_case, at most 64 characters"
            )
        if self.effect is not Effect.READ and not self.idempotent:
            raise ToolDefinitionError(
                f"tool {self.name!r} has effect {self.effect.value} but is not idempotent",
                hint="pass ctx.idempotency_key to the downstream API and declare idempotent=True",
            )
        if self.max_attempts < 1:
            raise ToolDefinitionError(f"tool {self.name!r}: max_attempts must be at least 1")
        object.__setattr__(self, "_schema", self.input_model.model_json_schema())

    @property
    def json_schema(self) -> dict[str, Any]:
        """The input JSON schema a model sees."""
        return self._schema


def tool(
    *,
    effect: Effect | str,
    description: str | None = None,
    name: str | None = None,
    facts: Callable[[Any, ToolContext], Facts] | None = None,
    preview: Callable[[Any, ToolContext], list[Change]] | None = None,
    verifiers: tuple[Verifier, ...] = (),
    idempotent: bool = False,
    timeout_s: float | None = None,
    cost_usd: float = 0.0,
    max_attempts: int = 3,
) -> Callable[[Callable[[Any, ToolContext], Any]], Tool[Any, Any]]:
    """Declare a tool from a function `(args: InputModel, ctx: ToolContext) -> OutputModel`.

    The input and output models are read from the function's annotations; the description
    defaults to its docstring.

    Example:
        ```python
        @tool(effect="read")
        def lookup_charge(args: LookupIn, ctx: ToolContext) -> Charge:
            "Look up a charge by id."
            ...
        ```
    """

    def declare(fn: Callable[[Any, ToolContext], Any]) -> Tool[Any, Any]:
        hints = typing.get_type_hints(fn)
        params = [v for k, v in hints.items() if k != "return"]
        in_model, out_model = (params[0] if params else None), hints.get("return")
        for label, model in (("first argument", in_model), ("return", out_model)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ToolDefinitionError(
                    f"tool {fn.__name__!r}: the {label} must be annotated with a pydantic model"
                )
        return Tool(
            name=name or fn.__name__,
            description=description or (fn.__doc__ or "").strip(),
            input_model=in_model,  # type: ignore[arg-type]
            output_model=out_model,  # type: ignore[arg-type]
            effect=Effect(effect),
            run=fn,
            facts=facts,
            preview=preview,
            verifiers=verifiers,
            idempotent=idempotent,
            timeout_s=timeout_s,
            cost_usd=cost_usd,
            max_attempts=max_attempts,
        )

    return declare
