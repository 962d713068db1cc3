"""The HTTP client of the LLM data plane, kept behind one small class so it can change.

aiohttp's client was chosen by measurement (`bench/llm_client_bench.py`: about 3-4x the requests per second of
httpx2 through a bare pass-through on the same machine). One `Transport` per provider holds one pooled session
for the router's lifetime (`open()` ... `aclose()`); nothing is created per request. It requires the asyncio
backend of anyio (which uvicorn and the hub use).

Connection and timeout failures become `ProviderUnavailable` / `ProviderTimeout` with the exception's class
name only: URLs and headers (which may carry keys) never reach a message. URLs are sent exactly as given
(`encoded=True`): providers encode path segments themselves, and SigV4 signs those exact bytes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from llm.errors import ProviderError, ProviderResponseError, ProviderTimeout, ProviderUnavailable

__all__ = ["HttpResponse", "HttpStream", "Transport"]

_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
_URL_CACHE = 1024
"""Distinct URLs a transport keeps parsed (a provider has a handful; model names in paths add a few more)."""


def _map_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return ProviderTimeout("timed out")
    return ProviderUnavailable(f"connection failed ({type(exc).__name__})")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, headers (case-insensitive mapping) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpStream:
    """A response being received: status and headers now, the body as chunks of bytes."""

    __slots__ = ("_limit", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse, limit: int) -> None:
        self._resp = resp
        self._limit = limit

    @property
    def status(self) -> int:
        """HTTP status code."""
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers (case-insensitive)."""
        return self._resp.headers

    async def read(self) -> bytes:
        """The whole (remaining) body, bounded by the transport's size limit."""
        return await _read_bounded(self._resp, self._limit)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; a stall longer than the idle timeout raises ProviderTimeout."""
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except (TimeoutError, *_CONNECTION_ERRORS) as exc:
            raise _map_error(exc) from None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        raise ProviderResponseError("response too large")
    parts: list[bytes] = []
    size = 0
    try:
        async for data in resp.content.iter_any():
            size += len(data)
            if size > limit:
                raise ProviderResponseError("response too large")
            parts.append(data)
    except (TimeoutError, *_CONNECTION_ERRORS) as exc:
        raise _map_error(exc) from None
    return b"".join(parts)


class Transport:
    """One pooled HTTP client for one upstream."""

    def __init__(self, *, max_connections: int = 256, connect_timeout: float = 10.0, max_response_bytes: int) -> None:
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._limit = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    async def open(self) -> None:
        """Create the pooled session (must run inside the event loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
                skip_auto_headers=("User-Agent",),
            )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ProviderUnavailable("transport is not open")
        return self._session

    def _url(self, url: str) -> URL:
        """`url` as sent (`encoded=True`); parsed once per distinct URL, up to `_URL_CACHE` of them."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url, encoded=True)
            if len(self._urls) < _URL_CACHE:
                self._urls[url] = parsed
        return parsed

    def _timeout(self, total: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(total)
        if timeout is None:
            timeout = self._timeouts[total] = aiohttp.ClientTimeout(total=total, connect=self._connect_timeout)
        return timeout

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> HttpResponse:
        """Send a request and read the whole (size-bounded) response."""
        session = self._require()
        try:
            async with session.request(
                method, self._url(url), headers=headers, data=body, timeout=self._timeout(timeout)
            ) as resp:
                data = await _read_bounded(resp, self._limit)
                return HttpResponse(resp.status, resp.headers, data)
        except (TimeoutError, *_CONNECTION_ERRORS) as exc:
            raise _map_error(exc) from None

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None, idle_timeout: float
    ) -> AsyncGenerator[HttpStream]:
        """Send a request and yield the response while its body is still arriving."""
        session = self._require()
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=idle_timeout)
        try:
            resp = await session.request(method, self._url(url), headers=headers, data=body, timeout=timeout)
        except (TimeoutError, *_CONNECTION_ERRORS) as exc:
            raise _map_error(exc) from None
        try:
            yield HttpStream(resp, self._limit)
        finally:
            resp.close()
