"""The stdio door: `agenthub stdio`, for MCP clients that launch a command (Claude Desktop).

Two modes:
- `--config FILE`: an embedded hub in this process, serving the hub's own MCP door (`McpDoor`) over stdio; the
  caller's key comes from `AGENTHUB_KEY` (started by `hub.cli.stdio`, which composes the hub).
- `--url URL`: a bridge to a running hub's `/mcp` (this module), sending `AGENTHUB_KEY` as the bearer token. It is
  a relay, not a server: every message goes to the hub as it came and every answer comes back as the hub wrote it
  (`hub.doors.stdio_relay`), so the client sees exactly what `/mcp` serves, and the hub governs every request.

Clients give a launched server a few seconds to answer `initialize`, so the bridge imports only what relaying
needs (`anyio`, `httpx2`, `orjson`, the standard library): not the hub, the `mcp` SDK or pydantic
(`tests/e2e/test_stdio_bridge.py` guards the list). Start-up is one round trip to the hub before the first
message is relayed: a `server/discover` that checks the hub answers and takes the key. A key the hub refuses,
or a hub that cannot be reached within `connect_timeout_s`, stops the bridge with a message on stderr and exit
status 1; a request the client sent meanwhile gets a JSON-RPC error with the same message.

stdin is read by a daemon thread with plain `os.read`: a blocking read cannot be cancelled, and a daemon thread
does not keep the process alive when the bridge stops while the client still holds stdin open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator

import anyio
import httpx2
import orjson
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hub.doors.stdio_relay import HubRelay, error_message
from hub.errors import HubError, Unauthenticated, UpstreamFailed

logger = logging.getLogger(__name__)

RETRY_S = (0.1, 1.0)
"""First and longest pause between attempts to reach the hub."""
CHECK_VERSION = "2026-07-28"
"""The revision of the start-up `server/discover` (a hub that does not speak it still answers, with an error)."""
NO_ENDPOINT = frozenset({403, 404, 405, 421})
"""Answers to the start-up check that mean the URL serves no MCP endpoint to this key: every request would fail."""
READ_SIZE = 1 << 16


class BridgeError(Exception):
    """The bridge cannot serve: the message says why (shown on stderr; exit status 1)."""

    def __init__(self, error: HubError) -> None:
        super().__init__(error.message)
        self.error = error


async def serve_bridge(url: str, key: str | None, connect_timeout_s: float) -> None:
    """Relay stdin/stdout MCP to a running hub at `url` until the client closes stdin, giving up when the hub
    cannot be reached within `connect_timeout_s` seconds at start-up.

    Raises:
        SystemExit: the hub refused the key or could not be reached (the message says which).
    """
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    # No read deadline: a tool call lasts as long as the hub lets it, and the session's stream stays open.
    timeout = httpx2.Timeout(connect=connect_timeout_s, read=None, write=30.0, pool=None)
    send, receive = anyio.create_memory_object_stream[bytes](float("inf"))
    stopped: BridgeError | None = None
    # Both ends are closed here too: the reader may still be blocked on a stdin the client holds open.
    with send, receive:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False) as http,
            BlockingPortal() as portal,
        ):
            threading.Thread(target=_read_stdin, args=(portal, send), name="agenthub-stdin", daemon=True).start()
            try:
                await _check(http, url, key, connect_timeout_s, receive)
            except BridgeError as exc:
                stopped = exc
                _refuse_pending(receive, exc.error)
            else:
                await HubRelay(url, http, write_line).run(_lines(receive))
    if stopped is not None:
        raise SystemExit(f"agenthub stdio: {stopped}")


async def _check(
    http: httpx2.AsyncClient,
    url: str,
    key: str | None,
    connect_timeout_s: float,
    stdin: MemoryObjectReceiveStream[bytes],
) -> None:
    """Reach the hub and have it check the key, trying again while it cannot be reached (it may be starting).

    Raises:
        BridgeError: the hub refused the key; `url` serves no MCP endpoint for it (404, 403, 405, 421: nothing
            would work); or the hub could not be reached within `connect_timeout_s` (or before the client closed
            stdin, which ends the attempts).
    """
    meta = {"io.modelcontextprotocol/protocolVersion": CHECK_VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": "agenthub-bridge-check", "method": "server/discover"} | {"params": {"_meta": meta}}
    )
    headers = {"mcp-protocol-version": CHECK_VERSION, "mcp-method": "server/discover"}
    why = "no answer"
    pause = RETRY_S[0]
    with anyio.move_on_after(connect_timeout_s):
        while True:
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx2.HTTPError as exc:
                why = str(exc) or type(exc).__name__
            else:
                if response.status_code == 401:
                    reason = "no key in AGENTHUB_KEY" if not key else "it refused the key in AGENTHUB_KEY"
                    raise BridgeError(Unauthenticated(f"the hub at {url} requires a valid virtual key; {reason}"))
                if response.status_code in NO_ENDPOINT:
                    said = _said(response.content)
                    raise BridgeError(UpstreamFailed(f"the hub at {url} answered HTTP {response.status_code}{said}"))
                return  # any other answer: the hub is there and took the key
            if _closed(stdin):
                break  # the client went away: report now rather than keep trying for nobody
            await anyio.sleep(pause)  # a backoff between attempts, not a synchronisation
            pause = min(pause * 2, RETRY_S[1])
    raise BridgeError(UpstreamFailed(f"cannot reach the hub at {url}: {why}"))


def _said(body: bytes) -> str:
    """`: <message>` of a JSON-RPC error body, or nothing."""
    with contextlib.suppress(orjson.JSONDecodeError):
        found = orjson.loads(body)
        error = found.get("error") if isinstance(found, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return f": {message}"
    return ""


def _closed(stdin: MemoryObjectReceiveStream[bytes]) -> bool:
    """Whether the client closed stdin (what it sent before stays queued)."""
    return stdin.statistics().open_send_streams == 0


def _refuse_pending(stdin: MemoryObjectReceiveStream[bytes], error: HubError) -> None:
    """Answer each request the client sent while the bridge was starting with `error`."""
    while True:
        try:
            line = stdin.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(line)
            if isinstance(message, dict) and "method" in message and "id" in message:
                write_line(error_message(message["id"], error))


async def _lines(stdin: MemoryObjectReceiveStream[bytes]) -> AsyncIterator[bytes]:
    async with stdin:
        async for line in stdin:
            yield line


def _read_stdin(portal: BlockingPortal, send: MemoryObjectSendStream[bytes]) -> None:
    """Read stdin, one message per line, into `send` (closed when stdin ends)."""
    fd = sys.stdin.fileno()
    pending = bytearray()
    try:
        while chunk := os.read(fd, READ_SIZE):
            pending += chunk
            *lines, rest = bytes(pending).split(b"\n")
            pending = bytearray(rest)
            for line in lines:
                if line.strip():
                    portal.call(send.send_nowait, line)
        if pending.strip():
            portal.call(send.send_nowait, bytes(pending))
    except OSError as exc:
        logger.debug("stdin failed: %s", exc)
    except (RuntimeError, anyio.ClosedResourceError):
        return  # the bridge stopped meanwhile (its portal or the stream is closed)
    with contextlib.suppress(RuntimeError):
        portal.call(send.close)


def write_line(raw: bytes) -> None:
    """Write one message to stdout. Synchronous: the relay has nothing better to do while the client reads. A
    client that closed stdout is going away: what it would have read is dropped, and its closing stdin ends the
    bridge."""
    try:
        out = sys.stdout.buffer
        out.write(raw + b"\n")
        out.flush()
    except OSError as exc:
        logger.debug("stdout is closed: %s", exc)
