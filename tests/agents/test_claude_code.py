"""The Claude Code CLI (2.1.328) in print mode against a recording Messages fake: what it sends, pinned.

These are the baseline a door in front of Claude Code must satisfy: one streamed `POST /v1/messages?beta=true`
per model turn, with its `anthropic-beta` list, `x-api-key` or a Bearer token, a system prompt in cached text
blocks, ~a dozen built-in tools, `thinking`, and `role: "system"` turns inside `messages`; MCP tools either
direct (`ENABLE_TOOL_SEARCH=false`) or deferred behind `ToolSearch` and loaded by `tool_reference` blocks.
Every run is offline: the proxy trap must see nothing, and the recorder every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm.schema import JSON
from llm.testing.server import serve
from tests.agents.harness import CliRun, agent_clis, claude_env, mcp_config, run_cli
from tests.agents.messages_fake import MessagesFake, Text, Thinking, ToolUse, Turn, tool_results
from tests.agents.recorder import ProxyTrap, RecordedRequest, Recorder, proxy_trap
from tests.tools import served, server_argv
from tests.tools.node import NodeTools

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KEY = "sk-ant-agenthub-test-key"
MODEL = "claude-sonnet-4-5"
PROMPT = "Use the echo tool to say hello."
ECHO = "mcp__fixture__echo"
BETAS_ALWAYS = ("claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27")
TOOL_SEARCH_BETA = "advanced-tool-use-2025-11-20"


@dataclass
class Session:
    """One finished `claude -p` run and what the fake and the trap saw."""

    run: CliRun
    recorder: Recorder
    trap: ProxyTrap

    @property
    def turns(self) -> list[RecordedRequest]:
        return self.recorder.to("/v1/messages")


@pytest.fixture
def clis() -> NodeTools:
    return agent_clis()


@pytest.fixture
async def fixture_mcp() -> AsyncIterator[str]:
    """The repository's fixture MCP server over Streamable HTTP; its URL."""
    async with served(server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}")) as server:
        yield server.url("/mcp")


async def claude(
    tools: NodeTools,
    tmp_path: Path,
    turns: Sequence[Turn],
    *args: str,
    mcp: str | None = None,
    api_key: str | None = KEY,
    auth_token: str | None = None,
    tool_search: bool = True,
    model: str | None = MODEL,
    base_url: str | None = None,
) -> Session:
    """Run `claude -p PROMPT --output-format json ARGS... --model MODEL` against a fake scripted with `turns`.

    `base_url` replaces the fake's URL (the fake then sees nothing).
    """
    recorder = MessagesFake(turns).recorder()
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    extra = list(args)
    if mcp is not None:
        extra += ["--mcp-config", str(mcp_config(tmp_path / "mcp.json", {"fixture": mcp})), "--strict-mcp-config"]
    if model is not None:
        extra += ["--model", model]
    argv = tools.claude("-p", PROMPT, "--output-format", "json", *extra)
    async with serve(recorder) as url, proxy_trap() as trap:
        env = claude_env(
            base_url or url,
            tmp_path / "home",
            tools,
            proxy=trap.url,
            api_key=api_key,
            auth_token=auth_token,
            tool_search=tool_search,
        )
        run = await run_cli(argv, env=env, cwd=workdir)
    return Session(run, recorder, trap)


def _names(body: JSON) -> list[str]:
    return [tool["name"] for tool in body["tools"]]


def _tool(body: JSON, name: str) -> JSON:
    (found,) = [tool for tool in body["tools"] if tool["name"] == name]
    return found


def _blocks(body: JSON, role: str) -> list[JSON]:
    return [b for m in body["messages"] if m["role"] == role and isinstance(m["content"], list) for b in m["content"]]


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


async def test_print_mode_sends_one_streamed_messages_request_and_prints_the_answer(
    clis: NodeTools, tmp_path: Path
) -> None:
    session = await claude(clis, tmp_path, [(Text("Hello from the fake upstream."),)])
    result = session.run.ok().json()
    assert result["result"] == "Hello from the fake upstream." and result["is_error"] is False
    assert [(r.method, r.target) for r in session.recorder.requests] == [("POST", "/v1/messages?beta=true")]
    assert session.trap.attempts == []

    (request,) = session.turns
    headers = request.headers
    assert headers["x-api-key"] == KEY and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert set(BETAS_ALWAYS) <= set(request.header_list("anthropic-beta"))
    assert TOOL_SEARCH_BETA in request.header_list("anthropic-beta")
    assert headers["user-agent"].startswith("claude-cli/2.1.328 ") and headers["x-app"] == "cli"
    assert headers["content-type"] == "application/json" and headers["accept"] == "application/json"

    body = request.body
    assert body["model"] == MODEL and body["stream"] is True and isinstance(body["max_tokens"], int)
    thinking = body["thinking"]  # an older model gets a budget; the newest ones get {"type": "adaptive"}
    assert thinking["type"] == "enabled" and 0 < thinking["budget_tokens"] < body["max_tokens"]
    assert isinstance(body["metadata"]["user_id"], str)
    system = body["system"]
    assert isinstance(system, list) and all(block["type"] == "text" for block in system)
    assert {"type": "ephemeral"} in [block.get("cache_control") for block in system]
    assert {"Bash", "Read", "Edit", "Write", "ToolSearch"} <= set(_names(body))
    assert _tool(body, "DeferredToolPlaceholder")["defer_loading"] is True
    (first,) = body["messages"]
    assert first["role"] == "user" and first["content"][-1]["text"] == PROMPT
    assert first["content"][-1]["cache_control"] == {"type": "ephemeral"}  # the cache breakpoint moves along


async def test_the_default_model_gets_adaptive_thinking_an_effort_and_system_turns_inside_messages(
    clis: NodeTools, tmp_path: Path
) -> None:
    session = await claude(clis, tmp_path, [(Text("ok"),)], model=None)
    assert session.run.ok().json()["result"] == "ok"
    assert session.trap.attempts == []
    (request,) = session.turns
    body = request.body
    assert body["model"].startswith("claude-opus-")  # the CLI's own default (ANTHROPIC_MODEL would replace it)
    assert body["thinking"]["type"] == "adaptive" and body["output_config"] == {"effort": "medium"}
    assert {"per-turn-control-2026-07-01", "effort-2025-11-24"} <= set(request.header_list("anthropic-beta"))
    assert [message["role"] for message in body["messages"]] == ["user", "system"]
    assert "# Environment" in _text_of(body["messages"][1]["content"])


@pytest.mark.parametrize("credential", ["api_key", "auth_token"])
async def test_the_key_travels_as_x_api_key_or_as_a_bearer_token(
    clis: NodeTools, tmp_path: Path, credential: str
) -> None:
    by_key = credential == "api_key"
    session = await claude(
        clis, tmp_path, [(Text("ok"),)], api_key=KEY if by_key else None, auth_token=None if by_key else KEY
    )
    assert session.run.ok().json()["result"] == "ok"
    (request,) = session.turns
    if by_key:
        assert request.headers["x-api-key"] == KEY and "authorization" not in request.headers
    else:
        assert request.headers["authorization"] == f"Bearer {KEY}" and "x-api-key" not in request.headers


async def test_an_mcp_tool_offered_directly_is_called_and_its_result_sent_back(
    clis: NodeTools, tmp_path: Path, fixture_mcp: str
) -> None:
    turns: list[Turn] = [
        (Thinking("The user wants the echo tool.", "sig-fake-0001=="), ToolUse(ECHO, {"message": "hello hub"})),
        (Text("The tool answered: hello hub."),),
    ]
    session = await claude(clis, tmp_path, turns, "--allowedTools", ECHO, mcp=fixture_mcp, tool_search=False)
    result = session.run.ok().json()
    assert result["result"] == "The tool answered: hello hub." and result["permission_denials"] == []
    assert session.trap.attempts == []
    first, second = session.turns

    assert TOOL_SEARCH_BETA not in first.header_list("anthropic-beta")
    assert "ToolSearch" not in _names(first.body)
    echo = _tool(first.body, ECHO)
    assert "defer_loading" not in echo and echo["input_schema"]["required"] == ["message"]
    assert {f"mcp__fixture__{name}" for name in ("add", "echo", "whoami")} <= set(_names(first.body))

    thinking, call = [b for b in _blocks(second.body, "assistant") if b["type"] in ("thinking", "tool_use")]
    assert thinking == {"type": "thinking", "thinking": "The user wants the echo tool.", "signature": "sig-fake-0001=="}
    assert call == {"type": "tool_use", "id": "toolu_00_1", "name": ECHO, "input": {"message": "hello hub"}}
    (result_block,) = tool_results(second.body)
    assert result_block["tool_use_id"] == "toolu_00_1" and "hello hub" in _text_of(result_block["content"])
    assert not result_block.get("is_error")


async def test_an_mcp_tool_behind_tool_search_is_loaded_by_a_tool_reference_then_called(
    clis: NodeTools, tmp_path: Path, fixture_mcp: str
) -> None:
    turns: list[Turn] = [
        (ToolUse("ToolSearch", {"query": f"select:{ECHO}", "max_results": 5}),),
        (ToolUse(ECHO, {"message": "found by search"}),),
        (Text("Echoed after searching."),),
    ]
    session = await claude(clis, tmp_path, turns, "--allowedTools", ECHO, mcp=fixture_mcp)
    assert session.run.ok().json()["result"] == "Echoed after searching."
    assert session.trap.attempts == []
    first, second, third = session.turns

    assert not [name for name in _names(first.body) if name.startswith("mcp__")]
    listed = "".join(_text_of(m["content"]) for m in first.body["messages"])
    assert ECHO in listed  # deferred tools are named in the conversation, with no schema

    (search_result,) = tool_results(second.body)
    assert search_result["tool_use_id"] == "toolu_00_0"
    assert search_result["content"] == [{"type": "tool_reference", "tool_name": ECHO}]
    assert _tool(second.body, ECHO)["defer_loading"] is True

    echo_result = tool_results(third.body)[-1]
    assert echo_result["tool_use_id"] == "toolu_01_0" and "found by search" in _text_of(echo_result["content"])
    calls = [b["name"] for b in _blocks(third.body, "assistant") if b["type"] == "tool_use"]
    assert calls == ["ToolSearch", ECHO]  # the two assistant turns arrive merged into one message


async def test_an_mcp_tool_not_allowed_in_print_mode_is_refused_with_an_error_result(
    clis: NodeTools, tmp_path: Path, fixture_mcp: str
) -> None:
    turns: list[Turn] = [(ToolUse(ECHO, {"message": "not allowed"}),), (Text("It was refused."),)]
    session = await claude(clis, tmp_path, turns, mcp=fixture_mcp, tool_search=False)
    result = session.run.ok().json()
    assert [denial["tool_name"] for denial in result["permission_denials"]] == [ECHO]
    (refusal,) = tool_results(session.turns[1].body)
    assert refusal["is_error"] is True and "permission" in _text_of(refusal["content"]).lower()


async def test_a_request_to_any_other_host_goes_to_the_proxy_trap(clis: NodeTools, tmp_path: Path) -> None:
    """The trap is where Claude Code's traffic goes when it leaves 127.0.0.1, so an empty trap means offline."""
    session = await claude(clis, tmp_path, [(Text("unused"),)], base_url="http://upstream.agenthub.invalid")
    assert session.run.returncode != 0 or session.run.json()["is_error"] is True
    assert session.recorder.requests == []
    assert session.trap.attempts[0] == "POST http://upstream.agenthub.invalid/v1/messages?beta=true HTTP/1.1"
