"""Regressions for values a security review found passing redaction, one test per finding.

Each secret is planted in free text and in a nested JSON value (as a string inside a list
inside a dict, and as a dict key), and must be found in neither result: as written, as a
reader reads it (NFKC, without zero-width characters), nor as its bare digits for a card.
"""

from __future__ import annotations

import json
import re
import unicodedata

from charter.privacy import Redactor

HIDDEN = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")


def readings(text: str) -> str:
    """`text`, then as read (NFKC, no zero-width characters), then its digits alone."""
    read = HIDDEN.sub("", unicodedata.normalize("NFKC", text))
    return "\n".join((text, read, re.sub(r"\D", "", read)))


def redacted_both_ways(secret: str, *, written: str | None = None) -> list[str]:
    """What `Redactor().text` and `Redactor().value` leave of `written` (the secret itself by
    default) in a sentence and in a nested JSON value, keys included."""
    written = written or secret
    redactor = Redactor()
    value = {
        "ticket": {"notes": [f"customer wrote: {written} (ticket 4411)"], written: "as a key"},
        "runs": [{"arguments": {"note": written}}],
    }
    return [
        redactor.text(f"customer wrote: {written} (ticket 4411)"),
        json.dumps(redactor.value(value), ensure_ascii=False),
    ]


def leaked(secret: str, outputs: list[str]) -> list[str]:
    """The outputs in which `secret`, in any reading, is still there."""
    wanted = {r for r in readings(secret).split("\n") if len(r) >= 6}
    return [out for out in outputs if any(w in readings(out) for w in wanted)]


class TestFreeTextCredentials:
    def test_password_after_a_colon(self) -> None:
        """`password: CorrectHorseBatteryStaple` keeps its key and loses its value."""
        planted = "CorrectHorseBatteryStaple"
        outputs = redacted_both_ways(planted, written=f"password: {planted}")
        assert leaked(planted, outputs) == []
        assert "password: [credential]" in outputs[0]

    def test_pw_after_an_equals_sign(self) -> None:
        """`pw=Tr0ub4dor&3` keeps its key and loses its value, `&` and all."""
        planted = "Tr0ub4dor&3"
        outputs = redacted_both_ways(planted, written=f"pw={planted}")
        assert leaked(planted, outputs) == []
        assert "pw=[credential]" in outputs[0]


class TestNormalisedForms:
    def test_email_with_a_full_width_at_sign(self) -> None:
        """`maria` at a full-width at sign (U+FF20) `example.com` is an email address."""
        planted = "maria\uff20example.com"
        assert leaked(planted, redacted_both_ways(planted)) == []

    def test_card_with_dots(self) -> None:
        """`4111.1111.1111.1111` is a card number."""
        planted = "4111.1111.1111.1111"
        assert leaked(planted, redacted_both_ways(planted)) == []

    def test_card_with_zero_width_spaces(self) -> None:
        """A card number with zero-width spaces between its groups is a card number, and the
        marker takes the zero-width spaces with it."""
        planted = "4111\u200b1111\u200b1111\u200b1111"
        outputs = redacted_both_ways(planted)
        assert leaked(planted, outputs) == []
        assert "\u200b" not in outputs[0]


class TestWebhooks:
    def test_slack_webhook_url(self) -> None:
        """A Slack incoming-webhook URL is redacted whole."""
        planted = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
        outputs = redacted_both_ways(planted)
        assert leaked(planted, outputs) == []
        assert leaked("XXXXXXXXXXXXXXXXXXXXXXXX", outputs) == []
