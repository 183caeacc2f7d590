"""The Cedar backend, through cedarpy.

Policies are parsed and validated against the schema once, at load; every policy must carry an
`@id`. A `forbid` annotated `@approval_tier("name")` is an approval gate: when the only policies
refusing a request are approval gates, and the request would be allowed without them, the
decision is `approval` with that tier rather than `deny`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

import cedarpy

from charter.exceptions import PolicyLoadError
from charter.policy._engine import PolicyDecision, PolicyRequest

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CedarPolicy"]

# A statement ends with ";" at the end of a line; good enough to point at the broken one.
_STATEMENT_END = re.compile(r"(?<=;)[ \t]*\n")


class CedarPolicy:
    """A validated Cedar policy set with its schema, ready to evaluate requests."""

    def __init__(self, *, policies: str, schema: str, source: str = "<policies>") -> None:
        """Parse and validate; raise `PolicyLoadError` pointing at the failing policy."""
        self.source = source
        self.text = policies
        try:
            self._schema = cedarpy.Schema.from_str(schema)
        except ValueError as exc:
            raise PolicyLoadError(f"{source}: the Cedar schema does not parse: {exc}") from exc
        try:
            self._all = cedarpy.PolicySet.from_str(policies)
        except ValueError as exc:
            raise PolicyLoadError(_locate_parse_error(policies, source, exc)) from exc
        static: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(policies))[
            "staticPolicies"
        ]
        self._ids: dict[str, str] = {}
        self._tiers: dict[str, str] = {}
        for internal, body in static.items():
            annotations: dict[str, str] = body.get("annotations", {})
            if not annotations.get("id"):
                raise PolicyLoadError(
                    f"{source}: policy #{int(internal.removeprefix('policy')) + 1} has no @id",
                    hint='annotate every policy, e.g. @id("refund-small-auto"), so decisions '
                    "can name it",
                )
            self._ids[internal] = annotations["id"]
            if "approval_tier" in annotations:
                if body["effect"] != "forbid":
                    raise PolicyLoadError(
                        f"{source}: policy {annotations['id']!r} has @approval_tier but is a "
                        "permit; approval gates are forbid policies with an 'unless' on "
                        "context.approvals_granted"
                    )
                self._tiers[internal] = annotations["approval_tier"]
        duplicates = {i for i in self._ids.values() if list(self._ids.values()).count(i) > 1}
        if duplicates:
            raise PolicyLoadError(f"{source}: duplicate policy @id {sorted(duplicates)}")
        result = cedarpy.validate_policies(policies, self._schema)
        if not result.validation_passed:
            problems = "\n".join(
                f"  policy {self._ids.get(e.policy_id, e.policy_id)!r}: {e.error}"
                for e in result.errors
            )
            raise PolicyLoadError(f"{source}: policies do not match the schema:\n{problems}")
        # The same set minus the approval gates: evaluated only to tell "approve to proceed"
        # from "refused whatever anyone approves".
        ungated = {k: v for k, v in static.items() if k not in self._tiers}
        self._ungated = cedarpy.PolicySet.from_json_str(
            json.dumps({"staticPolicies": ungated, "templates": {}, "templateLinks": []})
        )
        self._digest = hashlib.sha256(f"{schema}\n--\n{policies}".encode()).hexdigest()

    @classmethod
    def from_files(cls, *, policies: Path, schema: Path) -> CedarPolicy:
        """Load policies and schema from files."""
        try:
            return cls(
                policies=policies.read_text(encoding="utf-8"),
                schema=schema.read_text(encoding="utf-8"),
                source=str(policies),
            )
        except OSError as exc:
            raise PolicyLoadError(f"cannot read {exc.filename}: {exc.strerror}") from exc

    @property
    def digest(self) -> str:
        """SHA-256 of the schema and policy text."""
        return self._digest

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """Every policy's `@id`."""
        return tuple(self._ids.values())

    @property
    def approval_tiers(self) -> dict[str, str]:
        """Approval-gate policy id -> the tier it asks for."""
        return {self._ids[k]: v for k, v in self._tiers.items()}

    def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        """Decide, failing closed.

        Errors of any kind deny, including an error inside one policy: Cedar alone skips an
        erroring `forbid`, which could turn a refusal into an allow.
        """
        cedar_request, entities = _to_cedar(request)
        try:
            result = cedarpy.is_authorized(cedar_request, self._all, entities, schema=self._schema)
        except Exception as exc:  # noqa: BLE001 - any engine failure must deny, not propagate
            return PolicyDecision(effect="deny", reason=f"policy engine failed: {exc}")
        errors = tuple(result.diagnostics.errors)
        if errors:
            return PolicyDecision(
                effect="deny",
                reason=f"policy evaluation error (fail closed): {errors[0]}",
                errors=errors,
            )
        reasons: list[str] = result.diagnostics.reasons
        ids = tuple(self._ids.get(r, r) for r in reasons)
        if result.decision is cedarpy.Decision.Allow:
            return PolicyDecision(effect="allow", reason="permitted", policy_ids=ids)
        if not reasons:
            return PolicyDecision(effect="deny", reason="no policy permits this (default deny)")
        if all(r in self._tiers for r in reasons):
            ungated = cedarpy.is_authorized(
                cedar_request, self._ungated, entities, schema=self._schema
            )
            if ungated.decision is cedarpy.Decision.Allow and not ungated.diagnostics.errors:
                tier = self._tiers[reasons[0]]
                return PolicyDecision(
                    effect="approval",
                    reason=f"held by {', '.join(ids)}: needs approval ({tier})",
                    policy_ids=ids,
                    tier=tier,
                )
        return PolicyDecision(
            effect="deny", reason=f"forbidden by {', '.join(ids)}", policy_ids=ids
        )


def _to_cedar(request: PolicyRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    principal, resource = request.principal, request.resource
    entities = [
        {
            "uid": {"type": principal.type, "id": principal.id},
            "attrs": principal.attrs,
            "parents": [],
        },
        {"uid": {"type": resource.type, "id": resource.id}, "attrs": resource.attrs, "parents": []},
    ]
    cedar_request = {
        "principal": {"type": principal.type, "id": principal.id},
        "action": {"type": "Action", "id": request.action},
        "resource": {"type": resource.type, "id": resource.id},
        "context": request.context,
    }
    return cedar_request, entities


def _locate_parse_error(policies: str, source: str, exc: ValueError) -> str:
    """Cedar's parse errors carry no position; find the first statement that fails on its own."""
    offset = 0
    for chunk in _STATEMENT_END.split(policies):
        begin = policies.index(chunk, offset)
        offset = begin + len(chunk)
        if not chunk.strip():
            continue
        try:
            cedarpy.PolicySet.from_str(chunk)
        except ValueError:
            stripped = chunk.lstrip()
            line = policies.count("\n", 0, begin + len(chunk) - len(stripped)) + 1
            first = stripped.splitlines()[0]
            return f"{source}:{line}: policy starting {first!r} does not parse: {exc}"
    return f"{source}: policies do not parse: {exc}"
