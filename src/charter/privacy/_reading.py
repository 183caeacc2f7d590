"""Reading a text as a person sees it, and mapping what is found back to the text as written.

Detectors read a text in Unicode's compatibility form (NFKC: a full-width at sign is an `@`, a
full-width digit a digit), without the characters that render as nothing (zero-width spaces,
joiners, the soft hyphen, direction marks), with Unicode hyphens as `-` and other scripts'
digits as ASCII ones. A finding in that reading is moved back onto the text as written, so its
marker replaces exactly the characters the value was written with, invisible ones included.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["FOLDS", "Finding", "as_written", "read_as_seen"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive value in a text: which detector found it and where (`text[start:end]`)."""

    detector: str
    start: int
    end: int


_INVISIBLE = (
    # Default-ignorable code points (Unicode's DerivedCoreProperties): they render as nothing.
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    # The other format characters (category Cf): signs that prefix numbers, annotations.
    r"\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\ufff9-\ufffb\U000110bd\U000110cd"
    r"\U00013430-\U0001343f"
    # Combining marks of the Latin, Greek and Cyrillic blocks that NFKC could not compose: a
    # tilde over each digit of a card hides it from a pattern but hardly from a reader.
    r"\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
)
_HIDDEN = re.compile(f"[{_INVISIBLE}]")
"""What detectors do not read: characters that render as nothing or only mark another."""
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2212"), "-")
"""Hyphens, the figure and en dash and the minus sign, which NFKC keeps, read as `-`; the em
dash stays punctuation."""


@functools.lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One character as detectors read it: NFKC, nothing hidden, hyphens and digits plain."""
    read = _HIDDEN.sub("", unicodedata.normalize("NFKC", char)).translate(_HYPHENS)
    if read.isascii():
        return read
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in read)


_FOLDED = (
    (0xA0, 0xBE),  # Latin-1 signs: no-break space, soft hyphen, ª, ², ½
    *((0x132, 0x133), (0x13F, 0x140), (0x149, 0x149), (0x17F, 0x17F)),  # ligatures, long s
    *((0x1C4, 0x1CC), (0x1F1, 0x1F3)),  # digraphs: Ǆ, Ǳ
    *((0x2B0, 0x36F), (0x374, 0x385)),  # modifier letters, combining marks, Greek signs
    *((0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F)),  # format signs
    *((0x890, 0x891), (0x8E2, 0x8E2), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F)),
    *((0x1AB0, 0x1AFF), (0x1D2C, 0x1DFF), (0x1E9A, 0x1E9A)),  # marks, phonetic modifiers
    # Punctuation, spaces and invisibles, super- and subscripts, letterlike and number forms,
    # circled numbers, the minus sign.
    *((0x1FBD, 0x2189), (0x2212, 0x2212), (0x2460, 0x24FF), (0x2A74, 0x2A76)),
    *((0x2C7C, 0x2C7D), (0xA7F2, 0xA7F4)),
    *((0x3000, 0x3000), (0x309B, 0x309C), (0x3164, 0x3164), (0x3200, 0x33FF)),  # CJK forms
    *((0xFB00, 0xFB29), (0xFC5E, 0xFC63), (0xFDFA, 0xFE7E)),  # ligatures, presentation forms
    *((0xFEFF, 0xFF5E), (0xFFA0, 0xFFA0), (0xFFE3, 0xFFFB)),  # full and half width forms
    *((0x107A5, 0x107A5), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F)),
    *((0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A)),  # format controls
    *((0x1D400, 0x1D7FF), (0x1F100, 0x1F1FF), (0xE0000, 0xE0FFF)),  # math, enclosed, tags
)
"""Where `_fold` may change a character, digits of other scripts aside: every character NFKC
makes ASCII of and every hidden one. A superset, which tests/test_redact.py checks against
this Python's Unicode data."""
_BMP = 0xFFFF


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """A character class of these ranges that both RE2 and Python's `re` read."""
    return "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in ranges) + "]"


FOLDS = (
    (_char_class(r for r in _FOLDED if r[1] <= _BMP), None),
    (r"[^\P{Nd}0-9]", r"[^\D0-9]"),  # a digit of another script (RE2's \d is ASCII only)
    (_char_class(r for r in _FOLDED if r[0] > _BMP), None),
)
"""Scans for characters `_fold` may change, in RE2 and, where it differs, Python's `re`. Each
is a slot of the RE2 hint set, so a text pays for none it does not need, and the common one
is of BMP ranges only, which Python's `re` tests at a table look-up per character."""
_SCANS = tuple(re.compile(python or hint) for hint, python in FOLDS)

_Change = tuple[int, int, int, int]
"""Where the read text differs: its span there, then the span of the text as written."""


def read_as_seen(text: str, scans: Iterable[int]) -> tuple[str, list[_Change]] | None:
    """`text` as detectors read it, with where it differs; None: as it is written.

    It is read one character at a time (a combining mark does not compose with its base, and
    the marks that could hide a digit are dropped anyway), so every change is one character
    of the text as written. Only the characters these `_SCANS` point at are looked at.
    """
    at = sorted({m.start() for scan in scans for m in _SCANS[scan].finditer(text)})
    parts: list[str] = []
    changes: list[_Change] = []
    done = shift = 0
    for i in at:
        if (read := _fold(text[i])) == text[i]:
            continue
        parts += (text[done:i], read)
        changes.append((i + shift, i + shift + len(read), i, i + 1))
        shift += len(read) - 1
        done = i + 1
    if not changes:
        return None
    parts.append(text[done:])
    return "".join(parts), changes


def as_written(findings: list[Finding], changes: list[_Change]) -> list[Finding]:
    """Findings in the read text, moved to the text as written.

    A finding covers every character its first through last read characters came from, and
    the hidden ones between them.
    """
    starts = [c[0] for c in changes]

    def written(i: int) -> tuple[int, int]:
        k = bisect.bisect_right(starts, i) - 1
        if k < 0:
            return i, i + 1
        _, read_end, start, end = changes[k]
        if i < read_end:
            return start, end
        return i - read_end + end, i - read_end + end + 1

    moved: list[Finding] = []
    for f in findings:
        start, end = written(f.start)[0], written(f.end - 1)[1]
        if moved and start < moved[-1].end:
            start = moved[-1].end  # two findings in one character (ﬁ): the first has it
        if start < end:
            moved.append(Finding(f.detector, start, end))
    return moved
