"""limits: rate limits and budgets on every level (key, team, customer) for every metered call.

Reserve before `call_next`, settle with the actual usage after, refund when the call fails or the caller
goes away: the pairing lives in one `try` so no path can leak a reservation. Denials become the hub's
`RateLimited` (429 with `Retry-After`) and `BudgetExceeded` (402), with the limit headers attached.
"""

from __future__ import annotations

import logging

from hub.call import Call, Outcome
from hub.errors import BudgetExceeded, Internal, RateLimited
from hub.executors.stream import OutcomeStream
from hub.governance import BudgetDenied, GovernanceError, Limiter, RateLimitDenied, ToolPricing, Usage
from hub.pipeline import Handler

logger = logging.getLogger(__name__)

HTTP_DOORS = frozenset({"rest", "openai"})
"""Doors whose responses carry the `x-ratelimit-*` and budget headers (MCP responses have no place for them)."""
METERED = frozenset({"mcp.tool", "mcp.prompt", "mcp.resource", "llm.chat", "llm.embed", "code.run"})


class LimitsStage:
    def __init__(self, limiter: Limiter, pricing: ToolPricing) -> None:
        self._limiter = limiter
        self._pricing = pricing

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        if call.operation not in METERED or call.principal is None:
            return await call_next(call)
        price = self._pricing.cost(call.target) if call.operation == "mcp.tool" else 0.0
        tokens = int(call.context.get("token_estimate", 0))
        estimate = Usage(requests=1, tokens=tokens, usd=price)
        try:
            reservation = await self._limiter.reserve(call.principal.key.id, estimate)
        except RateLimitDenied as denied:
            raise RateLimited(
                f"rate limit reached for {denied.entity} ({denied.metric}); retry in {denied.retry_after}s",
                headers=dict(denied.headers),
            ) from None
        except BudgetDenied as denied:
            raise BudgetExceeded(f"budget exhausted for {denied.entity}", headers=dict(denied.headers)) from None
        except GovernanceError as exc:
            logger.error("limits check failed closed: %s", exc)
            raise Internal("limits could not be checked") from None
        try:
            outcome = await call_next(call)
        except BaseException:
            await self._limiter.refund(reservation)
            raise
        stream = outcome.value
        if isinstance(stream, OutcomeStream):  # settled once, when the door closes the stream however it ends
            stream.on_close(lambda s: self._limiter.settle(reservation, s.usage or Usage(requests=1)))
            outcome.headers.update(reservation.headers())
            return outcome
        actual = outcome.usage or Usage(requests=1, tokens=0, usd=price)
        await self._limiter.settle(reservation, actual)
        if call.door in HTTP_DOORS:
            outcome.headers.update(reservation.headers())
        return outcome
