"""Authentication and authorization: a presented credential becomes a principal, or is refused.

A credential is a Charter token (`chr_...`, looked up by its hash) or a JWT from an OIDC issuer
an admin registered (see `charter._federation`). Either way the principal that comes back has
passed every check: known, its record matching the control log, not revoked, not expired.
Authorization then asks one question: does one of its grants cover this role over this scope?
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from charter._time import iso, utcnow
from charter.exceptions import CredentialError, NotAuthorized
from charter.gate import hash_token
from charter.identity import same_person

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from charter._federation import Federation
    from charter.store import IdentityRecord, Store

__all__ = ["Authenticator", "looks_like_jwt"]

_NEEDS_TOKEN = "export CHARTER_TOKEN=<your token from `charter identity create`, or your IdP's JWT>"  # noqa: S105 - a hint, not a secret


def looks_like_jwt(credential: str) -> bool:
    """Whether a credential has a JWT's shape (three base64url parts, a JSON header)."""
    return credential.startswith("eyJ") and credential.count(".") == 2  # noqa: PLR2004


class Authenticator:
    """Authenticates credentials against one store and, for JWTs, its registered issuers."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        federation: Federation | None = None,
    ) -> None:
        """Authenticate against `store`; `federation` verifies JWTs (none: JWTs are refused)."""
        self._store = store
        self._clock = clock
        self._federation = federation

    def principal(
        self, credential: str | None, *, kind: Literal["agent", "human"] | None = None
    ) -> IdentityRecord:
        """The principal a credential proves, if it is one of `kind`.

        Raises:
            CredentialError: No credential; or one that is unknown, forged, altered outside
                Charter, revoked, expired, or of the other kind.
        """
        if not credential:
            raise CredentialError("this needs a credential", hint=_NEEDS_TOKEN)
        found: IdentityRecord | None
        if looks_like_jwt(credential):
            if self._federation is None:
                raise CredentialError(
                    "a JWT was given, but no identity provider is registered on this store",
                    hint="an admin registers one with `charter idp add FILE`",
                )
            found = self._federation.principal(credential)
        else:
            found = self._store.identity_by_token_hash(hash_token(credential))
        if found is None:
            raise CredentialError("the credential given is unknown", hint=_NEEDS_TOKEN)
        self._check(found)
        if kind is not None and found.kind != kind:
            raise CredentialError(f"{found.id} is an {found.kind}'s credential, not a {kind}'s")
        return found

    def _check(self, found: IdentityRecord) -> None:
        if found.problem is not None:
            raise CredentialError(
                f"the record of {found.id} is refused: {found.problem}",
                hint="`charter audit verify` reports it; an admin issues a new credential",
            )
        if found.revoked_at is not None:
            raise CredentialError(f"{found.name}'s credential was revoked ({found.id})")
        if found.expired(iso(self._clock())):
            raise CredentialError(
                f"{found.name}'s credential expired at {found.expires_at}",
                hint="an admin issues a new one: `charter identity create ... --ttl 30d`",
            )

    def person(self, credential: str | None, *, name: str | None = None) -> IdentityRecord:
        """The person a credential proves; with `name`, it must be theirs.

        `name` is compared as a subject: case, width and spacing do not make another person.

        Raises:
            CredentialError: As `principal`, or the credential is another person's.
        """
        found = self.principal(credential, kind="human")
        if name is not None and not same_person(name, found.subject or found.name):
            who = f"{name!r}" if name.isprintable() else "the person named"
            raise CredentialError(f"the credential given is not {who}'s")
        return found

    @staticmethod
    def authorize(
        principal: IdentityRecord,
        role: str,
        *,
        action: str,
        tenant: str | None = None,
        workflow: str | None = None,
        tier: str | None = None,
    ) -> None:
        """Refuse unless one of the principal's grants covers `role` over this scope.

        A scope given as None means "every one": only an unscoped grant covers it.

        Raises:
            NotAuthorized: No grant covers it.
        """
        if principal.may(role, tenant=tenant, workflow=workflow, tier=tier):
            return
        scoped = {"tenant": tenant, "workflow": workflow, "tier": tier}
        spec = ",".join(f"{key}={value}" for key, value in scoped.items() if value is not None)
        # A scope left out means every value: only a grant without that scope reaches it.
        every = [f"every {key}" for key in ("tenant", "workflow") if scoped[key] is None]
        wanted = f"{role}:{spec}" if spec else role
        if every:
            wanted += f" unscoped as to {' and '.join(every)}"
        held = ", ".join(str(g) for g in principal.grants) or "no roles"
        raise NotAuthorized(
            f"{principal.name} may not {action}: that needs {wanted}; they hold {held}",
            hint=f"an admin grants it: charter identity update {principal.id} --role "
            f"{role}{':' + spec if spec else ''} --role <the roles they keep> --reason ...",
        )
