"""The real Claude Code CLI with AgentHub as its model gateway and its MCP server at once.

`ANTHROPIC_BASE_URL` points at the hub; the hub passes Claude Code's Messages requests through to a fake Anthropic
upstream that scripts a `tool_use` of one of the hub's own MCP tools; Claude Code, given the hub's `/mcp` (with the
same key) in `--mcp-config`, calls that tool through the hub and prints the final answer. The hub's request log then
holds, under that one key, a `llm.messages` row per model turn and the `mcp.tool` row of the tool call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm.testing.server import serve
from tests.agents.harness import agent_clis, claude_env, run_cli
from tests.agents.messages_fake import MessagesFake, Text, ToolUse, tool_results
from tests.agents.recorder import proxy_trap
from tests.hub.harness import ALICE, fixture_stdio, running_hub
from tests.tools.node import NodeTools
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODEL = "claude-sonnet-4-5"
DEPLOYED = "claude-sonnet-4-5-20250929"
TOOL = "mcp__hub__fixture__echo"
"""The fixture's `echo` tool as the hub exposes it (`fixture__echo`), under the MCP server name `hub`."""
UPSTREAM_KEY = "sk-ant-upstream-0001"
UPSTREAM_ENV = "T_CLAUDE_CODE_UPSTREAM"


@pytest.fixture
def clis() -> NodeTools:
    return agent_clis()


def _hub_config(upstream: str) -> dict[str, Any]:
    return {
        "hub": {"upstream_start_timeout_s": PATIENCE},
        "servers": {"fixture": fixture_stdio("fixture")},
        "keys": [
            {"name": "coder", "secret": ALICE, "tools": ["fixture__*"], "models": [MODEL, f"anthropic/{DEPLOYED}"]}
        ],
        "providers": {
            "anthropic": {"kind": "anthropic", "base_url": upstream, "keys": [{"secret": f"env:{UPSTREAM_ENV}"}]}
        },
        "models": {MODEL: {"deployments": [{"provider": "anthropic", "model": DEPLOYED}]}},
        "prices": {f"anthropic/{DEPLOYED}": {"input": 3.0, "output": 15.0}},
    }


async def test_claude_code_uses_the_hub_for_its_model_and_one_of_the_hubs_mcp_tools(
    clis: NodeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(UPSTREAM_ENV, UPSTREAM_KEY)
    fake = MessagesFake([(ToolUse(TOOL, {"message": "hello hub"}),), (Text("The hub's tool said: hello hub."),)])
    recorder = fake.recorder()
    workdir = tmp_path / "work"
    workdir.mkdir()
    async with serve(recorder) as upstream, running_hub(_hub_config(upstream), tmp_path) as hub, proxy_trap() as trap:
        config = {"mcpServers": {"hub": {"type": "http", "url": hub.url("/mcp"), "headers": {"x-api-key": ALICE}}}}
        mcp = tmp_path / "mcp.json"
        mcp.write_bytes(orjson.dumps(config))
        argv = clis.claude(
            "-p", "Use the echo tool to say hello hub.", "--output-format", "json", "--model", MODEL,
            "--mcp-config", str(mcp), "--strict-mcp-config", "--allowedTools", TOOL,
        )  # fmt: skip
        env = claude_env(hub.base, tmp_path / "home", clis, proxy=trap.url, api_key=ALICE, tool_search=False)
        run = await run_cli(argv, env=env, cwd=workdir)
        log = hub.hub.request_log
        assert log is not None
        await log.flush()
        rows = hub.hub.store.recent_log(1000)
        key = hub.hub.keyring.verify(ALICE)
    result = run.ok().json()
    assert result["result"] == "The hub's tool said: hello hub." and result["permission_denials"] == []
    assert trap.attempts == []

    first, second = recorder.to("/v1/messages")
    assert first.target == "/v1/messages?beta=true" and first.body["model"] == DEPLOYED
    assert first.headers["x-api-key"] == UPSTREAM_KEY and first.headers["anthropic-version"] == "2023-06-01"
    assert "claude-code-20250219" in first.header_list("anthropic-beta")
    assert TOOL in [tool["name"] for tool in first.body["tools"]]
    (echoed,) = tool_results(second.body)
    assert "hello hub" in orjson.dumps(echoed["content"]).decode()

    assert key is not None
    mine = [(r.door, r.operation, r.target, r.status) for r in rows if r.key_id == key.id]
    assert mine.count(("anthropic", "llm.messages", MODEL, 200)) == 2
    assert ("mcp", "mcp.tool", "fixture__echo", 200) in mine
    assert all(r.key_id == key.id for r in rows if r.operation in ("llm.messages", "mcp.tool"))
