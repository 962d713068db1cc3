"""The HTTP client of the LLM data plane, kept behind one small class so it can change.

Requests go through `http1`, the small HTTP/1.1 client the MCP hot path uses too: asyncio protocols with
the `httptools` parser, keep-alive pools, TLS on the system trust store. Chosen by measurement: in
`bench/llm_client_bench.py` it spends several times less CPU per request than aiohttp (and aiohttp about a
quarter of httpx2's), and it keeps aiohttp's 9 MB of imports out of the process. One `Transport` per provider
holds one pool per origin (a provider talks to its API host, and some to a token host) for the router's
lifetime (`open()` ... `aclose()`); nothing is created per request. It requires the asyncio backend of anyio
(which uvicorn and the hub use).

Connection and timeout failures become `ProviderUnavailable` / `ProviderTimeout` with the exception's class
name only: URLs and headers (which may carry keys) never reach a message. Request targets are sent exactly as
given: providers encode path segments themselves, and SigV4 signs those exact bytes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from http1 import BodyTooLarge, H1Pool, HttpError, ProxyConfigError, StreamedResponse
from llm.errors import ProviderError, ProviderResponseError, ProviderTimeout, ProviderUnavailable

__all__ = ["HttpResponse", "HttpStream", "Transport"]

_TARGETS = 1024
"""Distinct URLs a transport keeps split into (origin, target) (a provider has a handful; model names add a few)."""


def _map_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, BodyTooLarge):
        return ProviderResponseError("response too large")
    if isinstance(exc, TimeoutError):
        return ProviderTimeout("timed out")
    return ProviderUnavailable(f"connection failed ({type(exc).__name__})")


class Headers(Mapping[str, str]):
    """Response headers; names are matched without regard to case (the first value of a repeated header). Read
    into a mapping on first use: a successful response's headers are seldom read at all."""

    __slots__ = ("_found", "_raw")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._raw = items
        self._found: dict[str, str] | None = None

    def _items(self) -> dict[str, str]:
        found = self._found
        if found is None:
            found = self._found = {}
            for name, value in self._raw:  # names arrive in lower case
                found.setdefault(name, value)
        return found

    def __getitem__(self, name: str) -> str:
        return self._items()[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, headers (case-insensitive mapping) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpStream:
    """A response being received: status and headers now, the body as chunks of bytes."""

    __slots__ = ("_idle", "_response", "headers", "status")

    def __init__(self, response: StreamedResponse, idle_timeout: float) -> None:
        self._response = response
        self._idle = idle_timeout
        self.status = response.status
        """HTTP status code."""
        self.headers: Mapping[str, str] = Headers(response.headers)
        """Response headers (case-insensitive)."""

    async def read(self) -> bytes:
        """The whole (remaining) body, bounded by the transport's size limit."""
        return b"".join([data async for data in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; a stall longer than the idle timeout raises ProviderTimeout."""
        while True:
            try:
                data = await self._response.next_chunk(self._idle)
            except (TimeoutError, HttpError) as exc:
                raise _map_error(exc) from None
            if data is None:
                return
            yield data


class Transport:
    """Pooled HTTP/1.1 connections for one provider."""

    def __init__(self, *, max_connections: int = 256, connect_timeout: float = 10.0, max_response_bytes: int) -> None:
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._limit = max_response_bytes
        self._pools: dict[str, H1Pool] | None = None
        self._targets: dict[str, tuple[H1Pool, str]] = {}

    async def open(self) -> None:
        """Get ready to send (connections open with the first requests)."""
        if self._pools is None:
            self._pools = {}
            self._targets = {}

    async def aclose(self) -> None:
        """Close every pooled connection."""
        pools, self._pools = self._pools, None
        self._targets = {}
        for pool in (pools or {}).values():
            await pool.aclose()

    def _route(self, url: str) -> tuple[H1Pool, str]:
        """The pool for `url`'s origin and its request target; worked out once per distinct URL."""
        routed = self._targets.get(url)
        if routed is not None:
            return routed
        pools = self._pools
        if pools is None:
            raise ProviderUnavailable("transport is not open")
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = pools.get(origin)
        if pool is None:
            try:
                pool = H1Pool(
                    url,
                    max_connections=self._max_connections,
                    max_body=self._limit,
                    connect_timeout=self._connect_timeout,
                )
            except ProxyConfigError as exc:  # names the variable, never the proxy's credentials
                raise ProviderUnavailable(f"connection failed ({exc})") from None
            except ValueError:
                raise ProviderUnavailable("connection failed (not an http(s) URL)") from None
            pools[origin] = pool
        routed = (pool, pool.target(url))
        if len(self._targets) < _TARGETS:
            self._targets[url] = routed
        return routed

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> HttpResponse:
        """Send a request and read the whole (size-bounded) response."""
        pool, target = self._route(url)
        try:
            response = await pool.request(method, target, headers.items(), body or b"", timeout=timeout)
        except (TimeoutError, HttpError, ValueError) as exc:
            raise _map_error(exc) from None
        return HttpResponse(response.status, Headers(response.headers), response.body)

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None, idle_timeout: float
    ) -> AsyncGenerator[HttpStream]:
        """Send a request and yield the response while its body is still arriving."""
        pool, target = self._route(url)
        async with AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(
                    pool.stream(method, target, headers.items(), body or b"", timeout=idle_timeout)
                )
            except (TimeoutError, HttpError, ValueError) as exc:
                raise _map_error(exc) from None
            yield HttpStream(response, idle_timeout)
