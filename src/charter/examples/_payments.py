"""Payments tools over the Stripe-like sandbox: `lookup_charge` (read) and `refund` (write)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from charter._contract import Effect
from charter._tools import Change, Facts, Tool, ToolContext
from charter.examples._adapter import calling

if TYPE_CHECKING:
    from charter.sandbox import PaymentsSandbox

__all__ = ["ChargeView", "LookupCharge", "RefundIssued", "RefundRequest", "payments_tools"]

ChargeId = Annotated[str, Field(pattern=r"^ch_[A-Za-z0-9_]{1,40}$")]


class LookupCharge(BaseModel):
    """Input of `lookup_charge`."""

    model_config = ConfigDict(extra="forbid")
    charge_id: ChargeId


class ChargeView(BaseModel):
    """A charge as the agent sees it."""

    model_config = ConfigDict(extra="forbid")
    id: str
    tenant_id: str
    customer_email: str
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    refunded_minor: int = Field(ge=0)


class RefundRequest(BaseModel):
    """Input of `refund`: which charge, how much (minor units), and why."""

    model_config = ConfigDict(extra="forbid")
    charge_id: ChargeId
    amount_minor: int = Field(gt=0)
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class RefundIssued(BaseModel):
    """Output of `refund`."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^re_")
    charge_id: str
    amount_minor: int = Field(gt=0)


def _charge_view(sandbox: PaymentsSandbox, charge_id: str) -> ChargeView:
    charge = calling(lambda: sandbox.get_charge(charge_id))
    return ChargeView(
        id=charge.id,
        tenant_id=charge.tenant_id,
        customer_email=charge.customer_email,
        amount_minor=charge.amount_minor,
        currency=charge.currency.upper(),  # Stripe-style APIs answer in lower case
        refunded_minor=charge.refunded_minor,
    )


def payments_tools(sandbox: PaymentsSandbox) -> list[Tool[Any, Any]]:
    """`lookup_charge` and `refund` bound to one payments sandbox."""

    def lookup(args: LookupCharge, ctx: ToolContext) -> ChargeView:
        return _charge_view(sandbox, args.charge_id)

    def charge_facts(args: LookupCharge | RefundRequest, ctx: ToolContext) -> Facts:
        # The owner and currency come from the system of record, never from the agent.
        charge = _charge_view(sandbox, args.charge_id)
        amount = args.amount_minor if isinstance(args, RefundRequest) else None
        return Facts(
            resource_type="Charge",
            resource_id=charge.id,
            resource_tenant=charge.tenant_id,
            amount_minor=amount,
            currency=charge.currency,
            data_class="financial",
            extra={"refundable_minor": charge.amount_minor - charge.refunded_minor},
        )

    def refund(args: RefundRequest, ctx: ToolContext) -> RefundIssued:
        issued = calling(
            lambda: sandbox.refund(
                charge_id=args.charge_id,
                amount_minor=args.amount_minor,
                reason=args.reason,
                idempotency_key=ctx.idempotency_key,
            )
        )
        return RefundIssued(
            id=issued.id, charge_id=issued.charge_id, amount_minor=issued.amount_minor
        )

    def refund_preview(args: RefundRequest, ctx: ToolContext) -> list[Change]:
        charge = _charge_view(sandbox, args.charge_id)
        return [
            Change(
                path=f"charges/{charge.id}/refunded_minor",
                before=charge.refunded_minor,
                after=charge.refunded_minor + args.amount_minor,
            ),
            Change(path=f"charges/{charge.id}/refunds", before=None, after=args.reason),
        ]

    def within_refundable(args: RefundRequest, facts: Facts) -> str | None:
        left = facts.extra.get("refundable_minor")
        if isinstance(left, int) and args.amount_minor > left:
            return f"refund of {args.amount_minor} exceeds the {left} left on {args.charge_id}"
        return None

    return [
        Tool(
            name="lookup_charge",
            description="Look up a charge by id: amount, currency, refunds so far.",
            input_model=LookupCharge,
            output_model=ChargeView,
            effect=Effect.READ,
            run=lookup,
            facts=charge_facts,
        ),
        Tool(
            name="refund",
            description="Refund part or all of a charge, in minor units (cents).",
            input_model=RefundRequest,
            output_model=RefundIssued,
            effect=Effect.WRITE,
            run=refund,
            facts=charge_facts,
            preview=refund_preview,
            verifiers=(within_refundable,),
            idempotent=True,
            cost_usd=0.002,
        ),
    ]
