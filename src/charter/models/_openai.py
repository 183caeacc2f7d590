"""OpenAI-compatible chat completions with tool calls, through the official `openai` SDK.

Any server that speaks `POST /v1/chat/completions` works: OpenAI itself, vLLM, Ollama, the
llama.cpp server. The SDK is imported when a model is built, so `import charter` needs no
extra; `pip install 'charter[openai]'` installs it.
"""

from __future__ import annotations

import json
import math
from statistics import fmean
from typing import TYPE_CHECKING, Literal

from charter._events import ToolCallSpec
from charter.exceptions import ConfigError, ModelError
from charter.models._base import Message, ModelResponse, ToolSpec, Usage
from charter.models._provider import prompt_tokens, typed_error

if TYPE_CHECKING:
    import openai
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionMessageFunctionToolCallParam,
        ChatCompletionMessageParam,
        ChatCompletionMessageToolCallUnion,
        ChatCompletionToolParam,
    )

    from charter.models._pricing import ModelPrice

__all__ = ["OpenAIModel"]

_OFFICIAL_HOST = "api.openai.com"
_NOT_THIS_API = "check that base_url is the chat-completions API (it usually ends in /v1)"
_HINTS = {
    401: "check the API key",
    403: "check the API key's permissions and the model's access",
    404: "check the model name and base_url (it usually ends in /v1)",
}


class OpenAIModel:
    """A chat-completions model at OpenAI or any OpenAI-compatible server."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        price: ModelPrice | None = None,
        logprobs: bool = False,
    ) -> None:
        """Create the model; no request is made yet.

        Args:
            model: The model's name at the server (`gpt-4.1-mini`, `Qwen/Qwen3-8B`).
            api_key: The key; None lets the SDK read `OPENAI_API_KEY`. Local servers that
                check no key still need a non-empty one (any string).
            base_url: The server, such as `http://localhost:8000/v1`; None means OpenAI.
            max_tokens: The most one turn may answer; also bounds `estimate_usd`.
            temperature: Sampling temperature; None leaves the server's default.
            timeout_s: Seconds to wait for one HTTP attempt.
            max_retries: How often the SDK retries a 429, 5xx or dropped connection.
            price: Prices each turn; None makes turns cost 0.0 and estimates None.
            logprobs: Ask for token log-probabilities and report `confidence` from them.

        Raises:
            ConfigError: The SDK is not installed, or there is no API key.
        """
        try:
            import openai  # noqa: PLC0415 - an optional extra, and slow to import
        except ImportError as exc:
            raise ConfigError(
                "the OpenAI provider needs the openai SDK", hint="pip install 'charter[openai]'"
            ) from exc
        try:
            self._client = openai.OpenAI(
                api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout_s
            )
        except openai.OpenAIError as exc:
            raise ConfigError(
                f"openai/{model}: cannot create the client: {exc}",
                hint="pass api_key= or set OPENAI_API_KEY; a local server takes any non-empty key",
            ) from exc
        self._model = model
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._max_retries = max_retries
        self._price = price
        self._logprobs = logprobs
        # OpenAI's reasoning models refuse `max_tokens`, while some compatible servers know
        # only `max_tokens`: send each the field it accepts.
        self._official = self._client.base_url.host == _OFFICIAL_HOST

    @property
    def name(self) -> str:
        """`openai/<model>`."""
        return f"openai/{self._model}"

    @property
    def kind(self) -> Literal["provider"]:
        """Always 'provider'."""
        return "provider"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        """Send the conversation and return the model's turn.

        Raises:
            ModelRateLimited: Still 429 after the SDK's retries.
            ModelUnavailable: A 5xx, a timeout or no connection, after the SDK's retries.
            ModelError: Any other failure, or tool arguments that are not a JSON object.
        """
        import openai  # noqa: PLC0415 - loaded by __init__; imported here for its types

        try:
            completion = self._client.chat.completions.create(
                model=self._model,
                messages=_messages(messages),
                tools=[_tool(t) for t in tools] if tools else openai.omit,
                temperature=openai.omit if self._temperature is None else self._temperature,
                max_tokens=openai.omit if self._official else self._max_tokens,
                max_completion_tokens=self._max_tokens if self._official else openai.omit,
                logprobs=True if self._logprobs else openai.omit,
            )
        except openai.APIError as exc:
            raise self._charter_error(exc) from exc
        except json.JSONDecodeError as exc:
            raise ModelError(f"{self.name}: the answer is not JSON", hint=_NOT_THIS_API) from exc
        if not isinstance(completion, openai.types.chat.ChatCompletion):
            raise ModelError(f"{self.name}: the answer is not a completion", hint=_NOT_THIS_API)
        return self._response(completion, messages, tools)

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float | None:
        """The prompt at four characters a token plus `max_tokens` of answer; None unpriced."""
        if self._price is None:
            return None
        return self._price.estimate(prompt_tokens(messages, tools), self._max_tokens)

    def close(self) -> None:
        """Close the SDK's connection pool."""
        self._client.close()

    def _response(
        self, completion: ChatCompletion, messages: list[Message], tools: list[ToolSpec]
    ) -> ModelResponse:
        if not completion.choices:
            raise ModelError(f"{self.name}: the response has no choices")
        choice = completion.choices[0]
        truncated = choice.finish_reason == "length"
        calls = tuple(
            self._call(raw, i, truncated=truncated)
            for i, raw in enumerate(choice.message.tool_calls or ())
        )
        text = choice.message.content or choice.message.refusal or ""
        if (used := completion.usage) is not None:
            usage = Usage(
                prompt_tokens=used.prompt_tokens, completion_tokens=used.completion_tokens
            )
        else:  # a compatible server may omit usage; the upper estimate keeps budgets honest
            usage = Usage(
                prompt_tokens=prompt_tokens(messages, tools), completion_tokens=self._max_tokens
            )
        confidence = None
        if self._logprobs and choice.logprobs is not None and choice.logprobs.content:
            confidence = math.exp(fmean(t.logprob for t in choice.logprobs.content))
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=usage,
            cost_usd=self._price.cost(usage) if self._price is not None else 0.0,
            confidence=confidence,
        )

    def _call(
        self, raw: ChatCompletionMessageToolCallUnion, index: int, *, truncated: bool
    ) -> ToolCallSpec:
        if raw.type != "function":
            raise ModelError(f"{self.name}: unsupported tool call type {raw.type!r}")
        tool = raw.function.name
        hint = "the answer hit max_tokens; raise max_tokens" if truncated else None
        # An empty string holds no arguments; reading it as {} spares a parameterless tool.
        source = raw.function.arguments.strip() or "{}"
        try:
            arguments = json.loads(source)
        except (ValueError, TypeError) as exc:
            raise ModelError(
                f"{self.name}: the arguments of tool {tool!r} are not valid JSON: {exc}", hint=hint
            ) from exc
        if not isinstance(arguments, dict):
            raise ModelError(
                f"{self.name}: the arguments of tool {tool!r} are a JSON "
                f"{type(arguments).__name__}, not an object",
                hint=hint,
            )
        # Replay pairs results with calls by id, so a server that sends none gets a stable one.
        return ToolCallSpec(call_id=raw.id or f"call_{index + 1}", tool=tool, arguments=arguments)

    def _charter_error(self, exc: openai.APIError) -> ModelError:
        import openai  # noqa: PLC0415 - loaded by __init__

        detail = exc.message
        if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
            detail = exc.body["message"]
        if isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
            detail = f"{detail} ({exc.__cause__})"
        return typed_error(
            where=f"{self.name} at {self._client.base_url.host}",
            detail=detail,
            secrets=(self._client.api_key,),
            rate_limited=isinstance(exc, openai.RateLimitError),
            unreachable=isinstance(exc, openai.APIConnectionError),
            status=exc.status_code if isinstance(exc, openai.APIStatusError) else None,
            max_retries=self._max_retries,
            hints=_HINTS,
        )


def _messages(messages: list[Message]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": m.content})
        elif m.role == "user":
            out.append({"role": "user", "content": m.content})
        elif m.role == "tool":
            if m.tool_call_id is None:
                raise ModelError("a tool message has no tool_call_id")
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif not m.tool_calls:
            out.append({"role": "assistant", "content": m.content})
        else:
            calls: list[ChatCompletionMessageFunctionToolCallParam] = [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.tool, "arguments": json.dumps(c.arguments)},
                }
                for c in m.tool_calls
            ]
            # `content` may be left out when there are tool calls, and some servers reject "".
            if m.content:
                out.append({"role": "assistant", "content": m.content, "tool_calls": calls})
            else:
                out.append({"role": "assistant", "tool_calls": calls})
    return out


def _tool(spec: ToolSpec) -> ChatCompletionToolParam:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
        },
    }
