"""Models behind one interface; the scripted model for tests and the offline demo."""

from __future__ import annotations

from charter.models._anthropic import AnthropicModel
from charter.models._base import Message, Model, ModelResponse, ToolSpec, Usage
from charter.models._openai import OpenAIModel
from charter.models._pricing import ModelPrice, PriceTable
from charter.models._scripted import ScriptedModel, ScriptedTurn

__all__ = [
    "AnthropicModel",
    "Message",
    "Model",
    "ModelPrice",
    "ModelResponse",
    "OpenAIModel",
    "PriceTable",
    "ScriptedModel",
    "ScriptedTurn",
    "ToolSpec",
    "Usage",
]
