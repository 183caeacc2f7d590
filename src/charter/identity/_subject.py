"""Canonical subjects: the one name a person has, however it is typed or which IdP vouches for it.

Separation of duties compares people, not strings. A subject is canonical once it is NFKC
normalised, case-folded and trimmed, so `OPS-LEAD@example.com`, `ops-lead@example.com ` and the
same address in full-width letters are one person. What normalisation cannot fold are
look-alikes from other scripts (a Cyrillic `i`, U+0456, in `ivan`): those are refused when a
principal is created, in the two ways Unicode Technical Standard #39 describes: a subject must
not mix scripts beyond the combinations the standard's "highly restrictive" level allows, and
its confusable skeleton must not equal another person's. Skeletons use the standard's
confusables data (as shipped by `confusable-homoglyphs`): each character stands for every
character it can be mistaken for.
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache
from importlib import resources

from confusable_homoglyphs import categories

from charter.exceptions import UserError

__all__ = ["MAX_SUBJECT", "canonical_subject", "check_new_subject", "same_person", "skeleton"]

MAX_SUBJECT = 200
"""The longest subject accepted, in characters."""

_NEUTRAL = frozenset({"COMMON", "INHERITED"})
"""Scripts of digits, punctuation and combining marks: they mix with any script."""

_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
"""UTS #39's highly restrictive level: one script, or one of these (Japanese, Chinese, Korean
written beside Latin)."""


def canonical_subject(text: str) -> str:
    """The canonical form of a subject: NFKC, case-folded, trimmed.

    Raises:
        UserError: The subject is empty, too long, or holds control or format characters.
    """
    folded = unicodedata.normalize("NFKC", text).casefold().strip()
    # NFKC again: case folding can un-normalise (e.g. the Kelvin sign).
    folded = unicodedata.normalize("NFKC", folded)
    if not folded:
        raise UserError("a subject must not be empty", hint="give the person's name or email")
    if len(folded) > MAX_SUBJECT:
        raise UserError(f"a subject is at most {MAX_SUBJECT} characters, got {len(folded)}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in folded):
        raise UserError(
            f"subject {text!r} holds control or invisible characters",
            hint="type it again without copy-pasting from a rich-text source",
        )
    return folded


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character to one representative of everything it can be taken for.

    The confusables data pairs characters; its connected groups are the classes a reader cannot
    tell apart. The representative is the group's ASCII lowercase letter where it has one
    (subjects are case-folded), else its ASCII member, so skeletons stay readable.
    """
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    parent: dict[str, str] = {}

    def find(ch: str) -> str:
        parent.setdefault(ch, ch)
        while parent[ch] != ch:
            parent[ch] = parent[parent[ch]]
            ch = parent[ch]
        return ch

    for ch, alikes in data.items():
        for alike in alikes:
            if len(ch) == 1 and len(alike["c"]) == 1:
                first, second = find(ch), find(alike["c"])
                if first != second:
                    parent[first] = second
    groups: dict[str, list[str]] = {}
    for ch in parent:
        groups.setdefault(find(ch), []).append(ch)
    mapping: dict[str, str] = {}
    for members in groups.values():
        representative = min(members, key=lambda c: (not c.isascii(), not c.islower(), ord(c)))
        mapping.update(dict.fromkeys(members, representative))
    return mapping


def skeleton(subject: str) -> str:
    """The confusable skeleton of a canonical subject: equal for subjects that look alike.

    Beyond UTS #39's skeleton, accents are dropped: `example.coḿ` passes for `example.com`
    at a glance, and separation of duties must not be defeated by a glance.
    """
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", subject)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in bare))


def same_person(first: str, second: str) -> bool:
    """Whether two names stand for one person: equal canonical subjects or look-alikes."""
    try:
        one, other = canonical_subject(first), canonical_subject(second)
    except UserError:
        return False
    return one == other or skeleton(one) == skeleton(other)


def _scripts(subject: str) -> frozenset[str]:
    return frozenset(categories.alias(ch) for ch in subject) - _NEUTRAL


def check_new_subject(subject: str, others: list[str]) -> None:
    """Refuse a new principal's canonical subject that could pass for another's.

    Args:
        subject: The new subject, canonical.
        others: The canonical subjects of every active person.

    Raises:
        UserError: The subject mixes scripts, or looks like another person's subject.
    """
    scripts = _scripts(subject)
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        raise UserError(
            f"subject {subject!r} mixes scripts ({', '.join(sorted(scripts))}): it could pass "
            "for someone else's",
            hint="write the name in one script",
        )
    mine = skeleton(subject)
    for other in others:
        if other != subject and skeleton(other) == mine:
            raise UserError(
                f"subject {subject!r} looks like the existing subject {other!r}",
                hint="separation of duties needs names no one can mistake for another's",
            )
