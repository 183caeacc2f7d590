"""Traces, metrics and logs: one trace per run, continued across an approval; exported over
OTLP to receivers started here; metrics by decision and tool; JSON log lines with run and
trace ids.

The receivers speak the real protocols: OTLP/HTTP is a protobuf `ExportTraceServiceRequest`
POSTed to `/v1/traces`, OTLP/gRPC the `TraceService/Export` call.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from charter import Agent, Client, Config, ControlPlane
from charter._identity import create_agent_identity, create_human
from charter._logging import JsonFormatter, configure_logging
from charter._telemetry import Telemetry
from charter.engine import Workflow, agent_loop
from charter.exceptions import ConfigError
from charter.gate import Executor
from charter.models import ScriptedModel, ScriptedTurn
from charter.privacy import Redactor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

call = ScriptedTurn.call
say = ScriptedTurn.say

BIG_WRITE = call("record_write", item="x", amount=75)
"""Above 50, so the `big-needs-ops` policy holds it for tier ops."""


class Received:
    """Spans a receiver was sent, decoded from the protobuf the exporter wrote."""

    def __init__(self) -> None:
        self.spans: list[ProtoSpan] = []
        self.lock = threading.Lock()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)

    def named(self, prefix: str) -> list[ProtoSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP trace receiver on a free local port: (endpoint, what it received)."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.path == "/v1/traces"
            assert self.headers["Content-Type"] == "application/x-protobuf"
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.add(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/gRPC trace receiver on a free local port: (endpoint, what it received)."""
    received = Received()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method
            received.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(grace=None)


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[Client]:
    env = {"CHARTER_DATABASE_URL": database_url}
    with Client(Config.from_env(env, home=tmp_path / "home")) as opened:
        yield opened


@pytest.fixture
def build(make_contract, toolset) -> Callable[..., Agent]:
    def build(*turns: ScriptedTurn) -> Agent:
        model = ScriptedModel([*turns, say("done")])
        return Agent.load(make_contract(), tools=toolset.tools, model=model)

    return build


def plane_for(client: Client, telemetry: Telemetry, clock: Any) -> ControlPlane:
    return ControlPlane(
        client.store, clock=clock, executor=Executor(sleep=lambda s: None), telemetry=telemetry
    )


def exporting(monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str) -> Telemetry:
    """Telemetry built the way a deployment builds it: from OTEL_* variables."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    import os  # noqa: PLC0415

    return Telemetry.from_env(os.environ)


def held_then_approved(
    client: Client, plane: ControlPlane, agent: Agent
) -> tuple[str, list[dict[str, Any]]]:
    """Run an agent whose write is held for ops, approve it as bob, resume it to the end."""
    cred = create_agent_identity(
        client.store, agent="test-agent", workflow="testing", tenant_id="acme"
    )
    bob = create_human(client.store, name="bob", roles=["approver"]).token
    first = plane.run(agent, credential=cred.token, tenant_id="acme", task="write it")
    assert first.status == "waiting"
    (request,) = client.approvals(run_id=first.run_id)
    client.decide(request.request_id, approver="bob", token=bob, decision="approve", reason="ok")
    done = plane.resume(first.run_id, Workflow(agent=agent, fn=agent_loop))
    assert done.status == "completed"
    return first.run_id, [e.payload for e in client.events(first.run_id)]


def attributes(span: ProtoSpan) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            found[kv.key] = [v.string_value for v in value.array_value.values]
        else:
            found[kv.key] = getattr(value, kind)
    return found


class TestOneTracePerRun:
    def test_a_run_resumed_after_an_approval_is_one_trace_over_otlp_http(
        self, monkeypatch, http_receiver, client, build, clock
    ):
        """Exported over OTLP/HTTP to a receiver: every span of the run shares the trace id
        its `run.started` records; the root `invoke_agent` span has two segments (the start
        and the resume after the approval, whose `run.resumed` names it); the approval wait,
        both model steps and the tool step sit in them with their GenAI and Charter
        attributes."""
        endpoint, received = http_receiver
        telemetry = exporting(monkeypatch, endpoint, "http/protobuf")
        plane = plane_for(client, telemetry, clock)
        run_id, events = held_then_approved(client, plane, build(BIG_WRITE))
        telemetry.shutdown()

        started = events[0]
        spans = received.spans
        assert {s.trace_id.hex() for s in spans} == {started["trace_id"]}
        (root,) = received.named("invoke_agent")
        assert root.span_id.hex() == started["span_id"]
        assert not root.parent_span_id
        assert attributes(root)["charter.run_id"] == run_id
        segments = received.named("charter.run_segment")
        assert [s.parent_span_id for s in segments] == [root.span_id, root.span_id]
        resumed = [e for e in events if e["kind"] == "run.resumed"]
        assert sorted(e["span_id"] for e in resumed) == sorted(s.span_id.hex() for s in segments)
        first, second = sorted(segments, key=lambda s: s.start_time_unix_nano)

        (wait,) = received.named("charter.approval_wait")
        assert wait.parent_span_id == second.span_id
        waited = attributes(wait)
        assert waited["charter.approval.tier"] == "ops"
        assert waited["charter.approval.status"] == "approved"
        assert waited["charter.approval.approvers"] == ["bob"]
        assert waited["charter.approval.wait_s"] >= 0

        chats = received.named("chat ")
        assert {c.parent_span_id for c in chats} == {first.span_id, second.span_id}
        chat = attributes(chats[0])
        assert chat["gen_ai.operation.name"] == "chat"
        assert chat["gen_ai.request.model"].startswith("scripted")
        assert chat["gen_ai.usage.input_tokens"] > 0
        assert "charter.cost_usd" in chat

        tools = received.named("execute_tool record_write")
        held, executed = sorted(tools, key=lambda s: s.start_time_unix_nano)
        assert attributes(held)["charter.decision"] == "needs_approval"
        done = attributes(executed)
        assert done["charter.decision"] == "allowed"
        assert done["charter.status"] == "ok"
        assert done["charter.effect"] == "write"
        assert done["gen_ai.tool.name"] == "record_write"
        assert done["charter.idempotency_key"].startswith("chk_")
        assert done["charter.attempts"] == 1
        decides = received.named("charter.decide")
        assert {d.parent_span_id for d in decides} == {held.span_id, executed.span_id}
        policy = attributes(next(d for d in decides if d.parent_span_id == held.span_id))
        assert policy["charter.policy_ids"] == ["big-needs-ops"]
        # The check that decided is named only when one refused or held the call.
        assert (policy["charter.check"], policy["charter.approval.tier"]) == ("approval", "ops")
        passed = attributes(next(d for d in decides if d.parent_span_id == executed.span_id))
        assert "charter.check" not in passed

    def test_otlp_grpc_exports_the_same_trace(
        self, monkeypatch, grpc_receiver, client, build, clock
    ):
        """With OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc the spans reach a gRPC receiver."""
        endpoint, received = grpc_receiver
        telemetry = exporting(monkeypatch, endpoint, "grpc")
        plane = plane_for(client, telemetry, clock)
        _, events = held_then_approved(client, plane, build(BIG_WRITE))
        telemetry.shutdown()
        assert {s.trace_id.hex() for s in received.spans} == {events[0]["trace_id"]}
        assert len(received.named("charter.run_segment")) == 2

    def test_retries_are_spans_of_their_own(
        self, monkeypatch, http_receiver, client, clock, make_contract, toolset
    ):
        """A tool that fails twice before it succeeds shows two `charter.retry` spans under
        its step, numbered 2 and 3."""
        endpoint, received = http_receiver
        toolset.flaky_failures = 2
        agent = Agent.load(
            make_contract(),
            tools=toolset.tools,
            model=ScriptedModel([call("flaky", item="x"), say("done")]),
        )
        telemetry = exporting(monkeypatch, endpoint, "http/protobuf")
        plane = plane_for(client, telemetry, clock)
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        assert plane.run(agent, credential=cred.token, tenant_id="acme", task="t").status == (
            "completed"
        )
        telemetry.shutdown()
        (step,) = received.named("execute_tool flaky")
        retries = received.named("charter.retry")
        assert [attributes(r)["charter.attempt"] for r in retries] == [2, 3]
        assert {r.parent_span_id for r in retries} == {step.span_id}
        assert attributes(step)["charter.attempts"] == 3


class TestProposedNames:
    def test_a_secret_tool_name_never_names_a_span(self, client, build, clock):
        """A tool named like a GitHub token gives the step span `execute_tool <its marker>`, and
        no span name, attribute or decision metric label holds the name."""
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader()
        telemetry = Telemetry(
            tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader])
        )
        secret = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        plane = plane_for(client, telemetry, clock)
        plane.run(build(call(secret)), credential=cred.token, tenant_id="acme", task="t")
        exported = "\n".join(s.to_json() for s in spans.get_finished_spans())
        marker = Redactor().text(secret)
        assert f"execute_tool {marker}" in exported
        assert secret not in exported
        labels = [labels for labels, _ in metric(reader, "charter.gate.decisions")]
        assert [x["gen_ai.tool.name"] for x in labels] == [marker]


class TestConfiguration:
    def test_no_otel_variables_means_the_global_providers(self):
        """Without OTEL_* variables Charter builds nothing: the global providers apply."""
        telemetry = Telemetry.from_env({})
        assert telemetry.tracer_provider is None
        assert telemetry.meter_provider is None

    def test_an_unknown_exporter_is_a_config_error(self):
        """OTEL_TRACES_EXPORTER=zipkin is refused by name, with the ones that work."""
        with pytest.raises(ConfigError, match="zipkin") as raised:
            Telemetry.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
        assert "otlp" in (raised.value.hint or "")

    def test_an_unknown_protocol_is_a_config_error(self):
        """OTEL_EXPORTER_OTLP_PROTOCOL=http/json is refused, naming the protocols that work."""
        with pytest.raises(ConfigError, match="http/json"):
            Telemetry.from_env(
                {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
            )

    def test_the_console_exporter_prints_spans(self, client, build, clock, capsys):
        """OTEL_TRACES_EXPORTER=console prints each span as JSON on stdout."""
        telemetry = Telemetry.from_env({"OTEL_TRACES_EXPORTER": "console"})
        plane = plane_for(client, telemetry, clock)
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        agent = build(call("read_notes", item="n"))
        plane.run(agent, credential=cred.token, tenant_id="acme", task="t")
        telemetry.shutdown()
        printed = capsys.readouterr().out
        assert '"name": "execute_tool read_notes"' in printed
        assert '"name": "invoke_agent test-agent"' in printed

    def test_sdk_disabled_records_nothing(self):
        """OTEL_SDK_DISABLED=true: no trace ids, even with an exporter named."""
        telemetry = Telemetry.from_env(
            {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
        )
        assert telemetry.run_started(run_id="r", agent="a", workflow="w", tenant_id="t") == (
            "",
            "",
        )


class TestMetrics:
    def test_decisions_latency_cost_tokens_and_approvals(self, client, build, clock):
        """Through an injected MeterProvider: decisions counted by outcome and stage, the
        tool's latency, cost and tokens recorded, the pending approvals gauge follows the
        store, and the approval's wait is measured once decided."""
        reader = InMemoryMetricReader()
        telemetry = Telemetry(meter_provider=MeterProvider(metric_readers=[reader]))
        plane = plane_for(client, telemetry, clock)
        agent = build(BIG_WRITE)
        cred = create_agent_identity(
            client.store, agent="test-agent", workflow="testing", tenant_id="acme"
        )
        bob = create_human(client.store, name="bob", roles=["approver"]).token
        first = plane.run(agent, credential=cred.token, tenant_id="acme", task="write it")
        assert metric(reader, "charter.approvals.pending") == [({}, 1)]
        (request,) = client.approvals(run_id=first.run_id)
        client.decide(
            request.request_id, approver="bob", token=bob, decision="approve", reason="ok"
        )
        plane.resume(first.run_id, Workflow(agent=agent, fn=agent_loop))

        decisions = {
            labels["charter.decision"]: value
            for labels, value in metric(reader, "charter.gate.decisions")
        }
        assert decisions == {"needs_approval": 1, "allowed": 1}
        (tool,) = metric(reader, "charter.tool.duration")
        assert tool[0] == {"gen_ai.tool.name": "record_write", "charter.status": "ok"}
        costs = {labels["charter.cost.kind"]: v for labels, v in metric(reader, "charter.cost")}
        assert costs["tool"] == pytest.approx(0.01)
        tokens = {
            labels["gen_ai.token.type"] for labels, _ in metric(reader, "gen_ai.client.token.usage")
        }
        assert tokens == {"input", "output"}
        (wait,) = metric(reader, "charter.approval.wait")
        assert wait[0] == {"charter.approval.tier": "ops", "charter.approval.status": "approved"}
        assert metric(reader, "charter.approvals.pending") == [({}, 0)]


def metric(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, value) per data point of one metric: a sum's value, a histogram's count."""
    data = reader.get_metrics_data()
    points: list[tuple[dict[str, Any], Any]] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for found in scope.metrics:
                if found.name != name:
                    continue
                for point in found.data.data_points:
                    value = getattr(point, "value", None)
                    points.append(
                        (dict(point.attributes), value if value is not None else point.count)
                    )
    return points


class TestJsonLogs:
    def test_a_line_carries_run_and_trace_and_no_secret(self):
        """A log line written inside a traced stretch of work is JSON with its run id, trace
        and span ids; its message and exception text are redacted."""
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

        tracer = TracerProvider().get_tracer("t")
        record_stream = io.StringIO()
        handler = logging.StreamHandler(record_stream)
        handler.setFormatter(JsonFormatter())
        log = logging.getLogger("charter.test-json")
        log.addHandler(handler)
        log.propagate = False
        try:
            with tracer.start_as_current_span("work") as span:
                try:
                    raise ValueError("token sk_live_abcdefgh12345678 refused")
                except ValueError:
                    log.exception("mail jane@example.com failed", extra={"run_id": "run_1"})
        finally:
            log.removeHandler(handler)
        line = json.loads(record_stream.getvalue())
        context = span.get_span_context()
        assert line["run_id"] == "run_1"
        assert line["trace_id"] == f"{context.trace_id:032x}"
        assert line["span_id"] == f"{context.span_id:016x}"
        assert line["message"] == "mail [email] failed"
        assert "sk_live" not in line["error"]
        assert "sk_live" not in line["stack"]
        assert line["level"] == "error"

    def test_bad_log_settings_are_config_errors(self):
        """CHARTER_LOG_FORMAT and CHARTER_LOG_LEVEL name what they accept when wrong."""
        with pytest.raises(ConfigError, match="xml"):
            configure_logging({"CHARTER_LOG_FORMAT": "xml"})
        with pytest.raises(ConfigError, match="LOUD"):
            configure_logging({"CHARTER_LOG_LEVEL": "loud"})
