"""One local fake for Bedrock, Azure Content Safety, Model Armor and Patronus (Starlette + uvicorn).

Each route records the request (path, query, headers, JSON) and answers the next scripted
response for its vendor, or a default "nothing found" answer in the vendor's exact shape.
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DEFAULTS: dict[str, Any] = {
    "bedrock": {"action": "NONE", "actionReason": "No action.", "outputs": [], "assessments": [], "usage": {}},
    "azure-analyze": {"blocklistsMatch": [], "categoriesAnalysis": [{"category": "Hate", "severity": 0}]},
    "azure-shield": {"userPromptAnalysis": {"attackDetected": False}, "documentsAnalysis": []},
    "model_armor": {
        "sanitizationResult": {"filterMatchState": "NO_MATCH_FOUND", "invocationResult": "SUCCESS", "filterResults": {}}
    },
    "patronus": {
        "results": [
            {"evaluator_id": "judge", "criteria": "c", "status": "success", "evaluation_result": {"pass": True}}
        ]
    },
}


@dataclass
class Scripted:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=lambda: {})
    raw: bytes | None = None
    hang: bool = False


@dataclass
class Recorded:
    vendor: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any


class FakeVendors:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self.release = threading.Event()
        routes = [
            Route("/guardrail/{rest:path}", self._bedrock, methods=["POST"]),  # the id is a %-encoded ARN
            Route("/contentsafety/{operation}", self._azure, methods=["POST"]),
            Route("/v1/projects/{project}/locations/{location}/templates/{rest}", self._armor, methods=["POST"]),
            Route("/v1/evaluate", self._patronus, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)
        self.url = ""

    def script(self, vendor: str, *responses: Scripted) -> None:
        self.scripts[vendor].extend(responses)

    async def _answer(self, vendor: str, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            Recorded(
                vendor, request.scope["raw_path"].decode(), request.url.query, dict(request.headers), orjson.loads(body)
            )
        )
        scripted = self.scripts[vendor].popleft() if self.scripts[vendor] else Scripted()
        if scripted.hang:
            await anyio.to_thread.run_sync(self.release.wait, 10)
        content = scripted.raw if scripted.raw is not None else orjson.dumps(scripted.body or DEFAULTS[vendor])
        return Response(content, scripted.status, scripted.headers, media_type="application/json")

    async def _bedrock(self, request: Request) -> Response:
        return await self._answer("bedrock", request)

    async def _azure(self, request: Request) -> Response:
        operation = request.path_params["operation"]
        return await self._answer("azure-analyze" if operation == "text:analyze" else "azure-shield", request)

    async def _armor(self, request: Request) -> Response:
        return await self._answer("model_armor", request)

    async def _patronus(self, request: Request) -> Response:
        return await self._answer("patronus", request)


@contextmanager
def serve() -> Iterator[FakeVendors]:
    """Run the fake on 127.0.0.1 (a pre-bound socket, so it accepts as soon as this yields)."""
    fake = FakeVendors()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app, lifespan="off", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.should_exit = True
        thread.join(10)
        sock.close()
