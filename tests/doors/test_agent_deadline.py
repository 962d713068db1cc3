"""Agent Mode's deadline bounds the loop's own waits (model turns, tool runs), never the client reading the stream.

When the deadline stops a streamed loop, the client still gets a final chunk saying so (a `finish_reason` and the
summary the non-streaming response carries) and `data: [DONE]`. The model is a scripted fake (OpenAI wire format)
served on 127.0.0.1; the tool is a real MCP server in this process whose one tool waits until the test releases it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import openai
import orjson
import pytest
from mcp.server.mcpserver import MCPServer
from openai.types.chat import ChatCompletionChunk

from hub.call import Call
from hub.executors.stream import ClosingStream
from llm.testing import FakeRequest, FakeScript, Fault, Reply, ToolCall, openai_app, serve as serve_fake
from tests.auth.servers import bound_socket, serve as serve_apps
from tests.hub.harness import ALICE, RunningHub, running_hub

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"
DEADLINE_S = 1.5
"""The loop deadline the requests ask for: the fake model answers its first turn in milliseconds, far inside it."""


@dataclass
class Gate:
    """The upstream tool's side: `entered` once a call arrived, and the event that lets it return."""

    entered: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)
    calls: int = 0


@asynccontextmanager
async def gated_upstream() -> AsyncGenerator[tuple[Gate, str]]:
    """A Streamable HTTP MCP server whose tool `wait` returns only when the test sets `gate.release`."""
    gate = Gate()
    server = MCPServer("gate")

    @server.tool()
    async def wait() -> str:
        """Wait until released."""
        gate.calls += 1
        gate.entered.set()
        await gate.release.wait()
        return "released"

    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    try:
        async with serve_apps([(server.streamable_http_app(stateless_http=True, json_response=True), sock)]):
            yield gate, url
    finally:
        gate.release.set()


@asynccontextmanager
async def deadline_hub(tmp_path: Path, script: FakeScript) -> AsyncGenerator[tuple[RunningHub, Gate]]:
    os.environ["T_AGENT_KEY"] = "sk-agent-test"
    async with gated_upstream() as (gate, url), serve_fake(openai_app(script, keys=["sk-agent-test"])) as base:
        config = {
            "hub": {"upstream_start_timeout_s": 15},
            "servers": {"gate": {"transport": "http", "url": url}},
            "providers": {
                "openai": {
                    "kind": "openai",
                    "base_url": f"{base}/v1",
                    "keys": [{"name": "main", "secret": "env:T_AGENT_KEY"}],
                }
            },
            "keys": [
                {
                    "name": "agent",
                    "secret": ALICE,
                    "models": ["openai/*"],
                    "tools": ["gate__*"],
                    "chat_tools": ["gate__*"],
                    "auto_execute": ["gate__wait"],
                }
            ],
        }
        async with running_hub(config, tmp_path) as hub:
            try:
                yield hub, gate
            finally:
                gate.release.set()


def call_the_gate(request: FakeRequest) -> Reply:
    return Reply("let me wait", tool_calls=[ToolCall("gate__wait", {}, id="w1")])


@dataclass
class Streamed:
    """What the client read: every `data:` line in order, and the chunks among them, parsed by the SDK's types."""

    lines: list[str]
    chunks: list[ChatCompletionChunk]

    @property
    def final(self) -> ChatCompletionChunk:
        return self.chunks[-1]

    @property
    def summary(self) -> dict[str, Any]:
        extra = self.final.model_extra or {}
        return extra["agenthub"]


async def stream_through_the_sdk(hub: RunningHub) -> Streamed:
    """One streamed Agent Mode request with the official SDK, read to its end (raw lines, so `[DONE]` is seen)."""
    client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0, timeout=30)
    lines: list[str] = []
    async with client:
        with anyio.fail_after(30):
            async with client.chat.completions.with_streaming_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": "wait for the gate"}],
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"agenthub": {"deadline_s": DEADLINE_S}},
            ) as response:
                lines = [line async for line in response.iter_lines() if line.startswith("data:")]
    payloads = [line.removeprefix("data:").strip() for line in lines]
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(p)) for p in payloads if p != "[DONE]"]
    return Streamed(payloads, chunks)


async def test_a_deadline_during_a_tool_run_ends_the_stream_with_a_final_chunk_and_done(tmp_path: Path) -> None:
    script = FakeScript(call_the_gate, default=Reply("unused"))
    async with deadline_hub(tmp_path, script) as (hub, gate):
        streamed = await stream_through_the_sdk(hub)
        assert gate.entered.is_set()  # the deadline hit while the tool ran
    assert streamed.lines[-1] == "[DONE]"
    assert not any("error" in orjson.loads(p) for p in streamed.lines[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in streamed.chunks if c.choices)
    assert text == "let me wait"
    final = streamed.final
    assert [(c.index, c.finish_reason) for c in final.choices] == [(0, "tool_calls")]
    assert streamed.summary["type"] == "summary" and streamed.summary["stopped"] == "deadline"
    assert streamed.summary["turns"] == 1 and streamed.summary["executed_messages"] == []
    assert final.usage is not None and final.usage.prompt_tokens == 12
    assert len(script.requests) == 1  # no model turn after the deadline


async def test_a_deadline_during_a_stalled_model_turn_ends_the_stream_with_a_final_chunk_and_done(
    tmp_path: Path,
) -> None:
    script = FakeScript(Fault.stall(after=3, reply=Reply("one two three four five six")))
    async with deadline_hub(tmp_path, script) as (hub, gate):
        streamed = await stream_through_the_sdk(hub)
    assert streamed.lines[-1] == "[DONE]"
    assert not any("error" in orjson.loads(p) for p in streamed.lines[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in streamed.chunks if c.choices)
    # What the model sent before it stalled, in order: all of it unless the machine was too slow to relay it
    # within the deadline (the deadline is wall-clock time inside the hub; the property is the ending below).
    assert "one two ".startswith(text)
    final = streamed.final
    assert [(c.index, c.finish_reason) for c in final.choices] == [(0, "length")]
    assert streamed.summary["stopped"] == "deadline" and streamed.summary["turns"] == 0
    assert gate.calls == 0


async def test_a_deadline_cutting_a_later_turn_returns_no_tool_call_twice(tmp_path: Path) -> None:
    """Non-streaming: the tools already ran (their messages are in `executed_messages`); the cut turn answers
    nothing, so the response names no tool call the application would run a second time."""

    def released_then_stall(request: FakeRequest) -> Reply | Fault:
        return Fault.stall()

    script = FakeScript(call_the_gate, released_then_stall)
    async with deadline_hub(tmp_path, script) as (hub, gate):
        gate.release.set()
        client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0, timeout=30)
        async with client:
            with anyio.fail_after(30):
                response = await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "wait for the gate"}],
                    extra_body={"agenthub": {"deadline_s": DEADLINE_S}},
                )
    extra: dict[str, Any] = response.model_extra["agenthub"]  # type: ignore[index]
    assert extra["stopped"] == "deadline" and extra["turns"] == 1
    assert [m["role"] for m in extra["executed_messages"]] == ["assistant", "tool"]
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.tool_calls is None
    assert len(script.requests) == 2


async def test_a_reader_slower_than_the_deadline_is_never_cancelled_by_it(tmp_path: Path) -> None:
    """The stream is read straight from the pipeline: after the first chunk the reader waits past the deadline;
    it is not cancelled, and reading on yields the final chunk (the loop's next wait found the deadline passed)."""
    script = FakeScript(call_the_gate, default=Reply("unused"))
    async with deadline_hub(tmp_path, script) as (hub, gate):
        pipeline = hub.hub.pipeline
        assert pipeline is not None
        body = {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": "go"}],
            "agenthub": {"deadline_s": 0.2},
        }
        call = Call(
            door="openai",
            operation="llm.chat",
            target=MODEL,
            payload=body,
            credential=ALICE,
            context={"api": "chat", "stream": True, "prompt_estimate": 10, "token_estimate": 100},
        )
        outcome = await pipeline(call)
        stream = outcome.value
        assert isinstance(stream, ClosingStream)
        items: list[dict[str, Any]] = []
        try:
            with anyio.fail_after(30):
                iterator = aiter(stream)
                items.append(await anext(iterator))
                await anyio.sleep_until(anyio.current_time() + 0.5)  # the reader is busy past the deadline
                items += [item async for item in iterator]
        finally:
            await stream.aclose()
    assert stream.finished and stream.failure is None
    final = items[-1]
    assert final["agenthub"]["type"] == "summary" and final["agenthub"]["stopped"] == "deadline"
    assert final["choices"][0]["finish_reason"] == "length"  # the turn the reader held up was cut
    assert gate.calls == 0
