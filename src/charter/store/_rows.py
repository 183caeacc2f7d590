"""The runs table's summary columns, and the record each row is read into (both backends)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charter.store._base import KillSwitch, RunRecord

if TYPE_CHECKING:
    from charter.store._db import Row

__all__ = ["RUN_COLUMNS", "record_from_row", "record_values", "switch_from_row"]

RUN_COLUMNS = (
    "run_id, agent, workflow, tenant_id, principal_id, model, model_kind, contract_version, "
    "contract_hash, policy_hash, budget_usd, status, outcome, reason, cost_usd, prompt_tokens, "
    "completion_tokens, started_at, updated_at, event_count, initiator, runnable, wake_at"
)
"""The columns a `RunRecord` is read from, in its field order."""

_NAMES = tuple(name.strip() for name in RUN_COLUMNS.split(","))


def record_values(record: RunRecord) -> tuple[Any, ...]:
    """A record's values in `RUN_COLUMNS` order, as the database stores them."""
    values = {name: getattr(record, name) for name in _NAMES}
    return tuple({**values, "runnable": int(record.runnable)}.values())


def record_from_row(row: Row) -> RunRecord:
    """The record of a runs row read with `RUN_COLUMNS`."""
    values = {name: row[name] for name in _NAMES}
    return RunRecord(**{**values, "runnable": bool(values["runnable"])})


def switch_from_row(row: Row) -> KillSwitch:
    """A `kill_switches` row as the switch it engages (its `key` column is derived, so left out)."""
    # A Row iterates its values, so the column names come from keys().
    return KillSwitch(**{k: row[k] for k in row.keys() if k != "key"})  # noqa: SIM118
