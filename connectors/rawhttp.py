"""A lean Streamable HTTP session for the hot path: `tools/call` as bytes in, dict out.

The `mcp` SDK client is complete but heavy per call (typed models both ways, several tasks and streams per
request). For plain tool calls to an HTTP upstream the hub opens, next to the SDK session that serves
everything else (catalog, notifications, sampling), one handshake-era session of its own on a pooled
HTTP/1.1 client (`http1`) and POSTs JSON-RPC directly, reading either a JSON or an SSE response. Any
failure here is reported as an `UpstreamError`, exactly as on the SDK path.

Credentials come from the same `httpx2.Auth` plug-in as the SDK session's (`connectors.auth`): each request is
run through the plug-in's auth flow, so it carries the current token and a 401 gets one refreshed retry.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import orjson

from connectors.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnavailable
from http1 import H1Pool, HttpError, HttpResponse

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
CLIENT_INFO = {"name": "agenthub", "version": "0.1.0"}
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class RawHttpSession:
    """One long-lived handshake-era session with a Streamable HTTP upstream."""

    def __init__(
        self,
        server: str,
        url: str,
        headers: dict[str, str],
        *,
        max_connections: int = 100,
        auth: httpx2.Auth | None = None,
    ) -> None:
        """`auth` sets credentials on every request (its auth flow runs per request, with its retries)."""
        self.server = server
        self._auth = auth
        self.url = url
        self._base_headers = {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
        self._headers = dict(self._base_headers)
        self._ids = itertools.count(1)
        self._http: H1Pool | None = None
        self._target = "/"
        self._max = max_connections
        self._reopen = anyio.Lock()
        self.session_id: str | None = None
        self.in_flight = 0
        """Requests on this session that have not been answered yet."""

    async def open(self) -> None:
        """Connect and run the initialize handshake."""
        if self._http is None:
            try:
                self._http = H1Pool(self.url, max_connections=self._max)
            except ValueError as exc:
                raise UpstreamUnavailable(self.server, f"upstream '{self.server}': {exc}") from None
            self._target = self._http.target(self.url)
        await self._handshake()

    async def _handshake(self) -> None:
        self._headers = dict(self._base_headers)
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        _, response = await self._post("initialize", params, timeout=30)
        session = response.header("mcp-session-id") or None
        self._headers["mcp-protocol-version"] = PROTOCOL_VERSION
        if session:
            self._headers["mcp-session-id"] = session
        self.session_id = session
        await self._send(
            orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), self._headers, timeout=30
        )

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        if self.session_id:
            with anyio.move_on_after(2):
                try:
                    await http.request("DELETE", self._target, self._headers.items())
                except (HttpError, ValueError):
                    pass
        await http.aclose()

    async def request(self, method: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send one request and return its `result`; re-handshake once if the upstream lost the session."""
        self.in_flight += 1
        try:
            result, _ = await self._post(method, params, timeout=timeout)
            return result
        except _SessionGone:
            async with self._reopen:
                await self._handshake()
            result, _ = await self._post(method, params, timeout=timeout)
            return result
        finally:
            self.in_flight -= 1

    async def request_stateless(
        self, method: str, params: dict[str, Any], headers: dict[str, str], *, timeout: float
    ) -> dict[str, Any]:
        """Send one request outside this session and return its `result`: a 2026-07-28 request, which carries its
        protocol version and client in `params["_meta"]` and in `headers` (as the SDK session stamps them)."""
        result, _ = await self._post(method, params, timeout=timeout, headers={**self._base_headers, **headers})
        return result

    async def _post(
        self, method: str, params: dict[str, Any], *, timeout: float, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], HttpResponse]:
        request_id = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        response = await self._send(body, self._headers if headers is None else headers, timeout=timeout)
        status, payload = response.status, response.body
        if status == 404 and self.session_id and headers is None:
            raise _SessionGone
        if status >= 400 and not payload:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' answered HTTP {status}")
        message = _find_response(payload, response.header("content-type"), request_id)
        if message is None:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' sent no response (HTTP {status})")
        error = message.get("error")
        if error is not None:
            code = error.get("code", -32603) if isinstance(error, dict) else -32603
            text = error.get("message", "error") if isinstance(error, dict) else str(error)
            raise UpstreamProtocolError(self.server, int(code), str(text), error.get("data"))
        result = message.get("result")
        if not isinstance(result, dict):
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' sent a malformed result")
        return result, response

    async def _send(self, body: bytes, headers: dict[str, str], *, timeout: float) -> HttpResponse:
        if self._auth is None:
            return await self._send_once(body, headers, timeout=timeout)
        request = httpx2.Request("POST", self.url, headers=headers, content=body)
        flow = self._auth.async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                headers = {k: v for k, v in outgoing.headers.items() if k.lower() not in _NOT_FORWARDED}
                sent = await self._send_once(body, headers, timeout=timeout)
                response = httpx2.Response(sent.status, headers=sent.headers, request=outgoing)
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return sent
        finally:
            await flow.aclose()

    async def _send_once(self, body: bytes, headers: dict[str, str], *, timeout: float) -> HttpResponse:
        http = self._http
        if http is None:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' is not connected")
        try:
            return await http.request("POST", self._target, headers.items(), body, timeout=timeout)
        except TimeoutError:
            raise UpstreamTimeout(self.server, f"upstream '{self.server}' did not answer within {timeout:g}s") from None
        except (HttpError, ValueError) as exc:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' connection failed: {exc}") from None


class LeanSessions:
    """Up to `size` lean sessions with one upstream; each request goes to the least busy one.

    An `mcp` SDK server handles the messages of one session through one set of tasks and streams: sixteen calls at
    a time on one session got 0.82 of the throughput they got on sixteen sessions, and 0.97 on four (the test
    fixture, called directly). The first session opens with `open()`; another opens when a request finds every
    session busy, one at a time, until there are `size` (or the upstream refuses one).
    """

    def __init__(self, server: str, new_session: Callable[[int], RawHttpSession], size: int = 4) -> None:
        """`new_session(size)` makes an unopened session with `server` (`size` divides the connection budget)."""
        self.server = server
        self._new = new_session
        self._size = size
        self._sessions: list[RawHttpSession] = []
        self._growing = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(self) -> None:
        """Open the first session (the upstream's errors propagate as `UpstreamError`)."""
        await self._open_one()

    async def request(self, method: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send one request on the least busy session and return its `result`."""
        session = min(self._open_sessions(), key=_in_flight)
        if session.in_flight and len(self._sessions) < self._size and not self._growing:
            session = await self._grow() or session
        return await session.request(method, params, timeout=timeout)

    async def request_stateless(
        self, method: str, params: dict[str, Any], headers: dict[str, str], *, timeout: float
    ) -> dict[str, Any]:
        """`RawHttpSession.request_stateless` (no session is used)."""
        return await self._open_sessions()[0].request_stateless(method, params, headers, timeout=timeout)

    async def aclose(self) -> None:
        self._closed = True
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.aclose()

    def _open_sessions(self) -> list[RawHttpSession]:
        if not self._sessions:  # closed (a call that started just before the connection was lost)
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' is not connected")
        return self._sessions

    async def _open_one(self) -> RawHttpSession:
        session = self._new(self._size)
        try:
            await session.open()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.aclose()
            raise
        if self._closed:
            with anyio.CancelScope(shield=True):
                await session.aclose()
            raise UpstreamUnavailable(session.server, f"upstream '{session.server}' is not connected")
        self._sessions.append(session)
        return session

    async def _grow(self) -> RawHttpSession | None:
        self._growing = True
        try:
            return await self._open_one()
        except UpstreamError as exc:
            logger.info("upstream %s: no further lean session (%s)", exc.server, exc.message)
            self._size = len(self._sessions)
            return None
        finally:
            self._growing = False


def _in_flight(session: RawHttpSession) -> int:
    return session.in_flight


class _SessionGone(Exception):
    pass


def _find_response(payload: bytes, content_type: str, request_id: int) -> dict[str, Any] | None:
    """The JSON-RPC response with `request_id` in a JSON body or an SSE stream (notifications are skipped)."""
    if not payload:
        return None
    try:
        if content_type.startswith("text/event-stream"):
            for line in payload.split(b"\n"):
                if line.startswith(b"data:"):
                    data = line[5:].strip()
                    if data:
                        message = orjson.loads(data)
                        if isinstance(message, dict) and message.get("id") == request_id:
                            return message
            return None
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(message, list):
        message = next((m for m in message if isinstance(m, dict) and m.get("id") == request_id), None)
    return message if isinstance(message, dict) else None
