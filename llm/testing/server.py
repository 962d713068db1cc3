"""Run an ASGI app with uvicorn on 127.0.0.1 inside the caller's event loop, for tests."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncGenerator, Generator

import anyio
import uvicorn
from starlette.types import ASGIApp

__all__ = ["closed_port_url", "serve"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield  # the test process keeps its own signal handlers


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncGenerator[str]:
    """Serve `app` on a fresh 127.0.0.1 port; yield its base URL; stop it on exit.

    The socket is bound and listening before the URL is yielded, so no readiness polling is needed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="off", timeout_graceful_shutdown=5)
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


def closed_port_url() -> str:
    """A 127.0.0.1 URL where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
