"""The redaction corpus: every planted value found by its detector, and next to nothing else.

`tests/data/redaction_corpus.jsonl` holds one JSON object a line: a `text` and the values
`planted` in it, each `{"detector": ..., "value": ...}` with `value` an exact substring of
`text`. Lines planting nothing are near misses: realistic text in which nothing is sensitive.

A planted value is found when a finding of its detector covers its whole span (every
occurrence counts); a finding that covers no planted value of its own detector is a false
positive. `measure()` returns the per-detector scores for a quick look, and docs/redaction.md
shows them in the table `table()` writes, which a test holds to what the code does now:

    python -m tests.test_redaction_corpus     # prints the table for docs/redaction.md
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from charter.privacy import DETECTORS, find, redact, redact_text

CORPUS = Path(__file__).parent / "data" / "redaction_corpus.jsonl"
DOCS = Path(__file__).parent.parent / "docs" / "redaction.md"
TABLE_START, TABLE_END = "<!-- corpus:start -->", "<!-- corpus:end -->"

BUILT_IN = (
    "email",
    "phone",
    "card",
    "iban",
    "ssn",
    "api_key",
    "bearer",
    "jwt",
    "private_key",
    "webhook",
    "credential",
    "entropy",
)
MIN_LINES = 600
MIN_POSITIVES = 20  # planted values per built-in detector
MIN_NEAR_MISSES = 250
MIN_PRECISION = 0.95
MIN_RECALL = 0.95
SHOWN = 160  # characters of a text shown in a failure message


@dataclass(frozen=True)
class Line:
    """One corpus line: its 1-based number, its text and its (detector, value) pairs."""

    number: int
    text: str
    planted: tuple[tuple[str, str], ...]


@dataclass
class Score:
    """What one detector did over the corpus, with the texts behind each miss."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@cache
def load() -> tuple[Line, ...]:
    """The corpus, one `Line` per non-empty line of the file."""
    lines = []
    for number, raw in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        row = json.loads(raw)
        planted = tuple((p["detector"], p["value"]) for p in row["planted"])
        lines.append(Line(number=number, text=row["text"], planted=planted))
    return tuple(lines)


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")


def _occurrences(text: str, value: str) -> list[tuple[int, int]]:
    """Every (start, end) at which `value` occurs in `text`, overlapping ones included."""
    spans = []
    start = text.find(value)
    while start != -1:
        spans.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return spans


@cache
def score() -> dict[str, Score]:
    """Each detector's true positives, false positives and misses over the whole corpus."""
    scores = {name: Score() for name in (*BUILT_IN, *DETECTORS)}
    for line in load():
        findings = find(line.text)
        planted = {
            (detector, start, end)
            for detector, value in line.planted
            for start, end in _occurrences(line.text, value)
        }
        for detector, start, end in sorted(planted):
            entry = scores.setdefault(detector, Score())
            if any(f.detector == detector and f.start <= start and f.end >= end for f in findings):
                entry.tp += 1
            else:
                entry.fn += 1
                value = line.text[start:end]
                entry.missed.append(f"line {line.number}: {value!r} in {_shown(line.text)}")
        for f in findings:
            if any(d == f.detector and f.start <= s and f.end >= e for d, s, e in planted):
                continue
            entry = scores.setdefault(f.detector, Score())
            entry.fp += 1
            value = line.text[f.start : f.end]
            entry.false.append(f"line {line.number}: {value!r} in {_shown(line.text)}")
    return scores


def measure() -> dict[str, dict[str, float]]:
    """Precision, recall and counts per detector: `{name: {"precision": ..., ...}}`."""
    return {
        name: {
            "precision": s.precision,
            "recall": s.recall,
            "tp": s.tp,
            "fp": s.fp,
            "fn": s.fn,
        }
        for name, s in score().items()
    }


def table() -> list[str]:
    """docs/redaction.md's table of the corpus and each detector's scores over it."""
    lines = load()
    near_misses = sum(1 for line in lines if not line.planted)
    rows = [
        f"| `{name}` | `[{name}]` | {s.tp + s.fn} | {s.tp} | {s.fn} | {s.fp} "
        f"| {s.precision:.2f} | {s.recall:.2f} |"
        for name in DETECTORS
        for s in (score()[name],)
    ]
    return [
        f"The corpus: {len(lines)} texts, {near_misses} of them near misses (nothing to find).",
        "",
        "| detector | marker | planted | found | missed | false positives | precision | recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _report(detector: str, s: Score) -> str:
    head = f"{detector}: precision {s.precision:.3f}, recall {s.recall:.3f}"
    lines = [f"{head} (tp {s.tp}, fp {s.fp}, fn {s.fn})"]
    lines += [f"  missed {m}" for m in s.missed]
    lines += [f"  false  {m}" for m in s.false]
    return "\n".join(lines)


class TestCorpus:
    def test_is_large_enough(self) -> None:
        """The corpus cannot silently shrink: lines, near misses and positives per detector."""
        lines = load()
        near_misses = [line for line in lines if not line.planted]
        positives = Counter(detector for line in lines for detector, _ in line.planted)
        assert len(lines) >= MIN_LINES
        assert len(near_misses) >= MIN_NEAR_MISSES
        short = {d: positives[d] for d in BUILT_IN if positives[d] < MIN_POSITIVES}
        assert not short, f"fewer than {MIN_POSITIVES} planted values: {short}"

    def test_planted_values_are_in_their_text(self) -> None:
        """Every planted value names a built-in detector and occurs verbatim in its text."""
        wrong = [
            f"line {line.number}: {detector} {value!r}"
            for line in load()
            for detector, value in line.planted
            if detector not in BUILT_IN or not value or value not in line.text
        ]
        assert not wrong, "\n".join(wrong)


class TestDetectors:
    def test_built_in_names(self) -> None:
        """The built-in detectors are exactly the twelve the corpus measures."""
        assert sorted(DETECTORS) == sorted(BUILT_IN)

    def test_findings_name_a_built_in_detector(self) -> None:
        """Without custom patterns, every finding comes from a built-in detector."""
        unknown = {name: s.fp + s.tp for name, s in score().items() if name not in BUILT_IN}
        assert not any(unknown.values()), f"findings from unknown detectors: {unknown}"

    @pytest.mark.parametrize("detector", BUILT_IN)
    def test_finds_every_planted_value(self, detector: str) -> None:
        """Recall is 1.0: each planted value is covered by a finding of its detector."""
        s = score()[detector]
        assert s.tp >= MIN_POSITIVES
        assert s.fn == 0, _report(detector, s)

    @pytest.mark.parametrize("detector", BUILT_IN)
    def test_finds_little_else(self, detector: str) -> None:
        """Precision is at least 0.95: few findings cover no planted value of their detector."""
        s = score()[detector]
        assert s.precision >= MIN_PRECISION, _report(detector, s)

    @pytest.mark.parametrize("detector", BUILT_IN)
    def test_recall_is_above_the_floor(self, detector: str) -> None:
        """Recall is at least 0.95 even where a planted value is allowed to be missed."""
        s = score()[detector]
        assert s.recall >= MIN_RECALL, _report(detector, s)


class TestDocs:
    def test_example_redacts_as_shown(self) -> None:
        """docs/redaction.md's first example: its first line, redacted, is its second."""
        text = DOCS.read_text(encoding="utf-8")
        given, shown = text.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
        assert redact_text(given) == shown

    def test_table_is_what_the_code_does_now(self) -> None:
        """docs/redaction.md shows the corpus size and the scores the detectors reach today."""
        text = DOCS.read_text(encoding="utf-8")
        assert TABLE_START in text
        assert TABLE_END in text
        shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip().splitlines()
        assert shown == table(), "\n".join(["docs/redaction.md should read:", *table()])


class TestRedactText:
    def test_no_planted_value_survives(self) -> None:
        """`redact_text` leaves none of a line's planted values in its output."""
        leaks = []
        for line in load():
            redacted = redact_text(line.text)
            leaks += [
                f"line {line.number}: {detector} {value!r} survives in {_shown(redacted)}"
                for detector, value in line.planted
                if value in redacted
            ]
        assert not leaks, "\n".join(leaks)

    def test_markers_are_not_redacted_again(self) -> None:
        """Redacting a line's redacted text changes nothing: a marker is never a value."""
        again = [
            f"line {line.number}: {_shown(once)} -> {_shown(twice)}"
            for line in load()
            if (twice := redact_text(once := redact_text(line.text))) != once
        ]
        assert not again, "\n".join(again)

    def test_no_planted_value_survives_in_a_json_value(self) -> None:
        """`redact` of a line inside a nested value leaves none of its planted values."""
        leaks = []
        for line in load():
            value = {"notes": [line.text], "by": {"tool": [line.text]}}
            redacted = json.dumps(redact(value), ensure_ascii=False)
            leaks += [
                f"line {line.number}: {detector} {value!r}"
                for detector, value in line.planted
                if value in redacted
            ]
        assert not leaks, "\n".join(leaks)

    def test_near_misses_are_unchanged(self) -> None:
        """A line planting nothing comes back from `redact_text` exactly as it went in."""
        changed = [
            f"line {line.number}: {_shown(line.text)} -> {_shown(redacted)}"
            for line in load()
            if not line.planted and (redacted := redact_text(line.text)) != line.text
        ]
        assert not changed, "\n".join(changed)


class TestCustomPatterns:
    TEXT = "Customer asks where ORD-2026-000123 is; it shipped on 2026-11-24."
    ORDER = "ORD-2026-000123"

    def test_custom_pattern_is_found_under_its_name(self) -> None:
        """A custom pattern reports its matches under the name it was given."""
        start = self.TEXT.index(self.ORDER)
        findings = find(self.TEXT, custom={"order_ref": r"ORD-\d{4}-\d{6}"})
        spans = [(f.start, f.end) for f in findings if f.detector == "order_ref"]
        assert spans == [(start, start + len(self.ORDER))]

    def test_default_find_ignores_order_refs(self) -> None:
        """Without the custom pattern no detector reports the order ref."""
        start = self.TEXT.index(self.ORDER)
        end = start + len(self.ORDER)
        hits = [f for f in find(self.TEXT) if f.start < end and f.end > start]
        assert hits == []


if __name__ == "__main__":
    print("\n".join([TABLE_START, *table(), TABLE_END]))  # noqa: T201 - the docs' table
