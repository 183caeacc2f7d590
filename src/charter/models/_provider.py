"""What the provider models share: the prompt estimate and typed errors without secrets."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from charter.exceptions import ModelError, ModelRateLimited, ModelUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from charter.models._base import Message, ToolSpec

__all__ = ["prompt_tokens", "typed_error"]


def prompt_tokens(messages: list[Message], tools: list[ToolSpec]) -> int:
    """An upper estimate of a request's prompt tokens, before it is sent."""
    chars = sum(
        len(m.content) + sum(len(c.tool) + len(json.dumps(c.arguments)) for c in m.tool_calls)
        for m in messages
    )
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in tools)
    # Four characters a token is the usual rule of thumb; rounding up keeps it an upper bound.
    return math.ceil(chars / 4)


def typed_error(
    *,
    where: str,
    detail: str,
    secrets: Iterable[str | None],
    rate_limited: bool,
    unreachable: bool,
    status: int | None,
    max_retries: int,
    hints: Mapping[int, str],
) -> ModelError:
    """The Charter error for a provider's failure, with every secret taken out of its text."""
    for secret in secrets:
        # A server may echo the key back; it must not reach logs or the event store.
        if secret:
            detail = detail.replace(secret, "[redacted]")
    retried = f"max_retries={max_retries}"
    if rate_limited:
        return ModelRateLimited(
            f"{where}: rate limited ({retried}): {detail}",
            hint="lower the request rate, raise max_retries, or check the account's limits",
        )
    if unreachable:
        return ModelUnavailable(
            f"{where}: no answer ({retried}): {detail}",
            hint="check base_url and that the server is running",
        )
    if status is not None and (status >= 500 or status == 408):  # noqa: PLR2004 - HTTP
        return ModelUnavailable(f"{where}: server error {status} ({retried}): {detail}")
    return ModelError(
        f"{where}: request refused ({status}): {detail}",
        hint=hints.get(status or 0, "check the request the model was given"),
    )
