"""`charter init`, `charter identity` and `charter idp`: who may act, and who says so.

A new store has no principals. `charter init` makes its first admin and shows that admin's
token once (or names a person an OIDC issuer vouches for). Every change after that (creating,
changing or revoking an identity, trusting an issuer) is an admin's act, proven by the
credential in $CHARTER_TOKEN, and a control-log entry (`charter kill-switches --log`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from charter._client import Client
from charter._files import read_data
from charter.cli._common import config_of, console, emit_json, handled, json_option, token
from charter.exceptions import ConfigError, UserError
from charter.identity._oidc import ProviderConfig

__all__ = ["identity", "idp", "init"]

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):  # type: ignore[type-arg] # click's generic is new
    """A lifetime: seconds, or a number with s, m, h or d (`90`, `12h`, `30d`)."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds; a usage error (exit 2) for anything else."""
        text = str(value).strip()
        unit = _DURATION.get(text[-1:], 0)
        number = text[:-1] if unit else text
        if not number.isdigit() or int(number) == 0:
            self.fail(f"{value!r} is not a lifetime like 3600, 12h or 30d", param, ctx)
        return float(int(number) * (unit or 1))


_reason = click.option("--reason", required=True, help="Why; kept in the control log.")
_ttl = click.option(
    "--ttl",
    "ttl_s",
    type=Duration(),
    help="How long the credential authenticates (e.g. 12h, 30d; agents default to 30d).",
)


def _read_provider(path: Path) -> ProviderConfig:
    """An identity provider's configuration from a YAML or JSON file.

    Raises:
        ConfigError: The file is unreadable, or not a valid configuration.
    """
    data = read_data(path, error=ConfigError, what="an identity provider's configuration")
    return ProviderConfig.parse(data, source=str(path))


# --- init ---------------------------------------------------------------------------------------
@click.command()
@click.option("--name", default="admin", show_default=True, help="The first admin's name.")
@_ttl
@click.option(
    "--idp",
    "idp_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust this OIDC issuer (YAML) and make --subject, whom it vouches for, the admin.",
)
@click.option("--subject", help="With --idp: the first admin's subject at the issuer.")
@click.option("--reason", default="initialised", show_default=True, help="Kept in the log.")
@json_option
@click.pass_context
@handled
def init(
    ctx: click.Context,
    name: str,
    ttl_s: float | None,
    idp_file: Path | None,
    subject: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Give a new store its first admin; the admin's token is shown once and kept nowhere."""
    if (idp_file is None) != (subject is None):
        raise UserError("--idp and --subject go together", hint="or give neither for a token")
    with Client(config_of(ctx)) as client:
        if idp_file is not None and subject is not None:
            admin = client.init_federated(_read_provider(idp_file), subject=subject, reason=reason)
            if as_json:
                emit_json({"identity": admin.to_dict(), "token": None})
                return
            console.print(
                f"initialised: {admin.subject} ({admin.id}) is the admin, via {admin.issuer}"
            )
            console.print("they sign in with their IdP's JWT: export CHARTER_TOKEN=<the JWT>")
            return
        issued = client.init(name=name, ttl_s=ttl_s, reason=reason)
    if as_json:
        emit_json({"identity": issued.identity.to_dict(), "token": issued.token})
        return
    console.print(f"initialised: {issued.identity.id} ({issued.identity.name}) is the admin")
    console.print(f"admin token (shown once; Charter keeps only its hash): {issued.token}")
    console.print("next: CHARTER_TOKEN=<it> charter identity create --agent ... --reason ...")


# --- identity -----------------------------------------------------------------------------------
@click.group()
def identity() -> None:
    """Agent identities and people: create, change roles, revoke (as an admin), list."""


@identity.command("create")
@click.option("--agent", help="Agent name (with --workflow and --tenant).")
@click.option("--workflow")
@click.option("--tenant")
@click.option(
    "--env",
    "environment",
    type=click.Choice(["dev", "staging", "prod"]),
    default="dev",
    show_default=True,
    help="The environment an agent credential may act in.",
)
@click.option("--human", help="Create a person with this name instead.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE[:SCOPE]",
    help="admin, approver, operator or auditor, scoped like approver:tenant=acme,tier=finance "
    "(repeatable).",
)
@_ttl
@_reason
@json_option
@click.pass_context
@handled
def identity_create(
    ctx: click.Context,
    agent: str | None,
    workflow: str | None,
    tenant: str | None,
    environment: str,
    human: str | None,
    roles: tuple[str, ...],
    ttl_s: float | None,
    reason: str,
    as_json: bool,
) -> None:
    """Issue a credential, as an admin ($CHARTER_TOKEN). Shown once; Charter keeps its hash."""
    with Client(config_of(ctx)) as client:
        if human:
            issued = client.create_human(
                name=human, roles=roles, ttl_s=ttl_s, credential=token(), reason=reason
            )
        elif agent and workflow and tenant:
            issued = client.create_agent_identity(
                agent=agent,
                workflow=workflow,
                tenant_id=tenant,
                environment=environment,
                credential=token(),
                reason=reason,
                **({"ttl_s": ttl_s} if ttl_s is not None else {}),
            )
        else:
            raise UserError(
                "say who the identity is for",
                hint="--agent A --workflow W --tenant T, or --human NAME --role approver",
            )
    if as_json:
        emit_json({"identity": issued.identity.to_dict(), "token": issued.token})
        return
    console.print(f"created {issued.identity.id} ({issued.identity.name})")
    if issued.identity.expires_at:
        console.print(f"expires {issued.identity.expires_at}")
    console.print(f"token (shown once, store it now): {issued.token}")


@identity.command("update")
@click.argument("identity_id")
@click.option("--role", "roles", multiple=True, required=True, metavar="ROLE[:SCOPE]")
@_reason
@json_option
@click.pass_context
@handled
def identity_update(
    ctx: click.Context, identity_id: str, roles: tuple[str, ...], reason: str, as_json: bool
) -> None:
    """Replace a person's roles, as an admin ($CHARTER_TOKEN)."""
    with Client(config_of(ctx)) as client:
        updated = client.update_identity(
            identity_id, roles=roles, credential=token(), reason=reason
        )
    if as_json:
        emit_json(updated.to_dict())
        return
    console.print(f"{updated.id} ({updated.name}) now holds {', '.join(map(str, updated.grants))}")


@identity.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked identities.")
@json_option
@click.pass_context
@handled
def identity_list(ctx: click.Context, include_revoked: bool, as_json: bool) -> None:
    """List identities (never their credentials); one altered outside Charter says so."""
    with Client(config_of(ctx)) as client:
        found = client.identities(include_revoked=include_revoked)
    if as_json:
        emit_json([i.to_dict() for i in found])
        return
    table = Table()
    for column in ("id", "kind", "name", "roles", "issuer", "expires", "revoked", "problem"):
        table.add_column(column)
    for i in found:
        table.add_row(
            i.id,
            i.kind,
            i.name,
            ", ".join(map(str, i.grants)),
            i.issuer,
            i.expires_at or "",
            i.revoked_at or "",
            i.problem or "",
        )
    console.print(table)


@identity.command("revoke")
@click.argument("identity_id")
@_reason
@json_option
@click.pass_context
@handled
def identity_revoke(ctx: click.Context, identity_id: str, reason: str, as_json: bool) -> None:
    """Revoke a credential, as an admin ($CHARTER_TOKEN); every gate refuses it at once."""
    with Client(config_of(ctx)) as client:
        revoked = client.revoke(identity_id, credential=token(), reason=reason)
    if as_json:
        emit_json(revoked.to_dict())
        return
    console.print(f"revoked {revoked.id} ({revoked.name}) at {revoked.revoked_at}")


# --- idp ----------------------------------------------------------------------------------------
@click.group()
def idp() -> None:
    """OIDC issuers whose JWTs Charter accepts: trust, list, distrust (as an admin)."""


@idp.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_reason
@json_option
@click.pass_context
@handled
def idp_add(ctx: click.Context, file: Path, reason: str, as_json: bool) -> None:
    """Trust the issuer FILE describes (YAML or JSON), as an unscoped admin ($CHARTER_TOKEN)."""
    provider = _read_provider(file)
    with Client(config_of(ctx)) as client:
        client.add_provider(provider, credential=token(), reason=reason)
    if as_json:
        emit_json({"issuer": provider.issuer, "config": json.loads(provider.model_dump_json())})
        return
    console.print(f"trusting {provider.issuer} ({provider.kind}s, audience {provider.audience})")


@idp.command("list")
@json_option
@click.pass_context
@handled
def idp_list(ctx: click.Context, as_json: bool) -> None:
    """The issuers Charter trusts, and what their tokens stand for."""
    with Client(config_of(ctx)) as client:
        found = client.providers()
    if as_json:
        emit_json(found)
        return
    table = Table("issuer", "kind", "audience", "problem")
    for p in found:
        table.add_row(p["issuer"], p["config"]["kind"], p["config"]["audience"], p["problem"] or "")
    console.print(table)


@idp.command("remove")
@click.argument("issuer")
@_reason
@json_option
@click.pass_context
@handled
def idp_remove(ctx: click.Context, issuer: str, reason: str, as_json: bool) -> None:
    """Stop trusting an issuer, as an unscoped admin; its tokens are refused at once."""
    with Client(config_of(ctx)) as client:
        client.remove_provider(issuer, credential=token(), reason=reason)
    if as_json:
        emit_json({"removed": issuer})
        return
    console.print(f"no longer trusting {issuer}")
