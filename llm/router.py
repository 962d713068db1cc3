"""Routing: model aliases -> weighted deployments and keys, retries with backoff, fallbacks, cooldown.

Build once from configuration, open in the lifespan, share across requests:

    router = Router(load_config(table))
    async with router:
        result = await router.chat(body, allow=predicate)
        async with await router.stream_chat(body) as stream:
            async for chunk in stream: ...

A request's `model` is an alias or `provider/model`. The plan is: the primary's deployments in weighted
random order, then each fallback (the request's `fallbacks`, or the alias's configured ones). Each
deployment gets `max_retries` retries on 429, 5xx, timeouts and connection errors (backoff with jitter,
Retry-After honoured), rotating keys on 429 and on rejected keys. A stream counts as failed until its first
content chunk, so a stream that dies before it falls back like any other failure. Every attempt is
recorded; when nothing succeeds `NoDeploymentAvailable` lists what was tried.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio

from llm import messaging
from llm.config import LLMConfig, resolve_secret
from llm.errors import (
    Attempt,
    NoDeploymentAvailable,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    UnknownModel,
    UnsupportedOperation,
    UnsupportedParameter,
)
from llm.health import CircuitBreaker
from llm.pricing import Price, PriceTable
from llm.providers import Credential, Provider, build_provider
from llm.result import Hop, HopFilter, ModelInfo, Result, ResultStream
from llm.schema import JSON, Usage

__all__ = ["Router"]

T = TypeVar("T")
AttemptObserver = Callable[[Hop], AbstractContextManager[object]]
"""Called with the hop of each attempt; the attempt runs inside the context manager it returns (which sees the
attempt's `ProviderError`, if any)."""
_CALLER_ERRORS = frozenset({400, 413, 422})
_LOCAL_KEY = "default"
_DIRECT = 1024
"""`provider/model` names whose target the router keeps (requests name a handful; a flood of made-up ones is not
kept)."""


class _Target:
    """One deployment of a plan, with the hop of each of its provider's keys made once (not on every request)."""

    __slots__ = ("hops", "key", "model", "provider", "weight")

    def __init__(self, provider: str, model: str, weight: float, key: str | None, keys: Sequence[str]) -> None:
        self.provider = provider
        self.model = model
        self.weight = weight
        self.key = key
        self.hops = {name: Hop(provider, model, name) for name in keys}


@dataclass(slots=True)
class _Started:
    buffered: list[JSON]
    source: AsyncIterator[JSON]


def _chat_usage(chunk: JSON) -> Usage | None:
    raw = chunk.get("usage")
    return Usage.from_openai(raw) if raw else None


def _responses_usage(event: JSON) -> Usage | None:
    if event.get("type") != "response.completed":
        return None
    response = event.get("response")
    return Usage.from_openai(response.get("usage")) if isinstance(response, dict) else None


def _chat_has_content(chunk: JSON) -> bool:
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or choice.get("finish_reason"):
            return True
    return False


def _responses_has_content(event: JSON) -> bool:
    return event.get("type") not in ("response.created", "response.in_progress", "response.queued")


def _keep(chunk: JSON) -> JSON | None:
    return chunk


def _strip_usage(chunk: JSON) -> JSON | None:
    """The chunk without `usage` (in place: the chunk was parsed for this stream), or None for a usage-only one."""
    if "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    del chunk["usage"]
    return chunk


class Router:
    """Routes OpenAI-shaped requests to configured providers. Safe for concurrent use within one event loop."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        routing = config.routing
        self._breaker = CircuitBreaker(
            failures=routing.cooldown_failures, cooldown=routing.cooldown_seconds, clock=clock
        )
        self._prices = PriceTable(dict(config.prices))
        self._providers: dict[str, Provider] = {}
        self._keys: dict[str, list[tuple[str, float]]] = {}
        for name, provider in config.providers.items():
            self._keys[name] = [(k.name, k.weight) for k in provider.keys] or [(_LOCAL_KEY, 1.0)]
        self._aliases: dict[str, list[_Target]] = {
            alias: [self._target(d.provider, d.model, d.weight, d.key) for d in model.deployments]
            for alias, model in config.models.items()
        }
        self._direct: dict[str, _Target] = {}
        """The targets of `provider/model` requests met so far (at most `_DIRECT` of them)."""
        self._opened = False
        self.observe: AttemptObserver | None = None
        """Wraps each attempt (one request to one deployment with one key): the hub's tracing sets it, so that
        every retry and fallback is a span of its own and the provider request carries that span's context."""

    # Lifetime.

    async def open(self) -> None:
        """Resolve every secret and open one pooled client per provider.

        Raises:
            ConfigError: a secret reference cannot be resolved.
        """
        if self._opened:
            return
        providers: dict[str, Provider] = {}
        try:
            for name, pconfig in self.config.providers.items():
                credentials = {
                    k.name: Credential(
                        name=k.name,
                        secret=resolve_secret(k.secret) if k.secret else "",
                        access_key_id=resolve_secret(k.access_key_id) if k.access_key_id else "",
                        session_token=resolve_secret(k.session_token) if k.session_token else "",
                    )
                    for k in pconfig.keys
                } or {_LOCAL_KEY: Credential(_LOCAL_KEY)}
                provider = build_provider(name, pconfig)
                providers[name] = provider
                await provider.open(credentials)
        except BaseException:
            for provider in providers.values():
                await provider.aclose()
            raise
        self._providers = providers
        self._opened = True

    async def aclose(self) -> None:
        """Close every provider's client."""
        providers, self._providers = self._providers, {}
        self._opened = False
        for provider in providers.values():
            await provider.aclose()

    async def __aenter__(self) -> Router:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # Public operations.

    async def chat(
        self, request: JSON, *, allow: HopFilter | None = None, fallbacks: Sequence[str] | None = None
    ) -> Result:
        """A non-streaming chat completion (the request's `stream` flag is ignored).

        Raises:
            UnknownModel: `model` (or a fallback) is neither an alias nor `provider/model`.
            NoDeploymentAvailable: no hop was allowed or every attempt failed (`.attempts` lists them).
            ProviderHTTPError: the provider rejected the request itself (400, 413, 422), not retried.
        """

        async def call(provider: Provider, model: str, key: str) -> JSON:
            return await provider.chat(request, model, key)

        return await self._complete(request, allow, fallbacks, call)

    async def _complete(
        self,
        request: JSON,
        allow: HopFilter | None,
        fallbacks: Sequence[str] | None,
        call: Callable[[Provider, str, str], Awaitable[Mapping[str, Any]]],
    ) -> Result:
        """Route a non-streaming request and wrap the response with its hop, attempts, usage and price."""
        response, hop, attempts = await self._route(request, allow, fallbacks, call)
        return Result(
            response,
            hop,
            attempts,
            Usage.from_openai(response.get("usage")),
            self._prices.price(hop.provider, hop.model),
        )

    async def stream_chat(
        self, request: JSON, *, allow: HopFilter | None = None, fallbacks: Sequence[str] | None = None
    ) -> ResultStream:
        """Start a streamed chat completion; returns once the first content chunk has arrived.

        Chunks carry usage only when the caller asked for it (`stream_options.include_usage`); the
        stream's `usage` is filled either way.

        Raises:
            UnknownModel, NoDeploymentAvailable, ProviderHTTPError: as for `chat`, before the first chunk.
        """
        options = request.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def source(provider: Provider, model: str, key: str) -> AsyncIterator[JSON]:
            return provider.stream_chat(request, model, key)

        return await self._stream(
            request, allow, fallbacks, source, _chat_has_content, _chat_usage, _keep if wants_usage else _strip_usage
        )

    async def embeddings(
        self, request: JSON, *, allow: HopFilter | None = None, fallbacks: Sequence[str] | None = None
    ) -> Result:
        """An embeddings request (`input`, `model`, optional `dimensions`, `encoding_format`). An OpenAI-shaped
        provider's response is passed through unparsed (`llm.rawjson.RawJSON`: only its `usage` is read)."""

        async def call(provider: Provider, model: str, key: str) -> Mapping[str, Any]:
            return await provider.embeddings(request, model, key)

        return await self._complete(request, allow, fallbacks, call)

    async def responses(
        self, request: JSON, *, allow: HopFilter | None = None, fallbacks: Sequence[str] | None = None
    ) -> Result:
        """`/v1/responses` pass-through to providers that have it (openai, azure); others are skipped."""

        async def call(provider: Provider, model: str, key: str) -> JSON:
            return await provider.responses(request, model, key)

        return await self._complete(request, allow, fallbacks, call)

    async def stream_responses(
        self, request: JSON, *, allow: HopFilter | None = None, fallbacks: Sequence[str] | None = None
    ) -> ResultStream:
        """Streaming `/v1/responses` pass-through: events (dicts with `type`) as the provider sends them."""

        def source(provider: Provider, model: str, key: str) -> AsyncIterator[JSON]:
            return provider.stream_responses(request, model, key)

        return await self._stream(request, allow, fallbacks, source, _responses_has_content, _responses_usage, _keep)

    async def messages(
        self,
        body: JSON,
        allow: HopFilter | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw: bytes | None = None,
        query: str = "",
        fallbacks: Sequence[str] | None = None,
    ) -> Result:
        """An Anthropic Messages request (not streamed): passed through to an Anthropic deployment (`raw`, the
        body's bytes, sent with only `model` replaced; `headers`, the caller's `anthropic-*` headers), translated
        for any other (`Result.dropped` names what the translation left out). See `llm.messaging`."""
        request = messaging.MessagesRequest(body, raw, headers, query)

        async def call(provider: Provider, model: str, key: str) -> messaging.MessagesReply:
            return await messaging.send(provider, request, model, key)

        reply, hop, attempts = await self._route(body, allow, fallbacks, call)
        price = self._prices.price(hop.provider, hop.model)
        return Result(reply.response, hop, attempts, reply.usage, price, dropped=reply.dropped)

    async def stream_messages(
        self,
        body: JSON,
        allow: HopFilter | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw: bytes | None = None,
        query: str = "",
        fallbacks: Sequence[str] | None = None,
    ) -> ResultStream:
        """A streamed Messages request, as `messages`; returns once the first content has arrived. Items are dicts
        with `raw` (the bytes for the client: Anthropic's own, or the translated events) and `events`."""
        request = messaging.MessagesRequest(body, raw, headers, query)
        dropped: dict[tuple[str, str], tuple[str, ...]] = {}

        def source(provider: Provider, model: str, key: str) -> AsyncIterator[JSON]:
            return messaging.stream(provider, request, model, key, dropped)

        started = await self._stream(body, allow, fallbacks, source, messaging.has_content, messaging.usage_of, _keep)
        started.dropped = dropped.get((started.hop.provider, started.hop.model), ())
        return started

    async def count_tokens(
        self, body: JSON, allow: HopFilter | None = None, headers: Mapping[str, str] | None = None, *,
        raw: bytes | None = None,
    ) -> Result:  # fmt: skip
        """`/v1/messages/count_tokens`: Anthropic's count from the first usable Anthropic hop, the documented
        estimate (`llm.messages.estimate_input_tokens`) when the hop is another provider."""
        request = messaging.MessagesRequest(body, raw, headers)

        async def call(provider: Provider, model: str, key: str) -> messaging.MessagesReply:
            return await messaging.count_tokens(provider, request, model, key)

        reply, hop, attempts = await self._route(body, allow, None, call)
        return Result(reply.response, hop, attempts, None)

    def list_models(self, *, allow: HopFilter | None = None) -> list[ModelInfo]:
        """Aliases and `provider/model` entries (deployments, fallbacks and providers' `models`) the caller may use:
        those `routable` for `allow` (an alias served only through its fallbacks included)."""
        out = [ModelInfo(alias, "alias", "agenthub") for alias in self._aliases if self.routable(alias, allow=allow)]
        seen: set[str] = set()
        explicit = [(t.provider, t.model) for ts in self._aliases.values() for t in ts]
        for alias in self.config.models.values():
            for ref in alias.fallbacks:
                provider, sep, model = ref.partition("/")
                if sep and provider in self.config.providers:
                    explicit.append((provider, model))
        explicit += [(name, m) for name, p in self.config.providers.items() for m in p.models]
        for provider, model in explicit:
            ref = f"{provider}/{model}"
            if ref not in seen and self.routable(ref, allow=allow):
                seen.add(ref)
                out.append(ModelInfo(ref, "deployment", provider))
        return out

    def routable(self, model: str, *, allow: HopFilter | None = None) -> bool:
        """Whether a request for `model` (an alias or `provider/model`) has a hop `allow` permits among those its
        plan would try: the alias's deployments, then its configured fallbacks. Routing refuses a request
        without one as not allowed; `list_models` lists exactly the names that have one."""
        try:
            _, plan = self._plan({"model": model}, None, ordered=False)
        except UnknownModel:
            return False
        return any(self._allowed_keys(target, allow) for target in plan)

    def cooling_down(self) -> list[Hop]:
        """Hops whose circuit is open right now."""
        return [h for h in self._breaker.open_hops() if isinstance(h, Hop)]

    def health(self) -> dict[Hop, tuple[int, float]]:
        """Hops with failures on record: consecutive failures, and seconds left of the cooldown (0: not open)."""
        return {h: state for h, state in self._breaker.snapshot().items() if isinstance(h, Hop)}

    def price(self, hop: Hop) -> Price | None:
        """The price results served by `hop` are charged at (the configured default included); None when unknown."""
        return self._prices.price(hop.provider, hop.model)

    # Planning.

    def _target(self, provider: str, model: str, weight: float, key: str | None) -> _Target:
        return _Target(provider, model, weight, key, [name for name, _ in self._keys.get(provider, ())])

    def _targets(self, ref: str, ordered: bool = True) -> list[_Target]:
        targets = self._aliases.get(ref)
        if targets is not None:
            return self._weighted_order(targets) if ordered else list(targets)
        direct = self._direct.get(ref)
        if direct is not None:
            return [direct]
        provider, sep, model = ref.partition("/")
        if sep and model and provider in self.config.providers:
            direct = self._target(provider, model, 1.0, None)
            if len(self._direct) < _DIRECT:
                self._direct[ref] = direct
            return [direct]
        raise UnknownModel(ref)

    def _weighted_order(self, targets: list[_Target]) -> list[_Target]:
        if len(targets) == 1:
            return [targets[0]]
        # Weighted sampling without replacement: sort by u ** (1 / w), largest first.
        keyed = [(self._rng.random() ** (1.0 / t.weight), i) for i, t in enumerate(targets)]
        keyed.sort(reverse=True)
        return [targets[i] for _, i in keyed]

    def _plan(self, request: JSON, fallbacks: Sequence[str] | None, ordered: bool = True) -> tuple[str, list[_Target]]:
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise UnknownModel(str(model))
        plan = self._targets(model, ordered)
        refs = fallbacks if fallbacks is not None else request.get("fallbacks")
        if refs is None:
            alias = self.config.models.get(model)
            refs = alias.fallbacks if alias else ()
        for ref in refs:
            if isinstance(ref, dict):
                ref = ref.get("model", "")
            plan.extend(self._targets(str(ref), ordered))
        if len(plan) == 1:
            return model, plan
        seen: set[tuple[str, str, str | None]] = set()
        unique: list[_Target] = []
        for t in plan:
            if (t.provider, t.model, t.key) not in seen:
                seen.add((t.provider, t.model, t.key))
                unique.append(t)
        return model, unique

    def _allowed_keys(self, target: _Target, allow: HopFilter | None) -> list[tuple[str, float]]:
        keys = self._keys[target.provider]
        if target.key is not None:
            keys = [k for k in keys if k[0] == target.key]
        if allow is not None:
            hops = target.hops
            keys = [k for k in keys if allow(hops[k[0]])]
        return keys

    def _pick_key(self, keys: list[tuple[str, float]]) -> str:
        if len(keys) == 1:
            return keys[0][0]
        point = self._rng.random() * sum(w for _, w in keys)
        for name, weight in keys:
            point -= weight
            if point < 0:
                return name
        return keys[-1][0]

    def _backoff(self, retry: int, error: ProviderError) -> float:
        routing = self.config.routing
        delay = min(routing.backoff_max, routing.backoff_initial * (2**retry)) * self._rng.uniform(0.8, 1.2)
        if isinstance(error, ProviderHTTPError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay

    # The attempt loop shared by every operation.

    async def _route(
        self,
        request: JSON,
        allow: HopFilter | None,
        fallbacks: Sequence[str] | None,
        call: Callable[[Provider, str, str], Awaitable[T]],
    ) -> tuple[T, Hop, tuple[Attempt, ...]]:
        if not self._opened:
            raise RuntimeError("Router is not open: call `await router.open()` (or use `async with router`)")
        requested, plan = self._plan(request, fallbacks)
        attempts: list[Attempt] = []
        skipped: list[str] = []
        for target in plan:
            keys = self._allowed_keys(target, allow)
            if not keys:
                skipped.append(f"{target.provider}/{target.model}: not allowed")
                continue
            done = await self._try_target(target, keys, call, attempts, skipped)
            if done is not None:
                return done[0], done[1], tuple(attempts)
        raise NoDeploymentAvailable(requested, attempts, skipped)

    async def _try_target(
        self,
        target: _Target,
        keys: list[tuple[str, float]],
        call: Callable[[Provider, str, str], Awaitable[T]],
        attempts: list[Attempt],
        skipped: list[str],
    ) -> tuple[T, Hop] | None:
        """Try one deployment with retries and key rotation; None means move on to the next one.

        A 429 moves to another usable key at once; otherwise the same key is retried after the backoff (at
        least its Retry-After). A rejected key (401/403) is dropped for this request and cooled down.
        """
        provider = self._providers[target.provider]
        excluded: set[str] = set()
        retry = 0
        key: str | None = None
        tried = False
        while True:
            if key is None:
                usable = self._usable(target, keys, excluded)
                if not usable:
                    if not tried:
                        skipped.append(f"{target.provider}/{target.model}: cooling down")
                    return None
                key = self._pick_key(usable)
            hop = target.hops[key]
            start = self._clock()
            tried = True
            try:
                if self.observe is None:
                    value = await call(provider, target.model, key)
                else:
                    with self.observe(hop):
                        value = await call(provider, target.model, key)
            except ProviderError as exc:
                attempts.append(Attempt(hop.provider, hop.model, key, exc, self._clock() - start))
                if isinstance(exc, ProviderHTTPError) and exc.status in _CALLER_ERRORS:
                    exc.attempts = tuple(attempts)
                    raise
                wait = self._after_failure(hop, exc, retry)
                if wait is None:
                    return None
                if wait == 0:
                    excluded.add(key)
                    key = None
                    continue
                retry += 1
                if retry > self.config.routing.max_retries or wait > self.config.routing.max_retry_after:
                    return None
                rate_limited = isinstance(exc, ProviderHTTPError) and exc.status == 429
                if rate_limited and self._usable(target, keys, excluded | {key}):
                    excluded.add(key)
                    key = None
                    continue
                await self._sleep(wait)
                continue
            self._breaker.success(hop)
            attempts.append(Attempt(hop.provider, hop.model, key, None, self._clock() - start))
            return value, hop

    def _usable(self, target: _Target, keys: list[tuple[str, float]], excluded: set[str]) -> list[tuple[str, float]]:
        available = self._breaker.available
        hops = target.hops
        if len(keys) == 1 and not excluded:  # the common case: one key
            return keys if available(hops[keys[0][0]]) else []
        return [k for k in keys if k[0] not in excluded and available(hops[k[0]])]

    def _after_failure(self, hop: Hop, exc: ProviderError, retry: int) -> float | None:
        """Record a failure; return None to give up on this deployment, 0 to drop the key, else the wait."""
        if isinstance(exc, UnsupportedParameter | UnsupportedOperation):
            return None
        if isinstance(exc, ProviderHTTPError) and exc.is_auth:
            self._breaker.trip(hop)
            return 0.0
        if not exc.retryable:
            self._breaker.failure(hop)
            return None
        if isinstance(exc, ProviderHTTPError) and exc.status == 429 and exc.retry_after is not None:
            self._breaker.trip(hop, exc.retry_after)
        else:
            self._breaker.failure(hop)
        return max(self._backoff(retry, exc), 1e-6)

    async def _stream(
        self,
        request: JSON,
        allow: HopFilter | None,
        fallbacks: Sequence[str] | None,
        source: Callable[[Provider, str, str], AsyncIterator[JSON]],
        has_content: Callable[[JSON], bool],
        usage_of: Callable[[JSON], Usage | None],
        emit: Callable[[JSON], JSON | None],
    ) -> ResultStream:
        limit = self.config.routing.stream_buffer_chunks

        async def start(provider: Provider, model: str, key: str) -> _Started:
            iterator = source(provider, model, key)
            buffered: list[JSON] = []
            try:
                with anyio.fail_after(provider.config.first_chunk_timeout):
                    async for chunk in iterator:
                        buffered.append(chunk)
                        if has_content(chunk) or len(buffered) >= limit:
                            break
            except TimeoutError:
                await _aclose(iterator)
                raise ProviderTimeout("no first chunk in time", provider=provider.name, model=model) from None
            except BaseException:
                await _aclose(iterator)
                raise
            return _Started(buffered, iterator)

        started, hop, attempts = await self._route(request, allow, fallbacks, start)

        def on_error(exc: ProviderError) -> None:
            self._breaker.failure(hop)

        return ResultStream(
            hop=hop,
            attempts=attempts,
            price=self._prices.price(hop.provider, hop.model),
            _buffered=started.buffered,
            _source=started.source,
            _usage_of=usage_of,
            _emit=emit,
            _on_error=on_error,
        )

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The open provider objects by name."""
        return self._providers


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
