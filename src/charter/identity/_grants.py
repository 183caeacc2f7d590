"""Roles and their scopes: what a person may do, and for which tenant, workflow and tier.

A grant is a role with optional scopes, written `role` or `role:key=value,key=value`:
`approver:tenant=acme,tier=finance` approves `finance`-tier requests of tenant `acme`'s runs
only; `operator:workflow=billing-dispute` engages kill switches, cancels runs and reads raw
payloads of that workflow only; a bare `operator` acts everywhere. A scope left out means any.
An action that spans every tenant (a kill switch without `--tenant`) needs a grant without a
tenant scope: a grant never reaches past what it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from charter.exceptions import UserError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ROLES", "Grant", "parse_grants"]

ROLES = ("admin", "approver", "auditor", "operator")
"""admin: creates, changes and revokes principals; approver: decides approval requests;
operator: kill switches, cancellation, cache, break-glass and retention; auditor: reads logs."""

_SCOPES = ("tenant", "workflow", "tier")
_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, kw_only=True, order=True)
class Grant:
    """One role, limited to a tenant, a workflow and (for approvers) a tier; None: any."""

    role: str
    tenant: str | None = None
    workflow: str | None = None
    tier: str | None = None

    def __str__(self) -> str:
        """The grant as written on the command line: `approver:tenant=acme,tier=finance`."""
        scopes = [f"{key}={value}" for key in _SCOPES if (value := getattr(self, key))]
        return self.role + (":" + ",".join(scopes) if scopes else "")

    @classmethod
    def parse(cls, text: str) -> Grant:
        """Read `role` or `role:key=value,...`.

        Raises:
            UserError: An unknown role or scope key, a repeated key, or a malformed value.
        """
        role, _, scoped = text.strip().partition(":")
        if role not in ROLES:
            raise UserError(
                f"unknown role {role!r} in {text!r}; roles are {', '.join(ROLES)}",
                hint="e.g. --role approver:tenant=acme,tier=finance or --role operator",
            )
        values: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in scoped.split(","))):
            key, eq, value = part.partition("=")
            if not eq or key not in _SCOPES or key in values or not _VALUE.match(value):
                raise UserError(
                    f"bad scope {part!r} in {text!r}: scopes are tenant=, workflow= and tier=, "
                    "each once, with a name as value",
                    hint="e.g. approver:tenant=acme,tier=finance",
                )
            values[key] = value
        if "tier" in values and role != "approver":
            raise UserError(f"only an approver grant has a tier scope, got {text!r}")
        return cls(role=role, **values)

    def covers(
        self,
        role: str,
        *,
        tenant: str | None = None,
        workflow: str | None = None,
        tier: str | None = None,
    ) -> bool:
        """Whether this grant allows `role` over the given scope (None: every one of them)."""
        return (
            self.role == role
            and _within(self.tenant, tenant)
            and _within(self.workflow, workflow)
            and _within(self.tier, tier)
        )

    def within(self, other: Grant) -> bool:
        """Whether everything this grant allows, `other` allows too (an admin's reach)."""
        return (
            _within(other.tenant, self.tenant)
            and _within(other.workflow, self.workflow)
            and _within(other.tier, self.tier)
        )


def _within(granted: str | None, asked: str | None) -> bool:
    """A scoped grant reaches its own value only; an unscoped one reaches everything."""
    return granted is None or granted == asked


def parse_grants(texts: Iterable[str]) -> tuple[Grant, ...]:
    """Grants from their written forms, deduplicated and sorted.

    Raises:
        UserError: None given, or one does not parse.
    """
    grants = tuple(sorted({Grant.parse(text) for text in texts}))
    if not grants:
        raise UserError(
            "a person needs at least one role",
            hint=f"--role with one of {', '.join(ROLES)}, e.g. --role approver:tenant=acme",
        )
    return grants
