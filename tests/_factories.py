"""Builders shared by the tests: events, the test contract's tools, a tamperer's connection.

Kept apart from conftest.py so a test, or an app a test's CLI loads, can import them by a
name no other conftest shadows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from charter import Effect, Facts, Tool
from charter._events import RunFinished, RunStarted
from charter.exceptions import PermanentToolError, RetryableToolError
from charter.store import SqliteStore

if TYPE_CHECKING:
    from charter import ToolContext
    from charter.store import SqlStore

ACTIONS = ("record_write", "read_notes", "launch", "flaky", "broken", "bad_output", "purge")


class RawDb:
    """A second connection to the store's database, outside Charter: what a tamperer holds.

    Statements use `?` placeholders on both backends.
    """

    def __init__(self, store: SqlStore) -> None:
        self.backend = "sqlite" if isinstance(store, SqliteStore) else "postgres"
        self.conn: Any
        if isinstance(store, SqliteStore):
            self.conn = sqlite3.connect(store.path, isolation_level=None)
            self.errors: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
        else:
            import psycopg  # noqa: PLC0415

            self.conn = psycopg.connect(store._url, autocommit=True)  # type: ignore[attr-defined]
            self.errors = (psycopg.Error,)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.backend == "postgres":
            return self.conn.execute(sql.replace("?", "%s"), params or None)
        return self.conn.execute(sql, params)

    def drop_append_only(self) -> None:
        """Drop the triggers that keep events append-only, as a tamperer with write access would."""
        if self.backend == "postgres":
            self.execute("DROP TRIGGER events_append_only ON events")
        else:
            self.execute("DROP TRIGGER events_append_only_update")
            self.execute("DROP TRIGGER events_append_only_delete")

    def forget_claims(self, run_id: str) -> None:
        """Delete the store ledger's claims on a run, as a tamperer hiding a rollback from the
        ledger would (which breaks the ledger's own chain: `Store.audit` reports that)."""
        if self.backend == "postgres":
            self.execute("DROP TRIGGER IF EXISTS ledger_append_only ON ledger")
        else:
            self.execute("DROP TRIGGER IF EXISTS ledger_append_only_delete")
        self.execute("DELETE FROM ledger WHERE subject = ?", (run_id,))

    def without_foreign_keys(self) -> None:
        """Stop enforcing foreign keys on this connection."""
        if self.backend == "postgres":
            self.execute("SET session_replication_role = replica")
        else:
            self.execute("PRAGMA foreign_keys=OFF")

    def close(self) -> None:
        self.conn.close()


class ItemIn(BaseModel):
    item: str = "x"
    amount: int = 1
    label: str = "a"
    owner: str | None = None
    """The owning tenant; defaults to the caller's."""


class Receipt(BaseModel):
    item: str


def item_facts(args: ItemIn, ctx: ToolContext) -> Facts:
    return Facts(
        resource_type="Item",
        resource_id=args.item,
        resource_tenant=args.owner or ctx.tenant_id,
        amount_minor=args.amount,
    )


@dataclass
class Toolset:
    """The tools of `CONTRACT`; every effect they have is appended to `effects`."""

    flaky_failures: int = 0
    """How many attempts of `flaky` raise a retryable error before it succeeds."""
    effects: list[tuple[str, str]] = field(default_factory=list)
    """(tool, idempotency key) for each effect that happened."""
    attempts: list[tuple[int, str]] = field(default_factory=list)
    """(attempt, idempotency key) for every call of `flaky`."""

    def record_write(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        self.effects.append(("record_write", ctx.idempotency_key))
        return Receipt(item=args.item)

    def read_notes(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        return Receipt(item=args.item)

    def launch(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        self.effects.append(("launch", ctx.idempotency_key))
        return Receipt(item=args.item)

    def flaky(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        self.attempts.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt <= self.flaky_failures:
            raise RetryableToolError("503 try again")
        self.effects.append(("flaky", ctx.idempotency_key))
        return Receipt(item=args.item)

    def broken(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        raise PermanentToolError("400 bad request")

    def bad_output(self, args: ItemIn, ctx: ToolContext) -> dict[str, Any]:
        self.effects.append(("bad_output", ctx.idempotency_key))
        return {"wrong": 1}

    def purge(self, args: ItemIn, ctx: ToolContext) -> Receipt:
        self.effects.append(("purge", ctx.idempotency_key))
        return Receipt(item=args.item)

    @property
    def tools(self) -> list[Tool[Any, Any]]:
        effects = {"read_notes": Effect.READ, "launch": Effect.IRREVERSIBLE}
        return [
            Tool(
                name=name,
                description=f"test tool {name}",
                input_model=ItemIn,
                output_model=Receipt,
                effect=effects.get(name, Effect.WRITE),
                run=getattr(self, name),
                facts=item_facts,
                idempotent=name != "read_notes",
                cost_usd=0.01 if name == "record_write" else 0.0,
            )
            for name in ACTIONS
        ]


def started_event(tenant: str = "acme") -> RunStarted:
    """A `run.started` event for the test agent, as `ControlPlane.run` would write it."""
    return RunStarted(
        agent="test-agent",
        workflow="testing",
        tenant_id=tenant,
        principal_id="agt_1",
        contract_version="1.0",
        contract_hash="c" * 64,
        policy_hash="p" * 64,
        model="scripted:default",
        model_kind="scripted",
        budget_usd=1.0,
        environment="dev",
        autonomy="autonomous",
        task="do it",
        task_hash="t" * 64,
    )


def finished_event(status: str = "completed") -> RunFinished:
    """A `run.finished` event: resolved when completed, else failed."""
    return RunFinished(
        status=status,  # type: ignore[arg-type]
        outcome="resolved" if status == "completed" else "failed",
        reason="done",
        cost_usd=0.0,
        prompt_tokens=0,
        completion_tokens=0,
    )
