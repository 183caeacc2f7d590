"""The price table: what one model call costs, from its token usage.

Prices change, so they are configuration, never code: a YAML file the contract names
(`prices: prices.yaml`) mapping each model name to its price per million tokens.

    models:
      gpt-4.1-mini: {input_per_mtok: 0.40, output_per_mtok: 1.60}
      claude-haiku-4-5: {input_per_mtok: 1.00, output_per_mtok: 5.00}

A model missing from the table has no price, and a run that has a budget refuses to call it
(fail closed): a spend cap over calls of unknown cost would be a cap in name only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from charter._contract import describe_error
from charter._files import read_data
from charter.exceptions import ConfigError

if TYPE_CHECKING:
    from charter.models._base import Usage

__all__ = ["ModelPrice", "PriceTable"]


class ModelPrice(BaseModel):
    """One model's price in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, usage: Usage) -> float:
        """The cost of one call's usage."""
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000

    def estimate(self, prompt_tokens: int, max_completion_tokens: int) -> float:
        """An upper estimate before the call: the prompt plus the most it may answer."""
        return (
            prompt_tokens * self.input_per_mtok + max_completion_tokens * self.output_per_mtok
        ) / 1_000_000


class PriceTable(BaseModel):
    """Model name -> price. Build one with `load`, or directly in code and tests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelPrice] = Field(default_factory=dict)

    def price(self, model: str) -> ModelPrice | None:
        """The price of `model`, by its bare or provider-qualified name (`openai/gpt-4.1`)."""
        found = self.models.get(model)
        if found is None and "/" in model:
            found = self.models.get(model.split("/", 1)[1])
        return found

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a price table file.

        Raises:
            ConfigError: The file is missing, not YAML, or not a price table; the message
                names the file and the failing key.
        """
        file = Path(path)
        raw = read_data(file, error=ConfigError, what="price table")
        try:
            return cls.model_validate(raw or {})
        except ValidationError as exc:
            problems = "; ".join(describe_error(e) for e in exc.errors())
            raise ConfigError(
                f"{file}: price table is invalid: {problems}",
                hint="models: {NAME: {input_per_mtok: USD, output_per_mtok: USD}}",
            ) from exc
