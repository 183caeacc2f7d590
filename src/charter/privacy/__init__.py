"""Data protection: redaction before anything is written in clear."""

from __future__ import annotations

from charter.privacy._redact import redact, redact_text

__all__ = ["redact", "redact_text"]
