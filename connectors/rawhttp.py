"""A lean Streamable HTTP session for the hot path: `tools/call` as bytes in, dict out.

The `mcp` SDK client is complete but heavy per call (typed models both ways, several tasks and streams per
request). For plain tool calls to an HTTP upstream the hub opens, next to the SDK session that serves
everything else (catalog, notifications, sampling), one handshake-era session of its own on a pooled
HTTP/1.1 client (`http1`) and POSTs JSON-RPC directly, reading either a JSON or an SSE response
(`connectors.answers`). Any failure here is reported as an `UpstreamError`, exactly as on the SDK path.

Every request has one deadline, its `timeout` from the call: a token refresh, a re-handshake and the retry after
it all take what is left of it. A request is sent twice only when that is safe: the HTTP client re-sends it after
a dropped pooled connection only when its MCP method is idempotent (a listing, a read), never a `tools/call`,
which may have run; and an upstream that lost the session (HTTP 404) gets one re-handshake, shared by every call
that saw the same lost session, and one retry.

Credentials come from the same `httpx2.Auth` plug-in as the SDK session's (`connectors.auth`): each request is
run through the plug-in's auth flow, so it carries the current token and a 401 gets one refreshed retry.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import orjson

from connectors.answers import find_response, result_of, transport_error
from connectors.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from http1 import H1Pool, HttpError, HttpResponse, RequestMayHaveBeenProcessed

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
CLIENT_INFO = {"name": "agenthub", "version": "0.1.0"}
HANDSHAKE_TIMEOUT_S = 30.0
"""The deadline of the first handshake (a re-handshake takes what is left of the call's deadline)."""
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "transfer-encoding"})
_IDEMPOTENT = frozenset(
    {
        "initialize",
        "notifications/initialized",  # a marker of the session's state: a second one changes nothing
        "ping",
        "resources/read",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
    }
)
"""MCP methods that may be sent again when a pooled connection dropped them unanswered (besides `*/list`)."""


def idempotent(method: str) -> bool:
    """Whether repeating a request of this MCP method is harmless (a listing, a read); never for `tools/call`."""
    return method in _IDEMPOTENT or method.endswith("/list")


class Deadline:
    """One request's time budget: every step takes what is left of it.

    It counts on `time.monotonic`, not on `anyio.current_time()` (which finds the running backend on each call:
    about 8,000 instructions, a whole per cent of a tool call); only durations leave it, as the `timeout` of each
    step, so the two clocks never meet. A test may pass its own `clock` to decide when the time runs out.
    """

    __slots__ = ("_at", "_clock", "_seconds", "_server")

    def __init__(self, server: str, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._server = server
        self._seconds = seconds
        self._clock = clock
        self._at = clock() + seconds

    def left(self) -> float:
        """Seconds left.

        Raises:
            UpstreamTimeout: none are.
        """
        left = self._at - self._clock()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> UpstreamTimeout:
        return UpstreamTimeout(self._server, f"upstream '{self._server}' did not answer within {self._seconds:g}s")


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
        """The session's request headers; replaced (never changed in place) by a handshake, so a request that saw
        the session lost can tell, by identity, whether another call has opened a new one since it was sent."""
        self._ids = itertools.count(1)
        self._http: H1Pool | None = None
        self._target = "/"
        self._max = max_connections
        self._reopen = anyio.Lock()
        self._refusals = 0
        """Re-handshakes that failed so far; a call sent before one of them failed fails alike (`_renew`)."""
        self._refusal = ""
        """Why the last re-handshake failed."""
        self.session_id: str | None = None
        self.in_flight = 0
        """Requests on this session that have not been answered yet."""

    async def open(self, deadline: Deadline | None = None) -> None:
        """Connect and run the initialize handshake (within `HANDSHAKE_TIMEOUT_S` unless a deadline is given)."""
        if self._http is None:
            try:
                self._http = H1Pool(self.url, max_connections=self._max)
            except ValueError as exc:
                raise UpstreamUnavailable(self.server, f"upstream '{self.server}': {exc}") from None
            self._target = self._http.target(self.url)
        await self._handshake(deadline or Deadline(self.server, HANDSHAKE_TIMEOUT_S))

    async def _handshake(self, deadline: Deadline) -> None:
        headers = dict(self._base_headers)
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        _, response = await self._exchange("initialize", params, headers, deadline)
        session = response.header("mcp-session-id") or None
        headers["mcp-protocol-version"] = PROTOCOL_VERSION
        if session:
            headers["mcp-session-id"] = session
        notification = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await self._send(notification, headers, deadline, "notifications/initialized")
        self._headers = headers
        self.session_id = session

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        if self.session_id:
            try:
                await http.request("DELETE", self._target, self._headers.items(), timeout=2, idempotent=True)
            except (HttpError, ValueError, TimeoutError):
                pass
        await http.aclose()

    async def request(self, method: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send one request and return its `result`, all within `timeout` seconds (see `request_within`)."""
        return await self.request_within(method, params, Deadline(self.server, timeout))

    async def request_within(self, method: str, params: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """Send one request and return its `result` before `deadline`; if the upstream lost the session, open a
        new one (or wait for the call already doing so) and retry once.

        Raises:
            UpstreamTimeout: no answer before the deadline.
            UpstreamProtocolError: the upstream answered with a JSON-RPC error.
            UpstreamUnavailable: the upstream is unreachable, lost the session twice, answered something malformed,
                or closed the connection after a request that is not safe to repeat had left (it may have run).
        """
        self.in_flight += 1
        try:
            headers, refusals = self._headers, self._refusals
            try:
                return (await self._exchange(method, params, headers, deadline, in_session=True))[0]
            except _SessionGone:
                await self._renew(headers, refusals, deadline)
            try:
                return (await self._exchange(method, params, self._headers, deadline, in_session=True))[0]
            except _SessionGone:
                raise UpstreamUnavailable(self.server, f"upstream '{self.server}' lost the session twice") from None
        finally:
            self.in_flight -= 1

    async def request_stateless(
        self, method: str, params: dict[str, Any], headers: dict[str, str], *, timeout: float
    ) -> dict[str, Any]:
        """Send one request outside this session and return its `result`: a 2026-07-28 request, which carries its
        protocol version and client in `params["_meta"]` and in `headers` (as the SDK session stamps them)."""
        deadline = Deadline(self.server, timeout)
        return (await self._exchange(method, params, {**self._base_headers, **headers}, deadline))[0]

    async def _renew(self, lost: dict[str, str], refusals: int, deadline: Deadline) -> None:
        """Open a new session in place of the one `lost` named, unless another call did so since this one's request
        left (then the caller retries on that one) or failed to (`refusals` was the count of failed re-handshakes
        then; the caller fails alike). A call sent after a failure tries again: an upstream that refused one
        re-handshake (still starting, say) may accept the next."""
        try:
            with anyio.fail_after(deadline.left()):
                async with self._reopen:
                    if self._headers is not lost:
                        return
                    if self._refusals != refusals:
                        raise UpstreamUnavailable(self.server, self._refusal)
                    try:
                        await self._handshake(deadline)
                    except UpstreamTimeout:
                        raise  # this call's time ran out; a call with time left may try again
                    except UpstreamError as exc:
                        self._refusal = f"upstream '{self.server}' lost the session and a new one failed: {exc.message}"
                        self._refusals += 1
                        raise UpstreamUnavailable(self.server, self._refusal) from None
        except TimeoutError:
            raise deadline.expired() from None

    async def _exchange(
        self,
        method: str,
        params: dict[str, Any],
        headers: dict[str, str],
        deadline: Deadline,
        *,
        in_session: bool = False,
    ) -> tuple[dict[str, Any], HttpResponse]:
        request_id = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        response = await self._send(body, headers, deadline, method)
        status, payload = response.status, response.body
        if status == 404 and in_session and self.session_id:
            raise _SessionGone
        if status >= 400 and not payload:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' answered HTTP {status}")
        message = find_response(payload, response.header("content-type"), request_id)
        if message is None and status >= 400:
            message = transport_error(payload)
        if message is None:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' sent no response (HTTP {status})")
        return result_of(self.server, message), response

    async def _send(self, body: bytes, headers: dict[str, str], deadline: Deadline, method: str) -> HttpResponse:
        if self._auth is None:
            return await self._send_once(body, headers, deadline, method)
        try:
            with anyio.fail_after(deadline.left()):  # the auth flow may wait on a token endpoint
                return await self._send_authorized(self._auth, body, headers, deadline, method)
        except TimeoutError:
            raise deadline.expired() from None

    async def _send_authorized(
        self, auth: httpx2.Auth, body: bytes, headers: dict[str, str], deadline: Deadline, method: str
    ) -> HttpResponse:
        request = httpx2.Request("POST", self.url, headers=headers, content=body)
        flow = auth.async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                headers = {k: v for k, v in outgoing.headers.items() if k.lower() not in _NOT_FORWARDED}
                sent = await self._send_once(body, headers, deadline, method)
                response = httpx2.Response(sent.status, headers=sent.headers, request=outgoing)
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return sent
        finally:
            await flow.aclose()

    async def _send_once(self, body: bytes, headers: dict[str, str], deadline: Deadline, method: str) -> HttpResponse:
        http = self._http
        if http is None:
            raise UpstreamUnavailable(self.server, f"upstream '{self.server}' is not connected")
        try:
            again = method != "tools/call" and idempotent(method)  # the hot method first: it never is
            return await http.request(
                "POST", self._target, headers.items(), body, timeout=deadline.left(), idempotent=again
            )
        except TimeoutError:
            raise deadline.expired() from None
        except RequestMayHaveBeenProcessed:
            raise UpstreamUnavailable(
                self.server,
                f"upstream '{self.server}' closed the connection without answering {method}: "
                "it may have run, so it was not sent again",
            ) from None
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
        """Send one request on the least busy session and return its `result`, all within `timeout` seconds
        (opening another session included)."""
        deadline = Deadline(self.server, timeout)
        session = min(self._open_sessions(), key=_in_flight)
        if session.in_flight and len(self._sessions) < self._size and not self._growing:
            session = await self._grow(deadline) or session
        return await session.request_within(method, params, deadline)

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

    async def _open_one(self, deadline: Deadline | None = None) -> RawHttpSession:
        session = self._new(self._size)
        try:
            await session.open(deadline)
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

    async def _grow(self, deadline: Deadline) -> RawHttpSession | None:
        self._growing = True
        try:
            return await self._open_one(deadline)
        except UpstreamTimeout:
            raise  # the call's time ran out: not a refusal, a later call may open the session
        except UpstreamError as exc:
            logger.info("upstream %s: no further lean session (%s)", exc.server, exc.message)
            self._size = len(self._sessions)
            return None
        finally:
            self._growing = False


def _in_flight(session: RawHttpSession) -> int:
    return session.in_flight


class _SessionGone(Exception):
    """The upstream answered 404 to a request on the session: it no longer knows the session."""
