"""Turns sandbox API errors into Charter's typed tool errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from charter.exceptions import PermanentToolError, RetryableToolError, ToolError
from charter.sandbox import SandboxError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["calling"]

T = TypeVar("T")


def calling(api: Callable[[], T]) -> T:
    """Call a sandbox API; a 429 or 5xx becomes retryable, anything else permanent."""
    try:
        return api()
    except SandboxError as exc:
        kind: type[ToolError] = RetryableToolError if exc.retryable else PermanentToolError
        raise kind(f"{exc.status} {exc.code}: {exc.message}", code=exc.code) from exc
