"""The artifact cache: answers of model steps and read tools, reused for the contract's TTL.

An answer is found by a content hash of everything that shapes it: for a model step its label,
the model, the whole conversation and the tools offered; for a read tool the tool, its output
schema and the exact arguments. The agent, workflow, environment and tenant are part of every
key, so an answer is never reused across tenants or from dev in prod. The value is sealed under
the tenant's key with the cache key as associated data, so a value moved under another key does
not open.

A cached answer is an optimisation, never a source of truth: an entry that does not open (its
tenant's key rotated or destroyed, its bytes altered) is a miss. A hit is recorded in the run
that uses it, with its raw copy sealed there too, so replay never needs the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from charter._time import iso
from charter.exceptions import StoreError
from charter.gate._call import input_hash
from charter.store import CacheEntry

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pydantic import BaseModel

    from charter._contract import Contract
    from charter.models import Message, ToolSpec
    from charter.privacy import Vault
    from charter.store import Store

__all__ = ["ArtifactCache", "CachedAnswer"]

_SLOT = "(cache)"
"""The run id cache values are sealed under; no run can take it."""


@dataclass(frozen=True, kw_only=True)
class CachedAnswer:
    """A live cache entry, opened."""

    value: Any
    source: str
    """`run_id/step` of the step that produced it."""


class ArtifactCache:
    """Looks up and keeps cached answers in one store, sealed per tenant."""

    def __init__(self, store: Store, vault: Vault, clock: Callable[[], datetime]) -> None:
        """Cache in `store`, sealing with `vault`; `clock` decides what has expired."""
        self._store = store
        self._vault = vault
        self._clock = clock

    @staticmethod
    def model_key(
        contract: Contract,
        tenant_id: str,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        label: str,
    ) -> str:
        """The key of a model step's answer.

        Its label (whose rule sets the TTL), the model, the conversation and the tools offered.
        """
        conversation = [
            [m.role, m.content, [c.model_dump(mode="json") for c in m.tool_calls], m.tool_call_id]
            for m in messages
        ]
        offered = [[t.name, t.description, t.parameters] for t in tools]
        return _digest("model", *_scope(contract, tenant_id), label, model, conversation, offered)

    @staticmethod
    def tool_key(
        contract: Contract,
        tenant_id: str,
        tool: str,
        output_model: type[BaseModel],
        arguments: dict[str, Any],
    ) -> str:
        """The key of a read tool's result: the tool, its output schema and the arguments."""
        return _digest(
            "tool",
            *_scope(contract, tenant_id),
            tool,
            _schema_digest(output_model),
            input_hash(arguments),
        )

    def get(self, key: str, *, tenant_id: str) -> CachedAnswer | None:
        """The live answer under `key`, or None (also when it does not open)."""
        entry = self._store.cache_get(key, now=iso(self._clock()))
        if entry is None or entry.tenant_id != tenant_id:
            return None
        try:
            value = self._vault.open(tenant_id=tenant_id, run_id=_SLOT, name=key, data=entry.value)
        except StoreError:
            return None
        return CachedAnswer(value=value, source=entry.source)

    def put(
        self,
        key: str,
        *,
        contract: Contract,
        tenant_id: str,
        kind: Literal["model", "tool"],
        name: str,
        source: str,
        value: Any,  # noqa: ANN401 - any JSON value
        ttl_s: float,
    ) -> None:
        """Keep `value` under `key` for `ttl_s` seconds."""
        now = self._clock()
        entry = CacheEntry(
            key=key,
            tenant_id=tenant_id,
            workflow=contract.workflow,
            kind=kind,
            name=name,
            source=source,
            value=self._vault.seal(
                tenant_id=tenant_id,
                run_id=_SLOT,
                name=key,
                value=value,
                workflow=contract.workflow,
                retention=contract.retention_class,
            ),
            created_at=iso(now),
            expires_at=iso(now + timedelta(seconds=ttl_s)),
        )
        self._store.cache_put(entry)


def _scope(contract: Contract, tenant_id: str) -> tuple[str, str, str, str]:
    # The environment too: a dev run's answer is never served in prod.
    return (contract.agent, contract.workflow, contract.environment.value, tenant_id)


def _digest(*parts: Any) -> str:  # noqa: ANN401 - JSON values
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@lru_cache(maxsize=256)
def _schema_digest(model: type[BaseModel]) -> str:
    # A tool whose output changes shape must not be answered with the old shape.
    return _digest(model.model_json_schema())
