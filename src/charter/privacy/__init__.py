"""Data protection: redaction before anything is written in clear; raw payloads encrypted."""

from __future__ import annotations

from charter.privacy._keys import KeyProvider, LocalKeyring, MemoryKeyring, key_id, key_parts
from charter.privacy._redact import DETECTORS, Finding, Redactor, find, redact, redact_text
from charter.privacy._vault import Vault, sealed_key_id

__all__ = [
    "DETECTORS",
    "Finding",
    "KeyProvider",
    "LocalKeyring",
    "MemoryKeyring",
    "Redactor",
    "Vault",
    "find",
    "key_id",
    "key_parts",
    "redact",
    "redact_text",
    "sealed_key_id",
]
