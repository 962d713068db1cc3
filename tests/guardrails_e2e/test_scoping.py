"""Rules apply only where they are scoped: by door, operation, key, team and MCP server. Each rule below looks for
its own token, so one hub shows every scope at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.guardrails_e2e.harness import Refused, e2e_hub, key, secret_of
from tests.hub.harness import fixture_stdio, mcp_client

pytestmark = pytest.mark.anyio

RULES: list[dict[str, Any]] = [
    {"name": "llm-only", "kind": "regex", "pattern": "tok-door", "doors": ["llm"]},
    {"name": "prompts-only", "kind": "regex", "pattern": "tok-op", "operations": ["mcp.prompt"]},
    {"name": "bob-only", "kind": "regex", "pattern": "tok-key", "keys": ["bob"]},
    {"name": "contractors-only", "kind": "regex", "pattern": "tok-team", "teams": ["contract*"]},
    {"name": "other-server", "kind": "regex", "pattern": "tok-server", "servers": ["other"]},
]
SERVERS = {"fixture": fixture_stdio(), "other": fixture_stdio("other")}


async def _mcp(url: str, key_name: str, name: str, text: str, *, prompt: bool = False) -> str:
    """`tools/call` (or `prompts/get`) through the MCP door: the output text, or `refused:<guardrail>`."""
    failure: MCPError | None = None
    output = ""
    async with mcp_client(url, secret_of(key_name)) as client:
        try:
            if prompt:
                got = await client.get_prompt(name, {"name": text})
                output = str(got.messages[0].content.model_dump().get("text"))
            else:
                result = await client.call_tool(name, {"message": text})
                output = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
        except MCPError as exc:
            failure = exc
    if failure is not None:
        assert failure.code == -32003, failure
        return "refused:" + failure.message.split("'")[1]
    return output


async def _llm(hub_send: Any, key_name: str, text: str) -> str:
    try:
        return await hub_send(key_name, text)
    except Refused as exc:
        assert exc.code == 403, exc
        return "refused:" + exc.message.split("'")[1]


async def test_rules_apply_only_within_their_scope(tmp_path: Path) -> None:
    keys = [key("alice", team="contractors"), key("bob")]
    async with e2e_hub(tmp_path, RULES, keys, servers=SERVERS, teams=[{"name": "contractors"}]) as hub:
        url = hub.running.url("/mcp")
        llm = hub.client("llm").send
        seen = {
            "door: mcp": await _mcp(url, "bob", "fixture__echo", "tok-door"),
            "door: llm": await _llm(llm, "bob", "tok-door"),
            "operation: tool": await _mcp(url, "bob", "fixture__echo", "tok-op"),
            "operation: prompt": await _mcp(url, "bob", "fixture__greeting", "tok-op", prompt=True),
            "operation: llm": await _llm(llm, "bob", "tok-op"),
            "key: alice": await _mcp(url, "alice", "fixture__echo", "tok-key"),
            "key: bob": await _mcp(url, "bob", "fixture__echo", "tok-key"),
            "key: bob on llm": await _llm(llm, "bob", "tok-key"),
            "team: alice": await _mcp(url, "alice", "fixture__echo", "tok-team"),
            "team: alice on llm": await _llm(llm, "alice", "tok-team"),
            "team: bob": await _mcp(url, "bob", "fixture__echo", "tok-team"),
            "server: fixture": await _mcp(url, "bob", "fixture__echo", "tok-server"),
            "server: other": await _mcp(url, "bob", "other__echo", "tok-server"),
            "server: llm": await _llm(llm, "bob", "tok-server"),
        }
    assert seen == {
        "door: mcp": "tok-door",
        "door: llm": "refused:llm-only",
        "operation: tool": "tok-op",
        "operation: prompt": "refused:prompts-only",
        "operation: llm": "tok-op",
        "key: alice": "tok-key",
        "key: bob": "refused:bob-only",
        "key: bob on llm": "refused:bob-only",
        "team: alice": "refused:contractors-only",
        "team: alice on llm": "refused:contractors-only",
        "team: bob": "tok-team",
        "server: fixture": "tok-server",
        "server: other": "refused:other-server",
        "server: llm": "tok-server",  # a rule scoped to servers applies to MCP calls only
    }
