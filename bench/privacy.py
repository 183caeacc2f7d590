"""What redaction and tracing add to a governed step.

Redaction runs over every string a step writes in clear (arguments, output, model text, check
reasons); tracing makes a step's spans and records its metrics. Both are timed here on their
own, in one process, with nothing else running:

* redaction per KB of payload, on a typical tool output with no sensitive value (the common
  case) and on one that holds an email, a card number and a phone number; then the clean one
  in other scripts (German and Japanese notes, which read as they are written: what text
  that is not ASCII pays), and the sensitive one disguised (a full-width at sign, zero-width
  spaces in the card, hyphens that are not ASCII: what reading a text in compatibility form
  costs); beside each, in the same run, the same detectors' exact patterns
  scanned over the whole text with Python's `re` and no RE2 first pass (what the two-pass
  design saves), and `json.dumps` of the same payload (what every step already pays for the
  same bytes);
* tracing per step: the spans and metrics of one model step and one tool step (`chat`,
  `execute_tool` with its `charter.decide`), through the OpenTelemetry SDK with a batch
  processor and an exporter that drops what it is given (export happens on another thread,
  off the step's path), and through the no-op providers Charter falls back on when nothing is
  configured.

The goal: a typical step (payloads under 2 KB) pays at most 30 µs for both together.

Run `python -m bench.privacy` (or `make bench`); `--write` rewrites BENCHMARKS.md's section.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider

from bench._report import machine, write_section
from charter._telemetry import Telemetry
from charter.privacy import Redactor
from charter.privacy._redact import _BUILTIN

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from opentelemetry.sdk.trace import ReadableSpan

GOAL_US = 30.0
"""Redaction of a typical step's payloads plus its tracing, per step."""
REPETITIONS = 7
CALLS = 2000
START, END = "<!-- bench:privacy:start -->", "<!-- bench:privacy:end -->"
COMMAND = "`make bench` (prints) or `.venv/bin/python -m bench.privacy --write` (also writes here)"


CONTACTS = {
    "clean": "the customer on file, card on file, phone on file",
    "sensitive": "jane.doe@example.com, card 4242 4242 4242 4242, +1 415 555 0132",
    "clean, other scripts": "die Kundin aus München, Karte hinterlegt, Telefon hinterlegt",
    "disguised": (
        "jane.doe\uff20example.com, card 4242\u200b4242\u200b4242\u200b4242, "
        "+1\u2011415\u2011555\u20110132"
    ),
}
"""The contact line of each payload: none, three values, none in German, three disguised."""
NOTES = {"clean, other scripts": "日本語のメモ、二重請求の返金は承認待ちです。"}
"""A note more for the payload in other scripts."""
SENSITIVE = {"clean": False, "sensitive": True, "clean, other scripts": False, "disguised": True}


def typical_output(kind: str) -> dict[str, Any]:
    """A lookup's answer as a support or billing tool returns it: about 1 KB of JSON."""
    contact = CONTACTS[kind]
    return {
        "charge_id": "ch_acme_1003",
        "tenant_id": "acme",
        "customer_id": "cus_1003",
        "amount_minor": 24000,
        "currency": "USD",
        "status": "succeeded",
        "created_at": "2026-11-24T09:15:02Z",
        "refunds": [{"id": "re_77", "amount_minor": 1999, "reason": "duplicate charge"}],
        "notes": [
            f"Ticket 4411: customer disputes the March invoice; contact {contact}.",
            (
                "Agent checked the ledger: two captures on 2026-03-02 for the same order "
                "ORD-2026-000123, second one within 40 seconds of the first."
            ),
            "Policy: refunds above 100.00 need a finance approver; this one is 240.00.",
            "Previous refund re_77 of 19.99 was issued on 2026-03-05 by the on-call agent.",
            *([NOTES[kind]] if kind in NOTES else []),
        ],
        "metadata": {"region": "us-west-2", "plan": "enterprise", "seats": 140, "sla": "99.9"},
    }


def median_us(call: Callable[[], object], calls: int = CALLS) -> float:
    """The median over repetitions of the mean time of one call, in µs."""
    means = []
    for _ in range(REPETITIONS):
        gc.collect()
        began = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(means)


def re_only(texts: Sequence[str]) -> None:
    """Every detector's exact pattern over each whole text, with no RE2 pass first."""
    for text in texts:
        for detector in _BUILTIN:
            for _ in detector.pattern.finditer(text):
                pass


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


class Dropping(SpanExporter):
    """Takes spans and drops them: the export thread's work, none of a backend's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # noqa: ARG002
        return SpanExportResult.SUCCESS


def one_step(telemetry: Telemetry) -> None:
    """The telemetry of a step: a model call, then a tool call decided and run."""
    telemetry.model_call(
        model="openai:gpt-4o-mini",
        step=3,
        input_tokens=812,
        output_tokens=64,
        cost_usd=0.0002,
        latency_ms=420.0,
        cached=False,
        workflow="billing-dispute",
    )
    with telemetry.tool_step(
        tool="lookup_charge",
        effect="read",
        step=4,
        idempotency_key="chk_0123456789abcdef0123456789abcdef",
        workflow="billing-dispute",
    ) as span:
        now = time.time_ns()
        span.decided(
            decision="allowed",
            check=None,
            policy_ids=("tenant-isolation", "allow-reads"),
            tier=None,
            started_ns=now - 50_000,
            ended_ns=now,
        )
        span.completed(status="ok", latency_ms=3.2, attempts=1, cost_usd=0.0, cached=False)


def measure() -> dict[str, float]:
    redactor = Redactor()
    results: dict[str, float] = {}
    for label, sensitive in SENSITIVE.items():
        payload = typical_output(label)
        size_kb = len(json.dumps(payload).encode()) / 1024
        results[f"{label}_kb"] = size_kb
        results[f"{label}_redact_us"] = median_us(lambda p=payload: redactor.value(p))
        texts = strings(payload)
        results[f"{label}_re_only_us"] = median_us(lambda t=texts: re_only(t))
        results[f"{label}_json_us"] = median_us(lambda p=payload: json.dumps(p))
        if (json.dumps(redactor.value(payload)) != json.dumps(payload)) != sensitive:
            msg = f"the {label} payload was redacted wrongly"
            raise AssertionError(msg)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=100_000))
    sdk = Telemetry(
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    results["trace_sdk_us"] = median_us(lambda: one_step(sdk), calls=500)
    provider.shutdown()
    unsampled = Telemetry(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    results["trace_unsampled_us"] = median_us(lambda: one_step(unsampled), calls=500)
    noop = Telemetry(tracer_provider=NoOpTracerProvider())
    results["trace_noop_us"] = median_us(lambda: one_step(noop), calls=500)
    return results


def report(r: dict[str, float]) -> list[str]:
    per_kb = {k: r[f"{k}_redact_us"] / r[f"{k}_kb"] for k in SENSITIVE}
    # A step redacts its tool's output and the model's turn: two of these payloads, clean in
    # the typical step, sensitive in the worst.
    typical = 2 * r["clean_redact_us"] + r["trace_sdk_us"]
    worst = 2 * r["sensitive_redact_us"] + r["trace_sdk_us"]
    verdict = "met" if typical <= GOAL_US else "missed"
    return [
        "## Redaction and tracing per step",
        "",
        (
            f"Reproduce: {COMMAND}. Medians of {REPETITIONS} repetitions, one process, "
            "nothing else running."
        ),
        "",
        *machine(),
        "",
        (
            "| Redaction of a tool output | size | redaction | per KB | re only, no RE2 pass "
            "| json.dumps |"
        ),
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {k} | {r[f'{k}_kb']:.2f} KB | {r[f'{k}_redact_us']:.1f} µs | "
            f"{per_kb[k]:.1f} µs | {r[f'{k}_re_only_us']:.1f} µs "
            f"({r[f'{k}_re_only_us'] / r[f'{k}_redact_us']:.1f}x) | {r[f'{k}_json_us']:.1f} µs |"
            for k in SENSITIVE
        ),
        "",
        "| Tracing one step (a model call and a tool call) | per step |",
        "|---|---:|",
        f"| OpenTelemetry SDK, batch processor, spans and metrics | {r['trace_sdk_us']:.1f} µs |",
        (
            "| SDK, trace sampled out (`OTEL_TRACES_SAMPLER`), metrics only | "
            f"{r['trace_unsampled_us']:.1f} µs |"
        ),
        f"| no-op providers (nothing configured) | {r['trace_noop_us']:.1f} µs |",
        "",
        (
            f"**A typical step: {typical:.1f} µs** (two clean payloads redacted, the step "
            f"traced with the SDK; {worst:.1f} µs with two sensitive payloads); "
            f"goal ≤ {GOAL_US:.0f} µs: {verdict}. Untraced: "
            f"{2 * r['clean_redact_us'] + r['trace_noop_us']:.1f} µs."
        ),
        "",
        "Where the time goes. Redaction of a clean payload is one RE2 pass over all its strings",
        "joined: about `json.dumps` of the same bytes. The same pass looks for characters to",
        "read otherwise (full-width forms, zero-width characters, digits of other scripts), so",
        "text in which it finds none, ASCII or not, pays nothing more; where it finds some, each",
        "is read in Python and the pass runs again on what was read. A payload with values to",
        "redact pays for each detector whose hint matched (its RE2 scan, then Python's `re` in a",
        "window per hint), most of it in Python per finding. Tracing is the OpenTelemetry",
        "Python SDK's own cost: three spans (`chat`, `execute_tool`, `charter.decide`) and four",
        "metric measurements, about half each; a sampled-out trace still records its metrics.",
        "`json.dumps` of the same payload, in the same run, is the yardstick for this machine.",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.privacy")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    section = report(measure())
    print("\n".join(section))
    if args.write:
        write_section(section, start=START, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
