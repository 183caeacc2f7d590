"""A Zendesk-like support sandbox: tickets, macros and the messages macros send."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from charter.sandbox._base import Record, SandboxError, not_found, require_text
from charter.sandbox._service import SandboxService

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping, Sequence

__all__ = ["TICKET_STATUSES", "Macro", "SentMessage", "SupportSandbox", "Ticket"]

TICKET_STATUSES = ("new", "open", "pending", "solved")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        requester_email TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('new', 'open', 'pending', 'solved')),
        tags TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS macros (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        sets_status TEXT NOT NULL CHECK (sets_status IN ('new', 'open', 'pending', 'solved'))
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER NOT NULL REFERENCES tickets (id),
        macro_id TEXT NOT NULL REFERENCES macros (id),
        body TEXT NOT NULL,
        sent_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS messages_by_ticket ON messages (ticket_id)",
)

# (id, title, status the ticket gets, text); seeding wraps the text in a greeting and sign-off.
_MACROS = (
    (
        "refund_issued",
        "Refund issued",
        "solved",
        "We have refunded your payment for ticket #{{ticket_id}}; allow 5-10 business days.",
    ),
    (
        "refund_denied",
        "Refund denied",
        "solved",
        'Under our refund policy we cannot refund "{{subject}}". Reply with any questions.',
    ),
    (
        "escalated_to_billing",
        "Escalated to billing",
        "open",
        "Our billing team now has ticket #{{ticket_id}} and will reply within 2 business days.",
    ),
)

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Ticket(Record):
    """A support ticket."""

    id: int
    tenant_id: str
    requester_email: str
    subject: str
    body: str
    status: str
    tags: tuple[str, ...]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        """The ticket as a JSON-ready dict (tags as a list)."""
        return {**asdict(self), "tags": list(self.tags)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a ticket from `to_dict()` output."""
        return cls(**{**data, "tags": tuple(data["tags"])})


@dataclass(frozen=True, slots=True)
class Macro(Record):
    """A canned reply; applying it sends `body` rendered and sets the ticket's status."""

    id: str
    title: str
    body: str
    sets_status: str


@dataclass(frozen=True, slots=True)
class SentMessage(Record):
    """A reply sent to a ticket's requester by applying a macro."""

    id: int
    ticket_id: int
    macro_id: str
    body: str
    sent_at: str


def _requester_name(email: str) -> str:
    # Zendesk names a user created from an email after its local part; "jane.doe+x" -> "Jane Doe".
    local = email.split("@", 1)[0].split("+", 1)[0]
    words = [word.capitalize() for word in re.split(r"[._-]+", local) if word]
    return " ".join(words) or email


def _render(template: str, values: Mapping[str, str]) -> str:
    # An unknown placeholder stays visible rather than vanishing, so a broken macro is noticed.
    return _PLACEHOLDER.sub(lambda match: values.get(match[1], match[0]), template)


def _ticket_from_row(row: sqlite3.Row) -> Ticket:
    return Ticket.from_dict({**dict(row), "tags": json.loads(row["tags"])})


class SupportSandbox(SandboxService):
    """Tickets and macros; creating a ticket and sending a macro are idempotent writes.

    Endpoints for `inject_fault`: "create_ticket", "send_macro", "get_ticket", "list_macros".
    """

    schema: ClassVar[tuple[str, ...]] = _SCHEMA
    endpoints: ClassVar[frozenset[str]] = frozenset(
        {"create_ticket", "send_macro", "get_ticket", "list_macros"}
    )

    def _seed(self, db: sqlite3.Connection) -> None:
        rows = [
            (macro_id, title, f"Hi {{{{requester_name}}}},\n\n{text}\n\nBest,\nSupport", status)
            for macro_id, title, status, text in _MACROS
        ]
        db.executemany("INSERT OR IGNORE INTO macros VALUES (?, ?, ?, ?)", rows)

    def create_ticket(
        self,
        *,
        tenant_id: str,
        requester_email: str,
        subject: str,
        body: str,
        tags: Sequence[str],
        idempotency_key: str,
    ) -> Ticket:
        """Open a ticket with status "new".

        Args:
            tenant_id: The tenant the ticket belongs to.
            requester_email: Who asked; replies go to them.
            subject: One-line summary.
            body: The request.
            tags: Labels, kept in the given order.
            idempotency_key: Makes retries safe; reuse it only for the very same ticket.

        Returns:
            The ticket; a replay returns the original one.

        Raises:
            SandboxError: 400 `parameter_missing` or `invalid_email`, 400 for key problems,
                or an injected fault.
        """
        params = {
            "tenant_id": tenant_id,
            "requester_email": requester_email,
            "subject": subject,
            "body": body,
            "tags": list(tags),
        }
        response = self._idempotent(
            "create_ticket", idempotency_key, params, lambda db: self._create_ticket(db, params)
        )
        return Ticket.from_dict(response)

    def _create_ticket(self, db: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
        require_text(
            tenant_id=params["tenant_id"],
            requester_email=params["requester_email"],
            subject=params["subject"],
        )
        if "@" not in params["requester_email"]:
            raise SandboxError(
                code="invalid_email",
                status=400,
                message=f"{params['requester_email']!r} is not an email address",
            )
        row = db.execute(
            "INSERT INTO tickets (tenant_id, requester_email, subject, body, status, tags, "
            "created_at) VALUES (:tenant_id, :requester_email, :subject, :body, 'new', :tags, "
            ":created_at) RETURNING *",
            {**params, "tags": json.dumps(params["tags"]), "created_at": self.now()},
        ).fetchone()
        return _ticket_from_row(row).to_dict()

    def get_ticket(self, ticket_id: int) -> Ticket:
        """The ticket as it is now.

        Raises:
            SandboxError: 404 `resource_missing` for an unknown id, or an injected fault.
        """
        self._check_fault("get_ticket")
        row = self._read_one("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        if row is None:
            raise not_found("ticket", ticket_id)
        return _ticket_from_row(row)

    def list_macros(self) -> list[Macro]:
        """Every macro, by id.

        Raises:
            SandboxError: An injected fault.
        """
        self._check_fault("list_macros")
        return [
            Macro.from_dict(dict(row)) for row in self._read_all("SELECT * FROM macros ORDER BY id")
        ]

    def send_macro(self, *, ticket_id: int, macro_id: str, idempotency_key: str) -> SentMessage:
        """Reply to a ticket's requester with a macro and set the status the macro names.

        Args:
            ticket_id: The ticket to reply on.
            macro_id: The macro to apply, e.g. "refund_issued".
            idempotency_key: Makes retries safe; reuse it only for the very same reply.

        Returns:
            The message sent; a replay returns the original one.

        Raises:
            SandboxError: 404 `resource_missing` for an unknown ticket or macro, 400 for key
                problems, or an injected fault.
        """
        params = {"ticket_id": ticket_id, "macro_id": macro_id}
        response = self._idempotent(
            "send_macro",
            idempotency_key,
            params,
            lambda db: self._send_macro(db, ticket_id, macro_id),
        )
        return SentMessage.from_dict(response)

    def _send_macro(self, db: sqlite3.Connection, ticket_id: int, macro_id: str) -> dict[str, Any]:
        ticket = db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if ticket is None:
            raise not_found("ticket", ticket_id)
        macro = db.execute("SELECT * FROM macros WHERE id = ?", (macro_id,)).fetchone()
        if macro is None:
            raise not_found("macro", macro_id)
        values = {
            "requester_name": _requester_name(ticket["requester_email"]),
            "requester_email": ticket["requester_email"],
            "subject": ticket["subject"],
            "ticket_id": str(ticket["id"]),
        }
        db.execute("UPDATE tickets SET status = ? WHERE id = ?", (macro["sets_status"], ticket_id))
        row = db.execute(
            "INSERT INTO messages (ticket_id, macro_id, body, sent_at) VALUES (?, ?, ?, ?) "
            "RETURNING *",
            (ticket_id, macro_id, _render(macro["body"], values), self.now()),
        ).fetchone()
        return SentMessage.from_dict(dict(row)).to_dict()

    def message_count(self, ticket_id: int | None = None) -> int:
        """How many messages were sent, on one ticket or in all."""
        return self._count("messages", ticket_id=ticket_id)

    def ticket_count(self, tenant_id: str | None = None) -> int:
        """How many tickets exist, for one tenant or in all."""
        return self._count("tickets", tenant_id=tenant_id)
