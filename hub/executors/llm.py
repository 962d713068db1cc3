"""The terminal step for `llm.*` calls: run an authorised `Call` on the LLM `Router`.

Governance-free: the executor applies no limit or guardrail itself. It hands the router the caller's key as a
hop predicate (`allows_hop`, so fallbacks obey the key's model, provider and provider-key filters; where a
US-dollar budget applies, only deployments that have a price: `hub.executors.pricing`), maps the back end's
errors onto the hub's table, and reports what the call used (`Outcome.usage`: tokens, their cache and reasoning
parts, and US dollars) plus the deployment that served (`x-agenthub-provider`, `x-agenthub-model`,
`x-agenthub-cost-usd`, `x-agenthub-upstream-ms` in `Outcome.headers`).

Call shape (built by the OpenAI door):

- `operation`: `llm.chat` (chat completions, and `/v1/responses` with `context["api"] == "responses"`) or
  `llm.embed`; `target`: the requested model (an alias or `provider/model`); `payload`: the request body. The
  Anthropic door's `llm.messages` and `llm.count_tokens` (`context["api"]` `messages` or `count_tokens`) run in
  `hub.executors.messages`.
- `context["stream"]`: the outcome's value is then an `OutcomeStream` (see `hub.executors.stream`), otherwise the
  OpenAI response: a dict, or for embeddings the provider's bytes read as a mapping (`llm.rawjson.RawJSON`, which
  the door writes as received).
- `context["token_estimate"]`: read by the limits stage before the call; also the prompt estimate used when a
  stream ends without upstream usage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hub.call import Call, Outcome
from hub.errors import BadRequest, HubError, Internal, NotFound, RateLimited, UpstreamFailed, UpstreamTimedOut, unknown
from hub.executors.messages import run_messages
from hub.executors.pricing import PricedHops, call_usage, route_headers
from hub.executors.responses import STORED_OPERATIONS, StoredResponses
from hub.executors.stream import OutcomeStream, estimate_text_tokens
from hub.governance.grants import Grant
from llm import (
    Hop,
    InvalidRequest,
    LLMError,
    NoDeploymentAvailable,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    Result,
    UnknownModel,
    UnsupportedOperation,
    UnsupportedParameter,
    Usage as TokenUsage,
)

if TYPE_CHECKING:
    from llm.router import Router

__all__ = ["LlmExecutor", "hop_filter", "output_estimate", "to_hub_error", "unknown_model", "visible_models"]

_CALLER_STATUSES = frozenset({400, 413, 422})


def hop_filter(grant: Grant) -> Callable[[Hop], bool]:
    """The router's hop predicate for a grant: its model, provider and provider-key filters."""
    allows = grant.allows_hop
    return lambda hop: allows(hop.provider, hop.model, hop.key)


def unknown_model(model: str) -> NotFound:
    """The one error for a model that does not exist and for a model the key may not use (indistinguishable)."""
    return unknown("model", model)


def output_estimate(body: dict[str, Any]) -> int:
    """The most tokens a chat or Responses request may produce (its `max_*tokens` times `n`), 0 if unbounded."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens") or 0
    n = body.get("n") or 1
    if not isinstance(limit, int) or not isinstance(n, int) or limit < 0 or n < 1:
        return 0
    return limit * n


class LlmExecutor:
    """Runs `llm.chat` / `llm.embed` calls on an open `Router`."""

    def __init__(
        self, router: Router, budgeted: Callable[[str], bool] | None = None, stored: StoredResponses | None = None
    ) -> None:
        """`budgeted(key_id)`: whether a US-dollar budget applies to a key; its calls are then served only by
        deployments that have a price (`hub.executors.pricing.PricedHops`). `stored` routes Responses API requests
        by where their state lives and serves the operations on stored responses (`hub.executors.responses`)."""
        self.router = router
        self.budgeted = budgeted
        self.stored = stored

    def models(self, call: Call) -> Outcome:
        """The executor for `llm.models`: the aliases and `provider/model` names the caller may use (target empty),
        or one of them (an unknown or not permitted one was refused by the authz stage)."""
        if call.principal is None:
            raise Internal("the LLM executor was reached without a principal")
        return Outcome(visible_models(self.router, call.principal.grant, call.target))

    async def __call__(self, call: Call) -> Outcome:
        if call.principal is None:
            raise Internal("the LLM executor was reached without a principal")
        if call.operation == "llm.models":
            return self.models(call)
        if call.operation in STORED_OPERATIONS:
            if self.stored is None:
                raise unknown("response", call.target)
            return await self.stored(call)
        allow = hop_filter(call.principal.grant)
        router = self.router
        priced: PricedHops | None = None
        if self.budgeted is not None and self.budgeted(call.principal.key.id):
            allow = priced = PricedHops(allow, router.price)
        if call.context.get("api") in ("messages", "count_tokens"):  # the Anthropic door
            return await run_messages(router, call, allow, priced, to_hub_error)
        body: dict[str, Any] = call.payload
        context = call.context
        started = time.perf_counter()
        try:
            if call.operation == "llm.embed":
                return _complete(await router.embeddings(body, allow=allow), started)
            responses = context.get("api") == "responses"
            if responses and self.stored is not None:
                return await self._stored(self.stored, call, allow, started)
            if context.get("stream"):
                if responses:
                    source = await router.stream_responses(body, allow=allow)
                else:
                    source = await router.stream_chat(body, allow=allow)
                upstream_ms = (time.perf_counter() - started) * 1000
                stream = OutcomeStream(
                    source, responses=responses, prompt_estimate=int(context.get("prompt_estimate", 0))
                )
                return Outcome(stream, headers=route_headers(source.hop, None, upstream_ms), upstream_ms=upstream_ms)
            if responses:
                return _complete(await router.responses(body, allow=allow), started)
            return _complete(await router.chat(body, allow=allow), started, context.get("prompt_estimate", 0))
        except LLMError as exc:
            if priced is not None and priced.missing and isinstance(exc, NoDeploymentAvailable) and not exc.attempts:
                raise priced.refusal() from None
            raise to_hub_error(exc, call.target) from None

    @staticmethod
    async def _stored(stored: StoredResponses, call: Call, allow: Callable[[Hop], bool], started: float) -> Outcome:
        """A `/v1/responses` request routed by where its conversation is stored, and recorded if it is stored."""
        if not call.context.get("stream"):
            return _complete(await stored.complete(call, allow), started)
        source = await stored.stream(call, allow)
        upstream_ms = (time.perf_counter() - started) * 1000
        stream = OutcomeStream(source, responses=True, prompt_estimate=int(call.context.get("prompt_estimate", 0)))
        stored.watch(call, stream)
        return Outcome(stream, headers=route_headers(source.hop, None, upstream_ms), upstream_ms=upstream_ms)


def visible_models(router: Router | None, grant: Grant, name: str = "") -> dict[str, Any]:
    """`GET /v1/models` (name empty) or `GET /v1/models/{name}` for a grant.

    Raises:
        NotFound: `name` is not a model the grant reaches.
    """
    found = [] if router is None else router.list_models(allow=hop_filter(grant))
    data = [m.to_openai() for m in found if grant.allows_model(m.id)]
    if not name:
        return {"object": "list", "data": data}
    for entry in data:
        if entry["id"] == name:
            return entry
    raise unknown_model(name)


def _complete(result: Result, started: float, prompt_estimate: int = 0) -> Outcome:
    upstream_ms = (time.perf_counter() - started) * 1000
    usage = result.usage
    cost = result.cost
    if usage is None:  # the provider sent none: bill an estimate rather than nothing
        usage = TokenUsage(prompt_estimate, _completion_estimate(result.response))
        cost = result.price.cost(usage) if result.price is not None else None
    headers = route_headers(result.hop, cost, upstream_ms)
    return Outcome(result.response, usage=call_usage(usage, cost), headers=headers, upstream_ms=upstream_ms)


def _completion_estimate(response: Mapping[str, Any]) -> int:
    chars = 0
    for choice in response.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            content = message.get("content")
            chars += len(content) if isinstance(content, str) else 0
    return estimate_text_tokens(chars)


def to_hub_error(exc: LLMError, model: str) -> HubError:
    """The hub's view of a back-end failure: a status from the hub's table, never a provider's own body."""
    if isinstance(exc, UnknownModel):
        return unknown_model(model)
    if isinstance(exc, InvalidRequest):
        return BadRequest(exc.message)
    if isinstance(exc, NoDeploymentAvailable):
        return _no_deployment(exc, model)
    if isinstance(exc, ProviderHTTPError) and exc.status in _CALLER_STATUSES:
        code = f" ({exc.code})" if exc.code else ""
        return BadRequest(f"the provider rejected the request: HTTP {exc.status}{code}")
    if isinstance(exc, ProviderTimeout):
        return UpstreamTimedOut(f"the provider did not answer in time: {exc.reason}")
    if isinstance(exc, ProviderError):
        return UpstreamFailed(f"the provider failed: {exc.reason}")
    return UpstreamFailed(exc.message)


def _no_deployment(exc: NoDeploymentAvailable, model: str) -> HubError:
    if not exc.attempts:
        if all(s.endswith(": not allowed") for s in exc.skipped):
            return unknown_model(model)
        return UpstreamFailed(f"no deployment of {model[:200]} is available right now (cooling down)")
    errors = [a.error for a in exc.attempts if a.error is not None]
    if errors and all(isinstance(e, UnsupportedParameter | UnsupportedOperation) for e in errors):
        return BadRequest(errors[-1].message)
    last = exc.last_error
    if isinstance(last, ProviderTimeout):
        return UpstreamTimedOut(exc.message)
    if isinstance(last, ProviderHTTPError) and last.status == 429:
        retry = max(1, math.ceil(last.retry_after)) if last.retry_after is not None else 1
        return RateLimited(
            f"the provider is rate limiting requests for {model[:200]}", headers={"retry-after": str(retry)}
        )
    return UpstreamFailed(exc.message)
