"""One behaviour, both doors: the same key policy gives the same answer through MCP `tools/call` and through
OpenAI chat completions, because both are governed `Call`s through the one pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import openai
import pytest
from mcp.shared.exceptions import MCPError

from tests.doors.harness import Fakes, async_client, llm_config, running_fakes
from tests.hub.harness import RunningHub, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio
SECRET = "ahk-carol-governed-000000000000000000000000"
_LABELS_BY_STATUS = {401: "unauthenticated", 402: "budget", 403: "forbidden", 404: "not_found", 429: "rate_limited"}
_LABELS_BY_CODE = {-32001: "unauthenticated", -32004: "budget", -32003: "forbidden", -32005: "rate_limited"}


@dataclass
class Answer:
    """A door's answer reduced to what governance decided."""

    label: str
    retry_after: str | None = None


class Door(Protocol):
    name: str

    async def call(self, hub: RunningHub, secret: str) -> Answer: ...


class McpToolDoor:
    name = "mcp"

    async def call(self, hub: RunningHub, secret: str) -> Answer:
        try:
            async with mcp_client(hub.url(), secret, mode="2026-07-28") as client:
                await client.call_tool("fixture__echo", {"message": "hi"})
        except BaseException as exc:  # the SDK raises its error inside task-group exception groups
            error = _find_mcp_error(exc)
            if error is None:
                raise
            return Answer(_LABELS_BY_CODE.get(error.error.code, f"code {error.error.code}"))
        return Answer("ok")


class OpenAIChatDoor:
    name = "openai"

    async def call(self, hub: RunningHub, secret: str) -> Answer:
        async with async_client(hub, secret) as client:
            try:
                await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
            except openai.APIStatusError as exc:
                label = _LABELS_BY_STATUS.get(exc.status_code, f"status {exc.status_code}")
                return Answer(label, exc.response.headers.get("retry-after"))
        return Answer("ok")


def _find_mcp_error(exc: BaseException) -> MCPError | None:
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_mcp_error(inner)
        if found is not None:
            return found
    return None


@pytest.fixture(params=[McpToolDoor(), OpenAIChatDoor()], ids=lambda d: d.name)
def door(request: pytest.FixtureRequest) -> Door:
    return request.param


@contextlib.asynccontextmanager
async def governed_hub(tmp_path: Path, **policy: Any) -> AsyncGenerator[tuple[RunningHub, Fakes]]:
    """A hub with the fixture MCP server and the LLM fakes; key `carol` may use both, with `policy`."""
    async with running_fakes() as fakes:
        key = {"name": "carol", "secret": SECRET, "tools": ["*"], "models": ["*"], **policy}
        config = llm_config(fakes, [key], pricing={"tools": {"fixture__echo": 0.014}})
        config["servers"] = {"fixture": fixture_stdio()}
        config["hub"]["upstream_start_timeout_s"] = PATIENCE
        async with running_hub(config, tmp_path) as hub:
            yield hub, fakes


async def test_a_bad_key_is_401_on_both_doors(door: Door, tmp_path: Path) -> None:
    async with governed_hub(tmp_path) as (hub, _):
        assert (await door.call(hub, SECRET)).label == "ok"
        assert (await door.call(hub, "ahk-not-a-key-000000000000000000000000000000")).label == "unauthenticated"
        assert (await door.call(hub, "sk-wrong-shape")).label == "unauthenticated"


async def test_a_request_rate_limit_is_429_on_both_doors(door: Door, tmp_path: Path) -> None:
    async with governed_hub(tmp_path, rate_limit={"requests": 2, "period": "1m"}) as (hub, _):
        answers = [await door.call(hub, SECRET) for _ in range(3)]
    assert [a.label for a in answers] == ["ok", "ok", "rate_limited"]
    if door.name == "openai":  # MCP errors have no headers
        assert answers[-1].retry_after is not None and 1 <= int(answers[-1].retry_after) <= 60


async def test_a_spent_budget_is_402_on_both_doors(door: Door, tmp_path: Path) -> None:
    async with governed_hub(tmp_path, budget={"max_usd": 0.02, "reset": "1d"}) as (hub, _):
        answers = [(await door.call(hub, SECRET)).label for _ in range(4)]
    assert answers[0] == "ok"  # each call costs 0.014 USD (tool price, or the model's token price)
    first_denied = answers.index("budget")
    assert all(a == "budget" for a in answers[first_denied:])


async def test_a_revoked_key_stops_working_on_both_doors(door: Door, tmp_path: Path) -> None:
    async with governed_hub(tmp_path) as (hub, _):
        assert (await door.call(hub, SECRET)).label == "ok"
        await anyio.to_thread.run_sync(hub.hub.store.revoke_key, "carol")
        await anyio.to_thread.run_sync(hub.hub.reload_keys)
        assert (await door.call(hub, SECRET)).label == "unauthenticated"


async def test_listings_count_nothing_and_are_refused_once_the_key_is_over_its_limit(tmp_path: Path) -> None:
    """A client lists tools on its own, around its calls (a 2026-07-28 client reads the list after its first call):
    listings count nothing against the key's request limit, and are refused once a request of the key was."""
    async with governed_hub(tmp_path, rate_limit={"requests": 1, "period": "1m"}) as (hub, _):
        async with mcp_client(hub.url(), SECRET, mode="2026-07-28") as client:
            await client.list_tools()
            await client.call_tool("fixture__echo", {"message": "hi"})
            await client.list_tools()
            with pytest.raises(MCPError) as refused_call:
                await client.call_tool("fixture__echo", {"message": "again"})
            with pytest.raises(MCPError) as refused_list:
                await client.list_tools()
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = [(r.operation, r.status) for r in reversed(hub.hub.store.recent_log(10))]
    assert refused_call.value.error.code == refused_list.value.error.code == -32005
    assert rows == [("mcp.list", 200), ("mcp.tool", 200), ("mcp.list", 200), ("mcp.tool", 429), ("mcp.list", 429)]
