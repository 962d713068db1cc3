"""The stdio bridge's side of a running hub's `/mcp`: each JSON-RPC message from the client becomes one Streamable
HTTP request, and everything the hub sends back is written to the client as it came.

Messages are relayed as JSON text: the bridge reads only what routing needs (method, id, the protocol version in
`_meta`), so a listing or a result reaches the client exactly as `/mcp` served it, fields the bridge has never
heard of included, and every method `/mcp` serves (completions, logging levels, subscriptions, whatever a later
revision adds) works through it, governed by the hub like any other request.

What the HTTP side needs that stdio does not carry, the relay keeps:
- the session: `Mcp-Session-Id` from the `initialize` answer, sent with every later message, and the negotiated
  `MCP-Protocol-Version`; the hub's messages outside any request (list changes, requests for the client) arrive on
  the session's `GET` stream, opened once the client said `notifications/initialized` and re-opened when it drops;
- a session the hub no longer knows (it restarted, or the session sat idle too long) answers 404: the relay opens
  a new one with the client's own `initialize` (its answer is not relayed; the client already has one) and sends
  the request again; the hub never ran it, so nothing runs twice. Resource subscriptions and a logging level set
  in the old session are not carried over;
- 2026-07-28 requests repeat parts of their body in headers (`hub.doors.stdio_headers`); `Mcp-Param-*` headers
  come from the `x-mcp-header` annotations of the tools the client listed through the bridge (a call to a tool it
  never listed is refused by the hub before it runs; the relay then lists the tools itself and sends it again);
- cancellation: a handshake-era `notifications/cancelled` is passed on; under 2026-07-28 it aborts the request's
  HTTP exchange instead, which is that revision's cancellation on HTTP.

A request the hub cannot answer (unreachable, a stream that ends without an answer, an HTTP error without a
JSON-RPC body) is answered by the relay with a JSON-RPC error naming the hub and the cause, so the client never
waits for an answer that will not come.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import anyio.abc
import httpx2
import orjson

from hub.doors.stdio_headers import HeaderMap, header_map, modern_version, request_headers
from hub.errors import HubError, Unauthenticated, UpstreamFailed

logger = logging.getLogger(__name__)

HEADER_MISMATCH = -32020
"""The JSON-RPC code of a 2026-07-28 request whose headers disagree with its body (refused before it runs)."""
CLOSE_TIMEOUT_S = 2.0
"""How long the bridge waits for the hub to end the session when the client goes away."""
LISTEN_RETRY_S = (0.5, 5.0)
"""First and longest pause before the session's `GET` stream is opened again after it dropped."""


@dataclass
class _Pending:
    """A request waiting for its answer: its scope (cancelled when the client cancels the request)."""

    modern: bool
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancelled: bool = False


def _key(request_id: Any) -> tuple[bool, Any]:
    return (isinstance(request_id, str), request_id)  # "1" and 1 are different ids


def error_message(request_id: Any, error: HubError | dict[str, Any]) -> bytes:
    """A JSON-RPC error answer to `request_id`."""
    body = error if isinstance(error, dict) else {"code": error.jsonrpc_code, "message": error.message}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": body})


class HubRelay:
    """One client's MCP session with the hub at `url`, over `http`; what the hub sends goes to `write`."""

    def __init__(self, url: str, http: httpx2.AsyncClient, write: Callable[[bytes], None]) -> None:
        self._url = url
        self._http = http
        self._write = write
        self._session: str | None = None
        self._version: str | None = None
        """The protocol version `initialize` negotiated (handshake era)."""
        self._modern: str | None = None
        """The 2026-07-28 version the client's latest request named (stateless era)."""
        self._opening: dict[str, Any] | None = None
        """The client's `initialize`, to open a new session when the hub forgot the old one."""
        self._maps: dict[str, HeaderMap] = {}
        self._pending: dict[tuple[bool, Any], _Pending] = {}
        self._renewal = anyio.Lock()
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, lines: AsyncIterator[bytes]) -> None:
        """Relay every message of `lines` until it ends (the client closed stdin), then end the session."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                async for line in lines:
                    await self._take(line, tg)
                tg.cancel_scope.cancel()  # the client is gone: nobody waits for the answers still due
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
                await self._close()

    async def _take(self, line: bytes, tg: anyio.abc.TaskGroup) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._write(error_message(None, {"code": -32700, "message": "Parse error"}))
            return
        if not isinstance(message, dict):
            self._write(error_message(None, {"code": -32600, "message": "a message must be a JSON-RPC object"}))
            return
        message = cast(dict[str, Any], message)
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            if method == "initialize":
                await self._request(message, line)  # what follows needs the session it opens
            else:
                tg.start_soon(self._request, message, line)  # answers come back in any order
        else:
            await self._post(message, line)  # notifications and answers keep their order

    # -- requests ---------------------------------------------------------------------------------------------

    async def _request(self, message: dict[str, Any], raw: bytes) -> None:
        request_id = message["id"]
        pending = _Pending(modern=modern_version(message.get("params")) is not None)
        key = _key(request_id)
        self._pending[key] = pending
        try:
            with pending.scope:
                if not await self._exchange(message, raw, retry=True) and not pending.cancelled:
                    self._fail(request_id, UpstreamFailed(f"the hub at {self._url} ended the answer before sending it"))
        except httpx2.HTTPError as exc:
            if not pending.cancelled:
                why = f"cannot reach the hub at {self._url}: {_reason(exc)}"
                logger.warning("%s", why)
                self._fail(request_id, UpstreamFailed(why))
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]

    async def _exchange(self, message: dict[str, Any], raw: bytes, *, retry: bool) -> bool:
        """POST one request and relay what comes back; True once its answer was written."""
        method: str = message["method"]
        params = message.get("params")
        session = None if method == "initialize" else self._session
        renew = relist = False
        async with self._http.stream("POST", self._url, content=raw, headers=self._headers(method, params)) as resp:
            if resp.status_code == 404 and session is not None and retry:
                renew = True
            elif resp.status_code >= 400 or resp.status_code == 202:
                error = _error_of(await resp.aread())
                if retry and self._unmapped_call(method, params, error):
                    relist = True
                else:
                    self._fail(message["id"], error or _status_error(resp.status_code, self._url))
                    return True
            else:
                if method == "initialize":
                    self._opening = message
                    self._session = resp.headers.get("mcp-session-id")
                return await self._relay(resp, method, message["id"])
        if renew:
            await self._renew(session)
        if relist:
            await self._list_tools(params)
        return await self._exchange(message, raw, retry=False)

    async def _relay(self, response: httpx2.Response, method: str, request_id: Any) -> bool:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            async for event in _events(response):
                if event.data and self._deliver(event.data.encode(), method, request_id):
                    return True  # the hub ends the stream with the answer; no need to wait for it
            return False
        body = await response.aread()
        return bool(body) and self._deliver(body, method, request_id)

    def _deliver(self, raw: bytes, method: str | None = None, request_id: Any = None) -> bool:
        """Write one message from the hub; True when it is the answer to the request being relayed."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            logger.warning("the hub sent a message that is not JSON; skipped")
            return False
        if not isinstance(message, dict):
            logger.warning("the hub sent a message that is not a JSON-RPC object; skipped")
            return False
        message = cast(dict[str, Any], message)
        answer = method is not None and "method" not in message and ("result" in message or "error" in message)
        if answer and message.get("id") is None:  # an error the hub could not tie to the request
            message["id"] = request_id
            raw = orjson.dumps(message)
        elif b"\n" in raw or b"\r" in raw:
            raw = orjson.dumps(message)  # one message per line on stdio
        if answer and method is not None:
            self._learn(method, message.get("result"), raw)
        self._write(raw)
        return answer

    def _learn(self, method: str, result: Any, raw: bytes) -> None:
        """Keep what later requests need from an answer: the negotiated version, the tools' header maps."""
        if not isinstance(result, dict):
            return
        result = cast(dict[str, Any], result)
        if method == "initialize":
            version = result.get("protocolVersion")
            self._version = version if isinstance(version, str) else None
        elif method == "tools/list" and isinstance(tools := result.get("tools"), list):
            mapped = b'"x-mcp-header"' in raw
            for tool in cast(list[Any], tools):
                if isinstance(tool, dict) and isinstance(name := cast(dict[str, Any], tool).get("name"), str):
                    found = header_map(cast(dict[str, Any], tool).get("inputSchema")) if mapped else {}
                    if found:
                        self._maps[name] = found
                    else:
                        self._maps.pop(name, None)

    def _fail(self, request_id: Any, error: HubError | dict[str, Any]) -> None:
        self._write(error_message(request_id, error))

    def _headers(self, method: str, params: Any) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._session is not None and method != "initialize":
            headers["mcp-session-id"] = self._session
        if (version := modern_version(params)) is not None:
            self._modern = version
            name = params.get("name") if method == "tools/call" else None
            headers.update(request_headers(method, params, version, self._maps.get(name) if name else None))
        elif method != "initialize" and (version := self._version or self._modern) is not None:
            headers["mcp-protocol-version"] = version
        return headers

    def _unmapped_call(self, method: str, params: Any, error: dict[str, Any] | None) -> bool:
        """A 2026-07-28 call refused for its headers, to a tool whose annotations the relay has not seen."""
        if method != "tools/call" or error is None or error.get("code") != HEADER_MISMATCH:
            return False
        name = params.get("name") if isinstance(params, dict) else None
        return isinstance(name, str) and name not in self._maps and modern_version(params) is not None

    async def _list_tools(self, params: Any) -> None:
        """List the tools with the envelope of the refused call, to learn their `x-mcp-header` annotations."""
        meta = params.get("_meta") if isinstance(params, dict) else None
        cursor: Any = None
        while True:
            listing: dict[str, Any] = {"_meta": meta}
            if cursor is not None:
                listing["cursor"] = cursor
            message = {"jsonrpc": "2.0", "id": self._own_id(), "method": "tools/list", "params": listing}
            headers = self._headers("tools/list", listing)
            answer = await self._ask(orjson.dumps(message), headers)
            result = answer.get("result") if answer is not None else None
            if not isinstance(result, dict):
                return
            self._learn("tools/list", result, orjson.dumps(result))
            cursor = cast(dict[str, Any], result).get("nextCursor")
            if not isinstance(cursor, str):
                return

    # -- notifications, answers and the session ---------------------------------------------------------------

    async def _post(self, message: dict[str, Any], raw: bytes) -> None:
        method = message.get("method")
        if method == "notifications/cancelled" and not self._cancel(message.get("params")):
            return
        try:
            response = await self._http.post(self._url, content=raw, headers=self._headers(str(method or ""), None))
        except httpx2.HTTPError as exc:
            logger.warning("cannot reach the hub at %s: %s", self._url, _reason(exc))
            return
        if response.status_code >= 400:
            logger.warning("the hub refused %s: HTTP %d", method or "an answer", response.status_code)
        elif method == "notifications/initialized" and self._session is not None and self._tg is not None:
            self._tg.start_soon(self._listen, self._session)

    def _cancel(self, params: Any) -> bool:
        """Stop relaying a request the client cancelled; True when the hub must be told (handshake era)."""
        request_id = params.get("requestId") if isinstance(params, dict) else None
        pending = self._pending.get(_key(request_id))
        if pending is not None:
            pending.cancelled = True
            pending.scope.cancel()
            return not pending.modern
        return self._session is not None

    async def _listen(self, session: str) -> None:
        """Relay the session's `GET` stream (what the hub sends outside any request) while the session lasts."""
        pause = LISTEN_RETRY_S[0]
        while self._session == session:
            headers = self._headers("", None) | {"accept": "text/event-stream"}
            try:
                async with self._http.stream("GET", self._url, headers=headers) as response:
                    if response.status_code == 404:
                        await self._renew(session)  # opens a new session and its stream
                        return
                    if response.status_code != 200:
                        return  # the hub offers no such stream
                    pause = LISTEN_RETRY_S[0]
                    async for event in _events(response):
                        if event.data:
                            self._deliver(event.data.encode())
            except httpx2.HTTPError as exc:
                logger.debug("the hub's stream dropped: %s", _reason(exc))
            await anyio.sleep(pause)  # a backoff before trying again, not a synchronisation
            pause = min(pause * 2, LISTEN_RETRY_S[1])

    async def _renew(self, stale: str | None) -> None:
        """Open a new session in place of `stale`, which the hub no longer knows (once, however many noticed)."""
        async with self._renewal:
            if self._session != stale or self._opening is None:
                return
            self._session = None
            opening = {**self._opening, "id": self._own_id()}
            async with self._http.stream("POST", self._url, content=orjson.dumps(opening)) as response:
                session = response.headers.get("mcp-session-id") if response.status_code == 200 else None
                if session is None:
                    return
                await self._answer_of(response)
            headers = {"mcp-session-id": session}
            if self._version is not None:
                headers["mcp-protocol-version"] = self._version
            initialized = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
            await self._http.post(self._url, content=initialized, headers=headers)
            self._session = session
            logger.info("the hub no longer knew the session; opened a new one")
            if self._tg is not None:
                self._tg.start_soon(self._listen, session)

    async def _ask(self, body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
        """The answer to a request of the relay's own (not relayed), or None."""
        async with self._http.stream("POST", self._url, content=body, headers=headers) as response:
            if response.status_code != 200:
                return None
            return await self._answer_of(response)

    async def _answer_of(self, response: httpx2.Response) -> dict[str, Any] | None:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            async for event in _events(response):
                found = _json(event.data.encode()) if event.data else None
                if found is not None and "method" not in found:
                    return found
            return None
        return _json(await response.aread())

    def _own_id(self) -> str:
        return f"agenthub-bridge-{next(self._ids)}"

    async def _close(self) -> None:
        """End the session on the hub (it would otherwise count against the key until it idles out)."""
        if self._session is None:
            return
        try:
            await self._http.delete(self._url, headers=self._headers("", None))
        except httpx2.HTTPError as exc:
            logger.debug("could not end the session: %s", _reason(exc))


def _events(response: httpx2.Response) -> httpx2.EventSource:
    """The SSE events of `response`, however large each one: a stdio client takes a message of any size, so the
    bridge does not refuse what the hub chose to send."""
    return httpx2.EventSource(response, max_event_size=None)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _error_of(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error object of an HTTP error body, or None."""
    found = _json(body) if body else None
    error = found.get("error") if found is not None else None
    return cast(dict[str, Any], error) if isinstance(error, dict) else None


def _status_error(status: int, url: str) -> HubError:
    if status == 401:
        return Unauthenticated(f"the hub at {url} refused the key in AGENTHUB_KEY")
    if status == 202:
        return UpstreamFailed(f"the hub at {url} accepted the request without answering it")
    return UpstreamFailed(f"the hub at {url} answered HTTP {status}")


def _reason(exc: httpx2.HTTPError) -> str:
    return str(exc) or type(exc).__name__
