"""What an LLM call costs, as the limits and audit stages see it, and the rule that no model is free.

`call_usage` turns the router's token usage and cost into the hub's `Usage`: `tokens` counts every token the model
processed (the cache reads and writes and the reasoning included, see `hub.governance.usage.Usage`), `usd` the
cost at the served deployment's price, and a deployment without a price reports `priced=False` (a cost unknown,
never a cost of zero).

`PricedHops` is the hop predicate for a caller that a US-dollar budget applies to: on top of the key's own filters
it lets through only deployments that have a price (listed, or the configured default), so an unpriced model is
refused before anything is sent instead of being served for free. `refusal()` names the deployments it kept out,
for the error when nothing else could serve.
"""

from __future__ import annotations

from collections.abc import Callable

from hub.errors import PriceMissing
from hub.governance.usage import Usage
from llm import Hop, Usage as TokenUsage
from llm.pricing import Price

__all__ = ["PricedHops", "call_usage", "route_headers"]


def call_usage(tokens: TokenUsage, cost: float | None) -> Usage:
    """One LLM call's usage for the limits and the request log; `cost` None means the model has no price."""
    return Usage(
        requests=1,
        tokens=tokens.total_tokens,
        usd=cost or 0.0,
        cache_read_tokens=tokens.cached_tokens,
        cache_write_5m_tokens=tokens.cache_write_5m_tokens,
        cache_write_1h_tokens=tokens.cache_write_1h_tokens,
        reasoning_tokens=tokens.reasoning_tokens,
        output_tokens=tokens.completion_tokens,
        priced=cost is not None,
    )


class PricedHops:
    """A hop predicate: `allow`'s hops that have a price; remembers the ones refused only for lacking one."""

    __slots__ = ("_allow", "_price", "missing")

    def __init__(self, allow: Callable[[Hop], bool], price: Callable[[Hop], Price | None]) -> None:
        self._allow = allow
        self._price = price
        self.missing: dict[str, None] = {}
        """`provider/model` of the deployments refused for lacking a price, in the order they were met."""

    def __call__(self, hop: Hop) -> bool:
        if not self._allow(hop):
            return False
        if self._price(hop) is None:
            self.missing.setdefault(f"{hop.provider}/{hop.model}")
            return False
        return True

    def refusal(self) -> PriceMissing:
        """The error for a call that no priced deployment could take."""
        names = ", ".join(list(self.missing)[:5])
        return PriceMissing(
            f"no price for {names}: a USD budget applies to this key, so a model without a price is not served; "
            "add its price under [prices] in the configuration, or a [prices.default]"
        )


def route_headers(hop: Hop, cost: float | None, upstream_ms: float) -> dict[str, str]:
    """The response headers that say where an LLM call went and what it cost (cost only when it is known)."""
    headers = {
        "x-agenthub-provider": hop.provider,
        "x-agenthub-model": hop.model,
        "x-agenthub-upstream-ms": f"{upstream_ms:.3f}",
    }
    if cost is not None:
        headers["x-agenthub-cost-usd"] = f"{cost:.8f}"
    return headers
