"""The OpenAI-compatible and Anthropic models, through their real SDKs, against local servers.

`wire.py` serves each API's wire format on an ephemeral local port, so these tests need no
network and no key, and run in parallel.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from charter._events import ToolCallSpec
from charter.exceptions import (
    ConfigError,
    ModelError,
    ModelRateLimited,
    ModelUnavailable,
)
from charter.models import Message, ModelPrice, ToolSpec
from charter.models._anthropic import AnthropicModel
from charter.models._openai import OpenAIModel
from wire import (
    Reply,
    WireServer,
    anthropic_error,
    anthropic_reply,
    closed_port_url,
    openai_error,
    openai_reply,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "sk-test-0123456789abcdef"
HELLO = [Message(role="system", content="Be brief."), Message(role="user", content="Hello")]
LOOKUP = ToolSpec(
    name="lookup",
    description="Find an order.",
    parameters={"type": "object", "properties": {"order": {"type": "string"}}},
)
PRICE = ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)


@pytest.fixture(autouse=True)
def _no_provider_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Keys, base URLs, profiles and proxies from the developer's shell must not leak in."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ANTHROPIC_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Anthropic profile on disk
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@dataclass
class Provider:
    """One provider's model class and wire format, so shared behaviour is tested once."""

    prefix: str
    api_prefix: str
    model_class: type[OpenAIModel | AnthropicModel]
    text: Callable[..., Reply]
    error: Callable[[int, str, str], Reply]
    error_types: dict[str, str]
    server: WireServer = field(init=False)
    models: list[OpenAIModel | AnthropicModel] = field(default_factory=list)

    def model(self, **options: Any) -> OpenAIModel | AnthropicModel:
        options = {"api_key": KEY, "base_url": self.server.base_url, **options}
        built = self.model_class("test-model", **options)
        self.models.append(built)
        return built

    def fail(self, status: int, kind: str, message: str = "nope") -> Reply:
        return self.error(status, message, self.error_types[kind])


def _openai_error(status: int, message: str, type_: str) -> Reply:
    return openai_error(status, message, type_=type_)


def _anthropic_error(status: int, message: str, type_: str) -> Reply:
    return anthropic_error(status, message, type_=type_)


def _openai_text(text: str, prompt: int = 11, completion: int = 7) -> Reply:
    return openai_reply(text, prompt_tokens=prompt, completion_tokens=completion)


def _anthropic_text(text: str, prompt: int = 11, completion: int = 7) -> Reply:
    return anthropic_reply(text, input_tokens=prompt, output_tokens=completion)


PROVIDERS = {
    "openai": lambda: Provider(
        prefix="openai",
        api_prefix="/v1",
        model_class=OpenAIModel,
        text=_openai_text,
        error=_openai_error,
        error_types={
            "rate": "rate_limit_exceeded",
            "server": "server_error",
            "auth": "invalid_request_error",
            "missing": "invalid_request_error",
        },
    ),
    "anthropic": lambda: Provider(
        prefix="anthropic",
        api_prefix="",
        model_class=AnthropicModel,
        text=_anthropic_text,
        error=_anthropic_error,
        error_types={
            "rate": "rate_limit_error",
            "server": "api_error",
            "auth": "authentication_error",
            "missing": "not_found_error",
        },
    ),
}


def _start(name: str) -> Iterator[Provider]:
    provider = PROVIDERS[name]()
    with WireServer(api_prefix=provider.api_prefix) as server:
        provider.server = server
        yield provider
        for built in provider.models:
            built.close()


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    yield from _start(request.param)


@pytest.fixture
def openai() -> Iterator[Provider]:
    yield from _start("openai")


@pytest.fixture
def anthropic() -> Iterator[Provider]:
    yield from _start("anthropic")


class TestEitherProvider:
    def test_name_and_kind(self, provider: Provider) -> None:
        """The name is provider-qualified and the kind is 'provider'."""
        model = provider.model()
        assert model.name == f"{provider.prefix}/test-model"
        assert model.kind == "provider"

    def test_text_answer(self, provider: Provider) -> None:
        """A text answer comes back with its usage, unpriced and without confidence."""
        provider.server.queue(provider.text("Hi there", 21, 3))
        response = provider.model().respond(HELLO, [])
        assert response.text == "Hi there"
        assert response.tool_calls == ()
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (21, 3)
        assert response.cost_usd == 0.0
        assert response.confidence is None

    def test_cost_from_price(self, provider: Provider) -> None:
        """The turn's cost is its usage at the configured price."""
        provider.server.queue(provider.text("Hi", 1_000, 500))
        response = provider.model(price=PRICE).respond(HELLO, [])
        assert response.cost_usd == pytest.approx((1_000 * 2.0 + 500 * 8.0) / 1_000_000)

    def test_estimate_usd(self, provider: Provider) -> None:
        """The estimate is the prompt at four characters a token plus max_tokens of answer."""
        tool = ToolSpec(name="t", description="d", parameters={"type": "object"})
        messages = [Message(role="user", content="x" * 40)]
        # 40 + len("t") + len("d") + len('{"type": "object"}') = 60 characters: 15 tokens.
        estimate = provider.model(price=PRICE, max_tokens=100).estimate_usd(messages, [tool])
        assert estimate == pytest.approx((15 * 2.0 + 100 * 8.0) / 1_000_000)
        assert provider.server.requests == []

    def test_estimate_is_none_without_price(self, provider: Provider) -> None:
        """An unpriced model cannot estimate, so a budgeted run refuses it."""
        assert provider.model().estimate_usd(HELLO, [LOOKUP]) is None

    def test_rate_limit_then_success_is_retried(self, provider: Provider) -> None:
        """A 429 followed by an answer is retried by the SDK and succeeds."""
        provider.server.queue(provider.fail(429, "rate"), provider.text("ok"))
        assert provider.model().respond(HELLO, []).text == "ok"
        assert len(provider.server.requests) == 2

    def test_rate_limit_persisting(self, provider: Provider) -> None:
        """A 429 that outlasts the retries raises ModelRateLimited."""
        provider.server.queue(*[provider.fail(429, "rate", "slow down")] * 2)
        with pytest.raises(ModelRateLimited, match="slow down") as caught:
            provider.model(max_retries=1).respond(HELLO, [])
        assert caught.value.code == "model_rate_limited"
        assert len(provider.server.requests) == 2

    def test_server_error_is_unavailable(self, provider: Provider) -> None:
        """A 500 that outlasts the retries raises ModelUnavailable."""
        provider.server.queue(*[provider.fail(500, "server", "boom")] * 3)
        with pytest.raises(ModelUnavailable, match="boom") as caught:
            provider.model().respond(HELLO, [])
        assert caught.value.code == "model_unavailable"
        assert len(provider.server.requests) == 3

    def test_unauthorized_names_no_key(self, provider: Provider) -> None:
        """A 401 is a ModelError with a hint, and the key never appears in it."""
        provider.server.queue(provider.fail(401, "auth", f"Incorrect API key provided: {KEY}"))
        with pytest.raises(ModelError) as caught:
            provider.model().respond(HELLO, [])
        error = caught.value
        assert type(error) is ModelError
        assert "Incorrect API key" in error.message
        assert KEY not in str(error)
        assert error.hint is not None
        assert "API key" in error.hint
        assert error.__cause__ is not None
        assert len(provider.server.requests) == 1

    def test_not_found_hints_at_the_model_name(self, provider: Provider) -> None:
        """A 404 is a ModelError whose hint points at the model name and base_url."""
        provider.server.queue(provider.fail(404, "missing", "model not found"))
        with pytest.raises(ModelError, match="model not found") as caught:
            provider.model().respond(HELLO, [])
        assert caught.value.hint is not None
        assert "model name" in caught.value.hint

    def test_answer_from_another_api(self, provider: Provider) -> None:
        """A 200 that is not the API's JSON (a wrong base_url) is a ModelError, not a crash."""
        provider.server.queue(
            Reply(200, "<html>Welcome</html>", {"content-type": "text/html"}),
            Reply(200, "<html>Welcome</html>"),
        )
        model = provider.model()
        for _ in range(2):
            with pytest.raises(ModelError, match="the answer is not") as caught:
                model.respond(HELLO, [])
            assert caught.value.hint is not None
            assert "base_url" in caught.value.hint

    def test_nothing_listening_is_unavailable(self, provider: Provider) -> None:
        """A refused connection raises ModelUnavailable."""
        url = closed_port_url(provider.api_prefix)
        with pytest.raises(ModelUnavailable, match="no answer") as caught:
            provider.model(base_url=url, max_retries=0).respond(HELLO, [])
        assert caught.value.hint is not None
        assert "base_url" in caught.value.hint

    def test_missing_key_is_a_config_error(self, provider: Provider) -> None:
        """No key anywhere fails at construction, with a hint."""
        with pytest.raises(ConfigError) as caught:
            provider.model(api_key=None)
        assert caught.value.hint is not None
        assert "api_key" in caught.value.hint

    def test_missing_sdk_is_a_config_error(
        self, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the SDK installed, construction names the extra to install."""
        monkeypatch.setitem(sys.modules, provider.prefix, None)
        with pytest.raises(ConfigError) as caught:
            provider.model()
        assert caught.value.hint == f"pip install 'charter[{provider.prefix}]'"


class TestOpenAIModel:
    def test_request_shape(self, openai: Provider) -> None:
        """The SDK posts the model, the messages, max_tokens and the key; no unset options."""
        openai.server.queue(openai.text("Hi"))
        openai.model().respond(HELLO, [])
        [sent] = openai.server.requests
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.body == {
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
            ],
            "max_tokens": 1024,
        }

    def test_temperature_is_sent_when_set(self, openai: Provider) -> None:
        """A configured temperature reaches the server."""
        openai.server.queue(openai.text("Hi"))
        openai.model(temperature=0.2).respond(HELLO, [])
        assert openai.server.requests[0].body["temperature"] == 0.2

    def test_tool_call_round_trip(self, openai: Provider) -> None:
        """Tools go out as functions; calls come back parsed and go back with their results."""
        openai.server.queue(
            openai_reply(None, tool_calls=[("call_a", "lookup", '{"order": "A-1"}')]),
            openai.text("Order A-1 shipped."),
        )
        model = openai.model()
        first = model.respond(HELLO, [LOOKUP])
        assert first.tool_calls == (
            ToolCallSpec(call_id="call_a", tool="lookup", arguments={"order": "A-1"}),
        )
        assert first.text == ""
        history = [
            *HELLO,
            Message(role="assistant", content="", tool_calls=first.tool_calls),
            Message(role="tool", content='{"status": "shipped"}', tool_call_id="call_a"),
        ]
        assert model.respond(history, [LOOKUP]).text == "Order A-1 shipped."

        sent_first, sent_second = (r.body for r in openai.server.requests)
        assert sent_first["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Find an order.",
                    "parameters": LOOKUP.parameters,
                },
            }
        ]
        assistant, result = sent_second["messages"][2:]
        [call] = assistant["tool_calls"]
        assert assistant["role"] == "assistant"
        assert "content" not in assistant
        assert call["id"] == "call_a"
        assert call["type"] == "function"
        assert call["function"]["name"] == "lookup"
        assert json.loads(call["function"]["arguments"]) == {"order": "A-1"}
        assert result == {
            "role": "tool",
            "tool_call_id": "call_a",
            "content": '{"status": "shipped"}',
        }

    def test_malformed_arguments(self, openai: Provider) -> None:
        """Arguments that are not JSON raise ModelError naming the tool."""
        openai.server.queue(openai_reply(None, tool_calls=[("c1", "lookup", '{"order": ')]))
        with pytest.raises(ModelError, match=r"'lookup'.*not valid JSON"):
            openai.model().respond(HELLO, [LOOKUP])

    def test_arguments_that_are_not_an_object(self, openai: Provider) -> None:
        """Arguments that are JSON but not an object raise ModelError naming the tool."""
        openai.server.queue(openai_reply(None, tool_calls=[("c1", "lookup", "[1, 2]")]))
        with pytest.raises(ModelError, match=r"'lookup'.*list, not an object"):
            openai.model().respond(HELLO, [LOOKUP])

    def test_logprobs_give_confidence(self, openai: Provider) -> None:
        """With logprobs on, confidence is exp of the mean content-token logprob."""
        openai.server.queue(openai_reply("Yes", logprobs=[-0.1, -0.3, -0.2]))
        response = openai.model(logprobs=True).respond(HELLO, [])
        assert openai.server.requests[0].body["logprobs"] is True
        assert response.confidence == pytest.approx(math.exp(-0.2))

    def test_no_confidence_without_logprobs(self, openai: Provider) -> None:
        """With logprobs off none are asked for, and any sent are ignored."""
        openai.server.queue(openai_reply("Yes", logprobs=[-0.1]))
        assert openai.model().respond(HELLO, []).confidence is None
        assert "logprobs" not in openai.server.requests[0].body

    def test_openai_itself_gets_max_completion_tokens(self) -> None:
        """OpenAI's own API is sent `max_completion_tokens`, which its reasoning models need."""
        model = OpenAIModel("gpt-test", api_key=KEY)
        try:
            assert model._official
        finally:
            model.close()


class TestAnthropicModel:
    def test_request_shape(self, anthropic: Provider) -> None:
        """System text goes top-level; the key and API version go in headers."""
        anthropic.server.queue(anthropic.text("Hi"))
        anthropic.model().respond(HELLO, [])
        [sent] = anthropic.server.requests
        assert sent.path == "/v1/messages"
        auth = sent.headers.get("x-api-key") or sent.headers["authorization"]
        assert auth in {KEY, f"Bearer {KEY}"}
        assert "anthropic-version" in sent.headers
        assert sent.body == {
            "model": "test-model",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        }

    def test_tool_call_round_trip(self, anthropic: Provider) -> None:
        """Tools go out with input_schema; results return merged into one user message."""
        anthropic.server.queue(
            anthropic_reply(
                "Checking.",
                tool_uses=[("tu_1", "lookup", {"order": "A-1"}), ("tu_2", "lookup", {})],
            ),
            anthropic.text("Both shipped."),
        )
        model = anthropic.model()
        first = model.respond(HELLO, [LOOKUP])
        assert first.text == "Checking."
        assert first.tool_calls == (
            ToolCallSpec(call_id="tu_1", tool="lookup", arguments={"order": "A-1"}),
            ToolCallSpec(call_id="tu_2", tool="lookup", arguments={}),
        )
        history = [
            *HELLO,
            Message(role="assistant", content="Checking.", tool_calls=first.tool_calls),
            Message(role="tool", content="shipped", tool_call_id="tu_1"),
            Message(role="tool", content="shipped too", tool_call_id="tu_2"),
        ]
        assert model.respond(history, [LOOKUP]).text == "Both shipped."

        sent_first, sent_second = (r.body for r in anthropic.server.requests)
        assert sent_first["tools"] == [
            {"name": "lookup", "description": "Find an order.", "input_schema": LOOKUP.parameters}
        ]
        assert sent_second["system"] == "Be brief."
        assert sent_second["messages"][1:] == [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"order": "A-1"}},
                    {"type": "tool_use", "id": "tu_2", "name": "lookup", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "shipped"},
                    {"type": "tool_result", "tool_use_id": "tu_2", "content": "shipped too"},
                ],
            },
        ]

    def test_input_that_is_not_an_object(self, anthropic: Provider) -> None:
        """A tool input that is not a JSON object raises ModelError naming the tool."""
        anthropic.server.queue(anthropic_reply(tool_uses=[("tu_1", "lookup", "A-1")]))
        with pytest.raises(ModelError, match=r"'lookup'.*str, not an object"):
            anthropic.model().respond(HELLO, [LOOKUP])

    def test_overloaded_is_unavailable(self, anthropic: Provider) -> None:
        """A 529 (overloaded) that outlasts the retries raises ModelUnavailable."""
        anthropic.server.queue(*[anthropic_error(529, "Overloaded", type_="overloaded_error")] * 2)
        with pytest.raises(ModelUnavailable, match="Overloaded"):
            anthropic.model(max_retries=1).respond(HELLO, [])


def test_importing_the_models_loads_no_sdk() -> None:
    """`charter.models` and the provider modules import without the SDKs being loaded."""
    code = (
        "import sys, charter.models, charter.models._openai, charter.models._anthropic;"
        "print(sorted({'openai', 'anthropic'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
