"""Structured logs: one JSON object a line, with the run and trace it belongs to, redacted.

A log line carries `run_id` when the code that wrote it knew the run (`extra={"run_id": ...}`),
and `trace_id` and `span_id` when it was written inside a traced stretch of work, so a line
in a log search leads to the run's trace and its audit log. The message, and any exception
text, pass through redaction first: a log line never holds what the log of events may not.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import trace

from charter.exceptions import ConfigError
from charter.privacy import redact, redact_text

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["JsonFormatter", "configure_logging"]

_FIELDS = ("run_id", "worker", "status", "outcome", "step", "tool", "waiting_on")
"""`extra` fields a line may carry besides its message; anything else stays out."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, run and trace."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON, its free text redacted."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                # Any JSON value an extra carries (a list of ids, a dict) is redacted whole.
                entry[name] = redact(value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = f"{context.trace_id:032x}"
            entry["span_id"] = f"{context.span_id:016x}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error"] = redact_text(f"{type(error).__name__}: {error}")
            entry["stack"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(
    environ: Mapping[str, str], *, stream: IO[str] | None = None, default_format: str = "json"
) -> None:
    """Send Charter's logs to `stream` (stderr) as `CHARTER_LOG_FORMAT` says (json or text).

    `CHARTER_LOG_LEVEL` sets the level (default INFO). Only the `charter` loggers are touched.

    Raises:
        ConfigError: The format or level is not one Charter knows.
    """
    chosen = environ.get("CHARTER_LOG_FORMAT", default_format).strip().lower()
    if chosen not in ("json", "text"):
        raise ConfigError(
            f"CHARTER_LOG_FORMAT={chosen!r} is not json or text", hint="set it to json or text"
        )
    level = environ.get("CHARTER_LOG_LEVEL", "INFO").strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"CHARTER_LOG_LEVEL={level!r} is not a log level", hint="DEBUG, INFO, WARNING, ERROR"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if chosen == "json" else _RedactingFormatter("%(levelname)s %(message)s")
    )
    logger = logging.getLogger("charter")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _RedactingFormatter(logging.Formatter):
    """Plain text, redacted all the same."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))
