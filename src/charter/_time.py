"""One timestamp format for everything Charter stores, so stored times compare as strings."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso", "utcnow"]


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """`moment` in UTC as ISO 8601 with microseconds: fixed width, so sortable as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
