"""A Charter home on the test's database for driving the CLI, with people holding roles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from click.testing import CliRunner, Result

from charter._identity import create_human
from charter.cli import cli
from charter.privacy import LocalKeyring

if TYPE_CHECKING:
    from pathlib import Path

    from charter.store import SqlStore

PEOPLE = {"oscar": ["operator"], "olive": ["operator"], "bob": ["approver"], "ada": ["admin"]}
"""Who `make_home` issues credentials to: two operators, an approver and an admin."""


@dataclass(frozen=True, kw_only=True)
class Home:
    """A Charter home on the test's database, sealed with the `store` fixture's key."""

    path: Path
    database_url: str
    tokens: dict[str, str]


def make_home(folder: Path, database_url: str, store: SqlStore) -> Home:
    """A home in `folder` whose seal key and keyring are `store`'s, with a credential for each
    of `PEOPLE`."""
    folder.mkdir()
    (folder / "seal.key").write_text(store.seal_key.hex())
    if isinstance(store.keys, LocalKeyring):
        # The home's keyring is the store's, as every node of one store shares one.
        (folder / "keyring.json").symlink_to(store.keys.path)
    tokens = {n: create_human(store, name=n, roles=r).token for n, r in PEOPLE.items()}
    return Home(path=folder, database_url=database_url, tokens=tokens)


_ADMINISTRATION = ("identity.", "store.", "idp.")


def acts(entries: list[Any]) -> list[Any]:
    """Control-log entries (objects or their JSON) but those that made principals: the acts
    of operators that a test is about."""
    return [
        e
        for e in entries
        if not (e["action"] if isinstance(e, dict) else e.action).startswith(_ADMINISTRATION)
    ]


def invoke(home: Home, *args: str, who: str | None = None, token: str | None = None) -> Result:
    """`charter --home HOME ARGS`, with $CHARTER_TOKEN `who`'s credential (or `token`)."""
    env = {"CHARTER_DATABASE_URL": home.database_url}
    if who is not None:
        env["CHARTER_TOKEN"] = home.tokens[who]
    if token is not None:
        env["CHARTER_TOKEN"] = token
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], env=env)


def as_json(result: Result) -> Any:
    """The command's JSON output; it must have succeeded."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
