"""Fakes that speak the real protocols, for testing code that integrates Charter."""

from __future__ import annotations

from charter.testing._issuer import LocalIssuer

__all__ = ["LocalIssuer"]
