"""A model that plays back a declared script: for tests and the offline demo.

It is labelled `scripted:<name>` wherever it appears, so no one mistakes its output for a real
model's. Which turn it plays is the number of assistant messages already in the conversation,
so the same conversation always gets the same answer (replay depends on that).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from charter._events import ToolCallSpec
from charter.exceptions import ModelError
from charter.models._base import Message, ModelResponse, ToolSpec, Usage

__all__ = ["ScriptedModel", "ScriptedTurn"]


@dataclass(frozen=True, kw_only=True)
class ScriptedTurn:
    """One turn of a script: tool calls to make, or final text."""

    text: str = ""
    calls: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)
    """(tool name, arguments) pairs."""
    confidence: float | None = None
    """The confidence signal the turn reports, for routing rules."""

    @classmethod
    def call(cls, tool: str, **arguments: Any) -> ScriptedTurn:  # noqa: ANN401 - JSON values
        """A turn that makes one tool call."""
        return cls(calls=((tool, arguments),))

    @classmethod
    def say(cls, text: str) -> ScriptedTurn:
        """A final turn."""
        return cls(text=text)


Script = Sequence[ScriptedTurn] | Callable[[list[Message]], ScriptedTurn]


def _tokens(text: str) -> int:
    # Roughly four characters a token: close enough for a simulated cost, and deterministic.
    return max(1, len(text) // 4)


class ScriptedModel:
    """Plays back a list of turns (or asks a function for the next one)."""

    def __init__(
        self,
        script: Script,
        *,
        name: str = "default",
        usd_per_mtok_in: float = 0.0,
        usd_per_mtok_out: float = 0.0,
        max_tokens: int = 512,
    ) -> None:
        """Create the model.

        Args:
            script: The turns to play, or a function from the conversation to the next turn.
            name: Shown as `scripted:<name>`.
            usd_per_mtok_in: Simulated price per million prompt tokens.
            usd_per_mtok_out: Simulated price per million completion tokens.
            max_tokens: The most a turn may answer, for cost estimates.
        """
        self._script = script
        self._name = f"scripted:{name}"
        self._prices = (usd_per_mtok_in, usd_per_mtok_out)
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        """`scripted:<name>`."""
        return self._name

    @property
    def kind(self) -> Literal["scripted"]:
        """Always 'scripted'."""
        return "scripted"

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        """The next scripted turn for this conversation."""
        turn_no = sum(1 for m in messages if m.role == "assistant")
        if callable(self._script):
            turn = self._script(messages)
        elif turn_no < len(self._script):
            turn = self._script[turn_no]
        else:
            raise ModelError(f"{self._name}: script has no turn {turn_no + 1}")
        calls = tuple(
            ToolCallSpec(call_id=f"call_{turn_no + 1}_{i + 1}", tool=tool, arguments=args)
            for i, (tool, args) in enumerate(turn.calls)
        )
        prompt = _prompt_tokens(messages, tools)
        completion = _tokens(turn.text + json.dumps([c.arguments for c in calls]))
        cost = (prompt * self._prices[0] + completion * self._prices[1]) / 1_000_000
        return ModelResponse(
            text=turn.text,
            tool_calls=calls,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
            cost_usd=cost,
            confidence=turn.confidence,
        )

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float:
        """The prompt as counted plus `max_tokens` of answer, at the simulated prices."""
        prompt = _prompt_tokens(messages, tools)
        return (prompt * self._prices[0] + self._max_tokens * self._prices[1]) / 1_000_000


def _prompt_tokens(messages: list[Message], tools: list[ToolSpec]) -> int:
    return sum(_tokens(m.content) for m in messages) + sum(
        _tokens(json.dumps(t.parameters)) for t in tools
    )
