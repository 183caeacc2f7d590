"""Redaction before write: what must never reach the log in clear."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charter.privacy import find, redact, redact_text
from charter.privacy._reading import _SCANS, _fold


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


class TestReading:
    @pytest.mark.parametrize(
        ("text", "redacted"),
        [
            ("pay 4111\u200b1111\u200b1111\u200b1111 now", "pay [card] now"),
            ("\u200b4111 1111 1111 1111\u200b", "\u200b[card]\u200b"),
            ("mail maria\uff20example.com today", "mail [email] today"),
            (
                "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 1111",
                "[card]",
            ),
            ("4\u0332111 1\u0332111 1\u0332111 1\u0332111", "[card]"),
            (
                "\u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 1111",
                "[card]",
            ),
            ("card 4111\u20111111\u20111111\u20111111.", "card [card]."),
            ("\ufb01 4111 1111 1111 1111 \ufb01", "\ufb01 [card] \ufb01"),
            ("pass\u200bword: Hunter\u00ad2025 ok", "pass\u200bword: [credential] ok"),
        ],
    )
    def test_marker_replaces_exactly_what_was_written(self, text: str, redacted: str) -> None:
        """A value found in the text as read replaces its written characters, hidden ones
        inside it included, and nothing around it."""
        assert redact_text(text) == redacted

    def test_findings_are_spans_of_the_text_as_written(self) -> None:
        """`find` reports where the value is in the text it was given, not in its reading."""
        text = "\u200b\u200b\uff2d\uff41\uff52\uff49\uff41\uff20example.com"
        assert [(f.detector, f.start, f.end) for f in find(text)] == [("email", 2, len(text))]

    def test_text_in_other_scripts_is_unchanged(self) -> None:
        """Text with accents, ideographs, emoji and joiners but nothing sensitive is kept."""
        text = (
            "Straße 12, München; 日本語のメモ\uff1a返金済み。 👩\u200d💻 cafe\u0301 2020\u20132024"
        )
        assert redact_text(text) == text

    def test_ascii_never_needs_reading(self) -> None:
        """No ASCII character is one the scans send to be read otherwise: ASCII text is
        searched as it is, whatever it holds."""
        ascii_text = "".join(map(chr, range(128)))
        assert [scan.pattern for scan in _SCANS if scan.search(ascii_text)] == []

    def test_every_character_read_as_ascii_or_nothing_is_scanned_for(self) -> None:
        """Each character this Python's Unicode data reads as ASCII or as nothing (NFKC, hidden,
        a hyphen, a digit of another script) is one the scans find."""
        fold = _fold.__wrapped__
        missed = [
            f"U+{code:04X}"
            for code in (*range(0x80, 0xD800), *range(0xE000, 0x30000), *range(0xE0000, 0xE1000))
            if (read := fold(char := chr(code))) != char
            and (not read or any(c.isascii() for c in read))
            and not any(scan.match(char) for scan in _SCANS)
        ]
        assert missed == []

    def test_every_format_character_is_hidden(self) -> None:
        """Every format character (category Cf) is dropped from what detectors read."""
        shown = [
            f"U+{code:04X}"
            for code in range(0x80, 0x110000)
            if unicodedata.category(chr(code)) == "Cf" and _fold.__wrapped__(chr(code)) != ""
        ]
        assert shown == []


class TestCredential:
    def test_value_is_redacted_and_key_kept(self) -> None:
        """`password: CorrectHorseBatteryStaple` keeps the key and loses the value."""
        assert redact_text("password: CorrectHorseBatteryStaple") == "password: [credential]"

    def test_quoted_value_is_taken_whole(self) -> None:
        """A quoted value goes whole, spaces and all."""
        text = 'secret = "correct horse battery staple"'
        assert redact_text(text) == 'secret = "[credential]"'

    def test_password_in_a_url(self) -> None:
        """A URL's `user:password@` is redacted; its host is kept."""
        text = "postgres://charter:s3cret-Pw@localhost:5432/app"
        assert redact_text(text) == "postgres://[credential]@localhost:5432/app"

    @pytest.mark.parametrize(
        "text",
        [
            "the password policy: 12 characters minimum",
            "Password: must be at least 12 characters long.",
            "Passwords: 3 reset today",
            "password: ********",
            "password=${DB_PASSWORD}",
            "token: null",
            "api_key: [REDACTED]",
            "def connect(host: str, password: str) -> None:",
            "PWD=/home/jdoe",
            "password_reset: enabled",
        ],
    )
    def test_prose_and_stand_ins_are_kept(self, text: str) -> None:
        """Prose about a password, and a stand-in where a value would be, are not values."""
        assert redact_text(text) == text

    def test_json_value_under_a_secret_key_is_redacted_whole(self) -> None:
        """In a JSON value, a string under `password` is a credential, spaces and all."""
        value = {"user": "jdoe", "auth": {"password": "correct horse battery staple"}}
        assert redact(value) == {"user": "jdoe", "auth": {"password": "[credential]"}}

    def test_string_under_a_secret_key_is_redacted_wherever_it_is(self) -> None:
        """A string redacted whole under `password` is redacted whole where else it is too."""
        said = "hunter2 4111111111111111"
        value = {"note": said, "password": said}
        assert redact(value) == {"note": "[credential]", "password": "[credential]"}

    def test_argument_after_a_secret_flag_in_a_list_is_redacted(self) -> None:
        """In an argument list, the string after `--password` is its value."""
        argv = ["mysql", "--password", "Pa55w0rd!", "-h", "db.internal"]
        assert redact(argv) == ["mysql", "--password", "[credential]", "-h", "db.internal"]

    def test_string_after_a_sentence_in_a_list_is_kept(self) -> None:
        """A list's string after a sentence that ends in `password` is not its value."""
        labels = ["Forgot password", "Sign in", "Create account"]
        assert redact(labels) == labels

    def test_key_after_a_value_that_says_password_is_kept(self) -> None:
        """A dict's key is never taken for the value of the string before it."""
        value = {"kind": "password", "value": "********", "rotated": True}
        assert redact(value) == value

    def test_json_stand_ins_and_other_keys_are_kept(self) -> None:
        """A mask under `password`, and a key that only starts with the word, are kept."""
        value = {"password": "********", "password_policy": "twelve characters"}
        assert redact(value) == value


class TestWebhook:
    @pytest.mark.parametrize(
        "url",
        [
            "https://hooks.slack.com/services/T0AAA1111/B0BBB2222/abcdefghijklmnopqrstuvwx",
            "https://hooks.slack.com/workflows/T0AAA1111/A0BBB2222/123456789012345678/abcXYZ12",
            "https://discord.com/api/webhooks/112233445566778899/AbCdEfGhIjKlMnOpQrStUvWxYz012",
            "https://discordapp.com/api/webhooks/112233445566778899/AbCdEfGhIjKlMnOpQrStUvWx",
            (
                "https://acme.webhook.office.com/webhookb2/0a1b2c3d-0000-4000-8000-0a1b2c3d4e5f@"
                "9f8e7d6c-0000-4000-8000-9f8e7d6c5b4a/IncomingWebhook/0123456789abcdef/1a2b3c4d"
            ),
            (
                "https://prod-27.westus.logic.azure.com:443/workflows/0123abcd/triggers/manual/"
                "paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0"
                "&sig=AbCdEf0123456789xyz"
            ),
        ],
    )
    def test_webhook_url_is_redacted_whole(self, url: str) -> None:
        """A webhook URL is redacted from its scheme to its last parameter."""
        assert redact_text(f"notify {url} now") == "notify [webhook] now"

    def test_logic_apps_url_without_a_signature_is_kept(self) -> None:
        """A Logic Apps URL without `sig=` cannot be posted to: it is kept."""
        text = (
            "https://prod-27.westus.logic.azure.com/workflows/0123abcd/triggers/manual/paths/invoke"
        )
        assert redact_text(text) == text


class TestCard:
    @pytest.mark.parametrize(
        "card",
        ["4111.1111.1111.1111", "4111/1111/1111/1111", "4111_1111_1111_1111", "3782.822463.10005"],
    )
    def test_any_separator_is_a_card(self, card: str) -> None:
        """Groups parted by a dot, a slash or an underscore are a card number."""
        assert redact_text(f"card {card} declined") == "card [card] declined"

    def test_dotted_number_failing_luhn_is_kept(self) -> None:
        """An order number with dots that fails the Luhn check is not a card."""
        assert redact_text("order 4111.1111.1111.1112") == "order 4111.1111.1111.1112"

    def test_number_after_a_phone_number_is_read_whole(self) -> None:
        """A card right after a phone number is found whole, not eaten by the phone's window."""
        text = "+1 415 555 0199 +44 20 7946 0321 4111 1111 1111 1111"
        assert redact_text(text) == "[phone] [phone] [card]"


class TestApiKeyFormats:
    @pytest.mark.parametrize(
        "key",
        [
            "whsec_" + "a1B2" * 8,
            "SK" + "0123456789abcdef" * 2,
            "SG." + "a" * 22 + "." + "b" * 43,
            "npm_" + "a1B2c3D4e5" * 3 + "F6g7H8",
            "pypi-AgEIcHlwaS5vcmc" + "Ab1-" * 18,
            "glpat-" + "a1B2c3D4e5F6g7H8i9J0",
            "sq0csp-" + "a1B2c3D4e5" * 4 + "F6g",
            "0123456789abcdef0123456789abcdef-us21",
            "shpat_" + "0123456789abcdef" * 2,
            "hf_" + "aBcDeFgHiJ" * 3 + "kLmN",
            "hvs." + "a1B2c3D4e5F6" * 3,
            "dop_v1_" + "0123456789abcdef" * 4,
        ],
    )
    def test_key_is_redacted(self, key: str) -> None:
        """Each format defined by a prefix or shape is an API key."""
        assert redact_text(f"key {key} leaked") == "key [api_key] leaked"

    def test_azure_account_key_is_redacted_after_its_name(self) -> None:
        """An Azure connection string keeps `AccountKey=` and loses the key."""
        key = ("Ab1+" * 22)[:86] + "=="
        text = f"AccountName=acme;AccountKey={key};EndpointSuffix=core.windows.net"
        expected = "AccountName=acme;AccountKey=[api_key];EndpointSuffix=core.windows.net"
        assert redact_text(text) == expected
