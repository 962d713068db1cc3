"""Embeddings through the OpenAI door: the provider's response reaches the client byte for byte (the vectors are
never parsed and printed again), and governance still sees what it needs: usage and cost, the request log, and
output guardrails, which read the response whole when they apply."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm.testing import serve
from tests.hub.harness import ALICE, RunningHub, running_hub

pytestmark = pytest.mark.anyio

MODEL = "text-embedding-3-small"
PRICES = {f"openai/{MODEL}": {"input": 1000.0, "output": 0.0}}
"""USD per million tokens: 7 prompt tokens cost 0.007 USD."""

BODY = (
    b'{\n  "object": "list",\n  "data": [\n    {"object": "embedding", "index": 0, "embedding": '
    b"[0.50, -1E-3, 2.5e+2, 0.1000000000000000055511151231257827, -0.0069292835]}\n  ],\n"
    b'  "model": "text-embedding-3-small-falcon",\n  "usage": {"prompt_tokens": 7, "total_tokens": 7}\n}\n'
)
"""An embeddings response as a provider may print it: indented, numbers in forms a JSON encoder would print
differently (`0.50`, `-1E-3`, a long decimal), and a model name a guardrail can match."""


def upstream_app(body: bytes, seen: list[dict[str, Any]]) -> Starlette:
    """An OpenAI-compatible provider that answers every embeddings request with `body`, recording what it got."""

    async def embeddings(request: Request) -> Response:
        seen.append(orjson.loads(await request.body()))
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


@contextlib.asynccontextmanager
async def hub_before(
    tmp_path: Path, body: bytes, seen: list[dict[str, Any]], guardrails: list[dict[str, Any]] | None = None
) -> AsyncGenerator[RunningHub]:
    async with serve(upstream_app(body, seen)) as url:
        config: dict[str, Any] = {
            "hub": {"upstream_start_timeout_s": 5},
            "servers": {},
            "keys": [{"name": "alice", "secret": ALICE, "models": ["*"]}],
            "providers": {
                "openai": {"kind": "openai", "base_url": f"{url}/v1", "keys": [{"secret": "env:T_OPENAI"}]},
            },
            "prices": PRICES,
            "guardrails": guardrails or [],
        }
        async with running_hub(config, tmp_path) as hub:
            yield hub


async def embed(hub: RunningHub, **extra: Any) -> httpx2.Response:
    request = {"model": f"openai/{MODEL}", "input": ["one two three", "four five six seven"], **extra}
    async with httpx2.AsyncClient(timeout=20) as client:
        return await client.post(hub.url("/v1/embeddings"), json=request, headers={"authorization": f"Bearer {ALICE}"})


async def logged_rows(hub: RunningHub) -> list[tuple[Any, ...]]:
    log = hub.hub.request_log
    assert log is not None
    await log.flush()
    with hub.hub.store.engine.connect() as conn:
        query = "SELECT operation, outcome, deployment, tokens, cost_usd FROM request_log WHERE operation = 'llm.embed'"
        return [tuple(row) for row in conn.exec_driver_sql(query)]


async def test_an_embeddings_response_reaches_the_client_exactly_as_the_provider_sent_it(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    async with hub_before(tmp_path, BODY, seen) as hub:
        response = await embed(hub, dimensions=5)
        rows = await logged_rows(hub)
    assert response.status_code == 200
    assert response.content == BODY
    assert response.headers["content-type"] == "application/json"
    assert float(response.headers["x-agenthub-cost-usd"]) == pytest.approx(7 * 1000 / 1e6)
    assert seen == [{"model": MODEL, "input": ["one two three", "four five six seven"], "dimensions": 5}]
    assert rows == [("llm.embed", "ok", f"openai/{MODEL}", 7, pytest.approx(0.007))]


async def test_a_response_whose_usage_is_not_last_is_still_accounted_and_passed_on(tmp_path: Path) -> None:
    body = b'{"usage": {"prompt_tokens": 4, "total_tokens": 4}, "object": "list", "data": [], "model": "m"}'
    async with hub_before(tmp_path, body, []) as hub:
        response = await embed(hub)
        rows = await logged_rows(hub)
    assert response.status_code == 200 and response.content == body
    assert rows == [("llm.embed", "ok", f"openai/{MODEL}", 4, pytest.approx(0.004))]


async def test_a_malformed_embeddings_response_is_an_upstream_failure(tmp_path: Path) -> None:
    async with hub_before(tmp_path, b'{"object": "list", "data": [', []) as hub:
        response = await embed(hub)
        rows = await logged_rows(hub)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert [row[:2] for row in rows] == [("llm.embed", "upstream_error")]


async def test_an_output_guardrail_still_reads_an_embeddings_response_and_blocks_it(tmp_path: Path) -> None:
    guard = {"name": "codename", "kind": "regex", "pattern": "falcon", "apply_to": "output"}
    async with hub_before(tmp_path, BODY, [], [guard]) as hub:
        response = await embed(hub)
        rows = await logged_rows(hub)
    assert response.status_code == 403
    assert "falcon" not in response.text and "codename" in response.json()["error"]["message"]
    assert [row[:2] for row in rows] == [("llm.embed", "permission_error")]


async def test_an_output_guardrail_redacts_an_embeddings_response_which_then_keeps_its_vectors(tmp_path: Path) -> None:
    guard = {"name": "codename", "kind": "regex", "pattern": "falcon", "apply_to": "output", "action": "redact"}
    async with hub_before(tmp_path, BODY, [], [guard]) as hub:
        response = await embed(hub)
    sent = orjson.loads(BODY)
    received = response.json()
    assert response.status_code == 200 and "falcon" not in response.text
    assert received["data"] == sent["data"] and received["usage"] == sent["usage"]
    assert received["model"].startswith("text-embedding-3-small-") and received["model"] != sent["model"]
