"""The detectors' edges: how far a value is read, where it starts and ends, and its checks.

Each detector confirms a value in a window around where its hint matched; these tests pin what
is found when a value sits at a window's end, right after another value, at the start of a
text or a JSON string, and exactly at each check's limit (lengths, entropy, wordiness), and
what a contract's own patterns and JSON values make of them.
"""

from __future__ import annotations

import pytest

from charter.privacy import Redactor, find, redact, redact_text

# A token of 32 characters: four characters four times each and eight twice each, which is
# exactly 3.5 bits a character.
AT_THE_ENTROPY_FLOOR = "Qz7kBxQz7kMrQz7k2WQz7kpJBxMr2WpJ"


class TestWindows:
    def test_card_after_two_phone_numbers_is_read_whole(self) -> None:
        """A card that starts where a phone number's window ends is one card, not a digit
        more on the phone number."""
        text = "call +1 415 555 0199 or +44 20 7946 0321 4111 1111 1111 1111 (card)"
        assert redact_text(text) == "call [phone] or [phone] [card] (card)"

    @pytest.mark.parametrize("gap", [" or else ", " or maybe "])
    def test_nineteen_digit_card_past_another_cards_window_is_read_whole(self, gap: str) -> None:
        """A 19-digit card whose last group lies past the window of the card before it is
        redacted whole, wherever that window ends (on the separator or just after it)."""
        text = f"4111 1111 1111 1111{gap}6011 0000 0000 0004 003"
        assert redact_text(text) == f"[card]{gap}[card]"

    def test_card_starting_at_a_phone_numbers_last_group(self) -> None:
        """A card right after a phone number whose last group could start a card is found."""
        text = "tel +49 30 1234 5678 4111 1111 1111 1111"
        assert redact_text(text) == "tel [phone] [card]"

    def test_phone_number_does_not_take_the_next_values_first_group(self) -> None:
        """A phone number followed by a social security number leaves it whole: the phone
        number is not retried up to a `-` that its own pattern refuses."""
        assert redact_text("+44 20 7946 0321 078-05-1120") == "[phone] [ssn]"

    def test_card_after_a_plus_sign_is_a_card(self) -> None:
        """A card number glued to a `+` is found on its own as well as next to another."""
        assert redact_text("+4111111111111111") == "+[card]"

    def test_national_number_is_read_from_the_word_before_it(self) -> None:
        """A national number is found after `Tel:`, which its hint does not cover."""
        assert redact_text("Tel: 020 7946 0321") == "Tel: [phone]"

    def test_token_is_read_from_its_prefixed_name(self) -> None:
        """`access_token=...` is a bearer token: its name is read from before `token`."""
        assert redact_text("access_token=AbCdEf0123456789xyz") == "access_token=[bearer]"

    def test_padding_goes_with_a_random_token_however_long(self) -> None:
        """Every `=` after a random-looking token is part of it."""
        assert redact_text("k9Tq2ZxR7mWp4LsV8nBy====== ok") == "[entropy] ok"

    def test_webhook_host_is_read_back_eighty_characters(self) -> None:
        """A Logic Apps URL is taken from at most 80 characters before `.logic.azure.com`:
        a longer host keeps its head, the rest goes with the signature."""
        url = (
            "https://" + "a" * 100 + ".westus.logic.azure.com/workflows/abc/triggers/manual/"
            "paths/invoke?sig=AbCdEf0123456789xyz"
        )
        assert redact_text(url) == "https://" + "a" * 27 + "[webhook]"


class TestCardChecks:
    def test_card_followed_by_a_number_is_shrunk_to_the_card(self) -> None:
        """Groups that fail the Luhn check together are retried without their last one."""
        assert redact_text("card 4111 1111 1111 1111 123 ok") == "card [card] 123 ok"


class TestPhoneLengths:
    def test_eight_digits_are_a_phone_number(self) -> None:
        """E.164's shortest: an international number of eight digits is redacted."""
        assert redact_text("call +12 345 678 now") == "call [phone] now"

    def test_seven_digits_are_not(self) -> None:
        """An international-looking number of seven digits is kept."""
        assert redact_text("call +12 345 67 now") == "call +12 345 67 now"

    def test_fifteen_digits_are_a_phone_number(self) -> None:
        """E.164's longest: an international number of fifteen digits is redacted whole."""
        assert redact_text("call +123 4567 8901 2345 now") == "call [phone] now"


class TestEmail:
    def test_address_at_the_start_of_a_text(self) -> None:
        """An address that opens the text is redacted from its first character."""
        assert redact_text("jane@example.com wrote") == "[email] wrote"

    def test_address_after_a_word(self) -> None:
        """The local part stops at the space before it."""
        assert redact_text("write to jane@example.com today") == "write to [email] today"

    def test_local_part_is_at_most_64_characters(self) -> None:
        """RFC 5321's limit: of a longer run before `@`, the last 64 characters go with it."""
        assert redact_text("x" * 70 + "@example.com") == "xxxxxx[email]"

    def test_handle_without_a_local_part_is_kept(self) -> None:
        """`@support.example.org` has no local part: it is a handle, not an address."""
        text = "ask jane@example.com or @support.example.org"
        assert redact_text(text) == "ask [email] or @support.example.org"


class TestUrlCredential:
    def test_template_for_the_password_in_a_url_is_kept(self) -> None:
        """In `user:password@`, the password is what is checked: a template is no secret."""
        text = "postgres://app:${DB_PASSWORD}@db:5432/app"
        assert redact_text(text) == text


class TestRandomLooking:
    def test_token_of_few_distinct_characters_is_kept(self) -> None:
        """A mixed-case token that repeats a few characters is under the entropy floor."""
        text = "key qQqQqQqQwWwWwWwWzZzZzZ end"
        assert redact_text(text) == text

    def test_token_exactly_at_the_entropy_floor_is_redacted(self) -> None:
        """3.5 bits a character is enough to look random."""
        assert redact_text(f"key {AT_THE_ENTROPY_FLOOR} end") == "key [entropy] end"

    def test_token_exactly_sixty_percent_words_is_kept(self) -> None:
        """`Quartz` and `Jumble` make 12 of 20 characters: at 60% a token reads as words."""
        text = "key QuartzJumbleX7k9P2vW end"
        assert redact_text(text) == text

    def test_two_part_identifier_is_kept(self) -> None:
        """An id of two segments, each letters then digits, is an identifier, however random
        its characters."""
        text = "id Doc20261124083-Rev12 ok"
        assert redact_text(text) == text


class TestCustomPatterns:
    def test_pattern_re2_cannot_read_is_scanned(self) -> None:
        """A lookbehind (no RE2 syntax) builds a redactor and is found in the whole text."""
        redactor = Redactor({"order": r"(?<=ORD-)\d{6}"})
        assert redactor.text("ref ORD-123456 and 654321") == "ref ORD-[order] and 654321"

    def test_pattern_re2_cannot_read_writes_nothing_to_stderr(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Trying a pattern on RE2 is silent: no parse error on the process's stderr."""
        Redactor({"order": r"(?<=ORD-)\d{6}"})
        assert capfd.readouterr().err == ""

    def test_unreadable_pattern_is_found_at_the_start_of_a_text(self) -> None:
        """A pattern scanned in full is tried from the text's first character."""
        redactor = Redactor({"order": r"(?<![A-Z])ORD\d+"})
        assert redactor.text("ORD123 shipped") == "[order] shipped"

    def test_adjacent_values_are_both_redacted(self) -> None:
        """Two values that touch, with nothing between them, each get their marker."""
        redactor = Redactor({"ab": "AB", "cd": "CD"})
        assert redactor.text("xx ABCD yy") == "xx [ab][cd] yy"

    def test_adjacent_values_in_a_json_string_are_both_redacted(self) -> None:
        """The same holds inside a JSON value's string."""
        redactor = Redactor({"ab": "AB", "cd": "CD"})
        assert redactor.value({"k": "ABCD"}) == {"k": "[ab][cd]"}

    def test_find_uses_custom_patterns(self) -> None:
        """`find(custom=...)` reports a contract's own pattern by its name."""
        found = find("ticket TK-0042 open", custom={"ticket": r"TK-\d{4}"})
        assert [(f.detector, f.start, f.end) for f in found] == [("ticket", 7, 14)]

    @pytest.mark.parametrize(
        "custom",
        [
            {"Order": r"\d+"},
            {"order id": r"\d+"},
            {"email": r"\w+@\w+"},
            {"order": r"("},
            {"order": r"\d*"},
        ],
    )
    def test_bad_pattern_is_refused(self, custom: dict[str, str]) -> None:
        """A name that is no lowercase identifier or shadows a built-in, a pattern that does
        not compile or matches the empty string: each is refused."""
        with pytest.raises(ValueError, match="redaction pattern"):
            Redactor(custom)


class TestJsonValues:
    def test_plain_string_is_redacted(self) -> None:
        """A bare string is a JSON value too."""
        assert redact("card 4111 1111 1111 1111") == "card [card]"

    def test_value_without_strings_comes_back(self) -> None:
        """Numbers, booleans and nulls have nothing to redact."""
        assert redact([1, 2.5, None, True]) == [1, 2.5, None, True]

    def test_key_that_is_a_value_is_redacted(self) -> None:
        """A dict keyed by an email address loses the address, not the entry."""
        value = {"jane@example.com": {"role": "admin"}}
        assert redact(value) == {"[email]": {"role": "admin"}}

    def test_text_after_a_value_in_a_later_string_is_kept(self) -> None:
        """In a string that is not the first, what follows the value stays."""
        value = ["note", "card 4111 1111 1111 1111 expires soon"]
        assert redact(value) == ["note", "card [card] expires soon"]

    def test_value_under_a_key_of_several_words_is_redacted(self) -> None:
        """`{"database password": ...}`: a key that ends in `password` names its value."""
        value = {"database password": "correct horse battery staple"}
        assert redact(value) == {"database password": "[credential]"}

    def test_flag_after_a_sentence_still_names_its_argument(self) -> None:
        """In `[sentence, "--password", value]`, the flag right before the value counts."""
        argv = ["run the client", "--password", "Pa55w0rd!"]
        assert redact(argv) == ["run the client", "--password", "[credential]"]

    def test_argument_of_several_words_after_a_flag_is_redacted(self) -> None:
        """The string after `--password` is its value, spaces and all."""
        argv = ["--password", "correct horse battery"]
        assert redact(argv) == ["--password", "[credential]"]

    def test_string_found_whole_in_one_place_is_whole_everywhere(self) -> None:
        """A string that is a password in one place and starts with a card in another is
        redacted whole in both: the longer finding at the same start wins."""
        said = "4111111111111111 hunter2"
        value = {"note": said, "password": said}
        assert redact(value) == {"note": "[credential]", "password": "[credential]"}
