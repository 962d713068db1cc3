"""Token prices (USD per million tokens) and the cost of a usage.

The shipped table is `llm/prices.json` (keyed by the provider's model id); the configuration's `prices` override
it by `provider/model` or by model id, and its `default` entry prices any model that neither names. Lookups are
resolved once per hop and cached. A model without a price has no cost (`None`), never a cost of zero: the hub
refuses such a model where a US-dollar budget applies.

A `Price` has one rate per kind of token (`llm.schema.Usage` says what each count holds):

- `input`: uncached input tokens; `output`: output tokens other than reasoning.
- `cache_read`, `cache_write_5m`, `cache_write_1h`: input tokens read from a cache and written to it. When a
  table entry does not list them, they follow the convention of the model's family (`cache_rates`):
  Claude models (Anthropic, Bedrock, Vertex) read at 0.1 times the input price and write at 1.25 times it for the
  5-minute cache and twice it for the 1-hour one; OpenAI models read at half the input price, Gemini models at a
  quarter of it, and neither charges extra for a write (the input price); any other model is charged the input
  price for every cached token, no discount assumed.
- `reasoning`: reasoning tokens, at the output price unless listed (every provider bills them as output today).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llm.config import DEFAULT_PRICE, LLMConfig, PriceConfig
from llm.schema import Usage

__all__ = ["Price", "PriceTable", "cache_rates", "load_shipped_prices", "unpriced_deployments"]

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
_VERSION_SUFFIX = re.compile(r"^-(?:\d|latest|preview)")
_OPENAI_FAMILY = re.compile(r"^(?:gpt-|o\d|chatgpt-|codex-)")


def cache_rates(model: str, input_price: float) -> tuple[float, float, float]:
    """The (cache read, 5-minute write, 1-hour write) prices of `model`'s family for an input price (see above)."""
    name = _REGION_PREFIX.sub("", model).lower()
    if "claude" in name:
        return (input_price * 0.1, input_price * 1.25, input_price * 2.0)
    if _OPENAI_FAMILY.match(name):
        return (input_price * 0.5, input_price, input_price)
    if name.startswith("gemini"):
        return (input_price * 0.25, input_price, input_price)
    return (input_price, input_price, input_price)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of each kind; build one with `Price.of` to fill the cache rates by convention."""

    input: float
    output: float
    cache_read: float | None = None
    """Defaults to `input`, as does each cache rate left out (`Price.of` fills them by convention)."""
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    reasoning: float | None = None
    """Defaults to `output`."""

    @classmethod
    def of(
        cls,
        model: str,
        input: float,
        output: float,
        *,
        cache_read: float | None = None,
        cache_write_5m: float | None = None,
        cache_write_1h: float | None = None,
        reasoning: float | None = None,
    ) -> Price:
        """A price for `model` whose unlisted cache rates follow the model family's convention."""
        read, five, hour = cache_rates(model, input)
        return cls(
            input,
            output,
            read if cache_read is None else cache_read,
            five if cache_write_5m is None else cache_write_5m,
            hour if cache_write_1h is None else cache_write_1h,
            reasoning,
        )

    def cost(self, usage: Usage) -> float:
        """USD cost of `usage`: each token at the rate of its kind, none twice."""
        inp = self.input
        out = self.output
        if not (usage.cached_tokens or usage.cache_write_5m_tokens or usage.cache_write_1h_tokens):
            if not usage.reasoning_tokens:  # the common case: plain input and output
                return (usage.prompt_tokens * inp + usage.completion_tokens * out) / 1_000_000
        read = inp if self.cache_read is None else self.cache_read
        five = inp if self.cache_write_5m is None else self.cache_write_5m
        hour = inp if self.cache_write_1h is None else self.cache_write_1h
        think = out if self.reasoning is None else self.reasoning
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        total = (
            usage.uncached_tokens * inp
            + usage.cached_tokens * read
            + usage.cache_write_5m_tokens * five
            + usage.cache_write_1h_tokens * hour
            + (usage.completion_tokens - reasoning) * out
            + reasoning * think
        )
        return total / 1_000_000


def _price(model: str, entry: Mapping[str, Any] | PriceConfig) -> Price:
    """A table entry or a configured price as a `Price` for `model`."""
    values = entry.model_dump() if isinstance(entry, PriceConfig) else entry

    def rate(name: str) -> float | None:
        value = values.get(name)
        return None if value is None else float(value)

    return Price.of(
        model,
        float(values["input"]),
        float(values["output"]),
        cache_read=rate("cache_read"),
        cache_write_5m=rate("cache_write_5m"),
        cache_write_1h=rate("cache_write_1h"),
        reasoning=rate("reasoning"),
    )


def load_shipped_prices() -> dict[str, Price]:
    """The price table shipped with the package."""
    raw = json.loads(resources.files("llm").joinpath("prices.json").read_text(encoding="utf-8"))
    return {model: _price(model, entry) for model, entry in raw["models"].items()}


class PriceTable:
    """Shipped prices plus configured overrides and default; `price(provider, model)` is cached."""

    def __init__(
        self, overrides: Mapping[str, PriceConfig] | None = None, shipped: Mapping[str, Price] | None = None
    ) -> None:
        self._table = dict(load_shipped_prices() if shipped is None else shipped)
        configured = dict(overrides or {})
        default = configured.pop(DEFAULT_PRICE, None)
        self._default = default
        self._overrides = {name: _price(name.rpartition("/")[2], entry) for name, entry in configured.items()}
        self._cache: dict[tuple[str, str], Price | None] = {}

    def price(self, provider: str, model: str) -> Price | None:
        """The price of `model` on `provider`: configured, shipped, else the configured default; None when none."""
        key = (provider, model)
        if key not in self._cache:
            found = self._lookup(provider, model)
            if found is None and self._default is not None:
                found = _price(model, self._default)
            self._cache[key] = found
        return self._cache[key]

    def known(self, provider: str, model: str) -> bool:
        """Whether `model` on `provider` has a price of its own (configured or shipped), not only the default."""
        return self._lookup(provider, model) is not None

    def _lookup(self, provider: str, model: str) -> Price | None:
        for name in (f"{provider}/{model}", model):
            if name in self._overrides:
                return self._overrides[name]
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


def _deployments(config: LLMConfig) -> Iterator[tuple[str, str]]:
    """Every `(provider, model)` the configuration can route to: aliases' deployments and fallbacks, and the
    providers' listed models."""
    for alias in config.models.values():
        for dep in alias.deployments:
            yield dep.provider, dep.model
        for ref in alias.fallbacks:
            provider, sep, model = ref.partition("/")
            if sep and provider in config.providers:
                yield provider, model
    for name, provider in config.providers.items():
        for model in provider.models:
            yield name, model


def unpriced_deployments(config: LLMConfig, table: PriceTable | None = None) -> list[str]:
    """The `provider/model` deployments of `config` without a price (the configured default counts as one)."""
    prices = table or PriceTable(config.prices)
    seen: dict[str, None] = {}
    for provider, model in _deployments(config):
        if prices.price(provider, model) is None:
            seen.setdefault(f"{provider}/{model}")
    return list(seen)
