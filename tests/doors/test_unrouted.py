"""A request under `/v1` that no route serves gets the OpenAI error envelope, and is recorded like any other.

An unknown path is a 404 and a known path asked with the wrong method a 405 (with `Allow`), both in the envelope
the SDKs parse (`{"error": {"message", "type", "param", "code"}}`); the request crosses the pipeline (a bad key
is a 401 first) and leaves one request-log row with its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.doors.harness import async_client, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub

pytestmark = pytest.mark.anyio

ENVELOPE_FIELDS = {"message", "type", "param", "code"}


async def _rows(hub: RunningHub) -> list[Any]:
    log = hub.hub.request_log
    assert log is not None
    await log.flush()
    return hub.hub.store.recent_log(100)


async def test_an_unknown_path_is_a_404_in_the_openai_envelope_through_the_sdk(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub, async_client(hub) as client:
        with pytest.raises(openai.NotFoundError) as typo:
            await client.post("/chat/completion", body={"model": "fast", "messages": []}, cast_to=object)
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.get("/assistants", cast_to=object)
        rows = await _rows(hub)
    for error in (typo.value, unknown.value):
        assert isinstance(error.body, dict) and set(error.body) == ENVELOPE_FIELDS
        assert error.body["type"] == "not_found_error" and error.body["param"] is None
    assert typo.value.body == {
        "message": "no route: POST /v1/chat/completion",
        "type": "not_found_error",
        "code": "not_found_error",
        "param": None,
    }
    assert "GET /v1/assistants" in unknown.value.message
    assert fakes.requests("openai") == 0
    refused = [(r.door, r.operation, r.target, r.status, r.key_name) for r in rows if r.status == 404]
    assert refused == [
        ("openai", "llm.models", "GET /v1/assistants", 404, "alice"),
        ("openai", "llm.models", "POST /v1/chat/completion", 404, "alice"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/embeddings", "POST"),
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("POST", "/v1/models/fast", "GET, HEAD"),
        ("GET", "/v1/mcp/tool/execute", "POST"),
    ],
)
async def test_a_known_path_with_the_wrong_method_is_a_405_with_allow(
    tmp_path: Path, method: str, path: str, allow: str
) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.request(method, hub.url(path), headers={"Authorization": f"Bearer {ALICE}"})
        rows = await _rows(hub)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == ENVELOPE_FIELDS
    assert error["type"] == "invalid_request_error" and error["code"] == "method_not_allowed"
    assert error["message"] == f"{method} is not allowed on {path}: use {allow}"
    assert [(r.operation, r.target, r.status, r.key_name) for r in rows] == [
        ("llm.models", f"{method} {path}", 405, "alice")
    ]


async def test_without_a_valid_key_an_unrouted_request_is_a_401_first(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        async with httpx2.AsyncClient(timeout=30) as http:
            anonymous = await http.get(hub.url("/v1/nope"))
            wrong = await http.delete(hub.url("/v1/chat/completions"), headers={"Authorization": "Bearer ahk-wrong"})
        rows = await _rows(hub)
    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert "www-authenticate" in response.headers
    assert sorted((r.target, r.status, r.key_id) for r in rows) == [
        ("DELETE /v1/chat/completions", 401, None),
        ("GET /v1/nope", 401, None),
    ]


async def test_a_very_long_unknown_path_is_cut_in_the_answer_and_the_row(tmp_path: Path) -> None:
    path = "/v1/" + "x" * 5000
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.get(hub.url(path), headers={"Authorization": f"Bearer {ALICE}"})
        rows = await _rows(hub)
    assert response.status_code == 404
    assert len(response.json()["error"]["message"]) < 300
    assert len(rows) == 1 and len(rows[0].target) <= 256
