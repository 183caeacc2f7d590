"""Attacks on the trust around the gate, every one tried and counted: how many got through.

On a store of its own, with an admin, an agent, people of scoped roles, a trusted OIDC issuer
on loopback (`charter.testing.LocalIssuer`) and refunds of $240 held for two finance
approvers (the billing example's contract, the owner `ops-lead@example.com`, runs started by
`ivan`), it tries:

* identity changes (create a person or an agent, change roles, revoke, trust or distrust an
  issuer) with every credential but an admin's: none, a guessed token, an operator's, an
  approver's, an expired or revoked admin's, and JWTs that are unsigned, MACed with the
  issuer's public key, of another audience or issuer, or signed by another key;
* approvals by approvers outside the request's tenant, workflow or tier, and by people of
  other roles;
* self-approval through a look-alike of the owner's or the initiator's name (case, spaces,
  full-width letters, letters of another script, an invisible character): first as the
  admin creating the look-alike, then, where that is allowed, voting;
* a second vote by the same person (another credential of theirs, their IdP's token);
* expired and revoked credentials, for approvals, kill switches, cancellation, break-glass;
* forged or mis-audienced JWTs for approvals.

An attempt succeeds if the action is done; the goal is none. Run `python -m bench.trust`;
`--write` rewrites BENCHMARKS.md's section.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from joserfc.jwk import RSAKey

from bench._report import machine, write_section
from charter import Agent, Client, Config, ControlPlane
from charter._authn import Authenticator
from charter._federation import federation_for
from charter.examples import BILLING, payments_tools, support_tools
from charter.exceptions import CharterError
from charter.identity import ProviderConfig
from charter.models import ScriptedModel, ScriptedTurn
from charter.sandbox import PaymentsSandbox, SupportSandbox
from charter.testing import LocalIssuer

if TYPE_CHECKING:
    from collections.abc import Callable

START, END = "<!-- bench:trust:start -->", "<!-- bench:trust:end -->"
WHY = "an attempt"
OWNER, INITIATOR = "ops-lead@example.com", "ivan"


@dataclass
class Tally:
    """Attempts and successes of one class of attack."""

    attempts: int = 0
    succeeded: list[str] = field(default_factory=list)

    def attempt(self, label: str, action: Callable[[], object]) -> None:
        """Try `action`; a Charter refusal is the attack failing, anything else succeeding."""
        self.attempts += 1
        try:
            action()
        except CharterError:
            return
        self.succeeded.append(label)


class Lab:
    """A store to attack, and what its attacker and its defenders hold."""

    def __init__(self, folder: Path, issuer: LocalIssuer) -> None:
        self.folder = folder
        self.issuer = issuer
        config = Config.from_env({}, home=folder / "home")
        self.client = Client(config)
        self.admin = self.client.init(reason="the store attacked").token
        client, admin = self.client, self.admin
        client.add_provider(
            ProviderConfig.parse(
                issuer.provider(
                    subject_claim="email",
                    roles_claim="groups",
                    role_map={"admins": ["admin"], "finance": ["approver:tier=finance"]},
                ),
                source="lab",
            ),
            credential=admin,
            reason=WHY,
        )
        self.people: dict[str, str] = {}
        for name, role in (
            ("carol", "approver:tenant=acme,tier=finance"),
            ("dave", "approver:tenant=acme,tier=finance"),
            ("gina", "approver:tenant=globex"),
            ("wes", "approver:workflow=deploy-gate"),
            ("tom", "approver:tier=ops"),
            ("otto", "operator:tenant=acme"),
            ("audrey", "auditor"),
            ("alice", "approver"),
        ):
            self.people[name] = client.create_human(
                name=name, roles=[role], credential=admin, reason=WHY
            ).token
        self.people["expiring-admin"] = client.create_human(
            name="ex-admin", roles=["admin"], ttl_s=60, credential=admin, reason=WHY
        ).token
        gone = client.create_human(name="old-admin", roles=["admin"], credential=admin, reason=WHY)
        client.revoke(gone.identity.id, credential=admin, reason=WHY)
        self.people["revoked-admin"] = gone.token
        later = datetime.now(UTC) + timedelta(hours=1)
        self.later = Authenticator(
            client.store, clock=lambda: later, federation=federation_for(client.store)
        )
        self.agent, self.plane = self._agent(), ControlPlane(client.store)
        self.agent_token = client.create_agent_identity(
            agent="billing-dispute-agent",
            workflow="billing-dispute",
            tenant_id="acme",
            environment="prod",
            credential=admin,
            reason=WHY,
        ).token

    def _agent(self) -> Agent:
        """The billing agent under a copy of its contract whose finance tier needs two."""
        contract = yaml.safe_load((BILLING / "contract.yaml").read_text())
        contract["approval_tiers"]["finance"] = {"role": "approver", "approvers": 2}
        folder = self.folder / "billing"
        folder.mkdir()
        for name in ("policies.cedar", "schema.cedarschema"):
            shutil.copy(BILLING / name, folder / name)
        (folder / "contract.yaml").write_text(yaml.safe_dump(contract))
        self.payments = PaymentsSandbox(":memory:")
        model = ScriptedModel(
            lambda messages: (
                ScriptedTurn.call(
                    "refund", charge_id=_charge_of(messages), amount_minor=24000, reason="renewal"
                )
                if sum(m.role == "assistant" for m in messages) == 0
                else ScriptedTurn.say("done")
            )
        )
        tools = [*payments_tools(self.payments), *support_tools(SupportSandbox(":memory:"))]
        return Agent.load(folder / "contract.yaml", tools=tools, model=model)

    def held(self) -> tuple[str, str]:
        """A new $240 refund held for two finance approvers: (run, request)."""
        charge = f"ch_{time.monotonic_ns()}"
        self.payments.create_charge(
            tenant_id="acme",
            customer_id="c1",
            customer_email="c@example.com",
            amount_minor=24000,
            currency="USD",
            charge_id=charge,
        )
        result = self.plane.run(
            self.agent,
            credential=self.agent_token,
            tenant_id="acme",
            task=charge,
            initiator=INITIATOR,
        )
        (request,) = result.waiting_on
        return result.run_id, request

    def an_hour_later(self, action: Callable[[], object]) -> object:
        """Do `action` with the client authenticating as if an hour had passed."""
        now, self.client.auth = self.client.auth, self.later
        try:
            return action()
        finally:
            self.client.auth = now

    def vote(self, request: str, name: str, token: str | None) -> object:
        return self.client.decide(
            request, approver=name, token=token, decision="approve", reason=WHY
        )

    def forged_jwts(self, claims: dict[str, Any]) -> dict[str, str]:
        """Tokens an attacker can make, each claiming `claims`."""
        issuer = self.issuer
        other = RSAKey.generate_key(2048, parameters={"kid": issuer.key.kid})
        with LocalIssuer() as stranger:
            unregistered = stranger.token(claims)
        return {
            "an unsigned JWT (alg none)": issuer.unsigned(claims),
            "a JWT MACed with the issuer's public key": issuer.hmac_with_public_key(claims),
            "a JWT for another audience": issuer.token({**claims, "aud": "not-charter"}),
            "a JWT of an issuer nobody trusts": unregistered,
            "a JWT signed by another key": issuer.token(claims, key=other),
            "an expired JWT": issuer.token(claims, lifetime_s=-600),
            "a JWT not valid yet": issuer.token({**claims, "nbf": int(time.time()) + 600}),
        }

    def close(self) -> None:
        self.plane.close()
        self.client.close()


def _charge_of(messages: list[Any]) -> str:
    return str(next(m.content for m in messages if m.role == "user")).rsplit(None, 1)[-1]


def identity_changes(lab: Lab) -> Tally:
    """Every identity change, with every credential but an admin's."""
    tally, client = Tally(), lab.client
    (approver,) = [i for i in client.identities() if i.name == "carol"]
    provider = ProviderConfig(issuer="https://idp.attacker.example", audience="x", kind="human")
    actions: dict[str, Callable[[str | None], object]] = {
        "create an admin": lambda t: client.create_human(
            name="mallory", roles=["admin"], credential=t, reason=WHY
        ),
        "create an agent": lambda t: client.create_agent_identity(
            agent="billing-dispute-agent",
            workflow="billing-dispute",
            tenant_id="globex",
            credential=t,
            reason=WHY,
        ),
        "make an approver an admin": lambda t: client.update_identity(
            approver.id, roles=["admin"], credential=t, reason=WHY
        ),
        "revoke an approver": lambda t: client.revoke(approver.id, credential=t, reason=WHY),
        "trust another issuer": lambda t: client.add_provider(provider, credential=t, reason=WHY),
        "distrust the issuer": lambda t: client.remove_provider(
            lab.issuer.url, credential=t, reason=WHY
        ),
    }
    credentials: dict[str, str | None] = {
        "no credential": None,
        "a guessed token": "chr_" + "A" * 43,
        "an operator's token": lab.people["otto"],
        "an approver's token": lab.people["carol"],
        "a revoked admin's token": lab.people["revoked-admin"],
        **lab.forged_jwts({"sub": "m", "email": "mallory@example.com", "groups": ["admins"]}),
    }
    for action, act in actions.items():
        for held, token in credentials.items():
            tally.attempt(f"{action} with {held}", lambda act=act, token=token: act(token))
        expiring = lab.people["expiring-admin"]
        tally.attempt(
            f"{action} with an expired admin's token",
            lambda act=act: lab.an_hour_later(lambda: act(expiring)),  # noqa: B023 - called at once
        )
    return tally


def out_of_scope(lab: Lab) -> Tally:
    """Approvers of another tenant, workflow or tier, and people of other roles."""
    tally = Tally()
    for _ in range(3):
        _, request = lab.held()
        for name in ("gina", "wes", "tom", "otto", "audrey"):
            tally.attempt(
                f"{name} approves",
                lambda name=name, request=request: lab.vote(request, name, lab.people[name]),
            )
    return tally


def look_alikes(lab: Lab) -> Tally:
    """The owner and the initiator under other spellings: created, then voting."""
    tally = Tally()
    _, request = lab.held()
    for base in (OWNER, INITIATOR):
        for variant in _spellings(base):

            def attack(variant: str = variant) -> object:
                made = lab.client.create_human(
                    name=variant, roles=["approver"], credential=lab.admin, reason=WHY
                )
                return lab.vote(request, variant, made.token)

            tally.attempt(f"{variant!r} approves {base}'s request", attack)
    return tally


def _spellings(name: str) -> list[str]:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    cyrillic = name.translate(str.maketrans("aeoip", "\u0430\u0435\u043e\u0456\u0440"))
    return [
        name.upper(),
        name.title(),
        f"{name} ",
        f" {name}",
        fullwidth,
        cyrillic,
        name[:1] + "\u200b" + name[1:],
        name.replace("i", "\u0131", 1) if "i" in name else name + "\u0301",
    ]


def second_votes(lab: Lab) -> Tally:
    """One person voting twice: through another credential of theirs, and through the IdP."""
    tally, client = Tally(), lab.client
    _, request = lab.held()
    lab.vote(request, "alice", lab.people["alice"])
    (alice,) = [i for i in client.identities() if i.name == "alice"]
    client.revoke(alice.id, credential=lab.admin, reason=WHY)
    for spelling in ("Alice", "ALICE", "alice "):
        tally.attempt(
            f"alice again as {spelling!r}",
            lambda spelling=spelling: lab.vote(
                request,
                spelling,
                client.create_human(
                    name=spelling, roles=["approver"], credential=lab.admin, reason=WHY
                ).token,
            ),
        )
    _, second = lab.held()
    ann = client.create_human(
        name="ann@example.com", roles=["approver"], credential=lab.admin, reason=WHY
    )
    lab.vote(second, "ann@example.com", ann.token)
    for email in ("ann@example.com", "ANN@example.com"):
        jwt = lab.issuer.token({"sub": "a", "email": email, "groups": ["finance"]})
        tally.attempt(
            f"ann again through the IdP as {email}",
            lambda jwt=jwt, email=email: lab.vote(second, email, jwt),
        )
    return tally


def stale_credentials(lab: Lab) -> Tally:
    """Expired and revoked people's tokens, for what operators and approvers do."""
    tally, client = Tally(), lab.client
    expiring = client.create_human(
        name="eve", roles=["operator", "approver"], ttl_s=60, credential=lab.admin, reason=WHY
    )
    fired = client.create_human(
        name="fred", roles=["operator", "approver"], credential=lab.admin, reason=WHY
    )
    client.revoke(fired.identity.id, credential=lab.admin, reason=WHY)
    run, request = lab.held()
    for name, token, how in (
        ("eve", expiring.token, "an expired"),
        ("fred", fired.token, "a revoked"),
    ):
        acts: dict[str, Callable[[], object]] = {
            "approves": lambda name=name, token=token: lab.vote(request, name, token),
            "kills": lambda name=name, token=token: client.kill(
                workflow="billing-dispute", by=name, token=token, reason=WHY
            ),
            "cancels": lambda name=name, token=token: client.cancel(
                run, by=name, token=token, reason=WHY
            ),
            "reads raw payloads": lambda name=name, token=token: client.break_glass(
                run, by=name, token=token, reason=WHY
            ),
        }
        for what, act in acts.items():
            tally.attempt(f"{how} token {what}", lambda act=act: lab.an_hour_later(act))
    return tally


def forged_jwts(lab: Lab) -> Tally:
    """JWTs an attacker can make, claiming a finance approver, voting."""
    tally = Tally()
    _, request = lab.held()
    claims = {"sub": "m", "email": "mallory@example.com", "groups": ["finance"]}
    for what, jwt in lab.forged_jwts(claims).items():
        tally.attempt(
            f"{what} approves", lambda jwt=jwt: lab.vote(request, "mallory@example.com", jwt)
        )
    return tally


CLASSES: dict[str, Callable[[Lab], Tally]] = {
    "identity changes without an admin credential": identity_changes,
    "approvals outside an approver's scope": out_of_scope,
    "self-approval through a look-alike name": look_alikes,
    "a second vote by the same person": second_votes,
    "expired or revoked tokens": stale_credentials,
    "forged or mis-audienced JWTs": forged_jwts,
}


def run() -> dict[str, Tally]:
    """Every class of attack on a fresh store; each class's tally."""
    folder = Path(tempfile.mkdtemp(prefix="charter-trust-"))
    try:
        with LocalIssuer() as issuer:
            lab = Lab(folder, issuer)
            try:
                return {name: attack(lab) for name, attack in CLASSES.items()}
            finally:
                lab.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trust")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tallies = run()
    took = time.perf_counter() - started
    attempts = sum(t.attempts for t in tallies.values())
    succeeded = [s for t in tallies.values() for s in t.succeeded]
    lines = [
        "## Results",
        "",
        *machine(),
        "- Command: `.venv/bin/python -m bench.trust --write` (`python -m bench.trust` prints)",
        f"- Took {took:.1f} s",
        "",
        "| attack | attempts | succeeded |",
        "|---|---:|---:|",
        *(f"| {name} | {t.attempts} | {len(t.succeeded)} |" for name, t in tallies.items()),
        f"| **all** | **{attempts}** | **{len(succeeded)}** |",
        "",
        f"- Goal: 0 successes: {len(succeeded)}, **{'met' if not succeeded else 'missed'}**",
    ]
    print("\n".join(lines))
    for success in succeeded:
        print(f"SUCCEEDED: {success}", file=sys.stderr)
    if args.write:
        write_section(lines, start=START, end=END)
    return 1 if succeeded else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
