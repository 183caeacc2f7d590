"""Sign-in with an OIDC issuer's JWT: discovery, keys, rotation, every claim checked, the claim
mapping, and the attacks on each (none, RS/HS confusion, wrong issuer or audience, expiry,
another tenant). The issuer is a real HTTP server on loopback (`charter.testing.LocalIssuer`)."""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner
from joserfc.jwk import RSAKey

from charter import Agent, Client, ControlPlane
from charter._authn import Authenticator
from charter._decision import Denied
from charter._federation import Federation
from charter._identity import create_human
from charter.cli import cli
from charter.exceptions import ApprovalRefused, CredentialError, NotAuthorized
from charter.identity._oidc import JwksCache, ProviderConfig
from charter.models import ScriptedModel, ScriptedTurn
from charter.testing import LocalIssuer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

WHY = "a test"
PEOPLE = {
    "subject_claim": "email",
    "roles_claim": "groups",
    "role_map": {
        "finance": ["approver:tenant=acme,tier=ops"],
        "sre": ["operator"],
        "root": ["admin"],
    },
}


class Ticking:
    """A clock for the key cache that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as running:
        yield running


@pytest.fixture
def admin(client: Client) -> str:
    return client.init(reason="a new store").token


@pytest.fixture
def trusted(client: Client, admin: str, issuer: LocalIssuer) -> LocalIssuer:
    """`issuer` registered as an issuer of people, with the claim mapping of `PEOPLE`."""
    client.add_provider(
        ProviderConfig.parse(issuer.provider(**PEOPLE), source="test"),
        credential=admin,
        reason=WHY,
    )
    return issuer


@pytest.fixture
def ticking() -> Ticking:
    return Ticking()


@pytest.fixture
def auth(client: Client, ticking: Ticking) -> Authenticator:
    """An authenticator whose key cache refreshes by `ticking`, not by wall time."""
    keys = JwksCache(clock=ticking)
    return Authenticator(client.store, federation=Federation(client.store, keys=keys))


def _person(issuer: LocalIssuer, email: str = "Ann@Example.com", **claims: Any) -> str:
    return issuer.token({"sub": "u-1", "email": email, "groups": ["finance"], **claims})


class TestSignIn:
    def test_a_valid_token_is_a_person_with_mapped_roles(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """Subject from the email claim (canonical), roles from the group mapping."""
        person = auth.person(_person(trusted))
        assert (person.subject, person.issuer) == ("ann@example.com", trusted.url)
        assert [str(g) for g in person.grants] == ["approver:tenant=acme,tier=ops"]

    def test_the_first_sign_in_is_on_record(
        self, client: Client, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """The issuer's first token for a person records an identity, by the issuer."""
        auth.person(_person(trusted))
        auth.person(_person(trusted))
        (entry,) = [e for e in client.control_log() if e.actor == f"idp:{trusted.url}"]
        assert entry.action == "identity.create"
        assert [i.subject for i in client.identities() if i.issuer == trusted.url] == [
            "ann@example.com"
        ]

    def test_unmapped_groups_grant_nothing(self, trusted: LocalIssuer, auth: Authenticator) -> None:
        """A person whose groups map to no role is authenticated, and may do nothing."""
        person = auth.person(_person(trusted, groups=["marketing"]))
        assert person.grants == ()
        with pytest.raises(NotAuthorized):
            Authenticator.authorize(person, "operator", action="kill")


class TestKeys:
    def test_a_rotated_key_is_fetched_once_on_its_first_token(
        self, trusted: LocalIssuer, auth: Authenticator, ticking: Ticking
    ) -> None:
        """A token naming a new key id makes the cache fetch the JWKS again (once it may)."""
        auth.person(_person(trusted))
        assert trusted.fetches == 1
        trusted.rotate()
        ticking.now += 5
        assert auth.person(_person(trusted)).subject == "ann@example.com"
        assert trusted.fetches == 2
        auth.person(_person(trusted))
        assert trusted.fetches == 2

    def test_unknown_key_ids_do_not_flood_the_issuer(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """Tokens naming made-up key ids are refused; the JWKS is fetched at most once a
        `refresh_s`, however many come."""
        auth.person(_person(trusted))
        for _ in range(20):
            forged = trusted.token(
                {"sub": "x", "email": "x@y.z"}, header={"kid": secrets.token_hex(4)}
            )
            with pytest.raises(CredentialError):
                auth.person(forged)
        assert trusted.fetches == 1

    def test_a_token_of_the_old_key_is_refused_after_rotation(
        self, trusted: LocalIssuer, auth: Authenticator, ticking: Ticking
    ) -> None:
        """Once the old key leaves the JWKS, its tokens are refused."""
        old = _person(trusted)
        trusted.rotate()
        ticking.now += 5
        auth.person(_person(trusted))
        with pytest.raises(CredentialError):
            auth.person(old)


class TestAttacks:
    @pytest.mark.parametrize(
        ("claims", "why"),
        [
            pytest.param({"exp": int(time.time()) - 120}, "expired", id="expired"),
            pytest.param({"nbf": int(time.time()) + 600}, "not yet valid", id="not-yet-valid"),
            pytest.param({"aud": "someone-else"}, "aud", id="wrong-audience"),
            pytest.param({"iss": "http://127.0.0.1:9"}, "not one this store", id="wrong-issuer"),
        ],
    )
    def test_a_token_failing_a_claim_is_refused(
        self, trusted: LocalIssuer, auth: Authenticator, claims: dict[str, Any], why: str
    ) -> None:
        """exp past the leeway, nbf ahead of it, another audience, another issuer: refused."""
        with pytest.raises(CredentialError, match=why):
            auth.person(_person(trusted, **claims))

    def test_a_token_within_the_leeway_is_accepted(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """Expired 30 s ago with 60 s of leeway: clocks differ, and that is allowed."""
        assert auth.person(_person(trusted, exp=int(time.time()) - 30)).subject

    def test_alg_none_is_refused(self, trusted: LocalIssuer, auth: Authenticator) -> None:
        """An unsigned token (`alg: none`) is refused before any key is looked at."""
        with pytest.raises(CredentialError, match="'none'"):
            auth.person(
                trusted.unsigned({"sub": "x", "email": "root@example.com", "groups": ["root"]})
            )

    def test_hmac_with_the_public_key_is_refused(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """The RS/HS confusion: HS256 keyed with the issuer's public key is refused."""
        forged = trusted.hmac_with_public_key({"sub": "x", "email": "r@x.y", "groups": ["root"]})
        with pytest.raises(CredentialError, match="HS256"):
            auth.person(forged)

    def test_a_token_signed_by_another_key_is_refused(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """A key of the attacker's, under the issuer's key id: the signature fails."""
        theirs = RSAKey.generate_key(2048, parameters={"kid": trusted.key.kid})
        forged = trusted.token({"sub": "x", "email": "r@x.y", "groups": ["root"]}, key=theirs)
        with pytest.raises(CredentialError, match="refused"):
            auth.person(forged)

    def test_a_missing_required_claim_is_refused(
        self, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """`iat` is required by default; a token without it is refused."""
        claims = {"sub": "u", "email": "a@b.c"}
        token = trusted.token(claims)
        assert auth.person(token)
        bare = trusted.token({**claims, "iat": None})
        with pytest.raises(CredentialError):
            auth.person(bare)

    def test_an_issuer_nobody_registered_is_refused(
        self, client: Client, auth: Authenticator
    ) -> None:
        """A well-signed token of an issuer the store does not trust."""
        with (
            LocalIssuer() as stranger,
            pytest.raises(CredentialError, match="not one this store trusts"),
        ):
            auth.person(_person(stranger))

    def test_an_issuer_inserted_in_the_database_is_not_trusted(
        self, client: Client, issuer: LocalIssuer, auth: Authenticator
    ) -> None:
        """A provider written into the file without an admin: its tokens are refused and
        verify names it."""
        from _factories import RawDb  # noqa: PLC0415

        db = RawDb(client.store)  # type: ignore[arg-type]
        config = ProviderConfig.parse(issuer.provider(**PEOPLE), source="x").model_dump_json()
        db.execute(
            "INSERT INTO identity_providers (issuer, config, created_at, log_seq, mac) "
            "VALUES (?, ?, 'now', 1, 'forged')",
            (issuer.url, config),
        )
        db.close()
        with pytest.raises(CredentialError, match="not one this store trusts"):
            auth.person(_person(issuer, groups=["root"]))
        assert any("identity provider" in p for p in client.audit().problems)

    def test_a_revoked_federated_person_is_refused(
        self, client: Client, admin: str, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """An admin revokes the identity the issuer's tokens map to: valid tokens are refused."""
        person = auth.person(_person(trusted))
        client.revoke(person.id, credential=admin, reason="left the company")
        with pytest.raises(CredentialError, match="revoked"):
            auth.person(_person(trusted))

    def test_a_removed_issuer_is_refused(
        self, client: Client, admin: str, trusted: LocalIssuer, auth: Authenticator
    ) -> None:
        """`idp remove`: the issuer's tokens are refused from then on."""
        auth.person(_person(trusted))
        client.remove_provider(trusted.url, credential=admin, reason="migrated")
        with pytest.raises(CredentialError, match="not one this store trusts"):
            auth.person(_person(trusted))


class TestOnePerson:
    def test_a_person_counts_once_across_a_token_and_an_idp(
        self, client: Client, trusted: LocalIssuer, plane_and_request: tuple[ControlPlane, str]
    ) -> None:
        """ann votes with her Charter token, then as ANN@example.com through the IdP: the
        second vote is refused."""
        _, request = plane_and_request
        token = create_human(client.store, name="ann@example.com", roles=["approver"]).token
        client.decide(
            request, approver="ann@example.com", token=token, decision="approve", reason="ok"
        )
        with pytest.raises(ApprovalRefused, match="counts once"):
            client.decide(
                request,
                approver="ANN@example.com",
                token=_person(trusted, email="ANN@example.com"),
                decision="approve",
                reason="again",
            )

    @pytest.fixture
    def plane_and_request(
        self, client: Client, make_contract: Any, contract_data: dict[str, Any], toolset: Any
    ) -> Iterator[tuple[ControlPlane, str]]:
        """A run held for two approvers of tier ops, for tenant acme."""
        from charter._identity import create_agent_identity  # noqa: PLC0415

        contract_data["approval_tiers"] = {"ops": {"approvers": 2, "expires_after": "1h"}}
        model = ScriptedModel([ScriptedTurn.call("launch", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(contract_data), tools=toolset.tools, model=model)
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        plane = ControlPlane(client.store)
        try:
            waiting = plane.run(agent, credential=cred.token, tenant_id="acme", task="go")
            (request,) = waiting.waiting_on
            yield plane, request
        finally:
            plane.close()


class TestAgents:
    def test_an_agent_token_for_another_tenant_acts_for_none(
        self,
        client: Client,
        admin: str,
        issuer: LocalIssuer,
        make_contract: Any,
        toolset: Any,
    ) -> None:
        """An IdP token for globex's agent starts a run for acme: the gate denies every call."""
        client.add_provider(
            ProviderConfig.parse(issuer.provider(kind="agent"), source="test"),
            credential=admin,
            reason=WHY,
        )
        claims = {"sub": "svc-1", "agent": "test-agent", "workflow": "testing", "tenant": "globex"}
        model = ScriptedModel([ScriptedTurn.call("read_notes", item="x"), ScriptedTurn.say("ok")])
        agent = Agent.load(make_contract(), tools=toolset.tools, model=model)
        plane = ControlPlane(client.store)
        try:
            result = plane.run(agent, credential=issuer.token(claims), tenant_id="acme", task="go")
            ok = plane.run(
                agent,
                credential=issuer.token({**claims, "tenant": "acme"}),
                tenant_id="acme",
                task="go",
            )
        finally:
            plane.close()
        (denied,) = result.decisions
        assert isinstance(denied, Denied)
        assert (denied.check, "globex" in denied.reason) == ("principal", True)
        assert [d.kind for d in ok.decisions] == ["allowed"]

    def test_a_person_cannot_start_a_run(
        self, client: Client, trusted: LocalIssuer, make_contract: Any, toolset: Any
    ) -> None:
        """A person's JWT is no agent credential."""
        agent = Agent.load(make_contract(), tools=toolset.tools, model=ScriptedModel([]))
        plane = ControlPlane(client.store)
        try:
            with pytest.raises(CredentialError, match="not a agent"):
                plane.run(agent, credential=_person(trusted), tenant_id="acme", task="go")
        finally:
            plane.close()


class TestInitWithAnIdp:
    def test_the_first_admin_can_be_a_person_the_issuer_vouches_for(
        self, tmp_path: Path, issuer: LocalIssuer
    ) -> None:
        """`charter init --idp FILE --subject boss@example.com`: boss's JWT administers."""
        home = tmp_path / "home"
        config = tmp_path / "idp.yaml"
        config.write_text(yaml.safe_dump(issuer.provider(subject_claim="email")))
        made = CliRunner().invoke(
            cli,
            [
                "--home",
                str(home),
                "init",
                "--idp",
                str(config),
                "--subject",
                "Boss@Example.com",
                "--json",
            ],
        )
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout)["token"] is None
        jwt = issuer.token({"sub": "b", "email": "boss@example.com"})
        created = CliRunner().invoke(
            cli,
            [
                "--home",
                str(home),
                "identity",
                "create",
                "--human",
                "oscar",
                "--role",
                "operator",
                "--reason",
                "on call",
                "--json",
            ],
            env={"CHARTER_TOKEN": jwt},
        )
        assert created.exit_code == 0, created.output
        stranger = issuer.token({"sub": "m", "email": "mallory@example.com"})
        refused = CliRunner().invoke(
            cli,
            [
                "--home",
                str(home),
                "identity",
                "create",
                "--human",
                "eve",
                "--role",
                "admin",
                "--reason",
                "x",
                "--json",
            ],
            env={"CHARTER_TOKEN": stranger},
        )
        assert refused.exit_code == 3, refused.output
