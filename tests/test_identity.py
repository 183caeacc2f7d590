"""Who may act: canonical subjects, scoped grants, `charter init`, and administration by admins
only, each change on the control log; records altered outside Charter are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from charter._authn import Authenticator
from charter.cli import cli
from charter.exceptions import CredentialError, NotAuthorized, StateError, UserError
from charter.identity import (
    Grant,
    canonical_subject,
    check_new_subject,
    parse_grants,
    same_person,
    skeleton,
)

if TYPE_CHECKING:
    from pathlib import Path

    from charter import Client


class TestSubjects:
    @pytest.mark.parametrize(
        "typed",
        [
            "OPS-LEAD@example.com",
            " ops-lead@example.com ",
            "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in "ops-lead@example.com"),
        ],
    )
    def test_case_width_and_spacing_make_one_subject(self, typed: str) -> None:
        """Upper case, surrounding spaces and full-width letters fold to one subject."""
        assert canonical_subject(typed) == "ops-lead@example.com"

    @pytest.mark.parametrize("bad", ["", "   ", "iv\u200ban", "ivan\x00", "x" * 201])
    def test_empty_invisible_or_long_subjects_are_refused(self, bad: str) -> None:
        """An empty subject, one with control or invisible characters, or one too long."""
        with pytest.raises(UserError):
            canonical_subject(bad)

    def test_a_mixed_script_look_alike_is_refused(self) -> None:
        """`ivan` with a Cyrillic i (U+0456) mixes scripts: refused even with no ivan around."""
        with pytest.raises(UserError, match="mixes scripts"):
            check_new_subject(canonical_subject("\u0456van"), [])

    def test_a_whole_script_look_alike_of_someone_is_refused(self) -> None:
        """An all-Cyrillic `cope` (U+0441 U+043E U+0440 U+0435) looks like `cope`: refused."""
        lookalike = canonical_subject("\u0441\u043e\u0440\u0435")
        with pytest.raises(UserError, match="looks like"):
            check_new_subject(lookalike, ["cope"])

    def test_an_accent_does_not_make_another_person(self) -> None:
        """`rené` looks like `rene` at a glance: refused while rene is active, and the same
        person for separation of duties."""
        with pytest.raises(UserError, match="looks like"):
            check_new_subject(canonical_subject("Ren\u00e9"), ["rene"])
        assert same_person("ops-lead@example.co\u1e3f", "ops-lead@example.com")

    def test_names_in_one_other_script_are_welcome(self) -> None:
        """A Cyrillic name nobody else looks like, and a Japanese one mixing Han and kana."""
        check_new_subject(canonical_subject("Дмитрий"), ["ivan", "alice"])
        check_new_subject(canonical_subject("山田たろう"), ["ivan"])

    @pytest.mark.parametrize(
        ("one", "other", "same"),
        [
            ("ivan ", "ivan", True),
            ("Alice", "alice", True),
            ("\u0456van", "ivan", True),
            ("\u0441\u043e\u0440\u0435", "cope", True),
            ("alice", "alicia", False),
        ],
    )
    def test_same_person_compares_subjects_and_skeletons(
        self, *, one: str, other: str, same: bool
    ) -> None:
        """Case, spacing and look-alike characters do not make another person."""
        assert same_person(one, other) is same

    def test_skeleton_is_stable(self) -> None:
        """Pinned skeletons: an upgrade of the confusables data that changes them shows here."""
        assert skeleton("paypal") == "paypal"
        assert skeleton(canonical_subject("\u0440\u0430\u0443\u0440\u0430l")) == "paypal"
        assert skeleton(canonical_subject("\u0455\u0435\u0430")) == "sea"


class TestGrants:
    def test_a_scoped_grant_reads_back_as_written(self) -> None:
        """`approver:tenant=acme,tier=finance` parses and prints the same."""
        grant = Grant.parse("approver:tier=finance,tenant=acme")
        assert (grant.tenant, grant.workflow, grant.tier) == ("acme", None, "finance")
        assert str(grant) == "approver:tenant=acme,tier=finance"

    @pytest.mark.parametrize(
        "bad",
        [
            "root",
            "approver:team=x",
            "approver:tenant=a,tenant=b",
            "approver:tenant=",
            "approver:tenant=a b",
            "operator:tier=finance",
        ],
    )
    def test_malformed_grants_are_refused(self, bad: str) -> None:
        """Unknown roles or keys, repeated keys, bad values, a tier on a non-approver."""
        with pytest.raises(UserError):
            Grant.parse(bad)

    def test_no_grant_at_all_is_refused(self) -> None:
        """A person needs one role at least."""
        with pytest.raises(UserError, match="at least one role"):
            parse_grants([])

    @pytest.mark.parametrize(
        ("grant", "asked", "covered"),
        [
            ("operator", {}, True),
            ("operator", {"tenant": "acme", "workflow": "w"}, True),
            ("operator:tenant=acme", {"tenant": "acme", "workflow": "w"}, True),
            ("operator:tenant=acme", {"tenant": "globex"}, False),
            ("operator:tenant=acme", {}, False),
            ("approver:tier=finance", {"tenant": "acme", "tier": "finance"}, True),
            ("approver:tier=finance", {"tenant": "acme", "tier": "ops"}, False),
            ("approver", {"tier": "finance"}, True),
        ],
    )
    def test_a_grant_reaches_what_it_names_and_no_further(
        self, *, grant: str, asked: dict[str, str], covered: bool
    ) -> None:
        """Unscoped reaches everything; scoped reaches its own value; "every tenant" needs
        unscoped."""
        role = grant.partition(":")[0]
        assert Grant.parse(grant).covers(role, **asked) is covered

    def test_a_grant_of_another_role_covers_nothing(self) -> None:
        """An approver is no operator."""
        assert not Grant.parse("approver").covers("operator")


# --- administration ------------------------------------------------------------------------------
@pytest.fixture
def admin(client: Client) -> str:
    """The token of the store's first admin."""
    return client.init(reason="a new store").token


WHY = "a test"


class TestInit:
    def test_a_new_store_has_no_principals_until_initialised(self, client: Client) -> None:
        """Before init nobody exists; init makes one admin, on the control log."""
        assert client.identities(include_revoked=True) == []
        issued = client.init(name="root", reason="day one")
        (only,) = client.identities()
        assert (only.id, only.grants, only.kind) == (
            issued.identity.id,
            (Grant(role="admin"),),
            "human",
        )
        actions = [(e.action, e.actor) for e in client.control_log()]
        assert actions == [("store.init", "root"), ("identity.create", "root")]

    def test_a_second_init_is_refused(self, client: Client, admin: str) -> None:
        """An initialised store refuses init: it would make anyone with the file an admin."""
        with pytest.raises(StateError, match="initialised already"):
            client.init()
        assert [i.name for i in client.identities()] == ["admin"]

    def test_init_refuses_a_store_that_does_not_verify(self, client: Client) -> None:
        """A store with a run no ledger knows gets no admin: it would vouch for the forgery."""
        db = _raw(client)
        db.execute(
            "INSERT INTO runs (run_id, agent, workflow, tenant_id, principal_id, model, "
            "model_kind, contract_version, contract_hash, policy_hash, status, started_at, "
            "updated_at, head_seq, head_hash, head_mac) VALUES ('run_x', 'a', 'w', 't', 'p', "
            "'m', 'scripted', 'v', 'h', 'h', 'running', 't', 't', 0, ?, '')",
            ("0" * 64,),
        )
        db.close()
        with pytest.raises(StateError, match="does not verify"):
            client.init()


class TestAdministration:
    def test_creating_an_identity_needs_an_admin_credential(
        self, client: Client, admin: str
    ) -> None:
        """Without a credential, or with a non-admin's, nothing is created; an admin's works."""
        operator = client.create_human(
            name="oscar", roles=["operator"], credential=admin, reason=WHY
        )
        with pytest.raises(CredentialError):
            client.create_human(name="mallory", roles=["approver"], credential=None, reason=WHY)
        with pytest.raises(NotAuthorized):
            client.create_human(
                name="mallory", roles=["approver"], credential=operator.token, reason=WHY
            )
        with pytest.raises(CredentialError):
            client.create_human(name="mallory", roles=["admin"], credential="chr_guess", reason=WHY)
        assert "mallory" not in [i.name for i in client.identities()]

    def test_every_change_is_logged_with_who_and_why(self, client: Client, admin: str) -> None:
        """Create, update and revoke are control-log entries naming the admin and the reason."""
        bob = client.create_human(name="bob", roles=["approver"], credential=admin, reason="hired")
        client.update_identity(
            bob.identity.id, roles=["approver:tenant=acme"], credential=admin, reason="narrowed"
        )
        client.revoke(bob.identity.id, credential=admin, reason="left")
        logged = [
            (e.action, e.actor, e.reason)
            for e in client.control_log()
            if e.key.endswith(bob.identity.id)
        ]
        assert logged == [
            ("identity.create", "admin", "hired"),
            ("identity.update", "admin", "narrowed"),
            ("identity.revoke", "admin", "left"),
        ]

    def test_a_scoped_admin_acts_within_its_tenant(self, client: Client, admin: str) -> None:
        """admin:tenant=acme issues acme's agents and approvers, not globex's nor unscoped ones."""
        acme = client.create_human(
            name="acme-admin", roles=["admin:tenant=acme"], credential=admin, reason=WHY
        ).token
        agent: dict[str, Any] = {"agent": "a", "workflow": "w", "credential": acme, "reason": WHY}
        client.create_agent_identity(tenant_id="acme", **agent)
        client.create_human(name="ann", roles=["approver:tenant=acme"], credential=acme, reason=WHY)
        with pytest.raises(NotAuthorized):
            client.create_agent_identity(tenant_id="globex", **agent)
        with pytest.raises(NotAuthorized):
            client.create_human(name="gus", roles=["approver"], credential=acme, reason=WHY)
        with pytest.raises(NotAuthorized):
            client.add_provider(_provider(), credential=acme, reason=WHY)

    def test_the_last_unscoped_admin_cannot_be_revoked_or_demoted(
        self, client: Client, admin: str
    ) -> None:
        """Taking away the only admin would leave a store nobody can administer."""
        (me,) = client.identities()
        with pytest.raises(StateError, match="last unscoped admin"):
            client.revoke(me.id, credential=admin, reason=WHY)
        with pytest.raises(StateError, match="last unscoped admin"):
            client.update_identity(me.id, roles=["operator"], credential=admin, reason=WHY)
        second = client.create_human(name="eve", roles=["admin"], credential=admin, reason=WHY)
        client.revoke(me.id, credential=second.token, reason="handed over")
        with pytest.raises(CredentialError, match="revoked"):
            client.create_human(name="zed", roles=["auditor"], credential=admin, reason=WHY)

    def test_one_person_one_subject(self, client: Client, admin: str) -> None:
        """`Alice` while `alice` is active is refused, and so is `alice` with a Cyrillic a."""
        client.create_human(name="alice", roles=["approver"], credential=admin, reason=WHY)
        with pytest.raises(StateError, match="already exists"):
            client.create_human(name="Alice ", roles=["approver"], credential=admin, reason=WHY)
        with pytest.raises(UserError, match="mixes scripts"):
            client.create_human(name="\u0430lice", roles=["approver"], credential=admin, reason=WHY)

    def test_a_duplicate_agent_identity_is_bad_input(self, client: Client, admin: str) -> None:
        """A second active identity for one agent scope is a StateError (exit 2), not a crash."""
        agent: dict[str, Any] = {
            "agent": "a",
            "workflow": "w",
            "tenant_id": "acme",
            "credential": admin,
            "reason": WHY,
        }
        client.create_agent_identity(**agent)
        with pytest.raises(StateError, match="already exists"):
            client.create_agent_identity(**agent)


class TestExpiry:
    def test_an_expired_token_is_refused(self, client: Client, admin: str) -> None:
        """A credential past its `--ttl` authenticates no more."""
        issued = client.create_human(
            name="temp", roles=["operator"], ttl_s=3600, credential=admin, reason=WHY
        )
        later = Authenticator(client.store, clock=lambda: datetime.now(UTC) + timedelta(hours=2))
        assert client.auth.person(issued.token).name == "temp"
        with pytest.raises(CredentialError, match="expired"):
            later.person(issued.token)

    def test_agent_credentials_are_bounded_by_default(self, client: Client, admin: str) -> None:
        """Without --ttl an agent credential expires in 30 days; a person's does not."""
        agent = client.create_agent_identity(
            agent="a", workflow="w", tenant_id="acme", credential=admin, reason=WHY
        )
        expires = datetime.fromisoformat(str(agent.identity.expires_at))
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

    @pytest.mark.parametrize("ttl", [0, -5, 401 * 86400])
    def test_a_lifetime_out_of_range_is_refused(self, client: Client, admin: str, ttl: int) -> None:
        """A lifetime must be positive and at most 400 days."""
        with pytest.raises(UserError, match="lifetime"):
            client.create_human(
                name="x", roles=["auditor"], ttl_s=ttl, credential=admin, reason=WHY
            )


# --- records altered outside Charter ------------------------------------------------------------
def _raw(client: Client) -> Any:
    from _factories import RawDb  # noqa: PLC0415

    return RawDb(client.store)  # type: ignore[arg-type]


class TestTamperedIdentities:
    @pytest.fixture
    def people(self, client: Client, admin: str) -> dict[str, Any]:
        bob = client.create_human(name="bob", roles=["approver"], credential=admin, reason=WHY)
        return {"bob": bob}

    def test_a_principal_inserted_in_the_database_is_refused(
        self, client: Client, people: dict[str, Any]
    ) -> None:
        """A copy of bob's row under a token the attacker knows: refused, and reported."""
        from charter.gate import hash_token  # noqa: PLC0415

        db = _raw(client)
        row = db.execute("SELECT * FROM identities WHERE name = 'bob'").fetchone()
        columns = [d[0] for d in db.execute("SELECT * FROM identities").description]
        forged = dict(zip(columns, row, strict=True))
        forged.update(id="usr_mallory", name="mallory", subject="mallory")
        forged.update(token_hash=hash_token("chr_mallory_knows_this_one"), roles='["admin"]')
        db.execute(
            f"INSERT INTO identities ({', '.join(forged)}) VALUES ({', '.join('?' * len(forged))})",
            tuple(forged.values()),
        )
        db.close()
        with pytest.raises(CredentialError, match="inserted outside Charter"):
            client.auth.person("chr_mallory_knows_this_one")
        assert ("usr_mallory", "no control-log entry made it: it was inserted outside Charter") in (
            client.audit().identities
        )

    @pytest.mark.parametrize(
        ("column", "value"),
        [
            ("roles", '["admin"]'),
            ("tenant_id", "globex"),
            ("expires_at", "2999-01-01"),
            ("subject", "zed"),
        ],
    )
    def test_a_principal_edited_in_the_database_is_refused(
        self, client: Client, people: dict[str, Any], column: str, value: object
    ) -> None:
        """Promoting bob, moving him, extending him or renaming him in the file: refused."""
        db = _raw(client)
        db.execute(f"UPDATE identities SET {column} = ? WHERE name = 'bob'", (value,))
        db.close()
        with pytest.raises(CredentialError, match="refused"):
            client.auth.person(people["bob"].token)
        assert not client.audit().ok

    def test_an_unrevoked_principal_is_refused(
        self, client: Client, admin: str, people: dict[str, Any]
    ) -> None:
        """Revoked, then its row restored in the file (revoked_at cleared): still refused."""
        bob = people["bob"]
        client.revoke(bob.identity.id, credential=admin, reason=WHY)
        db = _raw(client)
        db.execute("UPDATE identities SET revoked_at = NULL WHERE id = ?", (bob.identity.id,))
        db.close()
        with pytest.raises(CredentialError, match="changed outside Charter"):
            client.auth.person(bob.token)

    def test_a_deleted_principal_is_reported(self, client: Client, people: dict[str, Any]) -> None:
        """A row the control log made, deleted from the file, is named by verify."""
        db = _raw(client)
        db.without_foreign_keys()
        db.execute("DELETE FROM identities WHERE name = 'bob'")
        db.close()
        problems = dict(client.audit().identities)
        assert "deleted outside Charter" in problems[people["bob"].identity.id]


# --- the command line ---------------------------------------------------------------------------
def _charter(home: Path, *args: str, token: str | None = None) -> Any:
    env = {"CHARTER_TOKEN": token} if token else {}
    return CliRunner().invoke(cli, ["--home", str(home), *args], env=env)


class TestCli:
    def test_init_prints_the_admin_token_once(self, tmp_path: Path) -> None:
        """`charter init` prints a token that works; a second `init` exits 2."""
        home = tmp_path / "home"
        first = _charter(home, "init", "--json")
        assert first.exit_code == 0, first.output
        token = json.loads(first.stdout)["token"]
        again = _charter(home, "init", "--json")
        assert again.exit_code == 2
        assert token not in again.output
        made = _charter(
            home,
            "identity",
            "create",
            "--human",
            "oscar",
            "--role",
            "operator",
            "--reason",
            "on call",
            "--json",
            token=token,
        )
        assert made.exit_code == 0, made.output
        assert token not in (home / "charter.db").read_bytes().decode(errors="replace")

    @pytest.mark.parametrize(
        "args",
        [
            ("identity", "create", "--human", "mallory", "--role", "admin", "--reason", "x"),
            (
                "identity",
                "create",
                "--agent",
                "a",
                "--workflow",
                "w",
                "--tenant",
                "t",
                "--reason",
                "x",
            ),
            ("identity", "revoke", "usr_nobody", "--reason", "x"),
            ("identity", "update", "usr_nobody", "--role", "admin", "--reason", "x"),
            ("idp", "remove", "https://idp.example", "--reason", "x"),
        ],
    )
    def test_administration_without_a_credential_exits_3(
        self, tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        """Every identity change without an admin's credential: exit 3, nothing changes."""
        home = tmp_path / "home"
        assert _charter(home, "init").exit_code == 0
        result = _charter(home, *args, "--json")
        assert result.exit_code == 3, result.output
        assert json.loads(result.stdout)["error"]["code"] == "credential_invalid"
        listed = json.loads(_charter(home, "identity", "list", "--all", "--json").stdout)
        assert [i["name"] for i in listed] == ["admin"]

    def test_identity_changes_show_in_the_control_log(self, tmp_path: Path) -> None:
        """`kill-switches --log` lists the init and each identity change, its chain verified."""
        home = tmp_path / "home"
        token = json.loads(_charter(home, "init", "--json").stdout)["token"]
        _charter(
            home,
            "identity",
            "create",
            "--human",
            "bob",
            "--role",
            "approver",
            "--reason",
            "hired",
            token=token,
        )
        log = json.loads(_charter(home, "kill-switches", "--log", "--json").stdout)
        assert [(e["action"], e["actor"]) for e in log["entries"]] == [
            ("store.init", "admin"),
            ("identity.create", "admin"),
            ("identity.create", "admin"),
        ]
        assert log["entries"][-1]["reason"] == "hired"
        assert log["chain_ok"] is True


def _provider() -> Any:
    from charter.identity._oidc import ProviderConfig  # noqa: PLC0415

    return ProviderConfig(issuer="https://idp.example", audience="charter", kind="human")
