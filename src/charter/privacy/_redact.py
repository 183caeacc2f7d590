"""Redaction before write: what reaches the log in clear never carries these.

Deliberately conservative and small: emails, payment card numbers (Luhn-checked, so order ids
survive), and common secret and API-key shapes. Values are replaced with a typed marker so a
reader still sees that something was there.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact", "redact_text"]

# The local part admits every character RFC 5322 allows unquoted.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_SECRET = re.compile(
    r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}\b"  # Stripe-style keys
    r"|\bsk-[A-Za-z0-9_-]{16,}\b"  # OpenAI/Anthropic-style keys
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}\b"  # GitHub tokens
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bchr_[A-Za-z0-9_-]{20,}"  # Charter's own credentials
)


# A superset of what the three patterns above can match, in one pass: most strings the gate
# writes (check reasons, ids) have none of it, and skip the three full scans.
_MAYBE = re.compile(r"@|(?:\d[ -]?){13}|\b(?:sk|pk|rk)_|\bsk-|\bgh[pousr]_|\bAKIA|\bchr_")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2  # noqa: PLR2004 - the Luhn doubling rule
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if _luhn(digits) else match.group()


def redact_text(text: str) -> str:
    """The text with secrets, emails and card numbers replaced by markers."""
    if not _MAYBE.search(text):
        return text
    text = _SECRET.sub("[secret]", text)
    text = _EMAIL.sub("[email]", text)
    return _CARD.sub(_card, text)


def redact(value: Any) -> Any:  # noqa: ANN401 - any JSON value in, the same shape out
    """Redact every string inside a JSON-like value, keeping its shape."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
