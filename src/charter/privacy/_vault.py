"""Raw payloads, encrypted: what replay and resume need, never written in clear.

The log holds redacted events. Resuming a run needs the raw values a step produced (a model's
exact tool-call arguments, a tool's exact output), so those are sealed with AES-GCM under a key
per tenant and stored beside the event, in the same transaction. The associated data binds each
ciphertext to its run and slot, so a payload copied to another run or step does not open.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from charter.exceptions import StoreError

if TYPE_CHECKING:
    from charter.store import Store

__all__ = ["Vault"]

_NONCE = 12


class Vault:
    """Seals and opens raw payloads with a key per tenant derived from one root secret."""

    def __init__(self, root_key: bytes) -> None:
        """Use `root_key` (32 random bytes kept outside the database) as the root secret."""
        self._root = root_key
        self._keys: dict[str, AESGCM] = {}

    @classmethod
    def for_store(cls, store: Store) -> Vault:
        """The vault whose root is the store's seal key (kept beside, not in, the database)."""
        return cls(store.seal_key)

    def _cipher(self, tenant_id: str) -> AESGCM:
        cipher = self._keys.get(tenant_id)
        if cipher is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"charter/raw-payloads/v1/" + tenant_id.encode(),
            ).derive(self._root)
            cipher = self._keys[tenant_id] = AESGCM(key)
        return cipher

    def seal(self, *, tenant_id: str, run_id: str, name: str, value: Any) -> bytes:  # noqa: ANN401 - any JSON value
        """Encrypt a JSON value for one slot (`name`) of one run."""
        nonce = os.urandom(_NONCE)
        plain = json.dumps(value, separators=(",", ":"), default=str).encode()
        aad = f"{run_id}/{name}".encode()
        return nonce + self._cipher(tenant_id).encrypt(nonce, plain, aad)

    def open(self, *, tenant_id: str, run_id: str, name: str, data: bytes) -> Any:  # noqa: ANN401
        """Decrypt a slot's payload.

        Raises:
            StoreError: The payload does not open: wrong key, or moved or altered in the store.
        """
        aad = f"{run_id}/{name}".encode()
        try:
            plain = self._cipher(tenant_id).decrypt(data[:_NONCE], data[_NONCE:], aad)
        except InvalidTag as exc:
            raise StoreError(
                f"raw payload {name} of run {run_id} does not decrypt",
                hint="it was altered or moved, or the seal key is not the one it was written with",
            ) from exc
        return json.loads(plain)
