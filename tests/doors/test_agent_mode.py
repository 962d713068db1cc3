"""Agent Mode: MCP tools offered in chat, explicit execution by default, and the hub-run loop for approved tools.

The official `openai` SDK talks to a real hub in front of a scripted fake model (OpenAI wire format) that answers
depending on the conversation, and a real fixture MCP upstream executes the tools.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest

from hub.governance import EntityKind, EntityRef
from llm.testing import FakeRequest, FakeScript, Reply, ToolCall, anthropic_app, openai_app, serve
from tests.hub.harness import ALICE, RunningHub, fixture_stdio, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"


def _last(request: FakeRequest) -> dict[str, Any]:
    """The conversation's last message, as OpenAI shapes it, whichever wire format the fake received."""
    messages: list[dict[str, Any]] = request.body["messages"]  # type: ignore[index]
    last = messages[-1]
    content = last.get("content")
    if request.wire == "anthropic" and isinstance(content, list):
        for block in content:
            if block.get("type") == "tool_result":
                inner = block.get("content")
                text = inner if isinstance(inner, str) else "".join(b.get("text", "") for b in inner or [])
                return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
        return {"role": last["role"], "content": "".join(b.get("text", "") for b in content)}
    return last


def _tool_names(request: FakeRequest) -> list[str]:
    tools: list[dict[str, Any]] = request.body.get("tools") or []  # type: ignore[union-attr]
    return [t["function"]["name"] for t in tools]


@asynccontextmanager
async def agent_hub(tmp_path: Path, script: FakeScript, wire: str = "openai", **key: Any) -> AsyncGenerator[RunningHub]:
    """A hub whose provider `openai` is a scripted fake speaking `wire` (OpenAI or Anthropic Messages)."""
    os.environ["T_AGENT_KEY"] = "sk-agent-test"
    keys = ["sk-agent-test"]
    app = anthropic_app(script, keys=keys) if wire == "anthropic" else openai_app(script, keys=keys)
    async with serve(app) as base:
        config = {
            "hub": {"upstream_start_timeout_s": PATIENCE},
            "servers": {"fixture": fixture_stdio()},
            "providers": {
                "openai": {
                    "kind": wire,
                    "base_url": f"{base}/v1" if wire == "openai" else base,
                    "keys": [{"name": "main", "secret": "env:T_AGENT_KEY"}],
                }
            },
            "keys": [
                {
                    "name": "agent",
                    "secret": ALICE,
                    "models": ["openai/*"],
                    "tools": ["fixture__add", "fixture__echo", "fixture__fail", "fixture__slow"],
                    "chat_tools": ["fixture__*"],
                    **key,
                }
            ],
        }
        async with running_hub(config, tmp_path) as hub:
            yield hub


def _client(hub: RunningHub) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0)


def add_then_answer(request: FakeRequest) -> Reply:
    last = _last(request)
    if last["role"] == "tool":
        return Reply(f"the sum is {last['content']}")
    return Reply(tool_calls=[ToolCall("fixture__add", {"a": 2, "b": 3}, id="call_add")])


async def test_explicit_execution_returns_tool_calls_and_the_app_runs_them(tmp_path: Path) -> None:
    script = FakeScript(default=Reply("unused"))
    script.push(add_then_answer, add_then_answer)
    own_tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    async with agent_hub(tmp_path, script) as hub, _client(hub) as client:
        first = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "add 2 and 3"}], tools=[own_tool]
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            executed = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json=call.model_dump(),
                headers={"Authorization": f"Bearer {ALICE}"},
            )
        tool_message = executed.json()
        second = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "add 2 and 3"},
                first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                tool_message,
            ],
        )
    offered = _tool_names(script.requests[0])
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "fixture__add"
    assert offered[0] == "lookup" and "fixture__add" in offered and "fixture__echo" in offered
    assert "agenthub" not in script.requests[0].body  # type: ignore[operator]
    assert tool_message["tool_call_id"] == "call_add" and "5" in tool_message["content"]
    assert second.choices[0].message.content is not None and "5" in second.choices[0].message.content


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_the_hub_runs_approved_tools_over_several_turns(tmp_path: Path, wire: str) -> None:
    def model(request: FakeRequest) -> Reply:
        last = _last(request)
        if last["role"] == "user":
            return Reply(tool_calls=[ToolCall("fixture__add", {"a": 2, "b": 3}, id="c1")])
        if last["tool_call_id"] == "c1":
            return Reply(tool_calls=[ToolCall("fixture__echo", {"message": f"sum {last['content']}"}, id="c2")])
        return Reply(f"done: {last['content']}")

    script = FakeScript(default=Reply("unused"))
    script.push(model, model, model)
    async with (
        agent_hub(tmp_path, script, wire, auto_execute=["fixture__add", "fixture__echo"]) as hub,
        _client(hub) as client,
    ):
        response = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}])
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(50)
    extra: dict[str, Any] = response.model_extra["agenthub"]  # type: ignore[index]
    assert {r.wire for r in script.requests} == {wire}
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content is not None and "sum" in response.choices[0].message.content
    assert extra["turns"] == 3 and [s["name"] for s in extra["steps"]] == ["fixture__add", "fixture__echo"]
    assert [m["role"] for m in extra["executed_messages"]] == ["assistant", "tool", "assistant", "tool"]
    assert response.usage is not None and response.usage.prompt_tokens == 36
    loop = next(r for r in rows if r.call_id == extra["loop_id"])
    assert (loop.door, loop.operation, loop.parent_id, loop.status) == ("openai", "llm.chat", None, 200)
    children = [r for r in rows if r.parent_id == loop.call_id]
    assert sorted(r.operation for r in children) == ["llm.chat"] * 3 + ["mcp.tool"] * 2
    turns = [r for r in children if r.operation == "llm.chat"]
    assert all(r.key_name == "agent" and r.deployment == MODEL and r.tokens and r.tokens > 0 for r in turns)


async def test_a_mix_of_approved_and_unapproved_calls_returns_the_pending_ones(tmp_path: Path) -> None:
    def model(request: FakeRequest) -> Reply:
        return Reply(
            tool_calls=[
                ToolCall("fixture__add", {"a": 1, "b": 1}, id="ok1"),
                ToolCall("fixture__echo", {"message": "needs approval"}, id="ask1"),
            ]
        )

    script = FakeScript(model)
    async with agent_hub(tmp_path, script, auto_execute=["fixture__add"]) as hub, _client(hub) as client:
        response = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}])
    extra: dict[str, Any] = response.model_extra["agenthub"]  # type: ignore[index]
    pending = response.choices[0].message.tool_calls or []
    assert response.choices[0].finish_reason == "tool_calls"
    assert [c.id for c in pending] == ["ask1"]
    assert extra["stopped"] == "approval_required"
    executed = extra["executed_messages"]
    assert [c["id"] for c in executed[0]["tool_calls"]] == ["ok1", "ask1"]
    assert executed[1] == {"role": "tool", "tool_call_id": "ok1", "content": executed[1]["content"]}
    assert "2" in executed[1]["content"]


async def test_a_tool_error_is_fed_back_to_the_model(tmp_path: Path) -> None:
    def model(request: FakeRequest) -> Reply:
        last = _last(request)
        if last["role"] == "tool":
            return Reply(f"the tool said: {last['content']}")
        return Reply(tool_calls=[ToolCall("fixture__fail", {"reason": "disk on fire"}, id="f1")])

    script = FakeScript(model, model)
    async with agent_hub(tmp_path, script, auto_execute=["fixture__fail"]) as hub, _client(hub) as client:
        response = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}])
    extra: dict[str, Any] = response.model_extra["agenthub"]  # type: ignore[index]
    assert "disk on fire" in (response.choices[0].message.content or "")
    assert extra["steps"][0]["is_error"] is True


async def test_depth_and_deadline_stop_the_loop(tmp_path: Path) -> None:
    def always_add(request: FakeRequest) -> Reply:
        return Reply(tool_calls=[ToolCall("fixture__add", {"a": 1, "b": 1}, id=f"a{len(request.body['messages'])}")])  # type: ignore[arg-type]

    def slow(request: FakeRequest) -> Reply:
        return Reply(tool_calls=[ToolCall("fixture__slow", {"seconds": 5}, id="s1")])

    script = FakeScript(default=Reply("unused"))
    async with agent_hub(tmp_path, script, auto_execute=["fixture__add", "fixture__slow"], max_agent_depth=3) as hub:
        async with _client(hub) as client:
            script.push(*[always_add] * 3)
            deep = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}])
            script.push(slow, slow)
            with anyio.fail_after(PATIENCE):
                late = await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "go"}],
                    extra_body={"agenthub": {"deadline_s": 1}},
                )
    deep_extra: dict[str, Any] = deep.model_extra["agenthub"]  # type: ignore[index]
    late_extra: dict[str, Any] = late.model_extra["agenthub"]  # type: ignore[index]
    assert deep_extra["stopped"] == "max_depth" and deep_extra["turns"] == 3
    assert len(deep_extra["steps"]) == 2 and deep.choices[0].finish_reason == "tool_calls"
    assert late_extra["stopped"] == "deadline"


async def test_a_request_can_narrow_but_never_widen_the_tools(tmp_path: Path) -> None:
    script = FakeScript(default=Reply("plain"))
    async with agent_hub(tmp_path, script, chat_tools=["fixture__add", "fixture__echo"]) as hub, _client(hub) as client:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"agenthub": {"chat_tools": ["fixture__echo", "fixture__fail"]}},
        )
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"agenthub": {"bogus": 1}}
            )
    assert _tool_names(script.requests[0]) == ["fixture__echo"]


async def test_a_tool_the_key_may_not_use_is_never_offered_nor_run(tmp_path: Path) -> None:
    def model(request: FakeRequest) -> Reply:
        return Reply(tool_calls=[ToolCall("fixture__rich_content", {"city": "Paris"}, id="r1")])

    script = FakeScript(model)
    async with agent_hub(tmp_path, script, auto_execute=["*"]) as hub, _client(hub) as client:
        response = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}])
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            refused = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json={"id": "r1", "type": "function", "function": {"name": "fixture__rich_content", "arguments": "{}"}},
                headers={"Authorization": f"Bearer {ALICE}"},
            )
    extra: dict[str, Any] = response.model_extra["agenthub"]  # type: ignore[index]
    assert "fixture__rich_content" not in _tool_names(script.requests[0])
    assert extra["stopped"] == "approval_required" and extra["steps"] == []
    assert refused.status_code == 404


async def test_a_streaming_loop_sends_every_turn_and_tool_events(tmp_path: Path) -> None:
    script = FakeScript(default=Reply("unused"))
    script.push(add_then_answer, add_then_answer)
    async with agent_hub(tmp_path, script, auto_execute=["fixture__add"]) as hub, _client(hub) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "add"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    events = [c.model_extra["agenthub"] for c in chunks if c.model_extra and "agenthub" in c.model_extra]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "the sum is" in text and "5" in text
    assert [e["type"] for e in events] == ["tool_execution", "summary"]
    assert events[0]["name"] == "fixture__add" and events[-1]["turns"] == 2


async def test_a_client_that_disconnects_midway_cancels_the_loop_and_nothing_is_lost(tmp_path: Path) -> None:
    def model(request: FakeRequest) -> Reply:
        last = _last(request)
        if last["role"] == "tool":
            return Reply("finished")
        return Reply(tool_calls=[ToolCall("fixture__slow", {"seconds": 3, "steps": 3}, id="s1")])

    script = FakeScript(model, model)
    limits = {"budget": {"max_usd": 100.0, "reset": "1d"}, "rate_limit": {"requests": 1000, "period": "1h"}}
    async with agent_hub(tmp_path, script, auto_execute=["fixture__slow"], **limits) as hub:
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            with anyio.fail_after(PATIENCE):
                async with http.stream(
                    "POST", hub.url("/v1/chat/completions"), json=body, headers={"Authorization": f"Bearer {ALICE}"}
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data:") and '"finish_reason":"tool_calls"' in line.replace(" ", ""):
                            break
        with anyio.fail_after(PATIENCE):
            while not any(_is_loop(r) for r in (await _flushed(hub))):  # noqa: ASYNC110
                await anyio.sleep(0.1)
        rows = await _flushed(hub)
        assert hub.hub.limiter is not None
        key_id = hub.hub.keyring.verify(ALICE).id  # type: ignore[union-attr]
        usage = {s.metric: s for s in await hub.hub.limiter.usage(EntityRef(EntityKind.KEY, key_id))}
    loop = next(r for r in rows if _is_loop(r))
    turns = [r for r in rows if r.parent_id == loop.call_id and r.operation == "llm.chat"]
    tools = [r for r in rows if r.parent_id == loop.call_id and r.operation == "mcp.tool"]
    assert loop.outcome == "cancelled"
    assert len(turns) == 1 and turns[0].outcome == "ok"
    assert [r.outcome for r in tools] == ["cancelled"]
    assert len(script.requests) == 1
    assert usage["requests"].used == 1 and usage["requests"].in_flight == 0
    assert usage["usd"].used > 0 and usage["usd"].in_flight == 0


def _is_loop(row: Any) -> bool:
    """The row of an Agent Mode request itself (its turns and tool runs name it as their parent)."""
    return row.door == "openai" and row.operation == "llm.chat" and row.parent_id is None


async def _flushed(hub: RunningHub) -> list[Any]:
    assert hub.hub.request_log is not None
    await hub.hub.request_log.flush()
    return hub.hub.store.recent_log(100)
