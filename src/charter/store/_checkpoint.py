"""Checkpoints: the ledger's head, signed with an Ed25519 key that never lives in the database.

A checkpoint says "store S's ledger had entry N with hash H at time T", signed. Kept outside the
database (WORM storage, another system, an auditor's repository), it is the record a rollback
cannot reach: `charter audit verify --checkpoint FILE` checks that the store's ledger still
holds entry N with hash H and extends it, so a store (or one run of it) restored from an older
backup, or a store rebuilt by someone holding the seal key, fails. The signature is asymmetric
on purpose: auditors hold the public key and can verify, but not forge.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from charter.exceptions import ConfigError, UserError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "key_id",
    "load_public_key",
    "load_signing_key",
    "public_pem",
]

CHECKPOINT_FORMAT = "charter.checkpoint/1"


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    """A public key as PEM text, to hand to auditors."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A signed statement of a store's ledger head."""

    format: str
    store_id: str
    ts: str
    ledger_seq: int
    ledger_hash: str
    runs: int
    """How many runs the store held (for people reading the file; not verified against)."""
    key_id: str
    public_key: str
    """The signer's Ed25519 public key, base64 of its 32 raw bytes."""
    signature: str = ""
    """Base64 Ed25519 signature over `signed_bytes()`."""

    def signed_bytes(self) -> bytes:
        """What the signature covers: every other field, as canonical JSON."""
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        """The checkpoint as it is written to a file and to the ledger."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def sign(cls, private: Ed25519PrivateKey, **fields: Any) -> Checkpoint:  # noqa: ANN401
        """A checkpoint of these fields, signed with `private`."""
        public = private.public_key()
        unsigned = cls(
            format=CHECKPOINT_FORMAT,
            key_id=key_id(public),
            public_key=base64.b64encode(
                public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            ).decode(),
            **fields,
        )
        signature = private.sign(unsigned.signed_bytes())
        return cls(**{**asdict(unsigned), "signature": base64.b64encode(signature).decode()})

    @classmethod
    def parse(cls, text: str, *, source: str = "checkpoint") -> Checkpoint:
        """Read a checkpoint's JSON.

        Raises:
            UserError: The text is not a checkpoint of this format.
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
                raise TypeError
            found = cls(**data)
            checked = (found.store_id, found.ts, found.ledger_hash, found.key_id, found.public_key)
            if not all(isinstance(v, str) for v in checked) or not isinstance(
                found.ledger_seq, int
            ):
                raise TypeError
        except (ValueError, TypeError, RecursionError):
            raise UserError(
                f"{source} is not a Charter checkpoint ({CHECKPOINT_FORMAT})",
                hint="give the file `charter audit checkpoint --out FILE` wrote",
            ) from None
        return found

    def public(self) -> Ed25519PublicKey:
        """The signer's public key, as the checkpoint names it."""
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))

    def signature_problem(self, trusted: Ed25519PublicKey | None = None) -> str | None:
        """Why the signature does not hold (under `trusted`, if given); None if it does."""
        try:
            public = self.public()
            if trusted is not None and key_id(trusted) != key_id(public):
                return (
                    f"the checkpoint is signed by key {key_id(public)}, not by the trusted key "
                    f"{key_id(trusted)}"
                )
            public.verify(base64.b64decode(self.signature), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return "the checkpoint's signature does not verify: it was altered or forged"
        return None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key that signs checkpoints, created (readable by its owner only) if absent.

    Raises:
        ConfigError: The file is not an Ed25519 private key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a PEM Ed25519 private key",
            hint="point CHARTER_SIGNING_KEY_FILE at the key `charter audit checkpoint` made",
        ) from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(loaded).__name__}, not an Ed25519 key")
    return loaded


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An auditor's copy of the checkpoint signer's public key (PEM).

    Raises:
        UserError: The file is unreadable or not an Ed25519 public key.
    """
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(
            f"{path} is not a PEM Ed25519 public key",
            hint="`charter audit public-key` prints the one checkpoints are signed with",
        ) from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise UserError(f"{path} holds a {type(loaded).__name__}, not an Ed25519 public key")
    return loaded
