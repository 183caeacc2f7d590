"""Support tools over the Zendesk-like sandbox: `create_ticket` and `send_macro` (writes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from charter._contract import Effect
from charter._tools import Change, Facts, Tool, ToolContext
from charter.examples._adapter import calling

if TYPE_CHECKING:
    from charter.sandbox import SupportSandbox

__all__ = ["MacroSent", "NewTicket", "SendMacro", "TicketCreated", "support_tools"]


class NewTicket(BaseModel):
    """Input of `create_ticket`."""

    model_config = ConfigDict(extra="forbid")
    requester_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    subject: Annotated[str, Field(min_length=3, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=5000)]
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,40}$")]] = Field(default_factory=list)


class TicketCreated(BaseModel):
    """Output of `create_ticket`."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(gt=0)
    status: str


class SendMacro(BaseModel):
    """Input of `send_macro`: apply a canned reply to a ticket."""

    model_config = ConfigDict(extra="forbid")
    ticket_id: int = Field(gt=0)
    macro_id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]


class MacroSent(BaseModel):
    """Output of `send_macro`."""

    model_config = ConfigDict(extra="forbid")
    message_id: int = Field(gt=0)
    ticket_id: int
    macro_id: str


def support_tools(sandbox: SupportSandbox) -> list[Tool[Any, Any]]:
    """`create_ticket` and `send_macro` bound to one support sandbox."""

    def create_ticket(args: NewTicket, ctx: ToolContext) -> TicketCreated:
        ticket = calling(
            lambda: sandbox.create_ticket(
                tenant_id=ctx.tenant_id,
                requester_email=args.requester_email,
                subject=args.subject,
                body=args.body,
                tags=args.tags,
                idempotency_key=ctx.idempotency_key,
            )
        )
        return TicketCreated(id=ticket.id, status=ticket.status)

    def new_ticket_facts(args: NewTicket, ctx: ToolContext) -> Facts:
        return Facts(
            resource_type="Ticket",
            resource_id="new",
            resource_tenant=ctx.tenant_id,
            data_class="customer_pii",
        )

    def send_macro(args: SendMacro, ctx: ToolContext) -> MacroSent:
        sent = calling(
            lambda: sandbox.send_macro(
                ticket_id=args.ticket_id,
                macro_id=args.macro_id,
                idempotency_key=ctx.idempotency_key,
            )
        )
        return MacroSent(message_id=sent.id, ticket_id=sent.ticket_id, macro_id=sent.macro_id)

    def ticket_facts(args: SendMacro, ctx: ToolContext) -> Facts:
        ticket = calling(lambda: sandbox.get_ticket(args.ticket_id))
        return Facts(
            resource_type="Ticket",
            resource_id=str(ticket.id),
            resource_tenant=ticket.tenant_id,
            data_class="restricted" if "restricted" in ticket.tags else "customer_pii",
        )

    def macro_preview(args: SendMacro, ctx: ToolContext) -> list[Change]:
        ticket = calling(lambda: sandbox.get_ticket(args.ticket_id))
        return [
            Change(path=f"tickets/{ticket.id}/messages", before=None, after=args.macro_id),
            Change(path=f"tickets/{ticket.id}/status", before=ticket.status, after="(per macro)"),
        ]

    return [
        Tool(
            name="create_ticket",
            description="Open a support ticket for a customer.",
            input_model=NewTicket,
            output_model=TicketCreated,
            effect=Effect.WRITE,
            run=create_ticket,
            facts=new_ticket_facts,
            idempotent=True,
        ),
        Tool(
            name="send_macro",
            description="Send a canned reply (macro) on a ticket; it reaches the customer.",
            input_model=SendMacro,
            output_model=MacroSent,
            effect=Effect.WRITE,
            run=send_macro,
            facts=ticket_facts,
            preview=macro_preview,
            idempotent=True,
        ),
    ]
