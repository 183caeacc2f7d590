"""The model interface: messages and tool specs in; text, tool calls and token usage out.

Providers (OpenAI-compatible, Anthropic) and the scripted model all implement `Model`; the run
loop knows nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from charter._events import ToolCallSpec

__all__ = ["Message", "Model", "ModelResponse", "ToolSpec", "Usage"]


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message of a conversation."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCallSpec, ...] = ()
    """For `assistant`: the calls it asked for."""
    tool_call_id: str | None = None
    """For `tool`: which call this answers."""


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool as a model sees it: name, description, JSON schema of the input."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Tokens used by one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    """One model turn."""

    text: str = ""
    tool_calls: tuple[ToolCallSpec, ...] = ()
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    """Priced by the model from its price table; 0.0 when it has no price."""
    confidence: float | None = None
    """The model's confidence in this turn, 0..1, where the provider gives a signal (token
    log-probabilities); routing rules may send a low-confidence turn to a stronger model."""


class Model(Protocol):
    """Anything that answers a conversation."""

    @property
    def name(self) -> str:
        """Provider-qualified model name, recorded on every run."""
        ...

    @property
    def kind(self) -> Literal["scripted", "provider"]:
        """'scripted' for models that play back a script; shown wherever the model appears."""
        ...

    def respond(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        """Answer one turn. Raise `ModelError` (or a subclass) for failures."""
        ...

    def estimate_usd(self, messages: list[Message], tools: list[ToolSpec]) -> float | None:
        """An upper estimate of one turn's cost before it is made, for budget reservations.

        None when the model has no price: a run with a budget then refuses to call it.
        """
        ...
