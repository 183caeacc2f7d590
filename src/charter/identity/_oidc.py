"""Tokens from an OIDC issuer: discovery, keys, signature, claims, and what the claims grant.

An admin registers each issuer Charter trusts, with the claim mapping that turns its tokens'
claims into a subject, roles and scopes (people) or an agent's scope (agents). A token is
accepted only if all of these hold:

* its header names an algorithm the issuer's entry allows; `none` and the HMAC family never
  are (an issuer's public key must not double as a shared secret);
* its signature verifies under a key of the issuer's JWKS (found through OIDC discovery, or
  the `jwks_uri` given), cached, and fetched again when a token names a key id not seen yet
  (key rotation), at most every `refresh_s`;
* `iss` is the issuer exactly; `aud` contains the audience; `exp` and `nbf` hold within the
  leeway (at most 5 minutes); every required claim is present.

The JOSE work is joserfc's; nothing here computes a signature.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from charter.exceptions import ConfigError, CredentialError, UserError
from charter.identity._grants import Grant, parse_grants
from charter.identity._subject import canonical_subject

if TYPE_CHECKING:
    from joserfc.jwt import ClaimsOption

__all__ = ["ASYMMETRIC", "FederatedClaims", "JwksCache", "ProviderConfig", "unverified_issuer"]

Algorithm = Literal[
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
]

ASYMMETRIC: tuple[Algorithm, ...] = get_args(Algorithm)
"""The signature algorithms an issuer may be trusted with: public-key ones only."""


def _default_algorithms() -> list[Algorithm]:
    return ["RS256", "ES256"]


_LOOPBACK_HOSTS = ("localhost",)


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProviderConfig(BaseModel):
    """One trusted OIDC issuer and how its tokens' claims map to Charter principals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    """The `iss` every token must carry exactly; https (http only on loopback, for tests)."""
    audience: str
    """The `aud` every token must contain: Charter's client id at the IdP."""
    kind: Literal["human", "agent"]
    """What this issuer's tokens stand for: people (roles from claims) or agents."""
    algorithms: list[Algorithm] = Field(default_factory=_default_algorithms)
    """Signature algorithms accepted; public-key ones only."""
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 60
    """Clock skew allowed on `exp`, `nbf` and `iat`, in seconds."""
    required_claims: list[str] = Field(default_factory=lambda: ["sub", "exp", "iat"])
    """Claims every token must carry."""
    jwks_uri: str | None = None
    """Where the issuer's keys are; by default, what its discovery document says."""
    subject_claim: str = "sub"
    """The claim naming the person or agent (`email`, `preferred_username`, `sub`)."""
    roles_claim: str | None = None
    """People: the claim listing their groups or roles (`groups`)."""
    role_map: dict[str, list[str]] = Field(default_factory=dict)
    """People: a value of `roles_claim` to the grants it carries (`finance: [approver:tier=
    finance]`). Values not mapped grant nothing."""
    tenant_claim: str = "tenant"
    """Agents: the claim naming the tenant the token may act for."""
    agent_claim: str = "agent"
    """Agents: the claim naming the agent."""
    workflow_claim: str = "workflow"
    """Agents: the claim naming the workflow."""
    environment_claim: str = "environment"
    """Agents: the claim naming the environment (absent: dev, which cannot act in prod)."""
    refresh_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """The least time between two fetches of the keys; bounds what unknown key ids cost."""

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _safe_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or "")):
            return value
        msg = f"{value!r} must be an https URL (http only on loopback)"
        raise ValueError(msg)

    @field_validator("role_map")
    @classmethod
    def _grants_parse(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, grants in value.items():
            try:
                parse_grants(grants)
            except UserError as exc:
                msg = f"role_map.{group}: {exc.message}"
                raise ValueError(msg) from None
        return value

    @model_validator(mode="after")
    def _people_have_roles(self) -> ProviderConfig:
        if self.kind == "human" and self.role_map and self.roles_claim is None:
            msg = "role_map needs roles_claim: the claim whose values it maps"
            raise ValueError(msg)
        return self

    @classmethod
    def parse(cls, data: object, *, source: str) -> ProviderConfig:
        """Validate a configuration read from `source`.

        Raises:
            ConfigError: It does not validate; the message names each failing key.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(
                f"{source}: not a valid identity provider ({problems})",
                hint="see docs/identity.md for every key",
            ) from None


class FederatedClaims(BaseModel):
    """What a verified token says its holder is, mapped through its issuer's configuration."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    kind: Literal["human", "agent"]
    subject: str
    """Canonical."""
    name: str
    """As the claim wrote it, for display."""
    grants: tuple[Grant, ...] = ()
    agent: str | None = None
    workflow: str | None = None
    tenant_id: str | None = None
    environment: str = "dev"


def unverified_issuer(token: str) -> str | None:
    """The `iss` a token claims, read without verifying anything: only to pick its issuer."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, IndexError, RecursionError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


Fetch = Callable[[str], dict[str, Any]]
"""Fetches a JSON document by URL (the discovery document, the JWKS)."""


def _fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object, with short timeouts and no redirects to elsewhere."""
    import httpx2  # noqa: PLC0415 - only a JWT's first check needs the network stack

    try:
        response = httpx2.get(url, timeout=5.0, follow_redirects=False)
        response.raise_for_status()
        found = response.json()
    except (httpx2.HTTPError, ValueError) as exc:
        raise CredentialError(
            f"the identity provider's keys could not be fetched from {url}: {type(exc).__name__}",
            hint="is the issuer up, and its URL right in `charter idp list`?",
        ) from None
    if not isinstance(found, dict):
        raise CredentialError(f"{url} did not answer with a JSON object")
    return found


class JwksCache:
    """Each issuer's public keys, fetched through discovery, cached, refreshed on rotation."""

    def __init__(
        self, *, fetch: Fetch = _fetch_json, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Fetch with `fetch` (HTTPS GET by default); `clock` paces refreshes."""
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[KeySet, float]] = {}

    def keys(self, config: ProviderConfig, kid: str | None) -> KeySet:
        """The issuer's keys, fetched again if `kid` is unknown and the last fetch is not recent.

        Raises:
            CredentialError: The keys cannot be fetched, or are not a JWKS.
        """
        with self._lock:
            cached = self._keys.get(config.issuer)
            known = cached is not None and (kid is None or _has_kid(cached[0], kid))
            if cached is not None and (known or self._clock() - cached[1] < config.refresh_s):
                return cached[0]
            keys = self._load(config)
            self._keys[config.issuer] = (keys, self._clock())
            return keys

    def _load(self, config: ProviderConfig) -> KeySet:
        uri = config.jwks_uri
        if uri is None:
            base = config.issuer.rstrip("/")
            discovery = self._fetch(f"{base}/.well-known/openid-configuration")
            if discovery.get("issuer") != config.issuer:
                raise CredentialError(
                    f"the discovery document of {config.issuer} names another issuer",
                    hint="OIDC discovery requires the document's issuer to match exactly",
                )
            uri = discovery.get("jwks_uri")
            if not isinstance(uri, str):
                raise CredentialError(f"the discovery document of {config.issuer} has no jwks_uri")
            ProviderConfig._safe_url(uri)  # noqa: SLF001 - the same rule as for a configured one
        document = self._fetch(uri)
        # Public keys only: a symmetric key in a JWKS would let a token signed with the
        # shared secret pass as the issuer's (the RS/HS confusion).
        public = [
            k
            for k in document.get("keys", [])
            if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP")
        ]
        try:
            return KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError) as exc:
            raise CredentialError(f"the JWKS of {config.issuer} does not parse: {exc}") from None


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def verify(
    token: str, config: ProviderConfig, cache: JwksCache, *, now: Callable[[], int]
) -> FederatedClaims:
    """The principal a token stands for under its issuer's configuration.

    Raises:
        CredentialError: The token fails any check; the message says which, never the token.
    """
    try:
        header = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError, TypeError):
        raise CredentialError("the JWT does not parse") from None
    alg = header.get("alg")
    if alg not in config.algorithms:
        raise CredentialError(
            f"the JWT is signed with {alg!r}, which {config.issuer} is not trusted with",
            hint=f"accepted: {', '.join(config.algorithms)} (never none or HMAC)",
        )
    kid = header.get("kid")
    keys = cache.keys(config, kid if isinstance(kid, str) else None)
    try:
        decoded = jwt.decode(token, keys, algorithms=list(config.algorithms))
        essential: ClaimsOption = {"essential": True}
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=config.leeway_s,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.audience},
            **dict.fromkeys({*config.required_claims, "exp"} - {"iss", "aud"}, essential),
        )
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise CredentialError(
            f"the JWT is refused: {exc.error}"
            + (f" ({exc.description})" if exc.description else "")
        ) from None
    return _mapped(decoded.claims, config)


def _claim(claims: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = claims.get(name, default)
    if not isinstance(value, str) or not value:
        raise CredentialError(f"the JWT's {name!r} claim is missing or not a string")
    return value


def _mapped(claims: dict[str, Any], config: ProviderConfig) -> FederatedClaims:
    """A verified token's claims as a principal, through the issuer's claim mapping."""
    named = _claim(claims, config.subject_claim)
    try:
        subject = canonical_subject(named)
    except UserError:
        raise CredentialError(
            f"the JWT's {config.subject_claim!r} claim is not a usable subject"
        ) from None
    if config.kind == "agent":
        agent = _claim(claims, config.agent_claim)
        workflow = _claim(claims, config.workflow_claim)
        tenant = _claim(claims, config.tenant_claim)
        environment = _claim(claims, config.environment_claim, default="dev")
        return FederatedClaims(
            issuer=config.issuer,
            kind="agent",
            subject=subject,
            name=f"{agent}/{workflow}/{tenant}",
            agent=agent,
            workflow=workflow,
            tenant_id=tenant,
            environment=environment,
        )
    values = claims.get(config.roles_claim) if config.roles_claim else None
    groups = [values] if isinstance(values, str) else values if isinstance(values, list) else []
    granted = [
        g for group in groups if isinstance(group, str) for g in config.role_map.get(group, [])
    ]
    grants = parse_grants(granted) if granted else ()
    return FederatedClaims(
        issuer=config.issuer, kind="human", subject=subject, name=named, grants=grants
    )
