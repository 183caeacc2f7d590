"""Anthropic's Messages API with tool use, through the official `anthropic` SDK.

The SDK is imported when a model is built, so `import charter` needs no extra;
`pip install 'charter[anthropic]'` installs it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from charter._events import ToolCallSpec
from charter.exceptions import ConfigError, ModelError
from charter.models._base import Message, ModelResponse, ToolSpec, Usage
from charter.models._provider import prompt_tokens, typed_error

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message as AnthropicMessage
    from anthropic.types import MessageParam, ToolParam

    from charter.models._pricing import ModelPrice

__all__ = ["AnthropicModel"]

_KEY_HINT = "pass api_key= or set ANTHROPIC_API_KEY"
_NOT_THIS_API = "check that base_url is the Messages API (without /v1)"
_HINTS = {
    401: "check the API key",
    403: "check the API key's permissions and the model's access",
    404: "check the model name and base_url (without /v1)",
}


class AnthropicModel:
    """A Claude model through the Messages API.

    It takes no `temperature`: API version 2026-10-21, which the SDK sends, rejects sampling
    parameters, and the SDK no longer offers them.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 1024,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        price: ModelPrice | None = None,
    ) -> None:
        """Create the model; no request is made yet.

        Args:
            model: The model's name (`claude-haiku-4-5`).
            api_key: The key; None lets the SDK find one (`ANTHROPIC_API_KEY`, a profile).
            base_url: The server, without `/v1`; None means Anthropic.
            max_tokens: The most one turn may answer; also bounds `estimate_usd`.
            timeout_s: Seconds to wait for one HTTP attempt.
            max_retries: How often the SDK retries a 429, 5xx or dropped connection.
            price: Prices each turn; None makes turns cost 0.0 and estimates None.

        Raises:
            ConfigError: The SDK is not installed, or there is no API key.
        """
        try:
            import anthropic  # noqa: PLC0415 - an optional extra, and slow to import
        except ImportError as exc:
            raise ConfigError(
                "the Anthropic provider needs the anthropic SDK",
                hint="pip install 'charter[anthropic]'",
            ) from exc
        try:
            self._client = anthropic.Anthropic(
                api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout_s
            )
        except anthropic.AnthropicError as exc:  # a missing profile or identity file
            raise ConfigError(
                f"anthropic/{model}: cannot create the client: {exc}", hint=_KEY_HINT
            ) from exc
        client = self._client
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            # The SDK would only fail at the first request, inside a run; fail at setup instead.
            client.close()
            raise ConfigError(f"anthropic/{model}: no API key", hint=_KEY_HINT)
        self._model = model
        self._max_tokens = max_tokens
        self._max_retries = max_retries
        self._price = price

    @property
    def name(self) -> str:
        """`anthropic/<model>`."""
        return f"anthropic/{self._model}"

    @property
    def kind(self) -> Literal["provider"]:
        """Always 'provider'."""
        return "provider"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        """Send the conversation and return the model's turn.

        Raises:
            ModelRateLimited: Still 429 after the SDK's retries.
            ModelUnavailable: A 5xx (or 529 overloaded), a timeout or no connection, after
                the SDK's retries.
            ModelError: Any other failure, or a tool input that is not a JSON object.
        """
        import anthropic  # noqa: PLC0415 - loaded by __init__; imported here for its types

        system, turns = _messages(messages)
        try:
            answer = self._client.messages.create(
                model=self._model,
                max_tokens=self._max_tokens,
                messages=turns,
                system=system or anthropic.omit,
                tools=[_tool(t) for t in tools] if tools else anthropic.omit,
            )
        except anthropic.APIError as exc:
            raise self._charter_error(exc) from exc
        except json.JSONDecodeError as exc:
            raise ModelError(f"{self.name}: the answer is not JSON", hint=_NOT_THIS_API) from exc
        # The SDK does not validate answers, so a server that is not this API gets this far.
        if not isinstance(answer, anthropic.types.Message) or not isinstance(answer.content, list):
            raise ModelError(f"{self.name}: the answer is not a message", hint=_NOT_THIS_API)
        return self._response(answer)

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float | None:
        """The prompt at four characters a token plus `max_tokens` of answer; None unpriced."""
        if self._price is None:
            return None
        return self._price.estimate(prompt_tokens(messages, tools), self._max_tokens)

    def close(self) -> None:
        """Close the SDK's connection pool."""
        self._client.close()

    def _response(self, answer: AnthropicMessage) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCallSpec] = []
        for block in answer.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                arguments: Any = block.input  # unvalidated: may be any JSON
                if not isinstance(arguments, dict):
                    raise ModelError(
                        f"{self.name}: the input of tool {block.name!r} is a JSON "
                        f"{type(arguments).__name__}, not an object"
                    )
                calls.append(ToolCallSpec(call_id=block.id, tool=block.name, arguments=arguments))
        used = answer.usage
        # Cached prompt tokens are reported apart from `input_tokens`; all were read.
        prompt = (
            used.input_tokens
            + (used.cache_creation_input_tokens or 0)
            + (used.cache_read_input_tokens or 0)
        )
        usage = Usage(prompt_tokens=prompt, completion_tokens=used.output_tokens)
        return ModelResponse(
            text="".join(texts),
            tool_calls=tuple(calls),
            usage=usage,
            cost_usd=self._price.cost(usage) if self._price is not None else 0.0,
        )

    def _charter_error(self, exc: anthropic.APIError) -> ModelError:
        import anthropic  # noqa: PLC0415 - loaded by __init__

        detail = exc.message
        if isinstance(exc, anthropic.APIStatusError) and exc.api_message:
            detail = exc.api_message
        if isinstance(exc, anthropic.APIConnectionError) and exc.__cause__ is not None:
            detail = f"{detail} ({exc.__cause__})"
        return typed_error(
            where=f"{self.name} at {self._client.base_url.host}",
            detail=detail,
            secrets=(self._client.api_key, self._client.auth_token),
            rate_limited=isinstance(exc, anthropic.RateLimitError),
            unreachable=isinstance(exc, anthropic.APIConnectionError),
            status=exc.status_code if isinstance(exc, anthropic.APIStatusError) else None,
            max_retries=self._max_retries,
            hints=_HINTS,
        )


def _messages(messages: list[Message]) -> tuple[str, list[MessageParam]]:
    """The system prompt, and the turns in the API's shape."""
    system: list[str] = []
    turns: list[tuple[Literal["user", "assistant"], list[dict[str, Any]]]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
            continue
        if m.role == "assistant":
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            blocks += [
                {"type": "tool_use", "id": c.call_id, "name": c.tool, "input": c.arguments}
                for c in m.tool_calls
            ]
            turns.append(("assistant", blocks))
            continue
        if m.role == "tool":
            if m.tool_call_id is None:
                raise ModelError("a tool message has no tool_call_id")
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
        else:
            block = {"type": "text", "text": m.content}
        # The API wants the results of one turn's calls in one user message, results first.
        if turns and turns[-1][0] == "user":
            turns[-1][1].append(block)
        else:
            turns.append(("user", [block]))
    params: list[Any] = [{"role": role, "content": blocks} for role, blocks in turns]
    return "\n\n".join(system), params


def _tool(spec: ToolSpec) -> ToolParam:
    return {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
