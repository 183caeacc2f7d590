"""Reasons for the audit log: present, printable, bounded, and redacted before they are kept."""

from __future__ import annotations

from charter.exceptions import ReasonInvalid, UserError
from charter.privacy import redact_text

__all__ = ["MAX_REASON", "checked_reason"]

MAX_REASON = 500
"""The longest reason accepted, in characters."""


def checked_reason(reason: str, *, refused: type[UserError] = ReasonInvalid) -> str:
    """A reason fit for the audit log: present, printable, bounded; redacted before it is kept.

    Raises `refused` (an approval's own refusal for approvals) when it is not.
    """
    text = reason.strip()
    if not text:
        raise refused("a reason is required", hint='--reason "why you decided so"')
    if len(text) > MAX_REASON or not text.isprintable():
        raise refused(
            f"the reason must be one printable line of at most {MAX_REASON} characters",
            hint="shorten it; link to a ticket for the long story",
        )
    return redact_text(text)
