"""Models behind one interface; the scripted model for tests and the offline demo."""

from __future__ import annotations

from charter.models._base import Message, Model, ModelResponse, ToolSpec, Usage
from charter.models._scripted import ScriptedModel, ScriptedTurn

__all__ = [
    "Message",
    "Model",
    "ModelResponse",
    "ScriptedModel",
    "ScriptedTurn",
    "ToolSpec",
    "Usage",
]
