"""Raw payloads, encrypted: what replay and resume need, never written in clear.

The log holds redacted events. Resuming a run needs the raw values a step produced (a model's
exact tool-call arguments, a tool's exact output), so those are sealed with AES-GCM and stored
beside the event, in the same transaction.

Each payload is sealed under the data key of its tenant, workflow, retention class and UTC day
(see `charter.privacy._keys`), whose id leads the ciphertext: retention destroys a day's key and
every payload under it is unreadable. The associated data binds each ciphertext to its key,
run and slot, so a payload copied to another run or step does not open.

Payloads sealed before data keys existed (format 1: a nonce, then the ciphertext, under a key
per tenant derived from the seal key) still open; they cannot be crypto-shredded, so
retention deletes them instead.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from charter.exceptions import StoreError
from charter.privacy._keys import MemoryKeyring, key_id, key_parts

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.privacy._keys import KeyProvider
    from charter.store import Store

__all__ = ["Vault", "sealed_key_id"]

_NONCE = 12
_FORMAT = 2


def sealed_key_id(data: bytes) -> str | None:
    """The id of the data key a payload was sealed under; None for a format-1 payload."""
    if len(data) < 2 or data[0] != _FORMAT:  # noqa: PLR2004 - format byte and length byte
        return None
    size = data[1]
    try:
        kid = data[2 : 2 + size].decode("ascii")
    except UnicodeDecodeError:
        return None
    # A format-1 payload starts with a random nonce: it passes for a key id by chance only if
    # its bytes happen to spell one, tenant, class and date included.
    return kid if key_parts(kid) is not None else None


class Vault:
    """Seals and opens raw payloads under data keys per tenant, workflow, class and day."""

    def __init__(
        self,
        root_key: bytes,
        keys: KeyProvider | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Seal under `keys` (default: in memory); `root_key` opens format-1 payloads.

        `clock` tells the day whose key seals a payload (default: the system clock).
        """
        self._root = root_key
        self.keys: KeyProvider = keys if keys is not None else MemoryKeyring()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ciphers: dict[str, tuple[bytes, AESGCM]] = {}
        self._legacy: dict[str, AESGCM] = {}

    @classmethod
    def for_store(cls, store: Store, *, clock: Callable[[], datetime] | None = None) -> Vault:
        """The vault of a store: its keyring, and its seal key for format-1 payloads."""
        return cls(store.seal_key, store.keys, clock=clock)

    def seal(
        self,
        *,
        tenant_id: str,
        run_id: str,
        name: str,
        value: Any,  # noqa: ANN401 - any JSON value
        workflow: str,
        retention: str,
    ) -> bytes:
        """Encrypt a JSON value for one slot (`name`) of a run, kept by a `retention` class."""
        day = self._clock().astimezone(UTC).date().isoformat()
        kid = key_id(tenant_id, workflow, retention, day)
        cipher = self._cipher(kid, create=True)
        assert cipher is not None  # noqa: S101 - created above
        nonce = os.urandom(_NONCE)
        plain = json.dumps(value, separators=(",", ":"), default=str).encode()
        head = bytes([_FORMAT, len(kid)]) + kid.encode("ascii")
        return head + nonce + cipher.encrypt(nonce, plain, _aad(kid, run_id, name))

    def open(self, *, tenant_id: str, run_id: str, name: str, data: bytes) -> Any:  # noqa: ANN401
        """Decrypt a slot's payload.

        Raises:
            PayloadPurged: Its data key was destroyed by retention.
            StoreError: The payload does not open: altered, moved, or sealed for another tenant
                or under a key this keyring does not hold.
        """
        kid = sealed_key_id(data)
        try:
            if kid is None:
                nonce, body = data[:_NONCE], data[_NONCE:]
                plain = self._legacy_cipher(tenant_id).decrypt(
                    nonce, body, f"{run_id}/{name}".encode()
                )
            else:
                parts = key_parts(kid)
                if parts is None or parts[0] != tenant_id:
                    raise InvalidTag
                cipher = self._cipher(kid, create=False)
                if cipher is None:
                    raise StoreError(
                        f"raw payload {name} of run {run_id} was sealed under data key {kid}, "
                        "which this keyring does not hold",
                        hint="set CHARTER_KEYRING_FILE to the keyring this store was written with",
                    )
                start = 2 + data[1]
                nonce, body = data[start : start + _NONCE], data[start + _NONCE :]
                plain = cipher.decrypt(nonce, body, _aad(kid, run_id, name))
        except InvalidTag as exc:
            raise StoreError(
                f"raw payload {name} of run {run_id} does not decrypt",
                hint="it was altered or moved, or the key is not the one it was written with",
            ) from exc
        return json.loads(plain)

    def _cipher(self, kid: str, *, create: bool) -> AESGCM | None:
        # Asked of the keyring every time, so a key destroyed by another process is gone here
        # too; only the cipher built from it is kept.
        key = self.keys.key(kid, create=create)
        if key is None:
            return None
        known = self._ciphers.get(kid)
        if known is not None and known[0] == key:
            return known[1]
        cipher = AESGCM(key)
        self._ciphers[kid] = (key, cipher)
        return cipher

    def _legacy_cipher(self, tenant_id: str) -> AESGCM:
        cipher = self._legacy.get(tenant_id)
        if cipher is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"charter/raw-payloads/v1/" + tenant_id.encode(),
            ).derive(self._root)
            cipher = self._legacy[tenant_id] = AESGCM(key)
        return cipher


def _aad(kid: str, run_id: str, name: str) -> bytes:
    return f"{kid}\n{run_id}/{name}".encode()
