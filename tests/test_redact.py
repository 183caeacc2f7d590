"""Redaction before write: what must never reach the log in clear."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charter.privacy import redact, redact_text


class TestRedactText:
    @pytest.mark.parametrize(
        ("text", "marker"),
        [
            ("write to jane.doe+x@example.co.uk please", "[email]"),
            ("card 4242 4242 4242 4242 expires", "[card]"),
            ("card 4242-4242-4242-4242", "[card]"),
            ("key sk_live_abcdefgh12345678 leaked", "[api_key]"),
            ("token sk-proj-abcdefghijklmnop1234", "[api_key]"),
            ("gh token ghp_abcdefghijklmnopqrstuvwxyz0123", "[api_key]"),
            ("aws AKIAABCDEFGHIJKLMNOP here", "[api_key]"),
            ("charter chr_abcdefghijklmnopqrstuvwxyz", "[api_key]"),
        ],
    )
    def test_sensitive_values_become_markers(self, text: str, marker: str) -> None:
        """Emails, Luhn-valid card numbers and secret shapes are replaced by a typed marker."""
        redacted = redact_text(text)
        assert marker in redacted
        assert redacted != text

    def test_non_luhn_digit_runs_survive(self) -> None:
        """An order number that fails the Luhn check is kept: it is not a card."""
        assert redact_text("order 4242 4242 4242 4241") == "order 4242 4242 4242 4241"

    def test_plain_text_is_unchanged(self) -> None:
        """Text with nothing sensitive passes through untouched."""
        assert (
            redact_text("refund ch_acme_1001 for 19.99 USD") == "refund ch_acme_1001 for 19.99 USD"
        )


class TestRedactValue:
    def test_nested_structures_keep_their_shape(self) -> None:
        """Dicts and lists are walked; non-strings are kept."""
        value = {"a": ["x@y.io", 3, {"b": "4111111111111111"}], "n": None, "ok": True}
        assert redact(value) == {"a": ["[email]", 3, {"b": "[card]"}], "n": None, "ok": True}

    @given(st.emails())
    def test_any_email_is_redacted(self, email: str) -> None:
        """No generated email address survives redaction."""
        assert email not in redact_text(f"contact {email} now")
