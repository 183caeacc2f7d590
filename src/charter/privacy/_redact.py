"""Redaction before write: what reaches the log, a span or a log line in clear never carries these.

Each detector is a pattern for a shape and, where the shape alone is ambiguous, a check that
only the real thing passes: card numbers pass Luhn, IBANs pass mod 97, SSNs obey the issuing
rules, a high-entropy secret must look random rather than like a word, a hash or an id, and a
value given to a word that names a secret (`password: ...`) must not be a stand-in for one
(`********`, `${DB_PASSWORD}`, `null`). That check is what lets order numbers, digests and
run ids through untouched.

Detectors read a text as a reader sees it: in Unicode's compatibility form (NFKC: a
full-width at sign is an `@`, a full-width digit a digit) and without the characters that render
as nothing (zero-width spaces, joiners, the soft hyphen, direction marks). What they find is
replaced in the text as it was written, invisible characters inside a value included. A text
with no character to read otherwise (any ASCII text, most others) is searched as it is.

A found value is replaced by a typed marker (`[email]`, `[card]`, ...) so a reader still sees
that something was there and what kind of thing it was. A contract may add its own patterns;
their marker is their name.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import re2

from charter.privacy._reading import FOLDS, Finding, as_written, read_as_seen

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = ["DETECTORS", "Finding", "Redactor", "find", "redact", "redact_text"]


@dataclass(frozen=True)
class _Detector:
    """A detector: where its values may be (a hint), what they look like, and a check.

    Finding is in two passes. All detectors' hints are RE2 patterns, matched together in one
    linear pass over the text's bytes; a detector whose hint does not match costs nothing more.
    Where a hint matches, the detector's exact pattern (Python's `re`, for lookarounds and
    backreferences) confirms it in a small window. Python's `re` scanning a whole text costs
    ten times what RE2 does, so it only ever reads the windows.
    """

    name: str
    hint: str | None
    """An RE2 pattern that matches wherever `pattern` could; None: scan the whole text."""
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    groups: tuple[str, ...] = ()
    """Redact only the first of these named groups that matched (the token after `Bearer`, not
    the word); none: the whole match."""
    before: int = 2
    """How far before its hint a value may start."""
    after: int | None = 32
    """How far past its hint a value may end; None: anywhere up to the end of the text."""
    shrink: bool = False
    """When a match fails its check, try it again without its last separated group: a phone
    number followed by a year is a phone number."""

    def find(self, text: str, windows: Iterable[tuple[int, int]]) -> Iterator[Finding]:
        """Confirmed findings in these windows of `text` (hint spans), in order."""
        done = 0
        for start, end in windows:
            lo = max(done, start - self.before)
            hi = top = len(text) if self.after is None else min(len(text), end + self.after)
            failed = lo
            while True:
                match = self.pattern.search(text, lo, hi)
                if match is None:
                    if hi == top:
                        break
                    # Nothing shorter passed either: read on past the match that failed, to
                    # the window's end (a card may start at a phone number's last group).
                    lo, hi = failed + 1, top
                    continue
                if hi == top < len(text) and match.end() >= hi - 1:
                    # The window may end inside a value, or just past a separator before its
                    # next group, and a pattern reads its end as the text's: the value's first
                    # digits would pass for the whole of it.
                    hi = top = min(len(text), hi + 64)
                    continue
                group = next((g for g in self.groups if match.group(g) is not None), 0)
                value = match.group(group)
                if self.valid is None or self.valid(value):
                    yield Finding(self.name, match.start(group), match.end(group))
                    lo = done = match.end()
                    hi = top
                    continue
                cut = max(value.rfind(" "), value.rfind("-"), value.rfind("."))
                if self.shrink and cut > 0:
                    if hi == top:
                        failed = match.start()
                    hi = match.start(group) + cut + 1
                else:
                    lo = match.start() + 1


class _Email(_Detector):
    """Email addresses, found from their `@` outwards.

    A pattern that starts with the local part would be tried at every letter of a text; from
    the `@`, the scan costs a few steps per address. `pattern` is the domain.
    """

    _LOCAL = frozenset(string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-")
    """Every character RFC 5322 allows unquoted in a local part."""

    def find(self, text: str, windows: Iterable[tuple[int, int]]) -> Iterator[Finding]:  # noqa: ARG002 - the @ is a better guide
        """Each address: a local part of up to 64 characters, `@`, a dotted domain."""
        at = text.find("@")
        while at != -1:
            start = at
            while start > 0 and at - start < 64 and text[start - 1] in self._LOCAL:  # noqa: PLR2004
                start -= 1
            domain = self.pattern.match(text, at + 1)
            if domain is not None and start < at:
                yield Finding(self.name, start, domain.end())
            at = text.find("@", domain.end() if domain is not None else at + 1)


class _Credential(_Detector):
    """Values given to a word that names a secret, and the password in a URL.

    The hint finds the word itself (or a URL's `://user:password@`), so the pattern is matched
    right there rather than searched for: prose that names a password without giving one costs
    one failed match, never a scan of the rest of the text.
    """

    def find(self, text: str, windows: Iterable[tuple[int, int]]) -> Iterator[Finding]:
        """Each value the check accepts; in a URL, the `user:password` before the `@`."""
        for start, _ in windows:
            match = self.pattern.match(text, start)
            if match is None:
                continue
            group = next(g for g in self.groups if match.group(g) is not None)
            value = match.group(group)
            secret = value.partition(":")[2] if group == "url" else value
            if self.valid is None or self.valid(secret):
                yield Finding(self.name, match.start(group), match.end(group))


# Lookbehinds stand in for word boundaries that also refuse `-`, `.` and `/`, so a value glued
# to an id (`ORD-4242...`, `v1.2.3`) is part of that id, not a value of its own.
_EDGE = r"(?:^|[^\w.,/-])"
"""The hints' stand-in for the patterns' left lookbehind: RE2 has no lookarounds."""
_PHONE_EDGE = r"(?:^|[^\w.,/+-])"
"""`_EDGE` for phone numbers, whose lookbehind also refuses `+`: `+44 20 ...` is one number."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2  # noqa: PLR2004 - the Luhn doubling rule
        total += n
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(filter(str.isdigit, text))


def _card(value: str) -> bool:
    digits = _digits(value)
    return 13 <= len(digits) <= 19 and _luhn(digits)  # noqa: PLR2004 - ISO/IEC 7812 lengths


def _phone(value: str) -> bool:
    return 8 <= len(_digits(value)) <= 15  # noqa: PLR2004 - ITU-T E.164 lengths


def _iban(value: str) -> bool:
    compact = value.replace(" ", "")
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


_HEX = re.compile(r"[0-9a-fA-F-]+")
_WORDS = re.compile(r"[A-Z]?[a-z]{3,}|\d{3,}")
_SEGMENT = re.compile(r"(?:[A-Z]?[a-z]*|[A-Z]*)\d*")
_WORDY = 0.6
"""Share of a token in words and numbers at which it reads as an identifier: a random
20-character token reaches it about once in a hundred, `getCustomerById2024Version` does."""
_ENTROPY_BITS = 3.5
"""Bits per character a random-looking token must reach; words and ids stay below."""


def _random_looking(token: str) -> bool:
    """A token that reads as a generated secret: mixed case, high entropy, not made of words."""
    if _HEX.fullmatch(token):
        return False  # digests, UUIDs and hex ids are what logs are made of
    if token.startswith(("/", "~/")):
        return False  # a path
    if token.islower() or token.isupper():
        return False
    parts = re.split(r"[-_.]", token)
    if len(parts) > 1 and all(_SEGMENT.fullmatch(p) for p in parts):
        return False  # an identifier made of words and numbers: X-Request-Id-2026-11-24
    if sum(len(w) for w in _WORDS.findall(token)) >= _WORDY * len(token):
        return False
    size = len(token)
    bits = -sum(n / size * math.log2(n / size) for n in Counter(token).values())
    return bits >= _ENTROPY_BITS


_NOT_A_VALUE = frozenset(
    (
        *("null", "none", "nil", "undefined", "true", "false", "yes", "no", "n/a", "tbd"),
        *("empty", "blank", "unset", "missing", "required", "optional", "invalid", "expired"),
        *("revoked", "redacted", "hidden", "masked", "changed", "reset", "rotated"),
        *("str", "string", "bytes", "secretstr", "secretbytes"),
    )
)
"""Words a value of a secret-naming key reads as when it is a state or a type, not a secret."""
_STAND_IN = re.compile(
    r"[*xX\u2022\u00b7.\u2026#?_-]+"  # a mask: ********, xxxx, ...
    r"|\$\{.*|\{\{.*|\$\(.*|\$[A-Z_][A-Z0-9_]*|%[A-Za-z_]\w*%"  # ${DB_PASSWORD}, {{ t }}, $TOKEN
    r"|<[^<>]*>?|\[[^\[\]]*\]?"  # <password>, [REDACTED], a marker
    r"|[A-Za-z_][\w.]*\(\)?"  # a call: os.getenv("..."), get_password()
    r"|.*(?:\u2026|\.\.\.)"  # cut short: chr_…
    r"|~?/.*|[A-Za-z]:\\.*"  # a path: PWD=/home/jdoe
)


def _credential(value: str) -> bool:
    """A secret's value, not a stand-in for one.

    Stand-ins are masks, templates, states and types, and what redaction left of a value: a
    marker, maybe beside an escaped line break.
    """
    if value.strip("()[]<>{}").lower() in _NOT_A_VALUE or _STAND_IN.fullmatch(value):
        return False
    if not _MARKERS.sub("", value):
        return False
    return not value.startswith("-----BEGIN")  # a PEM block is private_key's to find


_KEY_WORDS = (
    r"pass(?:word|wd|phrase)|secret(?:[_-]?(?:access[_-]?)?key)?|token"
    r"|api[_-]?key|private[_-]?key|{pw}pwd?"
)
"""Words that name a secret, glued to whatever comes before them (`DB_PASSWORD`, `clientSecret`)
except `pw` and `pwd`, which must start a word."""
_ASSIGN = r"\\?[\"'\]]?[ \t]*(?::=|=>|==|[:=])"
"""`:` or `=` (`:=`, `=>`, `==`), after a key's closing quote: `"password": ...`."""

_BUILTIN = (
    _Detector(
        "private_key",
        r"PRIVATE KEY-----",
        re.compile(
            r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----"
            r"(?:[^\x00]*?-----END[A-Z ]{0,40}PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)",
            re.ASCII,
        ),
        before=60,
        after=None,
    ),
    _Detector(
        "jwt",
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.",
        re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        after=None,
    ),
    _Detector(
        "webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/|discord(?:app)?\.com/api/webhooks/"
        r"|\.webhook\.office\.com/webhookb2/|outlook\.office(?:365)?\.com/webhook/"
        r"|\.logic\.azure\.com(?::\d+)?/workflows/|\.powerplatform\.com(?::\d+)?/powerautomate/",
        re.compile(
            # Whoever holds one of these URLs can post as the integration: the whole URL is
            # the secret, so it goes from its scheme to its last query parameter.
            r"(?:https?://)?(?:"
            r"hooks\.slack\.com/(?:services|workflows|triggers)(?:/[A-Za-z0-9_-]+){2,}"
            r"|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{20,}"
            r"|[A-Za-z0-9-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/_-]{20,}"
            r"|outlook\.office(?:365)?\.com/webhook/[A-Za-z0-9@/_-]{20,}"
            # Power Automate and Logic Apps URLs are only secret with their signature.
            r"|[A-Za-z0-9.-]+\.(?:logic\.azure|api\.powerplatform)\.com(?::\d+)?"
            r"/(?:workflows|powerautomate)/[^\s\"'<>]*?[?&]sig=[A-Za-z0-9_%-]{16,}"
            r")[A-Za-z0-9_.~%/?=&+-]*",
            re.ASCII,
        ),
        before=80,
        after=None,
    ),
    _Detector(
        "bearer",
        r"(?:[Bb]earer|BEARER|Basic|Token)\s+[A-Za-z0-9._~+/-]{8}"
        r"|[Tt]oken[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9._~+/-]{12}",
        re.compile(
            r"(?:\b[Bb]earer|\bBEARER|\b(?:Basic|Token)(?=\s+[A-Za-z0-9+/]{12}))\s+"
            r"(?P<v>[A-Za-z0-9._~+/-]{8,}=*)"
            r"|\b(?:access|refresh|auth|api|session|bearer|id)?_?[Tt]oken[\"']?\s*[:=]\s*[\"']?"
            r"(?P<t>[A-Za-z0-9._~+/-]{12,}=*)",
            re.ASCII,
        ),
        groups=("v", "t"),
        before=12,
        after=None,
    ),
    _Detector(
        "api_key",
        r"(?:sk|pk|rk)_(?:live|test)_|whsec_|sk-|gh[pousr]_|github_pat_|GR1348941"
        r"|gl(?:pat|oas|dt|rt|cbt|ptt|ft|imt|agent|soat)-|AKIA|ASIA|AccountKey=|xox[abceoprs]-"
        r"|xapp-|AIza|(?:AC|SK)[0-9a-f]{32}|SG\.|npm_|pypi-AgE|sq0(?:atp|csp)-|[0-9a-f]{32}-us\d"
        r"|shp(?:at|ca|pa|ss)_|hf_|hv[sb]\.|glc_|glsa_|do[por]_v1_|dapi[0-9a-f]"
        r"|[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.|\d{8,10}:AA|chr_",
        re.compile(
            r"(?<![A-Za-z0-9_-])(?:"
            r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{24,}"  # Stripe
            r"|sk-[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic
            r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
            r"|gl(?:pat|oas|dt|rt|cbt|ptt|ft|imt|agent|soat)-[A-Za-z0-9_-]{20,}"  # GitLab
            r"|GR1348941[A-Za-z0-9_-]{20,}"  # GitLab runner registration
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
            r"|(?<=AccountKey=)[A-Za-z0-9+/]{86}=="  # Azure storage account keys
            r"|xox[abceoprs]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}"  # Slack
            r"|AIza[0-9A-Za-z_-]{30,}"  # Google
            r"|(?:AC|SK)[0-9a-f]{32}(?![A-Za-z0-9])"  # Twilio account and API key SIDs
            r"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"  # SendGrid
            r"|npm_[A-Za-z0-9]{36}"  # npm
            r"|pypi-AgE[A-Za-z0-9_-]{50,}"  # PyPI
            r"|sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43}"  # Square
            r"|[0-9a-f]{32}-us\d{1,2}(?![A-Za-z0-9])"  # Mailchimp
            r"|shp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}"  # Shopify
            r"|hf_[A-Za-z]{34}(?![A-Za-z0-9])"  # Hugging Face
            r"|hv[sb]\.[A-Za-z0-9_-]{24,}"  # HashiCorp Vault
            r"|glc_[A-Za-z0-9+/]{32,}={0,2}|glsa_[A-Za-z0-9]{32}_[0-9a-fA-F]{8}"  # Grafana
            r"|do[por]_v1_[0-9a-f]{64}"  # DigitalOcean
            r"|dapi[0-9a-f]{32}(?:-\d)?"  # Databricks
            r"|[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"  # Discord bots
            r"|\d{8,10}:AA[A-Za-z0-9_-]{33}"  # Telegram bots
            r"|chr_[A-Za-z0-9_-]{20,}"  # Charter's own credentials
            r")",
            re.ASCII,
        ),
        after=None,
    ),
    _Email(
        "email",
        r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]@[A-Za-z0-9]",
        re.compile(
            r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"
        ),
    ),
    _Detector(
        "iban",
        r"[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
        re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w-])"),
        _iban,
    ),
    _Detector(
        "card",
        # Groups may be parted by a space, `-`, `.`, `/` or `_`, the same one throughout.
        _EDGE
        + r"(?:3\d{3}[ ./_-]?\d{6}[ ./_-]?\d{4}|[2-6]\d{3}[ ./_-]?\d{4}[ ./_-]?\d{4}[ ./_-]?\d)",
        re.compile(
            r"(?<![\w.,/-])(?:"
            r"3[47]\d{2}([ ./_-]?)\d{6}\1\d{5}"  # American Express: 4-6-5
            r"|3[0689]\d{2}([ ./_-]?)\d{6}\2\d{4}"  # Diners Club: 4-6-4
            r"|[2-6]\d{3}([ ./_-]?)\d{4}\3\d{4}\3\d{4}(?:\3\d{1,3})?"  # 16 to 19 in fours
            r"|[2-6]\d{12,18}"
            r")(?![\w/-]|[.,]\d)",
            re.ASCII,
        ),
        _card,
        shrink=True,
    ),
    _Detector(
        "ssn",
        _EDGE + r"\d{3}[- ]\d{2}[- ]\d{4}",
        re.compile(
            r"(?<![\w.,/-])(?!000|666|9)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-]|[.,]\d)",
            re.ASCII,
        ),
    ),
    _Detector(
        "phone",
        r"\+\d|\(\d{3}\) ?\d{3}[.-]\d{4}|"
        + _PHONE_EDGE
        + r"(?:\d{3}[.-]\d{3}[.-]\d{4}|\d{3} \d{3} \d{4}|0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4})",
        re.compile(
            r"(?<![\w.,/+-])(?:"
            r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}"  # international
            r"|(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[.-])[2-9]\d{2}[.-]\d{4}"  # North American
            r"|[2-9]\d{2} [2-9]\d{2} \d{4}"
            r")(?![\w-]|[.,]\d)"
            # A national number (trunk prefix 0, as in the UK) reads like any other group of
            # digits (a tracking number, an account), so only after a word that says phone.
            r"|(?i:\b(?:tel|phone|mobile|cell|call|fax)\b)[.:]?\s{0,3}"
            r"(?P<n>0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w-]|[.,]\d)",
            re.ASCII,
        ),
        _phone,
        groups=("n",),
        before=16,
        shrink=True,
    ),
    _Credential(
        "credential",
        rf"(?i)(?:{_KEY_WORDS.format(pw='')})(?:{_ASSIGN}|\x00)|://[^\s:/?#@]*:[^\s/?#]+@",
        re.compile(
            rf"(?i:{_KEY_WORDS.format(pw='(?<![a-z0-9])')})(?:"
            rf"{_ASSIGN}[ \t]*(?:[*_]{{1,2}}[ \t]*)?(?:"  # markdown's **Password:** too
            r"\"(?P<dq>(?:[^\"\\\n\x00]|\\.)+)\""  # "a quoted value"
            r"|'(?P<sq>(?:[^'\\\n\x00]|\\.)+)'"
            r"|\\\"(?P<eq>(?:[^\"\\\n\x00]|\\[^\"\n\x00])+)\\\""  # \"quoted in a JSON string\"
            # Unquoted, a value ends at a space, a quote, a comma or a semicolon, and not on a
            # closing bracket. A plain word or number followed by more words is a sentence
            # ("password: must be 12 characters"), not a value.
            r"|(?!(?:[A-Za-z][a-z]*|\d+)[.:!?]?[ \t]+[A-Za-z])[\"']?"
            r"(?P<bare>[^\s\"'`,;\x00]*[^\s\"'`,;\x00)\]}>])"
            # Redactor.value joins its strings with NULs: the whole string after the word.
            r")|\x00(?P<field>[^\x00]+))"
            r"|://(?P<url>[^\s:/?#@\"'<>\x00]*:[^\s/?#\"'<>\x00]+)@(?=[\w\[])"
        ),
        _credential,
        groups=("dq", "sq", "eq", "bare", "field", "url"),
    ),
    _Detector(
        "entropy",
        r"[A-Za-z0-9+/_!#$%*~@-]{20,}",
        re.compile(r"(?<![A-Za-z0-9+/_!#$%*~@-])[A-Za-z0-9+/_!#$%*~@-]{20,}=*"),
        _random_looking,
        after=4,
    ),
)

DETECTORS = tuple(d.name for d in _BUILTIN)
"""The built-in detectors, most specific first: where two find the same text, the earlier wins."""
_MARKERS = re.compile("|".join(rf"\[{name}\]" for name in DETECTORS) + r"|\\[nrt]|\s")
"""The built-in markers and what may stay beside one in a value: escaped or real white space."""


def _re2_set(patterns: Sequence[str]) -> re2.Set | None:
    """One RE2 set of these patterns, or None if RE2 cannot read one of them."""
    options = re2.Options()
    options.log_errors = False
    hints = re2.Set.SearchSet(options)
    for index, pattern in enumerate(patterns):
        try:
            added = hints.Add(pattern)
        except re2.error:  # where RE2 answers -1, this binding raises
            return None
        if added != index:
            return None
    hints.Compile()
    return hints


class Redactor:
    """The built-in detectors plus a contract's own patterns, applied to texts and JSON values."""

    def __init__(self, custom: Mapping[str, str] | None = None) -> None:
        """Add `custom` patterns (name to regular expression); a match's marker is its name.

        Raises:
            ValueError: A name is not a lowercase identifier, shadows a built-in detector, or
                its pattern does not compile or matches the empty string.
        """
        detectors = list(_BUILTIN)
        for name, pattern in (custom or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in DETECTORS:
                raise ValueError(
                    f"redaction pattern name {name!r} must be a lowercase identifier that is "
                    f"not a built-in detector ({', '.join(DETECTORS)})"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction pattern {name!r} does not compile: {exc}") from exc
            if compiled.fullmatch(""):
                raise ValueError(f"redaction pattern {name!r} matches the empty string")
            # A pattern RE2 cannot read (lookarounds, backreferences) is scanned in full.
            hint = pattern if _re2_set([pattern]) is not None else None
            detectors.append(_Detector(name, hint, compiled, before=0, after=0))
        self._detectors = tuple(detectors)
        self._hinted = [i for i, d in enumerate(detectors) if d.hint is not None]
        # The last hints are no detector's: where they match, the text is read otherwise.
        self._scans = len(self._hinted)
        hints = _re2_set(
            [*(d.hint for d in detectors if d.hint is not None), *(h for h, _ in FOLDS)]
        )
        if hints is None:  # pragma: no cover - the built-in hints are tested to compile
            raise ValueError("a redaction hint is not valid RE2 syntax")
        self._hints = hints
        self._locators = {i: re2.compile(detectors[i].hint or "") for i in self._hinted}
        self._unhinted = [i for i, d in enumerate(detectors) if d.hint is None]
        self._priority = {d.name: i for i, d in enumerate(detectors)}

    def find(self, text: str) -> list[Finding]:
        """The sensitive values in `text`, in order and never overlapping.

        Detectors read `text` in compatibility form without invisible characters; the
        findings are spans of `text` as given. Where detectors overlap, the longer finding
        wins, then the more specific detector.
        """
        if not text:
            return []
        data = text.encode()
        hit = self._hints.Match(data)
        if not hit:
            return self._find(text, data, []) if self._unhinted else []
        scans = [slot - self._scans for slot in hit if slot >= self._scans]
        if scans and (read := read_as_seen(text, scans)) is not None:
            shown, changes = read
            data = shown.encode()
            return as_written(self._find(shown, data, self._hints.Match(data) or []), changes)
        return self._find(text, data, hit)

    def _find(self, text: str, data: bytes, hit: list[int]) -> list[Finding]:
        """What the detectors whose hints are in `hit` find in `text` (`data` in UTF-8)."""
        found: list[Finding] = []
        for slot in sorted(hit):
            if slot >= self._scans:
                continue
            index = self._hinted[slot]
            spans = self._spans(self._locators[index], data, text)
            found.extend(self._detectors[index].find(text, spans))
        for index in self._unhinted:
            found.extend(self._detectors[index].find(text, [(0, len(text))]))
        if len(found) < 2:  # noqa: PLR2004 - nothing can overlap
            return found
        found.sort(key=lambda f: (f.start, f.start - f.end, self._priority[f.detector]))
        kept: list[Finding] = []
        for finding in found:
            if kept and finding.start < kept[-1].end:
                continue
            kept.append(finding)
        return kept

    @staticmethod
    def _spans(locator: Any, data: bytes, text: str) -> Iterator[tuple[int, int]]:  # noqa: ANN401 - re2's pattern type is not exported
        """Where a hint matches, in character offsets of `text` (RE2 reads its UTF-8 bytes)."""
        ascii_only = len(data) == len(text)
        for match in locator.finditer(data):
            start, end = match.span()
            if ascii_only:
                yield start, end
            else:
                head = len(data[:start].decode(errors="ignore"))
                yield head, head + len(data[start:end].decode(errors="ignore"))

    def value(self, value: Any) -> Any:  # noqa: ANN401 - any JSON value in, the same shape out
        """Redact every string inside a JSON-like value (keys included), keeping its shape.

        A string under a key that names a secret (`password`, `api_key`, `client_secret`, ...)
        is redacted whole unless it is a stand-in (`********`, `${DB_PASSWORD}`), and so is
        a string that follows such a word in a list (`["--password", "..."]`). A value with
        nothing to redact comes back as it is.
        """
        if isinstance(value, str):
            return self.text(value)
        texts: list[str] = []
        _collect(value, texts)
        if not texts:
            return value
        # One search over every string at once, joined by NULs, which no detector reads
        # across but the credential detector's, which reads a string after one that ends in
        # `password` as its value: a value's findings are the joined text's, cut back to
        # their strings.
        findings = self.find("\x00".join(texts))
        if not findings:
            return value
        starts = list(itertools.accumulate((len(t) + 1 for t in texts), initial=0))
        keys: list[bool] = []
        # Strings are replaced by content, and one string can be found more in one place
        # (under `password`) than in another: each gets the findings of all its places.
        per_text: dict[str, list[Finding]] = {}
        for f in findings:
            i = bisect.bisect_right(starts, f.start) - 1
            base = starts[i]
            if f.detector == "credential" and f.start == base:
                # A whole string after one that ends in `password`: its value when that one
                # is a dict's key, or a flag in a list (`--password`); never when it is a key
                # itself ({"kind": "password", "value": ...}) or follows a sentence.
                if not keys:
                    _keys(value, keys)
                before = texts[i - 1]
                if keys[i] or not (keys[i - 1] or before.split() == [before]):
                    continue
            end = min(f.end, base + len(texts[i]))
            per_text.setdefault(texts[i], []).append(
                Finding(f.detector, f.start - base, end - base)
            )
        return _rebuild(value, {t: _marked(t, _apart(fs)) for t, fs in per_text.items()})

    def text(self, text: str) -> str:
        """`text` with every sensitive value replaced by its detector's marker."""
        findings = self.find(text)
        return _marked(text, findings) if findings else text


def _apart(findings: list[Finding]) -> list[Finding]:
    """These findings in order, each dropped that overlaps a longer or earlier one."""
    kept: list[Finding] = []
    for f in sorted(set(findings), key=lambda f: (f.start, f.start - f.end)):
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
    return kept


def _marked(text: str, findings: list[Finding]) -> str:
    """`text` with each finding (in order, not overlapping) replaced by its marker."""
    parts: list[str] = []
    at = 0
    for f in findings:
        parts.append(text[at : f.start])
        parts.append(f"[{f.detector}]")
        at = f.end
    parts.append(text[at:])
    return "".join(parts)


def _collect(value: Any, into: list[str]) -> None:  # noqa: ANN401
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            into.append(str(key))
            _collect(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, into)


def _keys(value: Any, into: list[bool]) -> None:  # noqa: ANN401
    """For each string `_collect` appends, in its order: is it a dict's key?"""
    if isinstance(value, str):
        into.append(False)
    elif isinstance(value, dict):
        for item in value.values():
            into.append(True)
            _keys(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _keys(item, into)


def _rebuild(value: Any, redacted: dict[str, str]) -> Any:  # noqa: ANN401
    """`value` with each string in `redacted` replaced; lists and tuples come back as lists."""
    if isinstance(value, str):
        return redacted.get(value, value)
    if isinstance(value, dict):
        return {redacted.get(str(k), str(k)): _rebuild(v, redacted) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebuild(v, redacted) for v in value]
    return value


_DEFAULT = Redactor()


def find(text: str, *, custom: Mapping[str, str] | None = None) -> list[Finding]:
    """The sensitive values the built-in detectors (and `custom` patterns) find in `text`."""
    return (Redactor(custom) if custom else _DEFAULT).find(text)


def redact_text(text: str) -> str:
    """The text with every value the built-in detectors find replaced by a marker."""
    return _DEFAULT.text(text)


def redact(value: Any) -> Any:  # noqa: ANN401 - any JSON value in, the same shape out
    """Redact every string inside a JSON-like value with the built-in detectors."""
    return _DEFAULT.value(value)
