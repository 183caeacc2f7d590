"""Nothing sensitive is written in clear: thirty-odd forms of secrets and PII, planted in the
demo's task text (the ticket), in tool arguments (a ticket the agent opens, a refund's reason)
and in tool outputs (the charge lookup answers with them), are found nowhere in the SQLite file
or its WAL, the exported spans, the log lines, or what `charter runs show`, `charter explain`
and `charter runs export` print, once every run has ended (approvals and resumes included).
Break-glass still reads them back, so they were really there.

Each value is looked for as written, as a reader would read it (NFKC, without zero-width
characters) and as JSON escapes it, in case a layer normalises or escapes before it writes.
"""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import charter._telemetry
from charter import Client, Config, ControlPlane
from charter._logging import configure_logging
from charter._telemetry import Telemetry
from charter.cli import cli
from charter.engine import Worker
from charter.examples import _demo
from charter.models import ScriptedTurn

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True)
class Planted:
    """One form of secret: how it is written into a text, and the part that must not leak."""

    form: str
    text: str
    secret: str = ""

    @property
    def value(self) -> str:
        """What must not leak: `secret`, or the whole text when that is the secret."""
        return self.secret or self.text


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlcGxhbnRlZA"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCplanted"
SLACK = "https://hooks.slack.com/services/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x"
DISCORD = (
    "https://discord.com/api/webhooks/112233445566778899/"
    "Pl4ntedDiscordHookToken-abcdefghijklmnopqrstuvwxyz0123456789_ABCDEFGHIJ"
)
TEAMS = (
    "https://acme.webhook.office.com/webhookb2/0a1b2c3d-0000-4000-8000-0a1b2c3d4e5f@"
    "9f8e7d6c-0000-4000-8000-9f8e7d6c5b4a/IncomingWebhook/0123456789abcdef0123456789abcdef/"
    "1a2b3c4d-0000-4000-8000-1a2b3c4d5e6f"
)
FLOW_SIG = "Pl4ntedFlowSignature_0123456789abcdefABCDEF"
FLOW = (
    "https://prod-27.westeurope.logic.azure.com:443/workflows/0123456789abcdef0123456789abcdef/"
    "triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0"
    f"&sig={FLOW_SIG}"
)
AZURE_KEY = ("Pl4ntedAzureStorageAccountKey" * 3)[:86] + "=="
"""An Azure storage account key: 86 base64 characters and `==`."""
SENDGRID = "SG.Pl4ntedSendGridKey0123." + ("Pl4ntedSendGridSecret" * 3)[:43]
"""A SendGrid key: `SG.`, 22 characters, `.`, 43 characters."""

PLANTED = (
    Planted("email", "dana.planted@example.org"),
    Planted("email, full-width at sign", "maria.planted\uff20example.com"),
    Planted("email, zero-width space inside", "lee\u200b.planted@example.net"),
    Planted("phone, international", "+1 415 555 0199"),
    Planted("phone, UK", "+44 20 7946 0321"),
    Planted("card, spaces", "4111 1111 1111 1111"),
    Planted("card, dots", "5555.5555.5555.4444"),
    Planted("card, zero-width spaces", "4012\u200b8888\u200b8888\u200b1881"),
    Planted(
        "card, full-width digits",
        "\uff16\uff10\uff11\uff11 \uff11\uff11\uff11\uff11 "
        "\uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff17",
    ),
    Planted("SSN", "219-09-9999"),
    Planted("IBAN", "GB82 WEST 1234 5698 7654 32"),
    Planted("Stripe key", "sk_live_PlantedKey0123456789abcd"),
    Planted("AWS access key id", "AKIAPLANTEDKEY123456"),
    Planted("GitHub token", "ghp_Pl4ntedGitHubT0kenAbCdEfGhIjKlMnOpQr"),
    Planted("Slack bot token", "xoxb-1234567890-0987654321-PlantedSlackBotToken"),
    Planted("OpenAI key", "sk-proj-PlantedOpenAIKey0123456789"),
    Planted("Google API key", "AIzaPl4ntedGoogleApiKey0123456789abcdef"),
    Planted("Charter credential", "chr_Pl4ntedCharterCredential0123456789"),
    Planted("SendGrid key", SENDGRID),
    Planted("npm token", "npm_Pl4ntedNpmToken0123456789abcdefghijk"),
    Planted("GitLab token", "glpat-Pl4ntedGitLabT0ken0123"),
    Planted("Twilio API key", "SK0123456789abcdef0123456789abcdef"),
    Planted("JWT", JWT),
    Planted(
        "bearer token",
        "Authorization: Bearer Zm9vYmFyYmF6cXV4cGxhbnRlZDEyMzQ1Ng",
        "Zm9vYmFyYmF6cXV4cGxhbnRlZDEyMzQ1Ng",
    ),
    Planted(
        "PEM private key",
        f"\n-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n",
        PEM_BODY,
    ),
    Planted(
        "free-text password", "password: CorrectHorseBatteryStaple", "CorrectHorseBatteryStaple"
    ),
    Planted("free-text pw", "pw=Tr0ub4dor&3", "Tr0ub4dor&3"),
    Planted(
        "JSON client secret",
        '"client_secret": "Planted-Client-Secret-42"',
        "Planted-Client-Secret-42",
    ),
    Planted(
        "password in a URL",
        "postgres://charter:Pl4nted-DB-pass@db.internal/charter",
        "Pl4nted-DB-pass",
    ),
    Planted("Azure storage key", f"AccountName=acme;AccountKey={AZURE_KEY};", AZURE_KEY),
    Planted("Slack webhook", SLACK),
    Planted("Discord webhook", DISCORD),
    Planted("Teams webhook", TEAMS),
    Planted("Power Automate webhook", FLOW, FLOW_SIG),
    Planted("random secret", "q8Zr2LkP0vXw7TnB4mYc9HsDf3Jg"),
)
"""The forms, each planted in every prompt, in a ticket the agent opens and in every charge."""

EVERYTHING = " ".join(p.text for p in PLANTED)
REQUESTER = "requester.planted@example.org"
REASON_FORMS = ("card, dots", "free-text password", "email, full-width at sign", "Slack webhook")
REASON = "; ".join(p.text for p in PLANTED if p.form in REASON_FORMS)
"""A refund's reason holds at most 500 characters: a few forms."""
CUSTOMERS = [email for *_, email in _demo._CHARGES]
"""`lookup_charge` answers with the charge's customer email, and here with everything else."""

VALUES = [*(p.value for p in PLANTED), REQUESTER, *CUSTOMERS]


def forms_of(value: str) -> set[str]:
    """`value` as written, as read (NFKC, no zero-width characters) and as JSON escapes both."""
    read = re.sub("[\u200b-\u200d\u2060\ufeff\u00ad]", "", unicodedata.normalize("NFKC", value))
    return {value, read, json.dumps(value)[1:-1], json.dumps(read)[1:-1]}


def planted_disputes() -> list[_demo.Dispute]:
    """The demo's disputes with every form in the ticket, in a ticket the agent opens first and
    in every refund's reason."""
    opened = ScriptedTurn.call(
        "create_ticket",
        requester_email=REQUESTER,
        subject="Secrets pasted in a ticket",
        body=EVERYTHING,
        tags=["dispute"],
    )
    disputes = []
    for dispute in ORIGINAL_DISPUTES():
        turns = tuple(
            replace(
                turn,
                calls=tuple(
                    (tool, {**args, "reason": REASON} if tool == "refund" else args)
                    for tool, args in turn.calls
                ),
            )
            for turn in dispute.turns
        )
        disputes.append(
            replace(
                dispute,
                ticket_body=f"{dispute.ticket_body} {EVERYTHING}",
                turns=(opened, *turns),
            )
        )
    return disputes


ORIGINAL_DISPUTES = _demo._disputes
PLANTED_CHARGES = tuple(
    (tenant, charge, amount, currency, f"{email} ({EVERYTHING})")
    for tenant, charge, amount, currency, email in _demo._CHARGES
)


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


def run_everything(config: Config) -> tuple[str, dict[str, bytes]]:
    """The demo with every form planted, its held refunds approved and finished by a worker.

    Returns what break-glass reads back from a held run, and the database's files as they are
    while the store is still open (the WAL is folded into the file and removed on close).
    """
    report = _demo.run_demo(config)
    held = [r for _, r in report.runs if r.status == "waiting"]
    assert held, "the demo holds refunds for approval"
    with Client(config) as client:
        operator = client.create_human(
            name="oscar", roles=["operator"], credential=report.admin_token, reason="incidents"
        ).token
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
        while_open = {f.name: f.read_bytes() for f in config.home.glob("charter.db*")}
    return json.dumps(opened["payloads"], ensure_ascii=False, default=str), while_open


def printed(home: Path, run_ids: list[str]) -> str:
    """What `charter runs show`, `charter explain` (as text and JSON) and `charter runs
    export` print for these runs, each of which must succeed."""
    outputs = []
    for run_id in run_ids:
        for args in (
            ["runs", "show", run_id],
            ["runs", "show", run_id, "--json"],
            ["explain", run_id],
            ["explain", run_id, "--json"],
            ["runs", "export", run_id],
        ):
            result = CliRunner().invoke(cli, ["--home", str(home), *args])
            assert result.exit_code == 0, result.output
            outputs.append(result.output)
    return "\n".join(outputs)


def test_planted_secrets_are_nowhere_in_clear(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spans: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> None:
    """Every planted form reaches the runs (break-glass reads each back), and none is in the
    database file or its WAL, an exported span, a log line, or the CLI's output."""
    assert len(PLANTED) >= 30
    assert len(REASON) <= 500
    monkeypatch.setattr(_demo, "_disputes", planted_disputes)
    monkeypatch.setattr(_demo, "_CHARGES", PLANTED_CHARGES)
    home = tmp_path / "home"
    config = Config.from_env({}, home=home)
    raw, while_open = run_everything(config)
    assert [v for v in (*(p.value for p in PLANTED), REQUESTER) if v not in raw] == []
    assert any(email in raw for email in CUSTOMERS)

    assert {"charter.db", "charter.db-wal"} <= set(while_open)
    stored = b"".join([*while_open.values(), *(f.read_bytes() for f in home.glob("charter.db*"))])
    exported = "\n".join(span.to_json() for span in spans.get_finished_spans())
    assert exported, "spans were exported"
    logged = log_lines.getvalue()
    assert logged, "the runs were logged"
    with Client(config) as client:
        run_ids = [r.run_id for r in client.runs(limit=100)]
    shown = printed(home, run_ids)
    places = {
        "database": stored.decode("utf-8", errors="ignore"),
        "database (bytes)": stored.decode("latin-1"),
        "spans": exported,
        "logs": logged,
        "cli": shown,
        "cli (unwrapped)": re.sub(r"\s+", "", shown),  # a value the console wrapped, whole
    }
    leaks = [
        (value, where)
        for value in VALUES
        for form in forms_of(value) | {re.sub(r"\s+", "", f) for f in forms_of(value)}
        for where, text in places.items()
        if len(form) >= 8 and form in text
    ]
    assert sorted(set(leaks)) == []
    markers = {"[credential]", "[webhook]", "[card]", "[email]", "[api_key]", "[private_key]"}
    assert markers <= set(
        re.findall(r"\[\w+\]", places["database"]) + re.findall(r"\[\w+\]", shown)
    )
