"""The Cedar backend, through cedarpy.

Policies are parsed and validated against the schema once, at load; every policy must carry an
`@id`. A `forbid` annotated `@approval_tier("name")` is an approval gate: when the only policies
refusing a request are approval gates, and the request would be allowed without them, the
decision is `approval` with that tier rather than `deny`.

Cedar's parse errors quote the text they fail on. Loaded from files, a policy file is quoted only
when it is named as one (`*.cedar`, `*.cedarschema`): a contract that points `policies:` at a
key file or a password file gets an error with the line alone, never the line itself. A file that
does parse is Cedar, and its own policy ids and validation messages are shown as they are.
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
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["CedarPolicy"]

# A statement ends with ";" at the end of a line; good enough to point at the broken one.
_STATEMENT_END = re.compile(r"(?<=;)[ \t]*\n")
_BRACKET = re.compile(r"[\[\](){}]")
_MAX_NESTING = 64
"""Brackets nested deeper than this are refused before Cedar reads them: its parser recurses
natively, and a few hundred levels overflow the process's stack (a crash, not an error)."""


class CedarPolicy:
    """A validated Cedar policy set with its schema, ready to evaluate requests."""

    def __init__(
        self,
        *,
        policies: str,
        schema: str,
        source: str = "<policies>",
        quote: bool = True,
        approvers: Mapping[str, int] | None = None,
    ) -> None:
        """Parse and validate; raise `PolicyLoadError` pointing at the failing policy.

        `quote`: a parse error may show the text it failed on (Cedar's message, the failing
        statement's first line); off, it names the line only (see `from_files`).
        `approvers`: each approval tier's number of approvers (the contract's), so that when
        several gates hold one request the strictest tier applies; without it, the tier of the
        first gate in policy-id order.
        """
        self.source = source
        self._approvers = dict(approvers or {})
        self.text = policies
        self._schema, self._all = _parse(policies, schema, source, quote=quote)
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
    def from_files(
        cls, *, policies: Path, schema: Path, approvers: Mapping[str, int] | None = None
    ) -> CedarPolicy:
        """Load policies and schema from files.

        Parse errors quote the text only when both files are named as what they are (`*.cedar`,
        `*.cedarschema` or `*.cedarschema.json`, after symlinks): no other file is echoed.

        Raises:
            PolicyLoadError: A file is missing, not a regular file, not UTF-8 text or not Cedar,
                or the policies do not validate against the schema.
        """
        quote = policies.resolve().name.endswith(".cedar") and (
            schema.resolve().name.endswith((".cedarschema", ".cedarschema.json"))
        )
        return cls(
            policies=_read(policies),
            schema=_read(schema),
            source=str(policies),
            quote=quote,
            approvers=approvers,
        )

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
                # Cedar lists the gates in no set order; the strictest one decides, and among
                # equals the first by id, so one request always gets one tier.
                gates = sorted(reasons, key=lambda r: self._ids[r])
                tiers = tuple(dict.fromkeys(self._tiers[r] for r in gates))
                tier = max(tiers, key=lambda t: self._approvers.get(t, 0))
                return PolicyDecision(
                    effect="approval",
                    reason=f"held by {', '.join(sorted(ids))}: needs approval ({tier})",
                    policy_ids=ids,
                    tier=tier,
                    tiers=tiers,
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


_WITHHELD = " (Cedar's message quotes the file, so it is shown only for *.cedar files)"


def _read(path: Path) -> str:
    """A policy or schema file's text."""
    try:
        if path.exists() and not path.is_file():
            # A FIFO or device would block or never end; a folder is a mistake.
            raise PolicyLoadError(f"{path}: not a regular file")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyLoadError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(
            f"{path}: not Cedar: not UTF-8 text (byte {exc.start} is not)"
        ) from None


def _parse(
    policies: str, schema: str, source: str, *, quote: bool
) -> tuple[cedarpy.Schema, cedarpy.PolicySet]:
    for what, text in (("schema", schema), ("policies", policies)):
        if _nesting(text) > _MAX_NESTING:
            raise PolicyLoadError(
                f"{source}: brackets in the Cedar {what} nest deeper than {_MAX_NESTING} levels"
            )
    try:
        parsed_schema = cedarpy.Schema.from_str(schema)
    except ValueError as exc:
        said = f": {exc}" if quote else _WITHHELD
        raise PolicyLoadError(f"{source}: the Cedar schema does not parse{said}") from None
    try:
        return parsed_schema, cedarpy.PolicySet.from_str(policies)
    except ValueError as exc:
        raise PolicyLoadError(_locate_parse_error(policies, source, exc, quote=quote)) from None


def _nesting(text: str) -> int:
    """How deep brackets nest in `text` (brackets in strings and comments count too)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(text):
        depth = depth + 1 if match.group() in "([{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _locate_parse_error(policies: str, source: str, exc: ValueError, *, quote: bool) -> str:
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
            if not quote:
                return f"{source}:{line}: the policy starting here does not parse{_WITHHELD}"
            first = stripped.splitlines()[0]
            return f"{source}:{line}: policy starting {first!r} does not parse: {exc}"
    return f"{source}: policies do not parse" + (f": {exc}" if quote else _WITHHELD)
