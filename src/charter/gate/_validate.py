"""Stage 4 (input schema) and stage 7 (deterministic verifiers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from charter._contract import Effect
from charter._decision import CheckResult

if TYPE_CHECKING:
    from charter.gate._call import Call

__all__ = ["check_schema", "check_verifiers"]


def check_schema(call: Call) -> CheckResult:
    """Deny arguments the tool's input model rejects; say which field and why."""
    assert call.tool is not None  # noqa: S101 - the grant stage ran first
    try:
        call.args = call.tool.input_model.model_validate(call.spec.arguments, strict=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
            for e in exc.errors()
        )
        return CheckResult.denied(
            "schema",
            f"arguments do not match {call.tool.input_model.__name__}: {problems}",
            f"tool:{call.tool.name}.input",
        )
    return CheckResult.passed(
        "schema", f"arguments match {call.tool.input_model.__name__}", f"tool:{call.tool.name}"
    )


def check_verifiers(call: Call) -> CheckResult:
    """Deny on contract bounds and allow-lists, a missing idempotency key, or a tool verifier."""
    assert call.tool is not None  # noqa: S101
    assert call.grant is not None  # noqa: S101
    assert call.args is not None  # noqa: S101
    assert call.facts is not None  # noqa: S101
    name = call.tool.name
    args = call.args
    for field, bound in call.grant.bounds.items():
        value = getattr(args, field, None)
        if not isinstance(value, int | float):
            return CheckResult.denied(
                "verifiers", f"{field} is bounded but not numeric", f"contract:tools.{name}.bounds"
            )
        if (bound.min is not None and value < bound.min) or (
            bound.max is not None and value > bound.max
        ):
            return CheckResult.denied(
                "verifiers",
                f"{field}={value} is outside [{bound.min}, {bound.max}]",
                f"contract:tools.{name}.bounds.{field}",
            )
    for field, allowed in call.grant.allow.items():
        value = getattr(args, field, None)
        if value not in allowed:
            return CheckResult.denied(
                "verifiers",
                f"{field}={value!r} is not in the allow-list",
                f"contract:tools.{name}.allow.{field}",
            )
    if call.grant.effect is not Effect.READ and not (call.tool.idempotent and call.idempotency_key):
        return CheckResult.denied(
            "verifiers", "a write without an idempotency key", f"tool:{name}.idempotent"
        )
    for verifier in call.tool.verifiers:
        problem = verifier(call.args, call.facts)
        if problem is not None:
            return CheckResult.denied(
                "verifiers", problem, f"tool:{name}.verifier:{verifier.__name__}"
            )
    checked = len(call.grant.bounds) + len(call.grant.allow) + len(call.tool.verifiers)
    return CheckResult.passed("verifiers", f"{checked} verifier(s) passed", f"tool:{name}")
