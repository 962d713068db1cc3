"""Token prices (USD per million tokens) and cost of a usage.

The shipped table is `llm/prices.json` (keyed by the provider's model id); the configuration's `prices`
override it by `provider/model` or by model id. Lookups are resolved once per hop and cached.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from llm.config import PriceConfig
from llm.schema import Usage

__all__ = ["Price", "PriceTable", "load_shipped_prices"]

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
_VERSION_SUFFIX = re.compile(r"^-(?:\d|latest|preview)")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float

    def cost(self, usage: Usage) -> float:
        """USD cost of `usage`."""
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1_000_000


def load_shipped_prices() -> dict[str, Price]:
    """The price table shipped with the package."""
    raw = json.loads(resources.files("llm").joinpath("prices.json").read_text(encoding="utf-8"))
    return {model: Price(float(p["input"]), float(p["output"])) for model, p in raw["models"].items()}


class PriceTable:
    """Shipped prices plus configured overrides; `price(provider, model)` is cached."""

    def __init__(
        self, overrides: dict[str, PriceConfig] | None = None, shipped: dict[str, Price] | None = None
    ) -> None:
        self._table = dict(load_shipped_prices() if shipped is None else shipped)
        self._overrides = {k: Price(v.input, v.output) for k, v in (overrides or {}).items()}
        self._cache: dict[tuple[str, str], Price | None] = {}

    def price(self, provider: str, model: str) -> Price | None:
        """The price of `model` on `provider`, or None when unknown."""
        key = (provider, model)
        if key not in self._cache:
            self._cache[key] = self._lookup(provider, model)
        return self._cache[key]

    def _lookup(self, provider: str, model: str) -> Price | None:
        for table, name in ((self._overrides, f"{provider}/{model}"), (self._overrides, model)):
            if name in table:
                return table[name]
        bare = _REGION_PREFIX.sub("", model)
        for name in (model, bare):
            if name in self._table:
                return self._table[name]
        # A dated or versioned id (gpt-4o-2024-08-06) takes the price of its longest listed base name.
        best: str | None = None
        for name in self._table:
            if bare.startswith(name) and _VERSION_SUFFIX.match(bare[len(name) :]) and len(name) > len(best or ""):
                best = name
        return self._table[best] if best else None
