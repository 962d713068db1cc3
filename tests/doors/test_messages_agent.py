"""MCP tools offered to the model and Agent Mode on the Anthropic Messages door, with the official `anthropic` SDK.

The hub is in front of the scripted fake upstreams (`tests.doors.harness`): an alias passed through to the fake
Anthropic server and one translated for the fake OpenAI server. The MCP tools come from a real MCP server (the
`mcp` SDK's `MCPServer` over Streamable HTTP on 127.0.0.1) that records every call it runs; its `wait` tool returns
only when the test releases it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from hub.call import Call
from hub.errors import UpstreamTimedOut
from hub.executors.stream import ClosingStream
from llm.testing import FakeRequest, Reply, ToolCall
from tests.auth.servers import bound_socket, serve as serve_apps
from tests.doors.harness import Fakes, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, BOB, RunningHub, mcp_client
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PASSED = "claude-sonnet-4-5"
"""An alias passed through to the fake Anthropic upstream."""
TRANSLATED = "gpt-messages"
"""An alias translated for the fake OpenAI upstream."""
MODELS = {
    PASSED: {"deployments": [{"provider": "anthropic", "model": "claude-3-5-haiku"}]},
    TRANSLATED: {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
}
HUB_TOOLS = ["tools__add", "tools__fail", "tools__lookup", "tools__wait"]
KEYS = [
    {
        "name": "agent",
        "secret": ALICE,
        "models": ["*"],
        "tools": ["tools__*"],
        "chat_tools": ["tools__*"],
        "auto_execute": ["tools__add", "tools__fail", "tools__wait"],
        "budget": {"max_usd": 100, "reset": "1d"},
    },
    {"name": "offer", "secret": BOB, "models": ["*"], "tools": ["tools__*"], "chat_tools": ["tools__*"]},
]
USER: list[MessageParam] = [{"role": "user", "content": "add 2 and 3"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The client's own tool.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass
class Upstream:
    """What the MCP server ran, and the gate its `wait` tool waits on."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list[tuple[str, dict[str, Any]]])
    entered: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)


@asynccontextmanager
async def tools_upstream() -> AsyncGenerator[tuple[Upstream, str]]:
    upstream = Upstream()
    server = MCPServer("tools")

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        upstream.calls.append(("add", {"a": a, "b": b}))
        return str(a + b)

    @server.tool()
    def fail(reason: str) -> str:
        """Always fail."""
        upstream.calls.append(("fail", {"reason": reason}))
        raise ToolError(reason)

    @server.tool()
    def lookup(query: str) -> str:
        """Look something up (not auto-approved)."""
        upstream.calls.append(("lookup", {"query": query}))
        return f"found {query}"

    @server.tool()
    async def wait() -> str:
        """Wait until released."""
        upstream.calls.append(("wait", {}))
        upstream.entered.set()
        await upstream.release.wait()
        return "released"

    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    try:
        async with serve_apps([(server.streamable_http_app(stateless_http=True, json_response=True), sock)]):
            yield upstream, url
    finally:
        upstream.release.set()


@asynccontextmanager
async def agent_hub(tmp_path: Path) -> AsyncGenerator[tuple[RunningHub, Fakes, Upstream]]:
    async with tools_upstream() as (upstream, url), running_fakes() as fakes:
        servers = {"tools": {"transport": "http", "url": url}}
        async with hub_with_fakes(tmp_path, fakes, KEYS, models=MODELS, servers=servers) as hub:
            try:
                yield hub, fakes, upstream
            finally:
                upstream.release.set()


def async_client(hub: RunningHub, key: str = ALICE) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=hub.base, api_key=key, max_retries=0, timeout=PATIENCE)


def last_message(request: FakeRequest) -> dict[str, Any]:
    """The conversation's last message, read alike from both wires: `tool` (with its id, text and error flag) or
    the role and text of any other message."""
    messages: list[dict[str, Any]] = request.body["messages"]
    last = messages[-1]
    content = last.get("content")
    if request.wire == "anthropic" and isinstance(content, list):
        for block in content:
            if block.get("type") == "tool_result":
                return {"role": "tool", "id": block["tool_use_id"], "content": block["content"], **block}
        return {"role": last["role"], "content": "".join(b.get("text", "") for b in content)}
    if last["role"] == "tool":
        return {"role": "tool", "id": last["tool_call_id"], "content": last["content"]}
    return last


def offered(request: FakeRequest) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = request.body.get("tools") or []
    return tools


def offered_names(request: FakeRequest) -> list[str]:
    return [t["function"]["name"] if "function" in t else t["name"] for t in offered(request)]


def add_then_answer(request: FakeRequest) -> Reply:
    last = last_message(request)
    if last["role"] == "tool":
        return Reply(f"the sum is {last['content']}")
    return Reply("let me add", tool_calls=[ToolCall("tools__add", {"a": 2, "b": 3}, id="toolu_add")])


async def flushed_rows(hub: RunningHub) -> list[Any]:
    assert hub.hub.request_log is not None
    await hub.hub.request_log.flush()
    return hub.hub.store.recent_log(100)


async def read_events(hub: RunningHub, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A streamed request read as raw server-sent events: (event name, data) in order."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        with anyio.fail_after(PATIENCE):
            async with http.stream(
                "POST", hub.url("/v1/messages"), json={**body, "stream": True}, headers={"x-api-key": ALICE}
            ) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        name = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        events.append((name, orjson.loads(line.removeprefix("data:"))))
    return events


# -- tools offered, the client runs them ------------------------------------------------------------------------


async def test_a_keys_mcp_tools_are_offered_in_anthropics_format_and_the_client_runs_them(tmp_path: Path) -> None:
    """Without `auto_execute` the model's `tool_use` comes back as it is; the client runs it through `/mcp` and
    answers with a `tool_result`. A client tool with a hub tool's name wins: the hub's is left out."""
    clash: ToolParam = {"name": "tools__lookup", "description": "The client's own lookup.", "input_schema": {}}
    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub, BOB) as client:
        fakes.scripts["anthropic"].push(add_then_answer, add_then_answer)
        first = await client.messages.create(
            model=PASSED, max_tokens=64, messages=USER, tools=[WEATHER, clash], extra_headers={"anthropic-beta": "x"}
        )
        ran_by_hub = list(upstream.calls)
        async with mcp_client(hub.url(), BOB) as mcp:
            result = await mcp.call_tool("tools__add", {"a": 2, "b": 3})
        tool_use = first.content[-1]
        assert tool_use.type == "tool_use"
        second = await client.messages.create(
            model=PASSED,
            max_tokens=64,
            messages=[
                *USER,
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "5"}],
                },
            ],
            tools=[WEATHER, clash],
        )
    request = fakes.scripts["anthropic"].requests[0]
    tools = {t["name"]: t for t in offered(request)}
    assert offered_names(request) == ["get_weather", "tools__lookup", "tools__add", "tools__fail", "tools__wait"]
    assert tools["tools__lookup"]["description"] == "The client's own lookup."
    assert set(tools["tools__add"]) == {"name", "description", "input_schema"}
    assert set(tools["tools__add"]["input_schema"]["properties"]) == {"a", "b"}
    assert request.headers.get("anthropic-beta") == "x"
    assert (tool_use.name, tool_use.id, tool_use.input) == ("tools__add", "toolu_add", {"a": 2, "b": 3})
    assert first.stop_reason == "tool_use" and "agenthub" not in (first.model_extra or {})
    assert ran_by_hub == [] and upstream.calls == [("add", {"a": 2, "b": 3})]
    assert result.content[0].text == "5"  # type: ignore[union-attr]
    assert second.content[0].text == "the sum is 5"  # type: ignore[union-attr]


# -- Agent Mode -------------------------------------------------------------------------------------------------


async def test_agent_mode_runs_an_approved_tool_and_logs_every_turn_and_tool_run(tmp_path: Path) -> None:
    async with agent_hub(tmp_path) as (hub, fakes, upstream):
        fakes.scripts["anthropic"].push(add_then_answer, add_then_answer)
        client = anthropic.Anthropic(base_url=hub.base, api_key=ALICE, max_retries=0, timeout=PATIENCE)

        def run() -> anthropic.types.Message:
            with client:
                return client.messages.create(model=PASSED, max_tokens=64, messages=USER)

        message = await anyio.to_thread.run_sync(run)
        rows = await flushed_rows(hub)
    extra: dict[str, Any] = (message.model_extra or {})["agenthub"]
    requests = fakes.scripts["anthropic"].requests
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "the sum is 5"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 24 and message.usage.output_tokens == 4 + 3  # 3 pieces + 1 call, then 3 pieces
    assert extra["turns"] == 2 and extra["stopped"] is None
    assert [(s["name"], s["is_error"], s["tool_call_id"]) for s in extra["steps"]] == [
        ("tools__add", False, "toolu_add")
    ]
    assert upstream.calls == [("add", {"a": 2, "b": 3})]
    second = requests[1].body["messages"]
    assert [b["type"] for b in second[-2]["content"]] == ["text", "tool_use"]
    assert second[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_add", "content": "5"}],
    }
    assert extra["executed_messages"] == second[-2:]
    assert all("tools__add" in offered_names(r) for r in requests)
    loop = next(r for r in rows if r.call_id == extra["loop_id"])
    assert (loop.door, loop.operation, loop.parent_id, loop.status) == ("anthropic", "llm.messages", None, 200)
    children = [r for r in rows if r.parent_id == loop.call_id]
    assert sorted((r.door, r.operation) for r in children) == [
        ("agent", "mcp.tool"),
        ("anthropic", "llm.messages"),
        ("anthropic", "llm.messages"),
    ]
    turns = [r for r in children if r.operation == "llm.messages"]
    assert all(r.deployment == "anthropic/claude-3-5-haiku" and r.cost_usd and r.cost_usd > 0 for r in turns)
    assert sum(r.tokens or 0 for r in turns) == 24 + 7


async def test_a_streamed_loop_is_one_valid_message_without_the_tool_uses_the_hub_ran(tmp_path: Path) -> None:
    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["anthropic"].push(*[add_then_answer] * 4)
        async with client.messages.stream(model=PASSED, max_tokens=64, messages=USER) as stream:
            final = await stream.get_final_message()
        events = await read_events(hub, {"model": PASSED, "max_tokens": 64, "messages": USER})
    names = [name for name, _ in events if name != "ping"]
    hub_events = [data["agenthub"] for name, data in events if name == "agenthub"]
    starts = [data for name, data in events if name == "content_block_start"]
    assert [(b.type, getattr(b, "text", None)) for b in final.content] == [
        ("text", "let me add"),
        ("text", "the sum is 5"),
    ]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 24 and final.usage.output_tokens == 7
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    assert [start["index"] for start in starts] == [0, 1]
    assert [start["content_block"]["type"] for start in starts] == ["text", "text"]
    assert [e["type"] for e in hub_events] == ["tool_execution", "summary"]
    assert hub_events[0]["name"] == "tools__add" and hub_events[1]["turns"] == 2
    assert upstream.calls == [("add", {"a": 2, "b": 3})] * 2


async def test_a_streamed_turns_signed_thinking_goes_back_to_the_model_with_its_tool_use(tmp_path: Path) -> None:
    """Anthropic wants a turn's thinking block, signed, before its `tool_use` when the conversation goes on: the
    hub rebuilds the streamed turn whole (thinking, signature, text, tool input) for the next request."""

    def think_then_add(request: FakeRequest) -> Reply:
        if last_message(request)["role"] == "tool":
            return Reply("the sum is 5")
        return Reply("adding", thinking="two plus three", tool_calls=[ToolCall("tools__add", {"a": 2, "b": 3})])

    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["anthropic"].push(think_then_add, think_then_add)
        async with client.messages.stream(model=PASSED, max_tokens=64, messages=USER) as stream:
            final = await stream.get_final_message()
    turn = fakes.scripts["anthropic"].requests[1].body["messages"][-2]
    thinking, text, tool_use = turn["content"]
    assert thinking == {"type": "thinking", "thinking": "two plus three", "signature": "fake-thinking-signature"}
    assert (text["type"], text["text"]) == ("text", "adding")
    assert (tool_use["type"], tool_use["name"], tool_use["input"]) == ("tool_use", "tools__add", {"a": 2, "b": 3})
    assert [b.type for b in final.content] == ["thinking", "text", "text"]
    assert upstream.calls == [("add", {"a": 2, "b": 3})]


async def test_calls_the_key_may_not_auto_execute_and_the_clients_own_tools_end_the_loop(tmp_path: Path) -> None:
    def mixed(request: FakeRequest) -> Reply:
        return Reply(
            "three things",
            tool_calls=[
                ToolCall("tools__add", {"a": 1, "b": 1}, id="toolu_ok"),
                ToolCall("tools__lookup", {"query": "printer"}, id="toolu_ask"),
                ToolCall("get_weather", {"city": "Paris"}, id="toolu_own"),
            ],
        )

    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["anthropic"].push(mixed, mixed)
        message = await client.messages.create(model=PASSED, max_tokens=64, messages=USER, tools=[WEATHER])
        async with client.messages.stream(model=PASSED, max_tokens=64, messages=USER, tools=[WEATHER]) as stream:
            events = [e async for e in stream]
            streamed = await stream.get_final_message()
    extra: dict[str, Any] = (message.model_extra or {})["agenthub"]
    assert len(fakes.scripts["anthropic"].requests) == 2  # one turn each
    assert message.stop_reason == streamed.stop_reason == "tool_use"
    for final in (message, streamed):
        kept = [(b.type, getattr(b, "id", None)) for b in final.content]
        assert kept == [("text", None), ("tool_use", "toolu_ask"), ("tool_use", "toolu_own")]
    assert extra["stopped"] == "approval_required"
    executed = extra["executed_messages"]
    assert [b.get("id") for b in executed[0]["content"]] == [None, "toolu_ok", "toolu_ask", "toolu_own"]
    assert executed[1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_ok", "content": "2"}]
    assert upstream.calls == [("add", {"a": 1, "b": 1})] * 2
    hub_events: list[dict[str, Any]] = [e.to_dict()["agenthub"] for e in events if str(e.type) == "agenthub"]  # type: ignore[misc]
    assert [e["type"] for e in hub_events] == ["tool_execution", "approval_required", "summary"]
    assert hub_events[1]["tool_use_ids"] == ["toolu_ask", "toolu_own"]


async def test_a_loop_at_its_depth_hands_the_held_tool_use_to_the_client(tmp_path: Path) -> None:
    def always_add(request: FakeRequest) -> Reply:
        turn = f"toolu_{len(request.body['messages'])}"
        return Reply(tool_calls=[ToolCall("tools__add", {"a": 1, "b": 2}, id=turn)])

    body = {"model": PASSED, "max_tokens": 64, "messages": USER, "agenthub": {"max_agent_depth": 2}}
    async with agent_hub(tmp_path) as (hub, fakes, upstream):
        fakes.scripts["anthropic"].push(always_add, always_add)
        events = await read_events(hub, body)
    names = [name for name, _ in events if name != "ping"]
    starts = [data for name, data in events if name == "content_block_start"]
    delta = next(data for name, data in events if name == "message_delta")
    summary = [data["agenthub"] for name, data in events if name == "agenthub"][-1]
    assert [(s["index"], s["content_block"]["id"]) for s in starts] == [(0, "toolu_3")]
    assert delta["delta"]["stop_reason"] == "tool_use" and summary["stopped"] == "max_depth"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert upstream.calls == [("add", {"a": 1, "b": 2})]


async def test_a_tool_error_goes_back_to_the_model_as_an_error_result(tmp_path: Path) -> None:
    def fail_then_answer(request: FakeRequest) -> Reply:
        last = last_message(request)
        if last["role"] == "tool":
            return Reply(f"the tool said {last['content']} ({last.get('is_error')})")
        return Reply(tool_calls=[ToolCall("tools__fail", {"reason": "disk on fire"}, id="toolu_fail")])

    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["anthropic"].push(fail_then_answer, fail_then_answer)
        message = await client.messages.create(model=PASSED, max_tokens=64, messages=USER)
    extra: dict[str, Any] = (message.model_extra or {})["agenthub"]
    result = fakes.scripts["anthropic"].requests[1].body["messages"][-1]["content"][0]
    assert result["is_error"] is True and "disk on fire" in result["content"]
    assert extra["steps"][0]["is_error"] is True
    assert "disk on fire" in message.content[0].text and "(True)" in message.content[0].text  # type: ignore[union-attr]
    assert upstream.calls == [("fail", {"reason": "disk on fire"})]


@pytest.mark.parametrize("stream", [False, True])
async def test_agent_mode_through_a_translated_provider(tmp_path: Path, stream: bool) -> None:
    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["openai"].push(add_then_answer, add_then_answer)
        if stream:
            async with client.messages.stream(model=TRANSLATED, max_tokens=64, messages=USER) as live:
                message = await live.get_final_message()
        else:
            message = await client.messages.create(model=TRANSLATED, max_tokens=64, messages=USER)
    requests = fakes.scripts["openai"].requests
    texts = [getattr(b, "text", None) for b in message.content]
    assert texts[-1] == "the sum is 5" and message.stop_reason == "end_turn"
    assert "tools__add" in offered_names(requests[0])
    assert requests[1].body["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_add", "content": "5"}
    assert upstream.calls == [("add", {"a": 2, "b": 3})]
    assert message.usage.input_tokens == 24


# -- the deadline -----------------------------------------------------------------------------------------------


def call_the_gate(request: FakeRequest) -> Reply:
    return Reply("waiting", tool_calls=[ToolCall("tools__wait", {}, id="toolu_wait")])


async def test_the_deadline_ends_a_stream_with_the_summary_and_an_error_event(tmp_path: Path) -> None:
    body = {"model": PASSED, "max_tokens": 64, "messages": USER, "agenthub": {"deadline_s": 1}}
    async with agent_hub(tmp_path) as (hub, fakes, upstream), async_client(hub) as client:
        fakes.scripts["anthropic"].push(call_the_gate, call_the_gate)
        events = await read_events(hub, body)
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.messages.create(
                model=PASSED, max_tokens=64, messages=USER, extra_body={"agenthub": {"deadline_s": 1}}
            )
        assert upstream.entered.is_set()
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["agenthub", "error"]
    assert events[-2][1]["agenthub"]["stopped"] == "deadline"
    assert events[-1][1]["error"]["type"] == "timeout_error" and "deadline" in events[-1][1]["error"]["message"]
    assert refused.value.status_code == 504
    assert len(fakes.scripts["anthropic"].requests) == 2  # no model turn after the deadline


async def test_a_reader_slower_than_the_deadline_is_never_cancelled_by_it(tmp_path: Path) -> None:
    """Read straight from the pipeline: the reader waits past the deadline after the first item; reading on gives
    the summary and then the deadline's error, never a cancellation."""
    body = {"model": PASSED, "max_tokens": 64, "stream": True, "messages": USER, "agenthub": {"deadline_s": 0.2}}
    async with agent_hub(tmp_path) as (hub, fakes, upstream):
        fakes.scripts["anthropic"].push(call_the_gate)
        pipeline = hub.hub.pipeline
        assert pipeline is not None
        call = Call(
            door="anthropic",
            operation="llm.messages",
            target=PASSED,
            payload=body,
            credential=ALICE,
            context={"api": "messages", "stream": True, "prompt_estimate": 10, "token_estimate": 100},
        )
        stream = (await pipeline(call)).value
        assert isinstance(stream, ClosingStream) and stream.messages
        items: list[dict[str, Any]] = []
        try:
            with anyio.fail_after(PATIENCE):
                iterator = aiter(stream)
                items.append(await anext(iterator))
                await anyio.sleep_until(anyio.current_time() + 0.5)  # the reader is busy past the deadline
                with pytest.raises(UpstreamTimedOut):
                    async for item in iterator:
                        items.append(item)  # noqa: PERF401 - the items read before the error are kept
        finally:
            await stream.aclose()
    events = [e for i in items for e in i["events"]]
    assert [e["type"] for e in events].count("agenthub") == 1
    assert events[-1]["type"] == "agenthub" and events[-1]["agenthub"]["stopped"] == "deadline"
    assert isinstance(stream.failure, UpstreamTimedOut)
    assert upstream.calls == []  # the turn the reader held up was cut before its tool ran
