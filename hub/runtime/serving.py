"""Serving the hub over HTTP: the pieces one-process `agenthub serve` and each worker of `--workers N` share, so
both run the same app with the same HTTP protocol class, limits and start-up checks."""

from __future__ import annotations

import gc
import logging
import math
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import uvicorn

from hub.runtime.memory import release_free_memory
from hub.settings import ConfigError, Settings, parse_listen

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.runtime.protocol import LimitedHttpToolsProtocol

__all__ = [
    "SETTLE_S",
    "DrainingServer",
    "configure_logging",
    "key_line",
    "open_checked",
    "serve_hub",
    "serving_line",
    "settle_gc",
    "upstream_lines",
]

logger = logging.getLogger("agenthub")


def configure_logging() -> None:
    """Log to stderr at `AGENTHUB_LOG_LEVEL` (default WARNING), with the Code Mode guest's start-up progress."""
    logging.basicConfig(
        level=os.environ.get("AGENTHUB_LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if "AGENTHUB_LOG_LEVEL" not in os.environ:  # start-up progress: a first start builds the Code Mode guest
        for name in ("sandbox.progress", "hub.executors.code"):
            logging.getLogger(name).setLevel(logging.INFO)


def _http_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol] | str:
    """uvicorn's httptools protocol under the serving limits of `[hub]` (header and body deadlines, keep-alive
    timeout, connection cap fitted to the file-descriptor limit), writing each response with a length in one
    piece; uvicorn's own choice when httptools is missing, with only its keep-alive timeout."""
    hub = settings.hub
    if not _has("httptools"):
        logger.warning("httptools is not installed: header and body timeouts and max_connections are not enforced")
        return "auto"
    from hub.runtime.limits import ServingLimits, fit_descriptors
    from hub.runtime.protocol import limited_protocol

    reserve = _DESCRIPTOR_RESERVE + _DESCRIPTORS_PER_UPSTREAM * (len(settings.servers) + len(settings.providers))
    limits = ServingLimits(
        header_timeout_s=hub.header_timeout_s,
        body_timeout_s=hub.body_timeout_s,
        keep_alive_timeout_s=hub.keep_alive_timeout_s,
        max_connections=fit_descriptors(hub.max_connections, reserve),
    )
    return limited_protocol(limits)


_DESCRIPTOR_RESERVE = 64
"""File descriptors kept beside client connections: database, log files, the event loop's own, Redis."""
_DESCRIPTORS_PER_UPSTREAM = 8
"""More kept for each upstream server and LLM provider (their pooled connections, a stdio server's pipes)."""


def serving_line(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"AgentHub is serving MCP at http://{shown}:{port}/mcp"


def key_line(name: str, secret: str) -> str:
    return f"Virtual key '{name}' (shown once, store it now): {secret}"


def upstream_lines(hub: Hub) -> list[str]:
    """One line per upstream server: its state and tool count (the start-up announcement)."""
    lines: list[str] = []
    for name, upstream in sorted(hub.registry.upstreams.items()):
        state = upstream.health.state.value
        extra = f" ({upstream.health.error})" if upstream.health.error and state != "ready" else ""
        lines.append(f"  upstream {name}: {state}, {len(upstream.catalog.tools)} tools{extra}")
    return lines


def open_checked(settings: Settings) -> Hub:
    """Open the hub's store (migrating it) after the checks that stop a start with their reason: the master key the
    upstream tokens need, and the `OTEL_*` values tracing must follow."""
    from hub.app import open_hub
    from hub.telemetry.traceconfig import trace_config
    from hub.upstream_auth.manager import open_token_store

    opened = open_hub(settings)
    open_token_store(settings, opened.store.engine)  # a missing or wrong master key stops here, with its reason
    try:
        trace_config(settings.telemetry)  # so does an `OTEL_*` value tracing cannot follow
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return opened


def serve_hub(
    settings: Settings,
    opened: Hub,
    *,
    on_ready: Callable[[Hub], None],
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve the hub with uvicorn until a signal stops it: on `[hub].listen`, or on `sockets` already listening (a
    worker of `--workers N`). Stopping drains the calls and streams in flight for `[hub] shutdown_grace_s`."""
    import uvicorn

    from hub.http import build_app

    host, port = parse_listen(settings.hub.listen)
    app = build_app(settings, opened, on_ready=on_ready)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=os.environ.get("AGENTHUB_LOG_LEVEL", "warning").lower(),
        loop="uvloop" if _has("uvloop") else "auto",
        http=_http_protocol(settings),
        ws="none",
        timeout_keep_alive=math.ceil(settings.hub.keep_alive_timeout_s),  # the limited protocol takes it exactly
        timeout_graceful_shutdown=math.ceil(settings.hub.shutdown_grace_s),
        lifespan="on",
        access_log=False,
        server_header=False,
        date_header=False,
    )
    if sockets is None:
        uvicorn.Server(config).run()
        return
    DrainingServer(config).run(sockets=sockets)


_GC_YOUNG_THRESHOLD = 30_000
"""Allocations between collections of the youngest generation (CPython's default is 700)."""


def settle_gc() -> None:
    """Once the hub is up: what exists now (modules, settings, the open hub) lives as long as the process, so it is
    moved out of the collector's reach (`gc.freeze`) and later collections scan only what requests allocate; the
    youngest generation is collected less often, since reference counting already frees almost everything a
    request allocates. Without this, full collections over the startup objects cost the LLM door about a third of
    its CPU time under load."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, middle, oldest)
    release_free_memory()  # what start-up allocated and freed (catalog parsing above all) goes back to the system


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


SETTLE_S = 0.25
"""When a worker starts to drain, how long it keeps reading the connections it accepted last before uvicorn closes
those that brought no request yet."""


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining without losing the connections it accepted last.

    At shutdown uvicorn closes every connection that has no request in progress, which is right for an idle
    keep-alive connection but not for one accepted a moment ago whose request is still in the socket buffer: its
    client would see the connection closed with no answer. With workers that happens on every reload, since the
    old workers accept until they are told to stop. So a worker first stops accepting (the connections still in
    the listening socket's queue go to the other workers), reads what already arrived for `SETTLE_S`, and only then
    shuts down as uvicorn does: a request that arrived meanwhile is answered, with `Connection: close`."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()
        await anyio.sleep(SETTLE_S)
        await super().shutdown(sockets=sockets)
