"""Local servers that speak the OpenAI and Anthropic wire formats, for the provider tests.

A `WireServer` listens on 127.0.0.1 at a port the OS picks (so xdist workers never collide),
answers each POST with the next reply a test queued, and records every request so the test
can check what the SDK put on the wire. The reply builders below write the bodies the real
APIs send: `openai_*` for `POST /v1/chat/completions`, `anthropic_*` for `POST /v1/messages`.

Rate-limit and server-error replies carry `retry-after-ms: 1`, which both SDKs honour before
their exponential backoff, so retries take a millisecond instead of half a second.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Sequence

FAST_RETRY = {"retry-after-ms": "1", "retry-after": "0"}


@dataclass(frozen=True)
class Reply:
    """One canned HTTP response."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any


class WireServer:
    """A scripted HTTP server on an ephemeral port; use it as a context manager."""

    def __init__(self, *, api_prefix: str) -> None:
        self._replies: deque[Reply] = deque()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.wire = self  # type: ignore[attr-defined]
        # A short poll lets `shutdown` return at once instead of after the default half second.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}{api_prefix}"
        """What to give the SDK as `base_url`."""

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with `replies`, in order."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[Received]:
        """Every request received so far."""
        with self._lock:
            return list(self._received)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self._received.append(received)
            if self._replies:
                return self._replies.popleft()
        # An unscripted request fails loudly, in a shape both SDKs parse, and is not retried.
        body = {"error": {"message": "no reply queued", "type": "test_error", "code": None}}
        return Reply(400, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
    timeout = 10  # a stuck test must not leave a thread reading forever

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        wire: WireServer = self.server.wire  # type: ignore[attr-defined]
        reply = wire._next(Received(path=self.path, headers=headers, body=json.loads(raw or b"{}")))
        payload = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
        self.send_response(reply.status)
        headers = {"content-type": "application/json", **reply.headers}
        headers["content-length"] = str(len(payload))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # keep pytest's output to the tests' own


def closed_port_url(api_prefix: str) -> str:
    """A base URL at a local port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{api_prefix}"


# --- OpenAI: POST /v1/chat/completions ---------------------------------------------------


def openai_reply(
    text: str | None = "",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    logprobs: list[float] | None = None,
    model: str = "gpt-test",
) -> Reply:
    """A chat completion; `tool_calls` are (id, name, arguments as a JSON string)."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in tool_calls
        ]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": "tool_calls" if tool_calls else "stop",
        "logprobs": None,
    }
    if logprobs is not None:
        tokens = [
            {"token": f"t{i}", "logprob": lp, "bytes": None, "top_logprobs": []}
            for i, lp in enumerate(logprobs)
        ]
        choice["logprobs"] = {"content": tokens, "refusal": None}
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(200, body)


def openai_error(
    status: int, message: str, *, type_: str, code: str | None = None, fast_retry: bool = True
) -> Reply:
    """An OpenAI error body: `{"error": {"message", "type", "code"}}`."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Reply(status, body, FAST_RETRY if fast_retry else {})


# --- Anthropic: POST /v1/messages --------------------------------------------------------


def anthropic_reply(
    text: str = "",
    *,
    tool_uses: Sequence[tuple[str, str, Any]] = (),
    input_tokens: int = 13,
    output_tokens: int = 5,
    model: str = "claude-test",
) -> Reply:
    """A message; `tool_uses` are (id, name, input)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": i, "name": n, "input": x} for i, n, x in tool_uses]
    body = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool_uses else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return Reply(200, body)


def anthropic_error(status: int, message: str, *, type_: str, fast_retry: bool = True) -> Reply:
    """An Anthropic error body: `{"type": "error", "error": {"type", "message"}}`."""
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Reply(status, body, FAST_RETRY if fast_retry else {})
