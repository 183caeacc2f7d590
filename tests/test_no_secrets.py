"""Nothing sensitive is written in clear: secrets and PII planted in the demo's prompts, tool
inputs and tool outputs are found nowhere in the SQLite file, its WAL, the exported spans or
the log lines, once every run has ended (approvals and resumes included). Break-glass still
reads them back, so they were really there.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import charter._telemetry
from charter import Client, Config, ControlPlane
from charter._logging import configure_logging
from charter._telemetry import Telemetry
from charter.engine import Worker
from charter.examples import _demo

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

EMAIL = "dana.planted@example.org"
PHONE = "+1 415 555 0199"
API_KEY = "sk_live_PlantedKey0123456789abcd"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlcGxhbnRlZA"
BEARER = "Zm9vYmFyYmF6cXV4cGxhbnRlZDEyMzQ1Ng"
PRIVATE_KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCplanted"
CARD = "4111 1111 1111 1111"
SSN = "219-09-9999"
IBAN = "GB82 WEST 1234 5698 7654 32"

IN_PROMPTS = (
    f" Reach me at {EMAIL} or {PHONE}. My old key {API_KEY} and session {JWT} leaked, "
    f"as did the header Authorization: Bearer {BEARER} and\n-----BEGIN PRIVATE KEY-----\n"
    f"{PRIVATE_KEY}\n-----END PRIVATE KEY-----"
)
IN_TOOL_INPUTS = f"customer card {CARD}, ssn {SSN}, iban {IBAN}"
IN_TOOL_OUTPUTS = [email for *_, email in _demo._CHARGES]
"""`lookup_charge` answers with the charge's customer email."""

PLANTED = [EMAIL, PHONE, API_KEY, JWT, BEARER, PRIVATE_KEY, CARD, SSN, IBAN, *IN_TOOL_OUTPUTS]


def planted_disputes() -> list[_demo.Dispute]:
    """The demo's disputes with secrets in every ticket and in every refund's reason."""
    disputes = []
    for dispute in ORIGINAL_DISPUTES():
        turns = tuple(
            replace(
                turn,
                calls=tuple(
                    (tool, {**args, "reason": IN_TOOL_INPUTS} if tool == "refund" else args)
                    for tool, args in turn.calls
                ),
            )
            for turn in dispute.turns
        )
        disputes.append(replace(dispute, ticket_body=dispute.ticket_body + IN_PROMPTS, turns=turns))
    return disputes


ORIGINAL_DISPUTES = _demo._disputes


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Every span the process's planes export, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(charter._telemetry, "_DEFAULT", Telemetry(tracer_provider=provider))
    return exporter


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Charter's JSON log lines, at DEBUG."""
    stream = io.StringIO()
    configure_logging({"CHARTER_LOG_LEVEL": "DEBUG"}, stream=stream)
    yield stream
    logger = logging.getLogger("charter")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("planted", [PLANTED])
def test_planted_secrets_are_nowhere_in_clear(
    planted, tmp_path: Path, monkeypatch, spans, log_lines
):
    """The demo runs with secrets planted; its held refunds are approved and a worker finishes
    them. Then no planted value is in the database file or its WAL, in any exported span, or
    in any log line; break-glass shows the raw payloads still hold them."""
    monkeypatch.setattr(_demo, "_disputes", planted_disputes)
    config = Config.from_env({}, home=tmp_path / "home")
    report = _demo.run_demo(config)
    held = [r for _, r in report.runs if r.status == "waiting"]
    assert held, "the demo holds refunds for approval"
    with Client(config) as client:
        operator = client.create_human(name="oscar", roles=["operator"]).token
        for run in held:
            for request in client.approvals(run_id=run.run_id):
                client.decide(
                    request.request_id,
                    approver=_demo.APPROVER,
                    token=report.approver_token,
                    decision="approve",
                    reason="verified",
                )
        plane = ControlPlane(client.store)
        try:
            Worker(plane, _demo.workflows(config)).run(until_idle=True)
        finally:
            plane.close()
        assert all(r.final for r in client.runs(limit=100))
        assert all(r.ok for r in client.verify())
        opened = client.break_glass(held[0].run_id, by=None, token=operator, reason="INC-1")
    raw = str(opened["payloads"])
    assert EMAIL in raw  # the planted values were really in the prompts

    files = sorted((tmp_path / "home").glob("charter.db*"))
    assert [f.name for f in files][:1] == ["charter.db"]
    stored = b"".join(f.read_bytes() for f in files)
    exported = "\n".join(span.to_json() for span in spans.get_finished_spans())
    assert exported, "spans were exported"
    logged = log_lines.getvalue()
    assert logged, "the runs were logged"

    leaks = [
        (value, where)
        for value in planted
        for where, text in (
            ("database", stored.decode("latin-1")),
            ("spans", exported),
            ("logs", logged),
        )
        if value in text
    ]
    assert leaks == []
