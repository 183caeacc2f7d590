"""A local OIDC issuer: discovery and JWKS served on loopback, tokens signed with keys it makes.

For testing Charter's JWT sign-in, and an identity provider's claim mapping before trusting the
real issuer, without a network. It speaks the real protocol (OIDC discovery, RFC 7517 JWKS
over HTTP), so Charter fetches from it exactly as from an IdP.

    with LocalIssuer() as issuer:
        token = issuer.token({"sub": "ann", "aud": "charter", "groups": ["finance"]})
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["LocalIssuer"]

Key = RSAKey | ECKey | OKPKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key(algorithm: str, kid: str) -> Key:
    if algorithm.startswith(("RS", "PS")):
        return RSAKey.generate_key(2048, parameters={"kid": kid})
    if algorithm.startswith("ES"):
        curve = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[algorithm]
        return ECKey.generate_key(curve, parameters={"kid": kid})
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


class LocalIssuer:
    """An OIDC issuer on 127.0.0.1 with a key it makes; `rotate()` replaces the key."""

    def __init__(self, *, algorithm: str = "RS256", audience: str = "charter") -> None:
        """Make a key for `algorithm`; tokens are for `audience` unless told otherwise."""
        self.algorithm = algorithm
        self.audience = audience
        self._generation = 1
        self.key: Key = _new_key(algorithm, "key-1")
        self.fetches = 0
        """How many times the JWKS was fetched."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.fetches += 1
                    body = {"keys": [issuer.key.as_dict(private=False)]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401
                """Quiet: tests read results, not access logs."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The issuer's URL (`iss`), on loopback."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def provider(self, **overrides: Any) -> dict[str, Any]:  # noqa: ANN401 - any config value
        """A provider configuration trusting this issuer (`charter idp add` takes it as YAML)."""
        return {
            "issuer": self.url,
            "audience": self.audience,
            "kind": "human",
            "algorithms": [self.algorithm],
            "refresh_s": 1,
            **overrides,
        }

    def rotate(self) -> str:
        """Replace the signing key (the old one leaves the JWKS); returns the new key id."""
        self._generation += 1
        kid = f"key-{self._generation}"
        self.key = _new_key(self.algorithm, kid)
        return kid

    def token(
        self,
        claims: dict[str, Any],
        *,
        key: Key | None = None,
        header: dict[str, Any] | None = None,
        lifetime_s: float = 300.0,
    ) -> str:
        """A JWT with `claims` (plus `iss`, `aud`, `iat`, `exp` unless given), signed."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": self.audience,
            "iat": now,
            "exp": int(now + lifetime_s),
            **claims,
        }
        signer = key or self.key
        protected = {"alg": self.algorithm, "kid": signer.kid, **(header or {})}
        return jwt.encode(protected, body, signer, algorithms=[protected["alg"]])

    def unsigned(self, claims: dict[str, Any]) -> str:
        """A token with `alg: none` and no signature, as an attacker would send it."""
        body = {"iss": self.url, "aud": self.audience, "exp": int(time.time()) + 300, **claims}
        head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{head}.{_b64(json.dumps(body).encode())}."

    def hmac_with_public_key(self, claims: dict[str, Any]) -> str:
        """A token MACed (HS256) with this issuer's *public* key: the RS/HS confusion attack."""
        body = {"iss": self.url, "aud": self.audience, "exp": int(time.time()) + 300, **claims}
        header = {"alg": "HS256", "typ": "JWT", "kid": self.key.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
        # What the attacker does by hand: JOSE libraries (rightly) refuse a public key as a
        # shared secret, which is the very mistake the attack hopes the verifier makes.
        secret = self.key.as_pem(private=False)
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalIssuer:
        """Serve until the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.close()
