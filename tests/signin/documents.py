"""A small web server on 127.0.0.1 that serves client ID metadata documents and counts what it was asked."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.tools import free_port
from tests.tools.patience import PATIENCE


@dataclass
class DocumentServer:
    port: int
    documents: dict[str, Any] = field(default_factory=dict[str, Any])
    requests: list[str] = field(default_factory=list[str])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def document_server() -> AsyncGenerator[DocumentServer]:
    served = DocumentServer(free_port())

    async def document(request: Request) -> Response:
        served.requests.append(request.url.path)
        body = served.documents.get(request.url.path)
        if body is None:
            return Response(status_code=404)
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return Response(raw, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", document)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=served.port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(PATIENCE):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await anyio.sleep(0.02)
        try:
            yield served
        finally:
            server.should_exit = True
