"""Shared fixtures: a real store on each backend, a clean environment, a contract on disk,
counted tools.

Every test that takes `store` (or `plane`, `cred`, ...) runs twice, on SQLite and on
PostgreSQL (its own schema); `@pytest.mark.backends("sqlite")` keeps a test to the backends
it names, for the few that open the SQLite file itself.
"""

from __future__ import annotations

import copy
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pydantic import BaseModel

from charter import ControlPlane, Effect, Facts, Tool
from charter._identity import IssuedCredential, create_agent_identity
from charter.exceptions import PermanentToolError, RetryableToolError
from charter.gate import Executor
from charter.privacy import LocalKeyring
from charter.store import SqliteStore, SqlStore, open_store
from pg import drop_schema, new_schema

if TYPE_CHECKING:
    from charter import ToolContext

SEAL_KEY = b"k" * 32

CONTRACT: dict[str, Any] = {
    "charter": 1,
    "agent": "test-agent",
    "version": "1.0",
    "workflow": "testing",
    "tenants": ["acme", "globex"],
    "autonomy": "autonomous",
    "max_turns": 6,
    "budget": {"per_run_usd": 1.0},
    "timeouts": {"tool": "5s"},
    "policy": {"policies": "policies.cedar", "schema": "schema.cedarschema"},
    "approval_tiers": {"ops": {"approvers": 1, "expires_after": "1h"}},
    "tools": {
        "record_write": {
            "effect": "write",
            "approval": "ops",
            "bounds": {"amount": {"min": 1, "max": 100}},
            "allow": {"label": ["a", "b"]},
        },
        "read_notes": {"effect": "read"},
        "launch": {"effect": "irreversible", "approval": "ops"},
        "flaky": {"effect": "write"},
        "broken": {"effect": "write"},
        "bad_output": {"effect": "write"},
        "purge": {"effect": "write"},
    },
}
"""A minimal contract granting every tool of `Toolset`."""

ACTIONS = ("record_write", "read_notes", "launch", "flaky", "broken", "bad_output", "purge")

SCHEMA = (
    "entity Agent = { agent: String, workflow: String, tenant: String, environment: String };\n"
    "entity Item = { tenant: String };\n"
    "type Context = { approvals_granted: Long, hour_utc: Long, weekday: Long, "
    "amount_minor?: Long };\n"
    + "".join(
        f"action {a} appliesTo {{ principal: Agent, resource: Item, context: Context }};\n"
        for a in ACTIONS
    )
)

# Every tool but `purge` is permitted, so `purge` meets the default deny.
POLICIES = """\
@id("tenant-isolation")
forbid (principal, action, resource)
unless { principal.tenant == resource.tenant };

@id("allow-tools")
permit (principal, action in [Action::"record_write", Action::"read_notes", Action::"launch",
  Action::"flaky", Action::"broken", Action::"bad_output"], resource);

@id("big-needs-ops")
@approval_tier("ops")
forbid (principal, action == Action::"record_write", resource)
when { context has amount_minor && context.amount_minor > 50 }
unless { context.approvals_granted >= 1 };
"""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CHARTER_"):
            monkeypatch.delenv(name)


BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run a store test on these backends only (default: all)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        metafunc.parametrize("backend", marker.args if marker else BACKENDS)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of this backend: a SQLite file, or a PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'charter.db'}"
        return
    schema, url = new_schema()
    yield url
    drop_schema(schema)


@pytest.fixture
def keyring_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's keyring of data keys, which every process of the test shares (through
    $CHARTER_KEYRING_FILE, as the nodes of one store do)."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("CHARTER_KEYRING_FILE", str(path))
    return path


@pytest.fixture
def store(database_url: str, keyring_file: Path) -> Iterator[SqlStore]:
    db = open_store(database_url, seal_key=SEAL_KEY, keys=LocalKeyring(keyring_file))
    yield db
    db.close()


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


@pytest.fixture
def raw_db(store: SqlStore) -> Iterator[RawDb]:
    """A connection to `store`'s database that bypasses Charter."""
    db = RawDb(store)
    yield db
    db.close()


class Clock:
    """A clock the test moves by hand. It starts at the real time, since `Client.decide`
    judges approval expiry by the real clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plane(store: SqlStore, clock: Clock) -> Iterator[ControlPlane]:
    """A control plane on `store` whose retries do not sleep and whose clock the test moves."""
    control = ControlPlane(store, clock=clock, executor=Executor(sleep=lambda s: None))
    yield control
    control.close()


@pytest.fixture
def cred(store: SqlStore) -> IssuedCredential:
    """acme's credential for the test agent of `CONTRACT`."""
    return create_agent_identity(store, agent="test-agent", workflow="testing", tenant_id="acme")


@pytest.fixture
def creds(store: SqlStore) -> dict[str, str]:
    """The test agent's credential for each tenant, for workflow `testing`."""
    return {
        tenant: create_agent_identity(
            store, agent="test-agent", workflow="testing", tenant_id=tenant
        ).token
        for tenant in ("acme", "globex")
    }


@pytest.fixture
def contract_data() -> dict[str, Any]:
    """A fresh, mutable copy of `CONTRACT`."""
    return copy.deepcopy(CONTRACT)


MakeContract = Callable[..., Path]


@pytest.fixture
def make_contract(tmp_path: Path) -> MakeContract:
    """Write policies (plus `extra_policies`), schema and a contract to tmp_path.

    The contract is `data` (default `CONTRACT`) with `top` overriding its top-level keys.
    """

    def make(data: dict[str, Any] | None = None, *, extra_policies: str = "", **top: Any) -> Path:
        folder = tmp_path / "agent"
        folder.mkdir(exist_ok=True)
        (folder / "policies.cedar").write_text(POLICIES + extra_policies)
        (folder / "schema.cedarschema").write_text(SCHEMA)
        path = folder / "contract.yaml"
        path.write_text(yaml.safe_dump({**copy.deepcopy(data or CONTRACT), **top}))
        return path

    return make


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


@pytest.fixture
def toolset() -> Toolset:
    return Toolset()
