"""OpenTelemetry traces and metrics of runs: one trace per run, a span per step.

A run's trace begins when the run starts: a short root span, `invoke_agent <agent>`, whose
trace and span ids are recorded in the run's `run.started` event. Every stretch of work on the
run (the first, and each resume, on whichever worker) is a `charter.run_segment` span under
that root, so a run resumed days later on another node continues the same trace. Within a
segment: `chat <model>` per model step, `execute_tool <tool>` per tool step with a
`charter.decide` child (the gate's decision and the policies behind it) and a `charter.retry`
child per retried attempt, and `charter.approval_wait` for each approval the run waited for.

Attribute names follow the OpenTelemetry GenAI semantic conventions where they exist
(`gen_ai.*`) and are `charter.*` otherwise. Spans carry ids, names, counts and decisions,
never payloads; a free-text attribute (an error) is redacted first.

Exporters come from the standard variables: `OTEL_TRACES_EXPORTER` and
`OTEL_METRICS_EXPORTER` (`otlp`, `console`, `none`), `OTEL_EXPORTER_OTLP_PROTOCOL` (or the
per-signal `..._TRACES_PROTOCOL`, `..._METRICS_PROTOCOL`: `http/protobuf`, `grpc`), and the
endpoint, header and resource variables the OpenTelemetry SDK reads itself. With none of them
set, Charter uses the process's global providers (a no-op unless the application configured
OpenTelemetry). A `TracerProvider` and `MeterProvider` can be injected instead.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from charter.exceptions import ConfigError
from charter.privacy import redact_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from datetime import datetime

    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Telemetry", "ToolSpan", "default_telemetry"]

_SCOPE = "charter"
_OTLP_PROTOCOLS = ("http/protobuf", "grpc")


class ToolSpan:
    """One tool step's span, and what the gate reports into it as the step goes."""

    def __init__(self, telemetry: Telemetry, span: Span, tool: str, workflow: str) -> None:
        """Wrap `span`, the step of `tool` in a run of `workflow` (labels of its metrics)."""
        self._telemetry = telemetry
        self.span = span
        self._tool = tool
        self._workflow = workflow

    def decided(
        self,
        *,
        decision: str,
        check: str | None,
        policy_ids: Sequence[str],
        tier: str | None,
        started_ns: int,
        ended_ns: int,
    ) -> None:
        """The gate decided: a `charter.decide` child span over the decision's stages."""
        attributes: dict[str, Any] = {
            "charter.decision": decision,
            "charter.policy_ids": list(policy_ids),
        }
        if check is not None:
            attributes["charter.check"] = check
        if tier is not None:
            attributes["charter.approval.tier"] = tier
        telemetry = self._telemetry
        child = telemetry.tracer.start_span(
            "charter.decide",
            context=set_span_in_context(self.span),
            attributes=attributes,
            start_time=started_ns,
        )
        child.end(end_time=ended_ns)
        self.span.set_attribute("charter.decision", decision)
        telemetry.decisions.add(
            1,
            {
                "charter.decision": decision,
                "charter.check": check or "none",
                "gen_ai.tool.name": self._tool,
            },
        )

    def completed(
        self,
        *,
        status: str,
        latency_ms: float,
        attempts: int,
        cost_usd: float,
        cached: bool,
        error_code: str | None = None,
    ) -> None:
        """The tool ran (or failed): its status, latency, attempts and cost on the span."""
        self.span.set_attributes(
            {
                "charter.status": status,
                "charter.latency_ms": latency_ms,
                "charter.attempts": attempts,
                "charter.cost_usd": cost_usd,
            }
        )
        if cached:
            self.span.set_attribute("charter.cached", value=True)
        if error_code is not None:
            self.span.set_attribute("error.type", error_code)
            self.span.set_status(Status(StatusCode.ERROR, error_code))
        labels = {
            "gen_ai.tool.name": self._tool,
            "charter.status": status,
        }
        self._telemetry.tool_duration.record(latency_ms / 1000, labels)
        self._telemetry.add_cost(cost_usd, "tool", self._workflow)


class Telemetry:
    """Charter's tracer and meter, and the instruments every run reports to."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """Report to these providers; by default, the process's global ones."""
        from charter import __version__  # noqa: PLC0415 - the package imports this module

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            _SCOPE, __version__
        )
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, __version__)
        self.decisions = meter.create_counter(
            "charter.gate.decisions",
            unit="{decision}",
            description="Gate decisions by outcome and the stage that made them",
        )
        self.tool_duration = meter.create_histogram(
            "charter.tool.duration", unit="s", description="Tool execution time, retries included"
        )
        self.cost = meter.create_counter(
            "charter.cost", unit="USD", description="What model and tool calls cost"
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per model call"
        )
        self.approval_wait = meter.create_histogram(
            "charter.approval.wait", unit="s", description="Time from approval request to decision"
        )
        self._meter = meter
        self._pending: Callable[[], int] | None = None
        self._lock = threading.Lock()

    # --- configuration -------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Telemetry:
        """Providers built from the standard OTEL_* variables, or the global ones.

        Raises:
            ConfigError: An exporter or protocol the variables name is not one Charter knows,
                or gRPC is asked for without the `grpc` extra installed.
        """
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(
                tracer_provider=trace.NoOpTracerProvider(),
                meter_provider=metrics.NoOpMeterProvider(),
            )
        endpoint = bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        span_exporters = _exporters(
            environ, "TRACES", default_otlp=endpoint or bool(environ.get(_ENDPOINT["TRACES"]))
        )
        metric_exporters = _exporters(
            environ, "METRICS", default_otlp=endpoint or bool(environ.get(_ENDPOINT["METRICS"]))
        )
        return cls(
            tracer_provider=_tracer_provider(environ, span_exporters) if span_exporters else None,
            meter_provider=_meter_provider(environ, metric_exporters) if metric_exporters else None,
        )

    def watch_approvals(self, pending: Callable[[], int]) -> None:
        """Report `charter.approvals.pending` as `pending()` (a store count) at each export."""
        with self._lock:
            first = self._pending is None
            self._pending = pending
        if first:
            self._meter.create_observable_gauge(
                "charter.approvals.pending",
                callbacks=[self._observe_pending],
                unit="{request}",
                description="Approval requests waiting for a decision",
            )

    def _observe_pending(self, _options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - a runtime import

        if self._pending is None:
            return
        try:
            count = self._pending()
        except Exception:  # noqa: BLE001 - a metric callback must never take the exporter down
            return  # the store is closed or unreachable: no reading this time
        yield Observation(count)

    def flush(self) -> None:
        """Export now what the providers hold."""
        for provider in (self.tracer_provider, self.meter_provider):
            force = getattr(provider, "force_flush", None)
            if force is not None:
                force()

    def shutdown(self) -> None:
        """Export what the providers hold and stop their exporters (at exit, they do so)."""
        for provider in (self.tracer_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                stop()

    # --- spans -----------------------------------------------------------------------------------
    def run_started(
        self, *, run_id: str, agent: str, workflow: str, tenant_id: str
    ) -> tuple[str, str]:
        """The run's root span: started and ended now; returns its (trace id, span id) in hex.

        Both are empty when nothing records traces, or the sampler left this run out: its
        segments then begin traces of their own, which the same sampler judges again.
        """
        span = self.tracer.start_span(
            f"invoke_agent {agent}",
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "charter.run_id": run_id,
                "charter.workflow": workflow,
                "charter.tenant_id": tenant_id,
            },
        )
        span.end()
        context = span.get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return "", ""
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    @contextlib.contextmanager
    def segment(
        self,
        *,
        run_id: str,
        agent: str,
        workflow: str,
        tenant_id: str,
        trace_id: str,
        span_id: str,
        reason: str,
    ) -> Iterator[Span]:
        """A stretch of work on a run, under the run's root span; current while it lasts."""
        parent = None
        if trace_id and span_id:
            remote = SpanContext(
                trace_id=int(trace_id, 16),
                span_id=int(span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            parent = set_span_in_context(NonRecordingSpan(remote))
        with self.tracer.start_as_current_span(
            "charter.run_segment",
            context=parent,
            attributes={
                "gen_ai.agent.name": agent,
                "charter.run_id": run_id,
                "charter.workflow": workflow,
                "charter.tenant_id": tenant_id,
                "charter.segment.reason": reason,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def model_call(
        self,
        *,
        model: str,
        step: int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_ms: float,
        cached: bool,
        workflow: str,
        purpose: str = "act",
    ) -> None:
        """A model step, as a `chat <model>` span ending now, and its token and cost metrics."""
        end = time.time_ns()
        start = end - int(latency_ms * 1_000_000)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            # Models are named `<provider>:<model>` (`openai:gpt-4o`, `scripted:big`).
            "gen_ai.provider.name": model.partition(":")[0] if ":" in model else "unknown",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "charter.step": step,
            "charter.cost_usd": cost_usd,
        }
        if cached:
            attributes["charter.cached"] = True
        if purpose != "act":
            attributes["charter.purpose"] = purpose
        span = self.tracer.start_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes, start_time=start
        )
        span.end(end_time=end)
        if not cached:
            labels = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
            self.tokens.record(input_tokens, {**labels, "gen_ai.token.type": "input"})
            self.tokens.record(output_tokens, {**labels, "gen_ai.token.type": "output"})
        self.add_cost(cost_usd, "model", workflow)

    @contextlib.contextmanager
    def tool_step(
        self, *, tool: str, effect: str, step: int, idempotency_key: str, workflow: str
    ) -> Iterator[ToolSpan]:
        """A tool step's `execute_tool <tool>` span, current while the gate works on it."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            # A read fetches from a system of record: the step is a retrieval.
            "gen_ai.tool.type": "datastore" if effect == "read" else "function",
            "charter.effect": effect,
            "charter.step": step,
            "charter.idempotency_key": idempotency_key,
        }
        with self.tracer.start_as_current_span(
            f"execute_tool {tool}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield ToolSpan(self, span, tool, workflow)

    @contextlib.contextmanager
    def retry(self, *, tool: str, attempt: int) -> Iterator[None]:
        """A retried attempt of a tool call (the second and later), under the tool's span."""
        with self.tracer.start_as_current_span(
            "charter.retry",
            attributes={"gen_ai.tool.name": tool, "charter.attempt": attempt},
            record_exception=False,
            set_status_on_exception=False,
        ):
            yield

    def approval_waited(
        self,
        *,
        tier: str,
        request_id: str,
        status: str,
        approvers: Sequence[str],
        requested_at: datetime,
        decided_at: datetime,
    ) -> None:
        """An approval the run waited for: a span from the request to the decision."""
        waited = max((decided_at - requested_at).total_seconds(), 0.0)
        span = self.tracer.start_span(
            "charter.approval_wait",
            attributes={
                "charter.approval.tier": tier,
                "charter.approval.request_id": request_id,
                "charter.approval.status": status,
                "charter.approval.approvers": list(approvers),
                "charter.approval.wait_s": waited,
            },
            start_time=_ns(requested_at),
        )
        span.end(end_time=max(_ns(decided_at), _ns(requested_at)))
        self.approval_wait.record(
            waited, {"charter.approval.tier": tier, "charter.approval.status": status}
        )

    def add_cost(self, usd: float, kind: str, workflow: str) -> None:
        """Count what a call cost."""
        if usd:
            self.cost.add(usd, {"charter.cost.kind": kind, "charter.workflow": workflow})

    @staticmethod
    def failed(span: Span, reason: str) -> None:
        """Mark `span` failed with a redacted reason (never an exception's raw text)."""
        span.set_status(Status(StatusCode.ERROR, redact_text(reason)[:200]))


_DEFAULT: Telemetry | None = None
_DEFAULT_LOCK = threading.Lock()


def default_telemetry() -> Telemetry:
    """The process's telemetry, built once from its OTEL_* environment variables.

    Once, because each provider Charter builds owns an exporter and its background thread.
    """
    global _DEFAULT  # noqa: PLW0603 - one per process, by design
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Telemetry.from_env(os.environ)
        return _DEFAULT


# --- building providers from OTEL_* ---------------------------------------------------------------
_ENDPOINT = {
    "TRACES": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "METRICS": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
}


def _exporters(environ: Mapping[str, str], signal: str, *, default_otlp: bool) -> list[str]:
    named = environ.get(f"OTEL_{signal}_EXPORTER")
    if named is None:
        return ["otlp"] if default_otlp else []
    chosen = [n.strip().lower() for n in named.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in ("otlp", "console", "none")]
    if unknown:
        raise ConfigError(
            f"OTEL_{signal}_EXPORTER names {', '.join(unknown)}",
            hint="use otlp, console or none (comma-separated)",
        )
    return [n for n in chosen if n != "none"]


def _protocol(environ: Mapping[str, str], signal: str) -> str:
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in _OTLP_PROTOCOLS:
        raise ConfigError(
            f"OTLP protocol {protocol!r} is not supported",
            hint="set OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf or grpc",
        )
    return protocol


_OTLP_EXPORTERS = {
    ("TRACES", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "OTLPSpanExporter",
    ),
    ("TRACES", "grpc"): (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "OTLPSpanExporter",
    ),
    ("METRICS", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "OTLPMetricExporter",
    ),
    ("METRICS", "grpc"): (
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        "OTLPMetricExporter",
    ),
}
"""The OTLP exporter class of each signal and protocol; each reads its endpoint, headers and
timeout from the OTEL_EXPORTER_OTLP_* variables itself."""


def _otlp_exporter(environ: Mapping[str, str], signal: str) -> Any:  # noqa: ANN401 - a span or metric exporter
    """The OTLP exporter the variables ask for, imported only then.

    Raises:
        ConfigError: The protocol is unknown, or it is gRPC and the `grpc` extra is missing.
    """
    module, name = _OTLP_EXPORTERS[(signal, _protocol(environ, signal))]
    try:
        exporter = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(
            f"OTLP over gRPC needs the gRPC exporter ({exc.name} is not installed)",
            hint="pip install 'charter[grpc]', or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        ) from exc
    return exporter()


def _tracer_provider(environ: Mapping[str, str], names: list[str]) -> TracerProvider:
    # Imported here: a process that exports nothing never loads the SDK's exporters.
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = SdkTracerProvider(resource=Resource.create(_service(environ)))
    for name in names:
        exporter: SpanExporter = (
            ConsoleSpanExporter(out=sys.stdout)
            if name == "console"
            else _otlp_exporter(environ, "TRACES")
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(environ: Mapping[str, str], names: list[str]) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415

    readers = []
    for name in names:
        exporter: MetricExporter = (
            ConsoleMetricExporter(out=sys.stdout)
            if name == "console"
            else _otlp_exporter(environ, "METRICS")
        )
        readers.append(PeriodicExportingMetricReader(exporter))
    return SdkMeterProvider(metric_readers=readers, resource=Resource.create(_service(environ)))


def _service(environ: Mapping[str, str]) -> dict[str, str]:
    # The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself; this is the default.
    if environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        return {}
    return {"service.name": "charter"}


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
