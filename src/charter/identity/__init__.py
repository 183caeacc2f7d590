"""Who a principal is: canonical subjects, scoped roles, and tokens from OIDC issuers.

Pure values and checks, with no dependency on the store: the store and the gate build on them.
"""

from __future__ import annotations

from charter.identity._grants import ROLES, Grant, parse_grants
from charter.identity._oidc import ProviderConfig
from charter.identity._subject import (
    MAX_SUBJECT,
    canonical_subject,
    check_new_subject,
    same_person,
    skeleton,
)

__all__ = [
    "MAX_SUBJECT",
    "ROLES",
    "Grant",
    "ProviderConfig",
    "canonical_subject",
    "check_new_subject",
    "parse_grants",
    "same_person",
    "skeleton",
]
