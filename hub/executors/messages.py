"""The Anthropic Messages operations on the LLM `Router`: `llm.messages` (streamed or not) and `llm.count_tokens`.

Called by `LlmExecutor` for calls of the Anthropic door (`context["api"]` is `messages` or `count_tokens`).
Governance-free like the rest of the executor: the key's filters reach the router as its hop predicate, errors map
onto the hub's table, and the outcome reports what the call used (tokens, cache reads included, and US dollars).
A request whose key offers MCP tools in chat (`chat_tools`, Agent Mode) goes to `hub.executors.agent` instead,
whose model turns come back here as calls of their own; for such a key a token count arrives with those tools
already merged into its body (`AgentMode.count_request`), so it counts what the model will be sent.

Call shape (built by `hub.doors.anthropic`): `payload` is the parsed body; `context["raw"]` the pair (that body,
its bytes as received), so a pass-through sends the client's bytes only while the payload is still that body (an
input guardrail's redaction replaces it, and then the redacted body is encoded); `context["anthropic"]` the
`anthropic-version` / `anthropic-beta` headers to pass on and `context["query"]` the `?beta=true` the client sent.

Headers: those of every LLM call (`x-agenthub-provider`, `-model`, `-cost-usd`, `-upstream-ms`) and
`x-agenthub-dropped` when a translation left features out (thinking, `top_k`, `cache_control`, ...).

An upstream's `overloaded_error` (529), when no fallback answered instead, is passed on as 529
(`UpstreamOverloaded`), which Anthropic's clients retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hub.call import Call, Outcome
from hub.errors import HubError, UpstreamOverloaded
from hub.executors.pricing import PricedHops, call_usage, route_headers
from hub.executors.stream import OVERLOADED, OutcomeStream
from llm import Hop, LLMError, NoDeploymentAvailable, ProviderHTTPError, Result, Usage as TokenUsage

if TYPE_CHECKING:
    from llm.router import Router

__all__ = ["DROPPED_HEADER", "run_messages"]

DROPPED_HEADER = "x-agenthub-dropped"


def _raw(call: Call) -> bytes | None:
    pair = call.context.get("raw")
    if isinstance(pair, tuple) and len(pair) == 2 and pair[0] is call.payload:
        raw = pair[1]
        return raw if isinstance(raw, bytes) else None
    return None


async def run_messages(
    router: Router,
    call: Call,
    allow: Callable[[Hop], bool],
    priced: PricedHops | None,
    to_hub_error: Callable[[LLMError, str], HubError],
) -> Outcome:
    """Run an `llm.messages` or `llm.count_tokens` call; `allow` is the key's hop predicate (`priced`, when a
    US-dollar budget applies), `to_hub_error` the executor's error mapping."""
    body: dict[str, Any] = call.payload
    context = call.context
    headers: Mapping[str, str] = context.get("anthropic") or {}
    raw = _raw(call)
    started = time.perf_counter()
    try:
        if call.operation == "llm.count_tokens":
            result = await router.count_tokens(body, allow, headers, raw=raw)
            upstream_ms = (time.perf_counter() - started) * 1000
            return Outcome(
                result.response, headers=route_headers(result.hop, None, upstream_ms), upstream_ms=upstream_ms
            )
        query = str(context.get("query", ""))
        if context.get("stream"):
            source = await router.stream_messages(body, allow, headers, raw=raw, query=query)
            prompt = int(context.get("prompt_estimate", 0))
            stream = OutcomeStream(source, messages=True, prompt_estimate=prompt)
            upstream_ms = (time.perf_counter() - started) * 1000
            out = route_headers(source.hop, None, upstream_ms)
            if source.dropped:
                out[DROPPED_HEADER] = ",".join(source.dropped)
            return Outcome(stream, headers=out, upstream_ms=upstream_ms)
        result = await router.messages(body, allow, headers, raw=raw, query=query)
    except LLMError as exc:
        if priced is not None and priced.missing and isinstance(exc, NoDeploymentAvailable) and not exc.attempts:
            raise priced.refusal() from None
        raise _overloaded(exc) or to_hub_error(exc, call.target) from None
    return _complete(result, started, int(context.get("prompt_estimate", 0)))


def _overloaded(exc: LLMError) -> HubError | None:
    last = exc.last_error if isinstance(exc, NoDeploymentAvailable) else exc
    if isinstance(last, ProviderHTTPError) and last.status == OVERLOADED:
        return UpstreamOverloaded(f"the provider is overloaded: {last.reason}")
    return None


def _complete(result: Result, started: float, prompt_estimate: int) -> Outcome:
    usage = result.usage
    cost = result.cost
    if usage is None:  # the provider sent none: bill the prompt estimate rather than nothing
        usage = TokenUsage(prompt_estimate, 0)
        cost = result.price.cost(usage) if result.price is not None else None
    upstream_ms = (time.perf_counter() - started) * 1000
    headers = route_headers(result.hop, cost, upstream_ms)
    if result.dropped:
        headers[DROPPED_HEADER] = ",".join(result.dropped)
    return Outcome(result.response, usage=call_usage(usage, cost), headers=headers, upstream_ms=upstream_ms)
