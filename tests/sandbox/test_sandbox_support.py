"""The Zendesk-like support sandbox: tickets, macros and sent messages."""

from __future__ import annotations

import pytest

from charter.sandbox import SandboxError, SentMessage, SupportSandbox, Ticket


def open_ticket(
    support: SupportSandbox,
    key: str = "t1",
    *,
    tenant_id: str = "acme",
    email: str = "jane.doe@example.com",
    subject: str = "Refund for order 42",
) -> Ticket:
    return support.create_ticket(
        tenant_id=tenant_id,
        requester_email=email,
        subject=subject,
        body="I was charged twice.",
        tags=["billing", "refund"],
        idempotency_key=key,
    )


class TestCreateTicket:
    def test_new_ticket_has_status_new_and_the_given_fields(self, support):
        """A created ticket starts as "new" with what was sent."""
        ticket = open_ticket(support)
        assert (ticket.status, ticket.tenant_id, ticket.subject) == (
            "new",
            "acme",
            "Refund for order 42",
        )
        assert ticket.tags == ("billing", "refund")

    def test_get_ticket_reads_it_back(self, support):
        """get_ticket returns the ticket as created."""
        ticket = open_ticket(support)
        assert support.get_ticket(ticket.id) == ticket

    def test_same_key_twice_creates_one_ticket_with_identical_result(self, support):
        """A replay returns the first ticket and creates no other."""
        first = open_ticket(support, "t1")
        assert open_ticket(support, "t1") == first
        assert support.ticket_count() == 1

    def test_same_key_with_other_params_is_reused_and_does_nothing(self, support):
        """The same key with another subject is idempotency_key_reused, no new ticket."""
        open_ticket(support, "t1")
        with pytest.raises(SandboxError) as caught:
            open_ticket(support, "t1", subject="Something else")
        assert (caught.value.status, caught.value.code) == (400, "idempotency_key_reused")
        assert support.ticket_count() == 1

    def test_invalid_email_is_rejected(self, support):
        """A requester without an @ is 400 invalid_email."""
        with pytest.raises(SandboxError) as caught:
            open_ticket(support, email="jane")
        assert (caught.value.status, caught.value.code) == (400, "invalid_email")
        assert support.ticket_count() == 0

    def test_stored_validation_error_replays(self, support):
        """The 400 is stored with its key, so the replay raises the same error."""
        with pytest.raises(SandboxError) as first:
            open_ticket(support, "t1", subject=" ")
        with pytest.raises(SandboxError) as second:
            open_ticket(support, "t1", subject=" ")
        assert second.value.to_dict() == first.value.to_dict()
        assert first.value.code == "parameter_missing"

    def test_injected_500_is_not_stored_so_the_retry_creates_once(self, support):
        """After a 500 the same key creates the ticket, exactly once."""
        support.inject_fault("create_ticket", status=500, code="internal_error")
        with pytest.raises(SandboxError, match="internal_error"):
            open_ticket(support, "t1")
        assert support.ticket_count() == 0
        first = open_ticket(support, "t1")
        assert open_ticket(support, "t1") == first
        assert support.ticket_count() == 1

    def test_ticket_count_filters_by_tenant(self, support):
        """ticket_count(tenant) counts one tenant's tickets; ticket_count() counts all."""
        open_ticket(support, "t1")
        open_ticket(support, "t2", tenant_id="globex")
        open_ticket(support, "t3", tenant_id="globex")
        assert (support.ticket_count("globex"), support.ticket_count()) == (2, 3)

    def test_concurrent_same_key_creates_one_ticket(self, support, run_together):
        """Racing replays of one key create a single ticket."""
        results = run_together(6, lambda _: open_ticket(support, "t1"))
        assert all(isinstance(result, Ticket) and result == results[0] for result in results)
        assert support.ticket_count() == 1


class TestGetTicket:
    def test_unknown_ticket_is_404(self, support):
        """An unknown id is 404 resource_missing."""
        with pytest.raises(SandboxError) as caught:
            support.get_ticket(404)
        assert (caught.value.status, caught.value.code) == (404, "resource_missing")

    def test_ticket_survives_to_dict_round_trip(self, support):
        """to_dict gives tags as a JSON list; from_dict restores the same ticket."""
        ticket = open_ticket(support)
        assert ticket.to_dict()["tags"] == ["billing", "refund"]
        assert Ticket.from_dict(ticket.to_dict()) == ticket


class TestMacros:
    def test_three_macros_are_seeded(self, support):
        """A fresh database has the refund and escalation macros."""
        assert [macro.id for macro in support.list_macros()] == [
            "escalated_to_billing",
            "refund_denied",
            "refund_issued",
        ]

    def test_reopening_does_not_duplicate_macros(self, tmp_path, support):
        """Seeding runs on every open but inserts each macro once."""
        with SupportSandbox(tmp_path / "support.db") as again:
            assert len(again.list_macros()) == 3

    def test_every_macro_greets_the_requester_by_name(self, support):
        """Templates use the {{requester_name}} placeholder."""
        assert all("{{requester_name}}" in macro.body for macro in support.list_macros())


class TestSendMacro:
    def test_sends_the_rendered_body(self, support):
        """Placeholders are filled from the ticket and its requester."""
        ticket = open_ticket(support)
        sent = support.send_macro(
            ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1"
        )
        assert sent.body.startswith("Hi Jane Doe,")
        assert f"ticket #{ticket.id}" in sent.body
        assert "{{" not in sent.body

    @pytest.mark.parametrize(
        ("email", "name"),
        [
            ("jane.doe@example.com", "Jane Doe"),
            ("bob+billing@x.io", "Bob"),
            ("a_b-c@x.io", "A B C"),
        ],
    )
    def test_requester_name_comes_from_the_email(self, support, email, name):
        """The name is the email's local part, split and capitalised, without +tags."""
        ticket = open_ticket(support, email=email)
        sent = support.send_macro(
            ticket_id=ticket.id, macro_id="refund_denied", idempotency_key="m1"
        )
        assert sent.body.startswith(f"Hi {name},")

    @pytest.mark.parametrize(
        ("macro_id", "status"),
        [
            ("refund_issued", "solved"),
            ("refund_denied", "solved"),
            ("escalated_to_billing", "open"),
        ],
    )
    def test_sets_the_status_the_macro_names(self, support, macro_id, status):
        """Applying a macro moves the ticket to the macro's status."""
        ticket = open_ticket(support)
        support.send_macro(ticket_id=ticket.id, macro_id=macro_id, idempotency_key="m1")
        assert support.get_ticket(ticket.id).status == status

    def test_same_key_twice_sends_once_with_identical_result(self, support):
        """A replay returns the first message and sends no other."""
        ticket = open_ticket(support)
        first = support.send_macro(
            ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1"
        )
        second = support.send_macro(
            ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1"
        )
        assert second == first
        assert support.message_count() == 1

    def test_same_key_with_other_macro_is_reused_and_does_nothing(self, support):
        """Another macro under a used key is idempotency_key_reused; status is untouched."""
        ticket = open_ticket(support)
        support.send_macro(
            ticket_id=ticket.id, macro_id="escalated_to_billing", idempotency_key="m1"
        )
        with pytest.raises(SandboxError, match="idempotency_key_reused"):
            support.send_macro(ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1")
        assert support.message_count() == 1
        assert support.get_ticket(ticket.id).status == "open"

    def test_unknown_ticket_is_404(self, support):
        """Sending to an unknown ticket is 404 and sends nothing."""
        with pytest.raises(SandboxError) as caught:
            support.send_macro(ticket_id=99, macro_id="refund_issued", idempotency_key="m1")
        assert (caught.value.status, caught.value.code) == (404, "resource_missing")
        assert support.message_count() == 0

    def test_unknown_macro_is_404_and_leaves_the_ticket(self, support):
        """An unknown macro is 404; the ticket keeps its status."""
        ticket = open_ticket(support)
        with pytest.raises(SandboxError, match="resource_missing"):
            support.send_macro(ticket_id=ticket.id, macro_id="nope", idempotency_key="m1")
        assert support.get_ticket(ticket.id).status == "new"

    def test_stored_404_replays_after_the_ticket_appears(self, support):
        """The 404 is stored with its key: the replay fails even once ticket 1 exists."""
        with pytest.raises(SandboxError, match="resource_missing"):
            support.send_macro(ticket_id=1, macro_id="refund_issued", idempotency_key="m1")
        assert open_ticket(support).id == 1
        with pytest.raises(SandboxError, match="resource_missing"):
            support.send_macro(ticket_id=1, macro_id="refund_issued", idempotency_key="m1")
        assert support.message_count() == 0

    def test_injected_429_is_not_stored_so_the_retry_sends_once(self, support):
        """After a 429 the same key sends the message, exactly once."""
        ticket = open_ticket(support)
        support.inject_fault("send_macro", status=429, code="rate_limited")
        with pytest.raises(SandboxError) as caught:
            support.send_macro(ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1")
        assert caught.value.retryable
        assert support.get_ticket(ticket.id).status == "new"
        sent = support.send_macro(
            ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1"
        )
        assert isinstance(sent, SentMessage)
        assert support.message_count() == 1

    def test_message_count_filters_by_ticket(self, support):
        """message_count(ticket) counts one ticket's messages; message_count() counts all."""
        first, second = open_ticket(support, "t1"), open_ticket(support, "t2")
        support.send_macro(ticket_id=first.id, macro_id="refund_issued", idempotency_key="m1")
        support.send_macro(ticket_id=second.id, macro_id="refund_denied", idempotency_key="m2")
        support.send_macro(ticket_id=second.id, macro_id="refund_issued", idempotency_key="m3")
        assert (support.message_count(second.id), support.message_count()) == (2, 3)

    def test_concurrent_same_key_sends_once(self, support, run_together):
        """Racing replays of one key send a single message."""
        ticket = open_ticket(support)
        results = run_together(
            6,
            lambda _: support.send_macro(
                ticket_id=ticket.id, macro_id="refund_issued", idempotency_key="m1"
            ),
        )
        assert all(isinstance(result, SentMessage) and result == results[0] for result in results)
        assert support.message_count() == 1
