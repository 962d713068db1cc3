"""The Codex CLI (0.169.0) in `codex exec` mode against a recording Responses fake: what it sends, pinned.

Codex runs offline against a `wire_api = "responses"` provider at the fake's `/v1`: one streamed
`POST /v1/responses` per model turn, `store: false` and no `previous_response_id` (it resends the whole
conversation), `include: ["reasoning.encrypted_content"]`, a Bearer key from the provider's `env_key`. MCP tools
arrive as one `namespace` tool per server, or, for a model Codex knows, deferred behind a client-executed
`tool_search`. The proxy trap must see nothing: with `features.plugins` and `analytics.enabled` off Codex reaches
no plugin catalogue and posts no analytics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm.schema import JSON
from llm.testing.server import serve
from tests.agents.harness import CliRun, agent_clis, codex_config, codex_env, run_cli
from tests.agents.recorder import ProxyTrap, RecordedRequest, Recorder, proxy_trap
from tests.agents.responses_fake import FunctionCall, OutputText, ResponsesFake, ToolSearchCall, Turn, tool_outputs
from tests.tools import served, server_argv
from tests.tools.node import NodeTools

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KEY = "sk-agenthub-codex-test-key"
KNOWN_MODEL = "gpt-5.5"
"""A model in Codex's own catalogue: it gets `tool_search`, reasoning effort and verbosity."""
UNKNOWN_MODEL = "agenthub-test-model"
"""A model Codex has no metadata for: fallback settings, and MCP tools offered directly."""
PROMPT = "Use the echo tool to say hello."


@dataclass
class Session:
    """One finished `codex exec` run and what the fake and the trap saw."""

    run: CliRun
    recorder: Recorder
    trap: ProxyTrap

    @property
    def turns(self) -> list[RecordedRequest]:
        return self.recorder.to("/v1/responses")


@pytest.fixture
def clis() -> NodeTools:
    return agent_clis()


@pytest.fixture
async def fixture_mcp() -> AsyncIterator[str]:
    """The repository's fixture MCP server over Streamable HTTP; its URL."""
    async with served(server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}")) as server:
        yield server.url("/mcp")


async def codex(
    tools: NodeTools,
    tmp_path: Path,
    turns: Sequence[Turn],
    *,
    model: str,
    mcp: str | None = None,
    base_url: str | None = None,
) -> Session:
    """Run `codex exec PROMPT` with a fresh CODEX_HOME whose provider is a fake scripted with `turns`.

    `base_url` replaces the fake's URL (the fake then sees nothing).
    """
    recorder = ResponsesFake(turns).recorder()
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    codex_home = tmp_path / "codex-home"
    argv = tools.codex("exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", PROMPT)
    async with serve(recorder) as url, proxy_trap() as trap:
        codex_config(codex_home, f"{base_url or url}/v1", model=model, mcp_servers={"fixture": mcp} if mcp else None)
        env = codex_env(codex_home, tmp_path / "home", tools, proxy=trap.url, api_key=KEY)
        run = await run_cli(argv, env=env, cwd=workdir)
    return Session(run, recorder, trap)


def _tool_kinds(body: JSON) -> list[tuple[str, str | None]]:
    return [(tool["type"], tool.get("name")) for tool in body["tools"]]


def _namespace(tools: list[JSON], name: str) -> JSON:
    (found,) = [tool for tool in tools if tool["type"] == "namespace" and tool["name"] == name]
    return found


def _items(body: JSON, kind: str) -> list[JSON]:
    return [item for item in body["input"] if item.get("type") == kind]


async def test_exec_sends_one_streamed_stateless_responses_request_and_prints_the_answer(
    clis: NodeTools, tmp_path: Path
) -> None:
    session = await codex(clis, tmp_path, [(OutputText("Hello from the fake upstream."),)], model=KNOWN_MODEL)
    assert session.run.ok().stdout.strip() == "Hello from the fake upstream."
    assert [(r.method, r.target) for r in session.recorder.requests] == [("POST", "/v1/responses")]
    assert session.trap.attempts == []

    (request,) = session.turns
    headers = request.headers
    assert headers["authorization"] == f"Bearer {KEY}" and headers["accept"] == "text/event-stream"
    assert headers["originator"] == "codex_exec" and headers["user-agent"].startswith("codex_exec/0.169.0 ")
    assert headers["session-id"] == headers["x-client-request-id"]

    body = request.body
    assert body["model"] == KNOWN_MODEL and body["stream"] is True
    assert body["store"] is False and "previous_response_id" not in body
    assert body["include"] == ["reasoning.encrypted_content"] and body["reasoning"] == {"effort": "medium"}
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["prompt_cache_key"] == headers["session-id"]
    assert ("function", "exec_command") in _tool_kinds(body) and ("custom", "apply_patch") in _tool_kinds(body)
    assert ("tool_search", None) in _tool_kinds(body)
    roles = [item["role"] for item in _items(body, "message")]
    assert roles[0] == "developer" and roles[-1] == "user"
    assert body["input"][-1]["content"] == [{"type": "input_text", "text": PROMPT}]


async def test_an_mcp_tool_offered_as_a_namespace_is_called_and_its_output_sent_back(
    clis: NodeTools, tmp_path: Path, fixture_mcp: str
) -> None:
    turns: list[Turn] = [
        (FunctionCall("echo", {"message": "hello hub"}, namespace="mcp__fixture"),),
        (OutputText("The tool answered: hello hub."),),
    ]
    session = await codex(clis, tmp_path, turns, model=UNKNOWN_MODEL, mcp=fixture_mcp)
    assert session.run.ok().stdout.strip() == "The tool answered: hello hub."
    assert session.trap.attempts == []
    first, second = session.turns

    assert ("tool_search", None) not in _tool_kinds(first.body)
    fixture = _namespace(first.body["tools"], "mcp__fixture")
    echo = next(tool for tool in fixture["tools"] if tool["name"] == "echo")
    assert echo["type"] == "function" and echo["parameters"]["required"] == ["message"]

    (call,) = _items(second.body, "function_call")
    assert (call["namespace"], call["name"], call["call_id"]) == ("mcp__fixture", "echo", "call_fake000")
    (output,) = tool_outputs(second.body)
    assert output["type"] == "function_call_output" and output["call_id"] == "call_fake000"
    assert "hello hub" in str(output["output"])
    assert second.body["store"] is False and "previous_response_id" not in second.body


async def test_an_mcp_tool_behind_tool_search_is_returned_by_the_client_then_called(
    clis: NodeTools, tmp_path: Path, fixture_mcp: str
) -> None:
    turns: list[Turn] = [
        (ToolSearchCall("echo message"),),
        (FunctionCall("echo", {"message": "found by search"}, namespace="mcp__fixture"),),
        (OutputText("Echoed after searching."),),
    ]
    session = await codex(clis, tmp_path, turns, model=KNOWN_MODEL, mcp=fixture_mcp)
    assert session.run.ok().stdout.strip() == "Echoed after searching."
    assert session.trap.attempts == []
    first, second, third = session.turns

    assert not [tool for tool in first.body["tools"] if tool.get("name") == "mcp__fixture"]
    (search,) = tool_outputs(second.body)
    assert search["type"] == "tool_search_output" and search["execution"] == "client"
    echo = next(tool for tool in _namespace(search["tools"], "mcp__fixture")["tools"] if tool["name"] == "echo")
    assert echo["defer_loading"] is True

    output = tool_outputs(third.body)[-1]
    assert output["type"] == "function_call_output" and "found by search" in str(output["output"])


async def test_a_request_to_any_other_host_goes_to_the_proxy_trap(clis: NodeTools, tmp_path: Path) -> None:
    """The trap is where Codex's traffic goes when it leaves 127.0.0.1, so an empty trap means offline."""
    base_url = "http://upstream.agenthub.invalid"
    session = await codex(clis, tmp_path, [(OutputText("unused"),)], model=KNOWN_MODEL, base_url=base_url)
    assert session.run.returncode != 0
    assert session.recorder.requests == []
    assert session.trap.attempts[0] == "POST http://upstream.agenthub.invalid/v1/responses HTTP/1.1"
