"""The input size stage, the input schema stage and the deterministic verifiers.

A call's arguments are weighed before anything else reads them: `within_limit` walks them, and
stops as soon as they pass the contract's `max_argument_bytes` (or nest deeper than
`MAX_ARGUMENT_DEPTH`), so a 10 MB argument costs what the limit costs to weigh. What is over is
replaced by a small stand-in: what the run records, hashes and replays from then on, and what
the `input_size` stage denies.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from charter._contract import Effect
from charter._decision import CheckResult

if TYPE_CHECKING:
    from pydantic import JsonValue

    from charter._events import ToolCallSpec
    from charter.gate._call import Call

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "OVERSIZED",
    "bounded_calls",
    "check_input_size",
    "check_schema",
    "check_verifiers",
    "within_limit",
]

OVERSIZED = "(oversized)"
"""The one key of the stand-in for arguments over the limit: not a name a Python field can
have, so a tool's real arguments are not mistaken for a stand-in."""

MAX_ARGUMENT_DEPTH = 64
"""Arguments nested deeper than this are refused like oversized ones: every later reader of them
(redaction, hashing, validation) recurses, and would fail on a few thousand levels."""

_END = object()


def _overflow(arguments: object, limit: int) -> dict[str, JsonValue] | None:
    """What is over in `arguments` (bytes or depth), or None when they are within bounds.

    The size is that of the compact JSON text in UTF-8, escapes aside. The walk is iterative and
    stops as soon as the size passes `limit`: a string is weighed by its length before it is
    encoded, and a container is weighed item by item.
    """
    size = 0
    stack: list[Any] = [iter((arguments,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        size += 1  # the comma or colon before it (or, at the top, a bracket)
        if isinstance(item, str):
            if len(item) > limit - size:  # a character is one byte at least
                return {"limit_bytes": limit, "at_least_bytes": size + len(item)}
            size += 2 + (len(item) if item.isascii() else len(item.encode(errors="replace")))
        elif isinstance(item, Mapping | list | tuple):
            if len(stack) > MAX_ARGUMENT_DEPTH:
                return {"limit_depth": MAX_ARGUMENT_DEPTH}
            size += 1 if item else 2  # the brackets beyond the one counted above
            pairs = item.items() if isinstance(item, Mapping) else ((child,) for child in item)
            stack.append(itertools.chain.from_iterable(pairs))
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += item.bit_length() * 3 // 10 + 2  # its decimal digits, and a sign
        else:  # floats and anything a JSON encoder would turn into a short string
            size += 24
        if size > limit:
            return {"limit_bytes": limit, "at_least_bytes": size}
    return None


def within_limit(arguments: dict[str, Any], limit: int) -> dict[str, Any]:
    """`arguments` themselves when within `limit` bytes and `MAX_ARGUMENT_DEPTH`, else a stand-in.

    The stand-in, `{"(oversized)": {"limit_bytes": L, "at_least_bytes": N}}` (or
    `{"limit_depth": D}`), says what was over; it is the same for the same arguments, so a run
    that recorded it replays. Nothing of the arguments themselves is in it.
    """
    over = _overflow(arguments, limit)
    return arguments if over is None else {OVERSIZED: over}


def bounded_calls(calls: tuple[ToolCallSpec, ...], limit: int) -> tuple[ToolCallSpec, ...]:
    """A model's proposed calls, each one's arguments `within_limit`; `calls` if none was over."""
    bounded = [within_limit(call.arguments, limit) for call in calls]
    if all(args is call.arguments for args, call in zip(bounded, calls, strict=True)):
        return calls
    return tuple(
        call.model_copy(update={"arguments": args})
        for args, call in zip(bounded, calls, strict=True)
    )


def check_input_size(call: Call) -> CheckResult:
    """Deny a call whose arguments were over the contract's `max_argument_bytes` or too deep."""
    limit = call.run.agent.contract.max_argument_bytes
    source = "contract:max_argument_bytes"
    over = call.spec.arguments.get(OVERSIZED)
    if isinstance(over, dict):
        if "limit_depth" in over:
            reason = f"arguments nest deeper than {over['limit_depth']} levels"
        else:
            reason = (
                f"arguments are at least {over.get('at_least_bytes')} bytes, over the limit of "
                f"{over.get('limit_bytes')} (max_argument_bytes)"
            )
        return CheckResult.denied("input_size", reason, source, **over)
    return CheckResult.passed("input_size", f"arguments within {limit} bytes", source)


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
