"""A tiny reverse proxy that adds fixed request headers, for clients that cannot send them.

The MCP conformance suite (0.1.16) connects to `--url` with no way to set a request header, and the hub
answers every unauthenticated `/mcp` request with 401. This proxy sits in front of the hub on its own
loopback port, forwards each request unchanged (method, path, query, body, and every header including
`Host` and `Origin`, so the hub's DNS-rebinding check still sees what the client sent) plus the given
headers, and streams the answer back chunk by chunk (SSE streams stay live). It stops reading the hub's
answer as soon as the client disconnects.

    async with header_proxy("http://127.0.0.1:8787", {"Authorization": "Bearer ahk-..."}) as proxy:
        run_conformance(proxy.url("/mcp/conformance"), ...)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import uvicorn

from tests.tools import free_port
from tests.tools.patience import PATIENCE

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class ProxyStats:
    """What went through the proxy (for assertions that the client really used it)."""

    requests: int = 0
    methods: dict[str, int] = field(default_factory=lambda: {})


class HeaderProxy:
    """The ASGI app: forward to `target` with `add` merged into the request headers."""

    def __init__(self, target: str, add: Mapping[str, str], client: httpx2.AsyncClient) -> None:
        self.target = target.rstrip("/")
        self.add = {k.lower(): v for k, v in add.items()}
        self.client = client
        self.stats = ProxyStats()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method: str = scope["method"]
        self.stats.requests += 1
        self.stats.methods[method] = self.stats.methods.get(method, 0) + 1
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP | self.add.keys()
        ]
        headers += list(self.add.items())
        url = self.target + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self.client.build_request(method, url, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            out = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            await response.aclose()


async def _cancel_on_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


@dataclass
class RunningProxy:
    """A proxy serving on 127.0.0.1:`port`."""

    port: int
    app: HeaderProxy

    def url(self, path: str = "/mcp") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def stats(self) -> ProxyStats:
        return self.app.stats


@contextlib.asynccontextmanager
async def header_proxy(target: str, add: Mapping[str, str], *, port: int | None = None) -> AsyncIterator[RunningProxy]:
    """Serve a `HeaderProxy` in front of `target` until the block ends."""
    chosen = port or free_port()
    timeout = httpx2.Timeout(10.0, read=None)
    async with httpx2.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        app = HeaderProxy(target, add, client)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=chosen,
            log_level="warning",
            lifespan="off",
            server_header=False,
            date_header=False,
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            with anyio.fail_after(PATIENCE):
                while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                    await anyio.sleep(0.02)
            try:
                yield RunningProxy(chosen, app)
            finally:
                server.should_exit = True
                server.force_exit = True
