"""Data protection: redaction before anything is written in clear; raw payloads encrypted."""

from __future__ import annotations

from charter.privacy._redact import redact, redact_text
from charter.privacy._vault import Vault

__all__ = ["Vault", "redact", "redact_text"]
