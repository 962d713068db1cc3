"""The real Claude Code CLI through the hub to a deployment that is not Anthropic: its Messages requests are
translated to Chat Completions for the OpenAI fake, with `ToolSearch` on (Claude Code's default).

Behind `ToolSearch`, Claude Code's MCP tools are not in `tools`: their names are listed in the conversation, the
model calls `ToolSearch`, Claude Code answers with `tool_reference` blocks and from then on sends the tool with
`defer_loading: true` (docs/agents-wire-notes.md). Translated, `ToolSearch` is an ordinary function tool, its answer
the tool's name as text, and the loaded tool a function tool: the model finds, loads and calls the hub's MCP tool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm.testing import FakeRequest, Reply, ToolCall, openai_app, serve
from tests.agents.harness import agent_clis, claude_env, run_cli
from tests.agents.recorder import proxy_trap
from tests.hub.harness import ALICE, fixture_stdio, running_hub
from tests.tools.node import NodeTools
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODEL = "claude-sonnet-4-5"
TOOL = "mcp__hub__fixture__echo"
UPSTREAM_KEY = "sk-openai-upstream-0001"
UPSTREAM_ENV = "T_CLAUDE_CODE_OPENAI"


@pytest.fixture
def clis() -> NodeTools:
    return agent_clis()


def _hub_config(upstream: str) -> dict[str, Any]:
    return {
        "hub": {"upstream_start_timeout_s": PATIENCE},
        "servers": {"fixture": fixture_stdio("fixture")},
        "keys": [{"name": "coder", "secret": ALICE, "tools": ["fixture__*"], "models": [MODEL, "openai/gpt-4o-mini"]}],
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{upstream}/v1", "keys": [{"secret": f"env:{UPSTREAM_ENV}"}]}
        },
        "models": {MODEL: {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}},
        "prices": {"openai/gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }


def _tool_names(request: FakeRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools") or []]


def _results(request: FakeRequest) -> list[str]:
    return [str(m["content"]) for m in request.body["messages"] if m["role"] == "tool"]


async def test_claude_code_finds_loads_and_calls_an_mcp_tool_through_tool_search_on_a_translation(
    clis: NodeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)
    seen: list[FakeRequest] = []

    def script(request: FakeRequest) -> Reply:
        """Search for the tool, call it once it is loaded, then answer with what it said; any other request
        (Claude Code's side requests, such as a title) gets a short text."""
        seen.append(request)
        names = _tool_names(request)
        if "ToolSearch" not in names:
            return Reply("ok")
        results = _results(request)
        if not results:
            return Reply(tool_calls=[ToolCall("ToolSearch", {"query": f"select:{TOOL}", "max_results": 5})])
        if TOOL in names and len(results) == 1:
            return Reply(tool_calls=[ToolCall(TOOL, {"message": "hello hub"})])
        return Reply(f"The hub's tool said: {results[-1]}")

    workdir = tmp_path / "work"
    workdir.mkdir()
    upstream_app = openai_app(script, keys=[UPSTREAM_KEY])
    async with (
        serve(upstream_app) as upstream,
        running_hub(_hub_config(upstream), tmp_path) as hub,
        proxy_trap() as trap,
    ):
        config = {"mcpServers": {"hub": {"type": "http", "url": hub.url("/mcp"), "headers": {"x-api-key": ALICE}}}}
        mcp = tmp_path / "mcp.json"
        mcp.write_bytes(orjson.dumps(config))
        argv = clis.claude(
            "-p", "Use the echo tool to say hello hub.", "--output-format", "json", "--model", MODEL,
            "--mcp-config", str(mcp), "--strict-mcp-config", "--allowedTools", TOOL,
        )  # fmt: skip
        env = claude_env(hub.base, tmp_path / "home", clis, proxy=trap.url, api_key=ALICE)
        run = await run_cli(argv, env=env, cwd=workdir)
    result = run.ok().json()
    assert trap.attempts == []
    assert "hello hub" in result["result"] and result["permission_denials"] == []
    turns = [r for r in seen if "ToolSearch" in _tool_names(r)]
    assert TOOL not in _tool_names(turns[0])  # deferred: only its name is in the conversation
    assert any(TOOL in _tool_names(r) for r in turns)  # loaded by ToolSearch's answer, then offered
    (called,) = [r for r in turns if len(_results(r)) == 2]
    assert TOOL in _results(called)[0] and "hello hub" in _results(called)[1]
