"""A Stripe-like payments sandbox: charges and idempotent refunds in SQLite."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from charter.sandbox._base import Record, SandboxError, new_id, not_found, require_text
from charter.sandbox._service import SandboxService

if TYPE_CHECKING:
    import sqlite3

__all__ = ["Charge", "PaymentsSandbox", "Refund"]

_SCHEMA = (
    # The CHECK on refunded_minor is a second line of defence: even a bug in the refund path
    # cannot refund more than was charged.
    """CREATE TABLE IF NOT EXISTS charges (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        customer_email TEXT NOT NULL,
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
        currency TEXT NOT NULL,
        refunded_minor INTEGER NOT NULL DEFAULT 0
            CHECK (refunded_minor BETWEEN 0 AND amount_minor),
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS refunds (
        id TEXT PRIMARY KEY,
        charge_id TEXT NOT NULL REFERENCES charges (id),
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS refunds_by_charge ON refunds (charge_id)",
)


@dataclass(frozen=True, slots=True)
class Charge(Record):
    """A captured charge; amounts are in the currency's minor unit (cents)."""

    id: str
    tenant_id: str
    customer_id: str
    customer_email: str
    amount_minor: int
    currency: str
    refunded_minor: int
    created_at: str

    @property
    def refundable_minor(self) -> int:
        """What is left to refund."""
        return self.amount_minor - self.refunded_minor


@dataclass(frozen=True, slots=True)
class Refund(Record):
    """A refund of part or all of a charge."""

    id: str
    charge_id: str
    amount_minor: int
    reason: str
    created_at: str


def _check_amount(amount_minor: int) -> None:
    # bool is an int subclass, and adapters parse JSON, where 1.5 or true can arrive.
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise SandboxError(
            code="invalid_amount",
            status=400,
            message=f"amount_minor must be a positive integer, got {amount_minor!r}",
        )


class PaymentsSandbox(SandboxService):
    """Charges and refunds, with Stripe's idempotency semantics on every refund.

    Endpoints for `inject_fault`: "refund" and "get_charge".
    """

    schema: ClassVar[tuple[str, ...]] = _SCHEMA
    endpoints: ClassVar[frozenset[str]] = frozenset({"refund", "get_charge"})

    def create_charge(
        self,
        *,
        tenant_id: str,
        customer_id: str,
        customer_email: str,
        amount_minor: int,
        currency: str,
        charge_id: str | None = None,
    ) -> Charge:
        """Seed a captured charge (test set-up, not an agent-facing write).

        With `charge_id`, seeding is repeatable: seeding the same charge again returns the
        stored one.

        Args:
            tenant_id: The tenant that owns the charge.
            customer_id: The paying customer.
            customer_email: The customer's email.
            amount_minor: The charged amount in minor units; positive.
            currency: ISO-4217 code; stored lower-case, as Stripe does.
            charge_id: A fixed id for deterministic fixtures; random `ch_...` otherwise.

        Returns:
            The charge as stored.

        Raises:
            SandboxError: 400 for invalid parameters; 409 `resource_already_exists` when
                `charge_id` exists with different details.
        """
        require_text(
            tenant_id=tenant_id,
            customer_id=customer_id,
            customer_email=customer_email,
            currency=currency,
        )
        _check_amount(amount_minor)
        charge = Charge(
            id=charge_id or new_id("ch"),
            tenant_id=tenant_id,
            customer_id=customer_id,
            customer_email=customer_email,
            amount_minor=amount_minor,
            currency=currency.lower(),
            refunded_minor=0,
            created_at=self.now(),
        )
        with self._write() as db:
            row = db.execute("SELECT * FROM charges WHERE id = ?", (charge.id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO charges VALUES (:id, :tenant_id, :customer_id, :customer_email, "
                    ":amount_minor, :currency, :refunded_minor, :created_at)",
                    charge.to_dict(),
                )
                return charge
        existing = Charge.from_dict(dict(row))
        seeded = replace(
            charge, refunded_minor=existing.refunded_minor, created_at=existing.created_at
        )
        if seeded != existing:
            raise SandboxError(
                code="resource_already_exists",
                status=409,
                message=f"charge {charge.id!r} already exists with different details",
            )
        return existing

    def get_charge(self, charge_id: str) -> Charge:
        """The charge with its current refunded amount.

        Raises:
            SandboxError: 404 `resource_missing` for an unknown id, or an injected fault.
        """
        self._check_fault("get_charge")
        row = self._read_one("SELECT * FROM charges WHERE id = ?", (charge_id,))
        if row is None:
            raise not_found("charge", charge_id)
        return Charge.from_dict(dict(row))

    def refund(
        self, *, charge_id: str, amount_minor: int, reason: str, idempotency_key: str
    ) -> Refund:
        """Refund part or all of a charge, at most once per idempotency key.

        Args:
            charge_id: The charge to refund.
            amount_minor: How much, in minor units; at most what is left to refund.
            reason: Why, free text (Stripe's enum values are a good choice).
            idempotency_key: Makes retries safe; reuse it only for the very same refund.

        Returns:
            The refund; a replay returns the original one.

        Raises:
            SandboxError: 400 `invalid_amount` (<= 0), 400 `amount_too_large`, 404
                `resource_missing`, 400 `idempotency_key_required` or `idempotency_key_reused`,
                or an injected fault.
        """
        params = {"charge_id": charge_id, "amount_minor": amount_minor, "reason": reason}
        response = self._idempotent(
            "refund",
            idempotency_key,
            params,
            lambda db: self._refund(db, charge_id, amount_minor, reason),
        )
        return Refund.from_dict(response)

    def _refund(
        self, db: sqlite3.Connection, charge_id: str, amount_minor: int, reason: str
    ) -> dict[str, Any]:
        _check_amount(amount_minor)
        row = db.execute(
            "SELECT amount_minor - refunded_minor FROM charges WHERE id = ?", (charge_id,)
        ).fetchone()
        if row is None:
            raise not_found("charge", charge_id)
        if amount_minor > row[0]:
            raise SandboxError(
                code="amount_too_large",
                status=400,
                message=f"refund of {amount_minor} exceeds the {row[0]} left on {charge_id}",
            )
        refund = Refund(
            id=new_id("re"),
            charge_id=charge_id,
            amount_minor=amount_minor,
            reason=reason,
            created_at=self.now(),
        )
        db.execute(
            "UPDATE charges SET refunded_minor = refunded_minor + ? WHERE id = ?",
            (amount_minor, charge_id),
        )
        db.execute(
            "INSERT INTO refunds VALUES (:id, :charge_id, :amount_minor, :reason, :created_at)",
            refund.to_dict(),
        )
        return refund.to_dict()

    def refund_count(self, charge_id: str | None = None) -> int:
        """How many refunds exist, for one charge or in all."""
        return self._count("refunds", charge_id=charge_id)

    def refunds(self, charge_id: str) -> list[Refund]:
        """The refunds of a charge, oldest first; empty for an unknown charge."""
        rows = self._read_all(
            "SELECT * FROM refunds WHERE charge_id = ? ORDER BY rowid", (charge_id,)
        )
        return [Refund.from_dict(dict(row)) for row in rows]
