"""limits: rate limits and budgets on every level (key, team, customer), for every call.

The requests that do work count against the key's rate limits: tool calls, prompts, resources, completions,
subscriptions, Code Mode, LLM calls. The requests that only set up an MCP session or read the catalog (`GATED`:
`initialize`, `ping`, `server/discover`, tool and model listings, and counting a prompt's tokens, which clients
such as Claude Code do on their own to size their context) count nothing: clients send them on their own,
around the calls they make, and a listing refused right after a permitted call would make the client report a call
that already ran as failed. They are refused too once the key is over its limit: from its first refused request
until the window it was refused in ends. The operations that cost something (tool calls, prompts, resources, LLM
calls, Code Mode runs) are also reserved against the budgets, so a spent budget refuses them while listings and
session requests keep working.

Reserve before `call_next`, settle with the actual usage after, refund when the call fails or the caller goes away:
the pairing lives in one `try` so no path can leak a reservation. Denials become the hub's `RateLimited` (429 with
`Retry-After`) and `BudgetExceeded` (402), with the limit headers attached.

An Agent Mode loop is not counted itself: each of its model turns and tool runs is a call of its own, counted here
(`agent_loop`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from hub.call import Call, Outcome, agent_loop
from hub.errors import BudgetExceeded, Internal, RateLimited
from hub.executors.stream import OutcomeStream
from hub.governance import BudgetDenied, GovernanceError, Limiter, RateLimitDenied, ToolPricing, Usage
from hub.pipeline import Handler

logger = logging.getLogger(__name__)

HTTP_DOORS = frozenset({"rest", "openai", "anthropic"})
"""Doors whose responses carry the `x-ratelimit-*` and budget headers (MCP responses have no place for them)."""
SPENDING = frozenset({"mcp.tool", "mcp.prompt", "mcp.resource", "llm.chat", "llm.messages", "llm.embed", "code.run"})
"""Operations that may cost something, reserved against budgets as well as rate limits."""
GATED = frozenset(
    {"mcp.session", "mcp.list", "llm.models", "llm.count_tokens"}
    | {"llm.response.get", "llm.response.delete", "llm.response.cancel", "llm.response.items"}
)
"""Operations that count nothing, refused while the key is over a rate limit (reading, cancelling or deleting a
stored response, which clients poll, counts nothing either)."""
_ONE = Usage(requests=1)


class LimitsStage:
    def __init__(self, limiter: Limiter, pricing: ToolPricing, clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = limiter
        self._pricing = pricing
        self._clock = clock
        self._over: dict[str, tuple[float, RateLimited]] = {}
        """Keys over a rate limit (this process saw a request of theirs refused): until when, and the refusal."""

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        principal = call.principal
        operation = call.operation
        if principal is None or ((operation == "llm.chat" or operation == "llm.messages") and agent_loop(call)):
            return await call_next(call)
        if operation in GATED:
            self._check_over(principal.key.id)
            return await call_next(call)
        spend = call.operation in SPENDING
        price = self._pricing.cost(call.target) if call.operation == "mcp.tool" else 0.0
        if spend:
            estimate = Usage(requests=1, tokens=int(call.context.get("token_estimate", 0)), usd=price)
        else:
            estimate = _ONE
        try:
            reservation = await self._limiter.reserve(principal.key.id, estimate, spend=spend)
        except RateLimitDenied as denied:
            refused = RateLimited(
                f"rate limit reached for {denied.entity} ({denied.metric}); retry in {denied.retry_after}s",
                headers=dict(denied.headers),
            )
            self._mark_over(principal.key.id, denied.retry_after, refused)
            raise refused from None
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
            stream.on_close(lambda s: self._limiter.settle(reservation, s.usage or _ONE))
            outcome.headers.update(reservation.headers())
            return outcome
        actual = outcome.usage
        if actual is None:
            actual = Usage(requests=1, usd=price) if spend else _ONE
            if price:  # the call's cost, for its request-log row, from which a restarted hub's budgets are seeded
                outcome.usage = actual
        await self._limiter.settle(reservation, actual)
        if call.door in HTTP_DOORS:
            outcome.headers.update(reservation.headers())
        return outcome

    def _mark_over(self, key_id: str, retry_after: float, refused: RateLimited) -> None:
        if len(self._over) > 65536:
            now = self._clock()
            self._over = {k: v for k, v in self._over.items() if v[0] > now}
        self._over[key_id] = (self._clock() + retry_after, refused)

    def _check_over(self, key_id: str) -> None:
        """Refuse a gated call of a key over its limit (with the refusal's own message and headers)."""
        over = self._over.get(key_id)
        if over is None:
            return
        until, refused = over
        left = until - self._clock()
        if left <= 0:
            del self._over[key_id]
            return
        headers = {**refused.headers, "retry-after": str(max(1, math.ceil(left)))}
        raise RateLimited(refused.message, headers=headers)
