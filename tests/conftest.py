"""Shared fixtures: a real store on each backend, a clean environment, a contract on disk,
counted tools.

Every test that takes `store` (or `plane`, `cred`, ...) runs twice, on SQLite and on
PostgreSQL (its own schema); `@pytest.mark.backends("sqlite")` keeps a test to the backends
it names, for the few that open the SQLite file itself.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from _factories import ACTIONS, RawDb, Toolset
from charter import Client, Config, ControlPlane
from charter._identity import IssuedCredential, create_agent_identity
from charter.gate import Executor
from charter.privacy import LocalKeyring
from charter.store import SqlStore, open_store
from pg import drop_schema, new_schema

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


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[Client]:
    """A `charter.Client` on a home of its own (its own seal key) over this backend's database."""
    env = {"CHARTER_DATABASE_URL": database_url}
    with Client(Config.from_env(env, home=tmp_path / "home")) as opened:
        yield opened


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


@pytest.fixture
def toolset() -> Toolset:
    return Toolset()
