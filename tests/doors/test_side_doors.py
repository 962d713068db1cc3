"""No side doors: what the door matrix does not show case by case.

Model authorisation comes before limits and guardrail services; a single-server endpoint reaches no other server
(resources, templates and completions included) and does not tell a caller without a key which servers exist; a
program Agent Mode runs without asking is held to the approved tools at run time, whatever it does inside the
sandbox; a key holds a bounded number of MCP sessions; streamed tool-call arguments pass the output guardrails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import openai
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from hub.call import Call, Outcome, Principal
from hub.governance import EntityKind, EntityRef
from hub.governance.keys import VirtualKey
from hub.guardrails import GuardrailConfig, Guardrails
from hub.stages.guardrails import GuardrailsStage
from llm.testing import FakeRequest, FakeScript, Reply, ToolCall, openai_app, serve
from tests.doors.harness import hub_with_fakes, running_fakes
from tests.guardrails.fake_vendors import serve as serve_vendors
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = pytest.mark.anyio

SECRET = "SECRET-161803"
REDACT = {"name": "redact", "kind": "regex", "pattern": "SECRET-[0-9]{6}", "apply_to": "output", "action": "redact"}


async def _rows(hub: Any) -> list[Any]:
    assert hub.hub.request_log is not None
    await hub.hub.request_log.flush()
    return list(reversed(hub.hub.store.recent_log(1000)))


# -- models ---------------------------------------------------------------------------------------------------------


async def test_a_model_the_key_may_not_use_is_refused_before_limits_and_guardrail_services(tmp_path: Path) -> None:
    with serve_vendors() as vendor:
        async with running_fakes() as fakes:
            guardrail = {
                "name": "judge",
                "kind": "patronus",
                "endpoint": vendor.url,
                "api_key": "k",
                "evaluators": [{"evaluator": "judge"}],
                "apply_to": "input",
            }
            key = {
                "name": "alice",
                "secret": ALICE,
                "models": ["fast", "openai/*"],
                "budget": {"max_usd": 1.0, "reset": "1d"},
                "rate_limit": {"requests": 100, "period": "1h"},
            }
            models = {
                name: {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]} for name in ("fast", "big")
            }
            async with hub_with_fakes(tmp_path, fakes, [key], models=models, guardrails=[guardrail]) as hub:
                async with openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0) as client:
                    with pytest.raises(openai.NotFoundError):
                        await client.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}])
                    assert vendor.requests == []
                    limiter = hub.hub.limiter
                    assert limiter is not None
                    key_id = hub.hub.keyring.verify(ALICE).id  # type: ignore[union-attr]
                    usage = {s.metric: s for s in await limiter.usage(EntityRef(EntityKind.KEY, key_id))}
                    await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
                rows = await _rows(hub)
    assert usage["requests"].used == 0 and usage["usd"].used == 0 and usage["usd"].in_flight == 0
    assert len(vendor.requests) == 1  # the permitted model's request was checked
    assert [(r.target, r.status) for r in rows if r.operation == "llm.chat"] == [("big", 404), ("fast", 200)]


# -- single-server endpoints ----------------------------------------------------------------------------------------


def _two_servers(tmp_path: Path) -> dict[str, Any]:
    keys = [{"name": "alice", "secret": ALICE, "tools": ["*"]}, {"name": "bob", "secret": BOB, "tools": ["alpha__*"]}]
    return base_config({"alpha": fixture_stdio("alpha"), "beta": fixture_stdio("beta")}, keys)


async def test_a_single_server_endpoint_reaches_no_other_server(tmp_path: Path) -> None:
    async with running_hub(_two_servers(tmp_path), tmp_path) as hub:
        beta = hub.hub.registry.upstreams["beta"]
        async with mcp_client(hub.url("/mcp"), ALICE) as client:
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert "beta+fixture://readme" in uris  # the aggregated endpoint shows beta's readme under this URI
        async with mcp_client(hub.url("/mcp/alpha"), ALICE) as client:
            for uri in ("beta+fixture://readme", "nothing://here"):
                with pytest.raises(MCPError) as refused:
                    await client.read_resource(uri)
                assert refused.value.error.code == -32602 and "unknown resource" in refused.value.error.message
            with pytest.raises(MCPError) as refused:
                await client.complete(
                    types.PromptReference(type="ref/prompt", name="beta__review_code"),
                    {"name": "language", "value": "py"},
                )
            assert refused.value.error.code == -32602
            calls = beta.health.calls
            read = await client.read_resource("fixture://items/7")
        assert beta.health.calls == calls  # alpha's template served it
        async with mcp_client(hub.url("/mcp/beta"), ALICE) as client:
            again = await client.read_resource("fixture://items/7")
            completed = await client.complete(
                types.ResourceTemplateReference(type="ref/resource", uri="fixture://items/{item_id}"),
                {"name": "item_id", "value": "7"},
            )
        assert beta.health.calls > calls  # beta's own template served it on beta's endpoint
    assert str(read.contents[0].uri) == str(again.contents[0].uri) == "fixture://items/7"
    assert completed.completion.values == []


async def test_which_servers_exist_is_told_only_to_a_key_that_reaches_them(tmp_path: Path) -> None:
    async with running_hub(_two_servers(tmp_path), tmp_path) as hub:
        async with httpx2.AsyncClient(timeout=30) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
            anonymous = [
                (await http.post(hub.url(p), json=body, headers=headers)).status_code
                for p in ("/mcp/alpha", "/mcp/nowhere")
            ]
            bob = {**headers, "authorization": f"Bearer {BOB}"}
            init = {
                **body,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
            keyed = [
                (await http.post(hub.url(p), json=init, headers=bob)).status_code for p in ("/mcp/beta", "/mcp/nowhere")
            ]
        rows = await _rows(hub)
    assert anonymous == [401, 401]
    assert keyed == [404, 404]  # bob may use nothing of beta: it does not exist for him
    assert [(r.operation, r.status) for r in rows] == [
        ("mcp.list", 401),
        ("mcp.list", 401),
        ("mcp.session", 404),
        ("mcp.session", 404),
    ]


# -- Agent Mode runs programs within the approved tools ------------------------------------------------------------

ESCAPE = """
p = fixture.add(a=1, b=2)
p.name = "fixture__echo"
p.payload = '{"message": "escaped"}'
print(await p)
"""


async def test_a_program_agent_mode_runs_without_asking_cannot_call_an_unapproved_tool(tmp_path: Path) -> None:
    """The program names only an approved tool (so it runs without asking), then rewrites the pending call inside
    the sandbox: the call it makes is refused at run time like an unknown tool."""

    def model(request: FakeRequest) -> Reply:
        last = request.body["messages"][-1]  # type: ignore[index]
        if last["role"] == "tool":
            return Reply(f"done: {last['content']}")
        return Reply(tool_calls=[ToolCall("execute_tool_code", {"code": ESCAPE}, id="c1")])

    os.environ["T_AGENT_KEY"] = "sk-agent-test"
    async with serve(openai_app(FakeScript(model), keys=["sk-agent-test"])) as base:
        config = {
            "servers": {"fixture": fixture_stdio()},
            "providers": {
                "openai": {"kind": "openai", "base_url": f"{base}/v1", "keys": [{"secret": "env:T_AGENT_KEY"}]}
            },
            "keys": [
                {
                    "name": "agent",
                    "secret": ALICE,
                    "models": ["openai/*"],
                    "tools": ["fixture__*"],
                    "code_mode": True,
                    "chat_tools": ["*"],
                    "auto_execute": ["fixture__add"],
                }
            ],
        }
        async with running_hub(base_config({}, None) | config, tmp_path) as hub:
            async with httpx2.AsyncClient(timeout=60) as http:
                body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "go"}]}
                response = await http.post(
                    hub.url("/v1/chat/completions"), json=body, headers={"authorization": f"Bearer {ALICE}"}
                )
            rows = await _rows(hub)
    answer = response.json()
    tool_message = answer["agenthub"]["executed_messages"][1]["content"]
    assert answer["agenthub"]["steps"][0]["name"] == "execute_tool_code"
    assert "unknown tool: fixture__echo" in tool_message and "escaped" not in tool_message
    inner = [(r.door, r.operation, r.target, r.status) for r in rows if r.door == "code"]
    assert inner == [("code", "mcp.tool", "fixture__echo", 404)]


# -- sessions ---------------------------------------------------------------------------------------------------------


async def test_a_key_holds_a_bounded_number_of_mcp_sessions(tmp_path: Path) -> None:
    config = base_config(
        {"fixture": fixture_stdio()}, [{"name": "alice", "secret": ALICE, "tools": ["*"]}], max_sessions_per_key=2
    )
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE), mcp_client(hub.url(), ALICE):
            assert hub.hub.sessions.count(hub.hub.keyring.verify(ALICE).id) == 2  # type: ignore[union-attr]
            with pytest.raises(Exception) as refused:
                async with mcp_client(hub.url(), ALICE):
                    pass
        async with mcp_client(hub.url(), ALICE) as client:  # the two ended (the client deletes its session)
            await client.list_tools()
        rows = await _rows(hub)
    error = refused.value
    while not isinstance(error, MCPError) and getattr(error, "exceptions", None):
        error = error.exceptions[0]  # type: ignore[attr-defined]
    assert isinstance(error, MCPError) and error.error.code == -32005
    assert "2 open MCP sessions" in error.error.message
    sessions = [r.status for r in rows if r.operation == "mcp.session"]
    assert sessions == [200, 200, 429, 200]


# -- streams -------------------------------------------------------------------------------------------------------


async def test_streamed_tool_call_arguments_pass_the_output_guardrails(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        fakes.scripts["openai"].default = Reply(tool_calls=[ToolCall("lookup", {"token": SECRET, "q": "x"}, id="t1")])
        keys = [{"name": "alice", "secret": ALICE, "models": ["*"]}]
        async with hub_with_fakes(tmp_path, fakes, keys, guardrails=[REDACT]) as hub:
            async with openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0) as client:
                stream = await client.chat.completions.create(
                    model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                arguments = ""
                async for chunk in stream:
                    for choice in chunk.choices:
                        for call in choice.delta.tool_calls or []:
                            arguments += (call.function.arguments if call.function else None) or ""
    assert SECRET not in arguments
    assert orjson.loads(arguments) == {"token": "[REDACTED:redact]", "q": "x"}


# -- payloads the guardrails cannot read ---------------------------------------------------------------------------


class _Opaque:
    """A result that is not JSON (what an executor returning an SDK model object would hand back)."""


async def test_a_result_the_guardrails_cannot_read_is_blocked() -> None:
    rule = GuardrailConfig.model_validate({"name": "r", "kind": "regex", "pattern": "x", "apply_to": "output"})
    stage = GuardrailsStage(Guardrails([rule]), lambda call: None)
    key = VirtualKey(id="k", name="k", tools=("*",))
    call = Call(door="mcp", operation="mcp.prompt", target="s__p", principal=Principal(key))

    async def executor(call: Call) -> Outcome:
        return Outcome({"messages": [_Opaque()]})

    from hub.errors import Forbidden

    with pytest.raises(Forbidden) as blocked:
        await stage(call, executor)
    assert "cannot read" in blocked.value.message


# -- requests a door cannot read -----------------------------------------------------------------------------------


async def test_a_request_a_door_cannot_read_is_refused_after_the_key_is_checked_and_is_recorded(
    tmp_path: Path,
) -> None:
    async with running_fakes() as fakes:
        keys = [{"name": "alice", "secret": ALICE, "models": ["*"], "tools": ["*"], "chat_tools": ["*"]}]
        async with hub_with_fakes(tmp_path, fakes, keys) as hub, httpx2.AsyncClient(timeout=30) as http:
            answers = []
            for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/mcp/tool/execute"):
                for key in (ALICE, "ahk-" + "n" * 43):
                    response = await http.post(
                        hub.url(path), content=b"{not json", headers={"authorization": f"Bearer {key}"}
                    )
                    answers.append((path, response.status_code, response.json()["error"]["type"]))
            rows = await _rows(hub)
    assert answers == [
        ("/v1/chat/completions", 400, "invalid_request_error"),
        ("/v1/chat/completions", 401, "authentication_error"),
        ("/v1/embeddings", 400, "invalid_request_error"),
        ("/v1/embeddings", 401, "authentication_error"),
        ("/v1/mcp/tool/execute", 400, "invalid_request_error"),
        ("/v1/mcp/tool/execute", 401, "authentication_error"),
    ]
    assert [(r.operation, r.status, r.key_name) for r in rows] == [
        ("llm.chat", 400, "alice"),
        ("llm.chat", 401, None),
        ("llm.embed", 400, "alice"),
        ("llm.embed", 401, None),
        ("mcp.tool", 400, "alice"),
        ("mcp.tool", 401, None),
    ]
