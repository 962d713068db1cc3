"""Shared plumbing for the test upstream servers: command line, transports, resumability.

Every server in this folder is a script with the same transport flags:

    python tests/servers/<server>.py                                   # stdio (default)
    python tests/servers/<server>.py --transport sse --port 9100        # GET /sse + POST /messages/
    python tests/servers/<server>.py --transport streamable-http --port 9100   # /mcp

HTTP transports listen on 127.0.0.1 unless `--host` says otherwise, with the SDK's DNS-rebinding
protection (Host/Origin must be a loopback name).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from typing import Any, Literal

from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

Transport = Literal["stdio", "sse", "streamable-http"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "streamable-http")


def transport_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the transport flags every test server accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio", help="wire transport (default stdio)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="HTTP port (default 9100)")
    return parser


def advertise_list_changed(server: MCPServer[Any]) -> None:
    """Make the handshake advertise `listChanged` for tools, prompts and resources.

    `MCPServer` builds its initialize result with default `NotificationOptions` (no `listChanged`);
    the servers here do send list-changed notifications, so they say so.
    """
    lowlevel: Server[Any] = server._lowlevel_server
    options = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
    original: Callable[..., Any] = lowlevel.create_initialization_options

    def create_initialization_options(
        notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return original(notification_options or options, *args, **kwargs)

    lowlevel.create_initialization_options = create_initialization_options


class InMemoryEventStore(EventStore):
    """Keeps every SSE event of a process in memory so a client can resume with `Last-Event-ID`."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(next(self._ids))
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        position = next((i for i, event in enumerate(self._events) if event[0] == last_event_id), None)
        if position is None:
            return None
        stream_id = self._events[position][1]
        for event_id, event_stream, message in self._events[position + 1 :]:
            if event_stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def serve(
    server: MCPServer[Any],
    args: argparse.Namespace,
    *,
    event_store: EventStore | None = None,
    retry_interval_ms: int | None = None,
) -> None:
    """Run `server` on the transport chosen by `args` until the process is stopped."""
    transport: Transport = args.transport
    if transport == "stdio":
        server.run("stdio")
    elif transport == "sse":
        server.run("sse", host=args.host, port=args.port)
    else:
        server.run(
            "streamable-http",
            host=args.host,
            port=args.port,
            event_store=event_store,
            retry_interval=retry_interval_ms,
        )
