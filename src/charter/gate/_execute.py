"""Stages 9 and 10: execute with the idempotency key, timeout and retries; validate output."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from charter._decision import CheckResult
from charter.exceptions import ToolError, ToolOutputInvalid, ToolTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter._telemetry import Telemetry
    from charter.gate._call import Call

__all__ = ["Execution", "Executor"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Execution:
    """What running a tool produced."""

    check: CheckResult
    raw: Any = None
    error: ToolError | None = None
    attempts: int = 0
    latency_ms: float = 0.0


class Executor:
    """Runs tools in worker threads so a timeout can be enforced from the gate.

    A timed-out call keeps running in its thread (Python cannot kill a thread); that is safe
    because the retry presents the same idempotency key, so the effect still happens once.
    """

    def __init__(
        self,
        *,
        workers: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        backoff_s: float = 0.2,
    ) -> None:
        """Create the pool; `sleep` and `backoff_s` shape retries (tests pass a no-op sleep)."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="charter-tool")
        # Model calls get threads of their own: hung ones must not starve the tools.
        self._models = ThreadPoolExecutor(max_workers=4, thread_name_prefix="charter-model")
        self._sleep = sleep
        self._backoff_s = backoff_s
        self.telemetry: Telemetry | None = None
        """Where retried attempts are traced; the gate sets it."""

    def close(self) -> None:
        """Stop accepting work."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._models.shutdown(wait=False, cancel_futures=True)

    def bounded(self, fn: Callable[[], T], *, timeout_s: float) -> T:
        """`fn()` on a worker thread, waited for at most `timeout_s` (a model call, say).

        Raises:
            TimeoutError: No answer in time; the call keeps running in its thread.
        """
        future = self._models.submit(fn)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout as exc:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g}s") from exc

    def execute(self, call: Call, *, default_timeout_s: float) -> Execution:
        """Run the tool, retrying retryable errors with exponential backoff."""
        tool = call.tool
        assert tool is not None  # noqa: S101 - only allowed calls reach execution
        timeout = tool.timeout_s or default_timeout_s
        started = time.perf_counter()
        errors: list[str] = []
        for attempt in range(1, tool.max_attempts + 1):
            retrying = (
                self.telemetry.retry(tool=tool.name, attempt=attempt)
                if attempt > 1 and self.telemetry is not None
                else contextlib.nullcontext()
            )
            with retrying:
                raw, error = self._attempt(call, attempt, timeout)
            if error is None:
                latency = (time.perf_counter() - started) * 1000
                return Execution(
                    check=CheckResult.passed(
                        "execute",
                        f"ran in {latency:.1f} ms, attempt {attempt}",
                        f"tool:{tool.name}",
                        attempts=attempt,
                        errors=list(errors),
                    ),
                    raw=raw,
                    attempts=attempt,
                    latency_ms=latency,
                )
            errors.append(f"{error.code}: {error.message}")
            if not error.retryable or attempt == tool.max_attempts:
                latency = (time.perf_counter() - started) * 1000
                return Execution(
                    check=CheckResult(
                        check="execute",
                        outcome="fail",
                        reason=f"{error.code}: {error.message}",
                        source=f"tool:{tool.name}",
                        detail={"attempts": attempt, "errors": list(errors)},
                    ),
                    error=error,
                    attempts=attempt,
                    latency_ms=latency,
                )
            self._sleep(self._backoff_s * 2 ** (attempt - 1))
        msg = "unreachable: the loop returns on the last attempt"
        raise AssertionError(msg)

    def _attempt(self, call: Call, attempt: int, timeout: float) -> tuple[Any, ToolError | None]:
        """One attempt: the tool's answer, or the error it ended in."""
        tool = call.tool
        assert tool is not None  # noqa: S101
        future = self._pool.submit(tool.run, call.args, call.context(attempt=attempt))
        try:
            return future.result(timeout=timeout), None
        except FutureTimeout:
            # A call still queued must never start after being recorded as timed out.
            future.cancel()
            return None, ToolTimeoutError(f"{tool.name} did not answer in {timeout}s")
        except ToolError as exc:
            return None, exc
        except Exception as exc:  # noqa: BLE001 - tool bugs become typed permanent failures
            return None, ToolError(f"{type(exc).__name__}: {exc}")


def validate_output(call: Call, raw: object) -> tuple[CheckResult, dict[str, Any] | None]:
    """Validate the tool's answer against its output model; a mismatch is a typed failure."""
    tool = call.tool
    assert tool is not None  # noqa: S101
    try:
        data = raw.model_dump(mode="json") if isinstance(raw, BaseModel) else raw
        output = tool.output_model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(output)'}: {e['msg']}" for e in exc.errors()
        )
        failure = ToolOutputInvalid(
            f"{tool.name} returned output that does not match {tool.output_model.__name__}: "
            f"{problems}"
        )
        return (
            CheckResult(
                check="output",
                outcome="fail",
                reason=str(failure),
                source=f"tool:{tool.name}.output",
                detail={"code": failure.code},
            ),
            None,
        )
    return (
        CheckResult.passed(
            "output", f"output matches {tool.output_model.__name__}", f"tool:{tool.name}.output"
        ),
        output.model_dump(mode="json"),
    )
