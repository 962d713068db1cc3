"""The door matrix: every operation on every door crosses the whole pipeline.

For each case, a (door, operation) pair driven as a client drives it, four things hold:

- no key: 401 (JSON-RPC -32001 on MCP) and exactly one request-log row for the request;
- a key without the grant: exactly the error of an unknown name (or an empty listing), and one row;
- the key's limit reached: 429 (-32005);
- a guardrail hit: in the input, the call is blocked (403 / -32003); in the output, the text is redacted.

Where a check cannot apply, the case says why (`na`), from a short list of accepted reasons. Every operation the
pipeline knows (`hub.call.OPERATIONS`) must have a case on some door, and every request handler of the MCP door
must map to an operation that has one: adding an operation or a handler without a case here fails the suite.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import mcp_types as types
import openai
import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from connectors.registry import RegistryView
from hub.call import OPERATIONS, Call, Outcome
from hub.doors.mcp import McpDoor
from hub.doors.mcp_methods import MCP_OPERATIONS
from hub.governance.keys import new_secret
from hub.mcp_sdk import served_methods
from llm.testing import FakeRequest, Reply, ToolCall
from tests.doors.harness import ENV, FAST_ROUTING, MODELS, PRICES, Fakes, running_fakes
from tests.hub.harness import RunningHub, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("door_matrix")]

SECRET = "SECRET-271828"
"""Output text the redaction guardrail replaces."""
BLOCKED = "BLOCK-ME-31415"
"""Input text the blocking guardrail refuses."""
PLAIN = "hello"
NOTE = f"Ask {SECRET} for help"
"""The description of the fixture's `note` tool, prompt and resource."""
MODEL = "fast"
WRONG_KEY = "ahk-" + "x" * 43

KEYS: dict[str, dict[str, Any]] = {
    "full": {"tools": ["*"], "models": ["*"]},
    "coder": {"tools": ["*"], "models": ["*"], "code_mode": True},
    "agent": {"tools": ["*"], "models": ["*"], "chat_tools": ["fixture__*"], "auto_execute": ["fixture__echo"]},
    "nogrant": {"tools": [], "models": []},
    "other": {"tools": ["fixture__add"], "models": []},
    "narrow-coder": {"tools": ["fixture__add"], "models": ["*"], "code_mode": True},
}
SECRETS = {name: f"ahk-matrix-{name}-".ljust(47, "0") for name in KEYS}

NA_REASONS = frozenset(
    {
        "no content: the request carries nothing a guardrail reads",
        "no content: the result carries nothing a guardrail reads",
        "the operator's own catalog: model names come from the configuration",
        "numbers only: embedding vectors",
        "inner calls inherit the principal of the program or loop that makes them",
        "nothing to grant: the listing is filtered to the key's grants",
        "nothing to grant: the loop offers and runs only tools within the key's grants",
        "nothing to grant: no route serves the request",
    }
)


# -- answers -------------------------------------------------------------------------------------------------------

LABELS_BY_CODE = {-32001: "unauthenticated", -32602: "not_found", -32005: "rate_limited", -32003: "forbidden"}
LABELS_BY_STATUS = {401: "unauthenticated", 404: "not_found", 429: "rate_limited", 403: "forbidden", 402: "budget"}


@dataclass
class Answer:
    """What a door answered, reduced to what governance decided, and the text a client would read."""

    label: str
    text: str = ""
    message: str = ""


def mcp_answer(exc: BaseException) -> Answer:
    """The answer an MCP client got, from the error the SDK raised (possibly inside exception groups)."""
    error = _find(exc, MCPError)
    if error is not None:
        code = error.error.code
        return Answer(LABELS_BY_CODE.get(code, f"code {code}"), message=error.error.message)
    status = _find(exc, httpx2.HTTPStatusError)
    if status is not None:
        code = status.response.status_code
        return Answer(LABELS_BY_STATUS.get(code, f"status {code}"))
    raise exc


E = TypeVar("E", bound=BaseException)


def _find(exc: BaseException, kind: type[E]) -> E | None:
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find(inner, kind)
        if found is not None:
            return found
    cause = exc.__cause__ or exc.__context__
    return _find(cause, kind) if cause is not None and cause is not exc else None


def dumped(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return orjson.dumps(value).decode()


# -- the hub -------------------------------------------------------------------------------------------------------


@dataclass
class Matrix:
    """The running hub, its fakes and helpers to drive each door."""

    hub: RunningHub
    fakes: Fakes
    made: int = 0
    secrets: dict[str, str] = field(default_factory=dict[str, str])

    def secret(self, key: str) -> str:
        return self.secrets.get(key) or SECRETS[key]

    async def rows(self) -> list[Any]:
        log = self.hub.hub.request_log
        assert log is not None
        await log.flush()
        return self.hub.hub.store.recent_log(100_000)

    async def limited(self, base: str, requests: int) -> str:
        """A new key with `base`'s grants and a rate limit of `requests` per hour; returns its name."""
        self.made += 1
        name = f"limited-{self.made}"
        secret = new_secret()
        policy = {**KEYS[base], "rate_limit": {"requests": requests, "period": "1h"}}
        store = self.hub.hub.store
        store.create_key(name, secret, policy, source="api")
        self.hub.hub.reload_keys()
        self.secrets[name] = secret
        return name

    @contextlib.asynccontextmanager
    async def mcp(self, key: str, server: str | None = None) -> AsyncGenerator[Client]:
        path = "/mcp" if server is None else f"/mcp/{server}"
        async with mcp_client(self.hub.url(path), self.secret(key)) as client:
            yield client

    def openai(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.hub.url("/v1"), api_key=self.secret(key), max_retries=0)

    async def post(self, path: str, body: Any, key: str | None, headers: dict[str, str] | None = None) -> Any:
        """A raw POST (for requests no SDK client sends without a key)."""
        sent = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        async with httpx2.AsyncClient(timeout=30) as http:
            return await http.post(self.hub.url(path), content=orjson.dumps(body), headers=sent)

    async def get(self, path: str, key: str | None) -> Any:
        headers = {"authorization": f"Bearer {key}"} if key is not None else {}
        async with httpx2.AsyncClient(timeout=30) as http:
            return await http.get(self.hub.url(path), headers=headers)

    async def delete(self, path: str, key: str | None) -> Any:
        headers = {"authorization": f"Bearer {key}"} if key is not None else {}
        async with httpx2.AsyncClient(timeout=30) as http:
            return await http.delete(self.hub.url(path), headers=headers)


WORDS = {"plain": PLAIN, "blocked": BLOCKED, "secret": SECRET}
"""What Agent Mode's fake model puts into its tool call for each word of the user's message (so the request
itself carries none of the guarded texts)."""


def echo_model(request: FakeRequest) -> Reply:
    """The fake model: asked with tools, it calls `fixture__echo` once, with the text the user's message names
    (`WORDS`); otherwise it answers with the last message it read (so a value sent is a value returned)."""
    body: Any = request.body
    messages = body.get("messages") or [{"role": "user", "content": body.get("input", "")}]
    last = messages[-1] if messages else {}
    content = str(last.get("content") or "")
    if body.get("tools") and last.get("role") == "user":
        return Reply(tool_calls=[ToolCall("fixture__echo", {"message": WORDS.get(content, content)}, id="c1")])
    return Reply(content)


def spelled(value: str) -> str:
    """A Python expression that builds `value` at run time (the program text does not contain it)."""
    middle = len(value) // 2
    return f"{value[:middle]!r} + {value[middle:]!r}"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    tmp_path: Path = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as env:
        for name, value in ENV.items():
            env.setenv(name, value)
        async with _matrix(tmp_path) as running:
            yield running


@contextlib.asynccontextmanager
async def _matrix(tmp_path: Path) -> AsyncIterator[Matrix]:
    async with running_fakes() as fakes:
        fakes.scripts["openai"].default = echo_model
        config: dict[str, Any] = {
            "hub": {"upstream_start_timeout_s": PATIENCE},
            "servers": {"fixture": fixture_stdio("fixture", "--note", NOTE)},
            "virtual_servers": {
                "all": {"tools": ["*"], "prompts": ["*"], "resources": ["*"]},
                "found": {"tools": ["*"], "tool_search": True},
            },
            "keys": [{"name": name, "secret": SECRETS[name], **policy} for name, policy in KEYS.items()],
            "providers": fakes.providers,
            "models": {MODEL: {"deployments": [{"provider": "openai", "model": MODELS["openai"]}]}},
            "prices": PRICES,
            "routing": FAST_ROUTING,
            "guardrails": [
                {"name": "no-blockme", "kind": "regex", "pattern": "BLOCK-ME-[0-9]+", "apply_to": "input"},
                {
                    "name": "redact-secret",
                    "kind": "regex",
                    "pattern": "SECRET-[0-9]{6}",
                    "apply_to": "output",
                    "action": "redact",
                },
            ],
        }
        async with running_hub(config, tmp_path) as hub:
            yield Matrix(hub, fakes)


# -- cases ---------------------------------------------------------------------------------------------------------

Measured = Callable[[], contextlib.AbstractAsyncContextManager[None]]


@dataclass
class Probe:
    """One run of a case: the key, the value to put into the input, whether to name an unknown target."""

    matrix: Matrix
    key: str
    value: str = PLAIN
    unknown: bool = False
    measured: Measured = contextlib.nullcontext  # type: ignore[assignment]
    warmup: bool = False
    """Make the request once more before the measured one, on the same MCP session."""
    before: Callable[[], Awaitable[None]] | None = None
    """What to do once the MCP session is open, before the measured request."""


Run = Callable[[Probe], Awaitable[Answer]]


@dataclass(frozen=True)
class Case:
    door: str
    operation: str
    name: str
    run: Run
    key: str
    """A key that holds the grant."""
    ungranted: str = "nogrant"
    """A key without the grant."""
    anonymous: dict[str, Any] | None = None
    """The raw request a client sends without a key: `{"path", "body"}` (POST) or `{"path", "method": "GET"}`."""
    setup: int = 0
    """Counted requests a run makes before the measured one; with none, the case runs twice and the second time is
    over a limit of one. A gated case's run makes them before it calls `Probe.before`."""
    gated: bool = False
    """The operation counts nothing (session requests, listings): it is refused once a request of the key was."""
    row: tuple[str, str] | None = None
    """(door, operation) of the measured request's row, when not the case's own (inner calls)."""
    na: dict[str, str] = field(default_factory=dict[str, str])
    """Checks that do not apply, with the reason."""
    empty_when_ungranted: bool = False
    """A listing: a key without grants sees an empty list instead of an error."""

    @property
    def id(self) -> str:
        return f"{self.door}:{self.name}"


def rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    return body


INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "matrix", "version": "1"}}


async def _mcp(
    probe: Probe,
    op: Callable[[Client], Awaitable[Any]],
    server: str | None = None,
    listed: bool = False,
) -> Answer:
    """`listed`: list the tools first, as the SDK client does before it validates a structured result."""
    async with probe.matrix.mcp(probe.key, server) as client:
        if listed:
            await client.list_tools()
        if probe.warmup:
            await op(client)
        if probe.before is not None:
            await probe.before()
        async with probe.measured():
            try:
                result = await op(client)
            except MCPError as exc:
                return mcp_answer(exc)
    return Answer("ok", dumped(result))


async def mcp_session(probe: Probe, server: str | None = None) -> Answer:
    name = "nowhere" if probe.unknown else server
    async with probe.measured():
        try:
            async with probe.matrix.mcp(probe.key, name):
                pass
        except Exception as exc:  # the SDK raises the refusal of `initialize` inside its task group
            return mcp_answer(exc)
    return Answer("ok")


async def mcp_listen(probe: Probe, server: str | None = None) -> Answer:
    """A 2026-07-28 `subscriptions/listen` stream of list changes, opened and closed again."""
    path = "/mcp" if server is None else f"/mcp/{'nowhere' if probe.unknown else server}"
    async with mcp_client(probe.matrix.hub.url(path), probe.matrix.secret(probe.key), mode="2026-07-28") as client:
        if probe.before is not None:
            await probe.before()
        async with probe.measured():
            try:
                async with client.listen(tools_list_changed=True) as subscription:
                    honored = subscription.honored
            except MCPError as exc:
                return mcp_answer(exc)
    return Answer("ok", dumped(honored))


def own_names(server: str | None) -> bool:
    """Whether an endpoint shows its upstream's own names (`/mcp/{server}`); the aggregate and virtual servers
    (`/mcp/v/NAME`) show `server__name`."""
    return server is not None and not server.startswith("v/")


def tool_name(probe: Probe, server: str | None) -> str:
    tool = "nope" if probe.unknown else "echo"
    return tool if own_names(server) else f"fixture__{tool}"


async def mcp_tool(probe: Probe, server: str | None = None) -> Answer:
    name = tool_name(probe, server)
    return await _mcp(probe, lambda c: c.call_tool(name, {"message": probe.value}), server)


async def mcp_list(probe: Probe, kind: str, server: str | None = None) -> Answer:
    async def op(client: Client) -> Any:
        if kind == "tools":
            return await client.list_tools()
        if kind == "prompts":
            return await client.list_prompts()
        if kind == "resources":
            return await client.list_resources()
        return await client.list_resource_templates()

    return await _mcp(probe, op, server)


async def mcp_prompt(probe: Probe, server: str | None = None) -> Answer:
    name = (
        ("nope" if probe.unknown else "greeting")
        if own_names(server)
        else ("fixture__nope" if probe.unknown else "fixture__greeting")
    )
    return await _mcp(probe, lambda c: c.get_prompt(name, {"name": probe.value}), server)


async def mcp_resource(probe: Probe, server: str | None = None) -> Answer:
    uri = "nope://x" if probe.unknown else f"fixture://items/{probe.value}"
    return await _mcp(probe, lambda c: c.read_resource(uri), server)


async def mcp_complete(probe: Probe, server: str | None = None) -> Answer:
    prompt = "nope" if probe.unknown else "note"
    name = prompt if own_names(server) else f"fixture__{prompt}"
    ref = types.PromptReference(type="ref/prompt", name=name)
    return await _mcp(probe, lambda c: c.complete(ref, {"name": "topic", "value": probe.value}), server)


async def mcp_subscribe(probe: Probe, server: str | None = None) -> Answer:
    uri = "nope://x" if probe.unknown else f"fixture://items/{probe.value}"
    request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
    return await _mcp(probe, lambda c: c.session.send_request(request, types.EmptyResult), server)


async def code_read(probe: Probe, server: str | None = None) -> Answer:
    """`get_tool_docs` of the `note` tool (its description carries the secret); the value goes into `tool`."""
    meta = "nope_tool_docs" if probe.unknown else "get_tool_docs"
    args = {"server": "fixture", "tool": probe.value if probe.value == BLOCKED else "note"}
    return await _mcp(probe, lambda c: _tool_result(c, meta, args), server)


async def code_run(probe: Probe, server: str | None = None) -> Answer:
    code = f"print({probe.value!r})"
    if probe.unknown:
        return await _mcp(probe, lambda c: _tool_result(c, "execute_tool_code_nope", {"code": code}), server)
    return await _mcp(probe, lambda c: _tool_result(c, "execute_tool_code", {"code": code}), server)


async def search_tools(probe: Probe) -> Answer:
    """Tool search's `search_tools` on a virtual server: the listing it ranks is an `mcp.list` call whose input is
    the query; the `note` tool's description carries the secret."""
    query = BLOCKED if probe.value == BLOCKED else "note"
    return await _mcp(probe, lambda c: _tool_result(c, "search_tools", {"query": query}), "v/found", listed=True)


async def call_tool(probe: Probe) -> Answer:
    """Tool search's `call_tool`: the real `mcp.tool` call of the tool it names."""
    name = "fixture__nope" if probe.unknown else "fixture__echo"
    arguments = {"name": name, "arguments": {"message": probe.value}}
    return await _mcp(probe, lambda c: _tool_result(c, "call_tool", arguments), "v/found")


async def code_inner_tool(probe: Probe) -> Answer:
    """A program's tool call (door `code`): the answer is read from the program's output and the inner row."""
    tool = "fixture__nope" if probe.unknown else "fixture__echo"
    call = f"tools.call({tool!r}, {{'message': {spelled(probe.value)}}})"
    code = f"try:\n    print({call})\nexcept Exception as e:\n    print('ERR', e)"
    answer = await _mcp(probe, lambda c: _tool_result(c, "execute_tool_code", {"code": code}))
    return _inner_answer(answer)


async def _tool_result(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        text = " ".join(getattr(b, "text", "") for b in result.content)
        raise MCPError(code=-32603, message=f"tool error: {text}")
    return result


def _inner_answer(answer: Answer) -> Answer:
    if answer.label != "ok":
        return answer
    text = answer.text
    for needle, label in (
        ("unknown tool", "not_found"),
        ("rate limit", "rate_limited"),
        ("guardrail", "forbidden"),
    ):
        if "ERR" in text and needle in text:
            return Answer(label, text, message=text)
    return answer


async def rest_tool(probe: Probe) -> Answer:
    name = "fixture__nope" if probe.unknown else "fixture__echo"
    body = {
        "id": "c1",
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps({"message": probe.value}).decode()},
    }
    async with probe.measured():
        response = await probe.matrix.post("/v1/mcp/tool/execute", body, probe.matrix.secret(probe.key))
    return _http_answer(response, lambda b: str(b.get("content", "")))


def _http_answer(response: Any, text: Callable[[Any], str]) -> Answer:
    body = response.json()
    if response.status_code != 200:
        return Answer(
            LABELS_BY_STATUS.get(response.status_code, f"status {response.status_code}"),
            message=body["error"]["message"],
        )
    return Answer("ok", text(body))


async def llm_chat(probe: Probe) -> Answer:
    model = "nope" if probe.unknown else MODEL
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": probe.value}]},
            probe.matrix.secret(probe.key),
        )
    return _http_answer(response, lambda b: str(b["choices"][0]["message"].get("content")))


async def llm_responses(probe: Probe) -> Answer:
    model = "nope" if probe.unknown else MODEL
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/responses", {"model": model, "input": probe.value}, probe.matrix.secret(probe.key)
        )
    return _http_answer(response, lambda b: dumped(b.get("output")))


async def llm_embed(probe: Probe) -> Answer:
    model = "nope" if probe.unknown else MODEL
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/embeddings", {"model": model, "input": probe.value}, probe.matrix.secret(probe.key)
        )
    return _http_answer(response, lambda b: "")


async def llm_models(probe: Probe) -> Answer:
    async with probe.measured():
        response = await probe.matrix.get("/v1/models", probe.matrix.secret(probe.key))
    return _http_answer(response, lambda b: dumped([m["id"] for m in b["data"]]))


async def llm_model(probe: Probe) -> Answer:
    model = "nope" if probe.unknown else MODEL
    async with probe.measured():
        response = await probe.matrix.get(f"/v1/models/{model}", probe.matrix.secret(probe.key))
    return _http_answer(response, lambda b: str(b["id"]))


def messages_body(probe: Probe, **extra: Any) -> dict[str, Any]:
    """An Anthropic Messages request (the key goes in `x-api-key`, as Anthropic's clients send it)."""
    model = "nope" if probe.unknown else MODEL
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": probe.value}], **extra}


async def llm_messages(probe: Probe) -> Answer:
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/messages", messages_body(probe), None, {"x-api-key": probe.matrix.secret(probe.key)}
        )
    return _http_answer(response, lambda b: "".join(str(block.get("text", "")) for block in b["content"]))


async def llm_messages_stream(probe: Probe) -> Answer:
    """A streamed Messages request: the answer is the text of its `text_delta` events."""
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/messages?beta=true", messages_body(probe, stream=True), probe.matrix.secret(probe.key)
        )
    if response.status_code != 200:
        return _http_answer(response, lambda b: "")
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    if events[-1]["type"] == "error":
        status = {"permission_error": 403, "rate_limit_error": 429}.get(events[-1]["error"]["type"], 500)
        return Answer(LABELS_BY_STATUS.get(status, "error"), message=events[-1]["error"]["message"])
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    return Answer("ok", "".join(str(d.get("text", "")) for d in deltas))


async def llm_count_tokens(probe: Probe) -> Answer:
    body = messages_body(probe)
    del body["max_tokens"]
    async with probe.measured():
        response = await probe.matrix.post("/v1/messages/count_tokens", body, probe.matrix.secret(probe.key))
    return _http_answer(response, lambda b: str(b["input_tokens"]))


STORED_PATHS = {"get": "", "delete": "", "cancel": "/cancel", "items": "/input_items"}


async def llm_stored(probe: Probe, action: str) -> Answer:
    """An operation on a stored response the probe's key created first (for the key without the grant, `full`
    created it; `unknown` names an id no key created); `cancel` needs a background response."""
    matrix = probe.matrix
    owner = matrix.secret("full" if probe.key == "nogrant" else probe.key)
    body = {"model": MODEL, "input": probe.value, "background": action == "cancel"}
    made = await matrix.post("/v1/responses", body, owner)
    assert made.status_code == 200, made.text
    path = f"/v1/responses/{'resp_nobody' if probe.unknown else made.json()['id']}{STORED_PATHS[action]}"
    if probe.before is not None:
        await probe.before()
    key = matrix.secret(probe.key)
    async with probe.measured():
        if action == "cancel":
            response = await matrix.post(path, {}, key)
        elif action == "delete":
            response = await matrix.delete(path, key)
        else:
            response = await matrix.get(path, key)
    return _http_answer(response, lambda b: dumped(b.get("data") if action == "items" else b.get("output")))


async def llm_unrouted(probe: Probe, path: str) -> Answer:
    """A request under `/v1` that no route serves (an unknown path, or a path's wrong method): 404 or 405."""
    async with probe.measured():
        response = await probe.matrix.get(path, probe.matrix.secret(probe.key))
    return _http_answer(response, lambda b: "")


async def agent_inner_tool(probe: Probe) -> Answer:
    """An Agent Mode tool run (door `agent`): the fake model calls `fixture__echo` with the user's message."""
    word = next(w for w, v in WORDS.items() if v == probe.value)
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": word}]},
            probe.matrix.secret(probe.key),
        )
    if response.status_code != 200:
        return _http_answer(response, lambda b: "")
    body = response.json()
    messages = body.get("agenthub", {}).get("executed_messages", [])
    tool_text = " ".join(str(m.get("content")) for m in messages if m.get("role") == "tool")
    if tool_text.startswith("error:"):
        for needle, label in (
            ("unknown tool", "not_found"),
            ("rate limit", "rate_limited"),
            ("guardrail", "forbidden"),
        ):
            if needle in tool_text:
                return Answer(label, tool_text, message=tool_text)
    return Answer("ok", tool_text)


async def agent_inner_tool_messages(probe: Probe) -> Answer:
    """An Agent Mode tool run (door `agent`) of a loop on the Messages door: as `agent_inner_tool`, the results read
    from Anthropic's `tool_result` blocks."""
    word = next(w for w, v in WORDS.items() if v == probe.value)
    async with probe.measured():
        response = await probe.matrix.post(
            "/v1/messages",
            {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": word}]},
            probe.matrix.secret(probe.key),
        )
    if response.status_code != 200:
        return _http_answer(response, lambda b: "")
    messages = response.json().get("agenthub", {}).get("executed_messages", [])
    results = [b for m in messages if m.get("role") == "user" for b in m.get("content", [])]
    tool_text = " ".join(str(b.get("content")) for b in results if b.get("type") == "tool_result")
    if tool_text.startswith("error:"):
        for needle, label in (
            ("unknown tool", "not_found"),
            ("rate limit", "rate_limited"),
            ("guardrail", "forbidden"),
        ):
            if needle in tool_text:
                return Answer(label, tool_text, message=tool_text)
    return Answer("ok", tool_text)


NO_INPUT = "no content: the request carries nothing a guardrail reads"
NO_OUTPUT = "no content: the result carries nothing a guardrail reads"
INHERITS = "inner calls inherit the principal of the program or loop that makes them"
LISTING = "nothing to grant: the listing is filtered to the key's grants"
CATALOG = "the operator's own catalog: model names come from the configuration"
LOOP = "nothing to grant: the loop offers and runs only tools within the key's grants"
UNROUTED = "nothing to grant: no route serves the request"


def mcp_cases(door: str, server: str | None) -> list[Case]:
    """The MCP door's cases; on a single-server endpoint (`server`), the key without the grant reaches the server
    (one tool) but not what the case asks for."""

    def bind(run: Callable[..., Awaitable[Answer]], *args: Any) -> Run:
        return lambda probe: run(probe, *args, server)

    ungranted = "other" if own_names(server) else "nogrant"

    def tool_args(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "arguments": arguments}

    prefix = "" if own_names(server) else "fixture__"
    path = "/mcp" if server is None else f"/mcp/{server}"

    def anonymous(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"path": path, "body": rpc(method, params)}

    note = {"ref": {"type": "ref/prompt", "name": f"{prefix}note"}, "argument": {"name": "topic", "value": "a"}}
    greeting = {"name": f"{prefix}greeting", "arguments": {"name": "x"}}
    docs = tool_args("get_tool_docs", {"server": "fixture", "tool": "note"})
    cases = [
        Case(door, "mcp.session", "initialize", lambda p: mcp_session(p, server), "full", gated=True,
             anonymous=anonymous("initialize", INIT),
             na={"input": NO_INPUT, "output": NO_OUTPUT} | ({} if own_names(server) else {"grant": LISTING})),
        Case(door, "mcp.session", "subscriptions/listen", lambda p: mcp_listen(p, server), "full", gated=True,
             anonymous=anonymous("subscriptions/listen", {"notifications": {"toolsListChanged": True}}),
             na={"input": NO_INPUT, "output": NO_OUTPUT} | ({} if own_names(server) else {"grant": LISTING})),
        Case(door, "mcp.tool", "tools/call", bind(mcp_tool), "full", ungranted=ungranted,
             anonymous=anonymous("tools/call", tool_args(f"{prefix}echo", {"message": PLAIN}))),
        Case(door, "mcp.prompt", "prompts/get", bind(mcp_prompt), "full", ungranted=ungranted,
             anonymous=anonymous("prompts/get", greeting)),
        Case(door, "mcp.resource", "resources/read", bind(mcp_resource), "full", ungranted=ungranted,
             anonymous=anonymous("resources/read", {"uri": "fixture://items/1"})),
        Case(door, "mcp.complete", "completion/complete", bind(mcp_complete), "full", ungranted=ungranted,
             anonymous=anonymous("completion/complete", note)),
        Case(door, "mcp.subscribe", "resources/subscribe", bind(mcp_subscribe), "full", ungranted=ungranted,
             anonymous=anonymous("resources/subscribe", {"uri": "fixture://items/1"}), na={"output": NO_OUTPUT}),
        Case(door, "code.read", "get_tool_docs", bind(code_read), "coder", ungranted=ungranted,
             anonymous=anonymous("tools/call", docs)),
        Case(door, "code.run", "execute_tool_code", bind(code_run), "coder", ungranted=ungranted,
             anonymous=anonymous("tools/call", tool_args("execute_tool_code", {"code": "print(1)"}))),
    ]  # fmt: skip
    for kind, method in (
        ("tools", "tools/list"),
        ("prompts", "prompts/list"),
        ("resources", "resources/list"),
        ("templates", "resources/templates/list"),
    ):
        cases.append(
            Case(
                door,
                "mcp.list",
                method,
                bind(mcp_list, kind),
                "full",
                gated=True,
                anonymous={"path": path, "body": rpc(method)},
                empty_when_ungranted=True,
                na={"input": NO_INPUT, "grant": LISTING} | ({"output": NO_OUTPUT} if kind == "templates" else {}),
            )  # fmt: skip
        )
    return cases


REST_CALL = {"id": "c", "type": "function", "function": {"name": "fixture__echo", "arguments": "{}"}}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 16}

CASES: list[Case] = [
    *mcp_cases("mcp", None),
    *mcp_cases("mcp-server", "fixture"),
    *mcp_cases("mcp-virtual", "v/all"),
    Case("mcp-virtual", "mcp.list", "search_tools", search_tools, "full", gated=True, empty_when_ungranted=True,
         anonymous={"path": "/mcp/v/found",
                    "body": rpc("tools/call", {"name": "search_tools", "arguments": {"query": "echo"}})}),
    Case("mcp-virtual", "mcp.tool", "call_tool", call_tool, "full",
         anonymous={"path": "/mcp/v/found", "body": rpc("tools/call", {"name": "call_tool", "arguments": {
             "name": "fixture__echo", "arguments": {"message": PLAIN}}})}),
    Case("rest", "mcp.tool", "execute", rest_tool, "full",
         anonymous={"path": "/v1/mcp/tool/execute", "body": REST_CALL}),
    Case("openai", "llm.chat", "chat/completions", llm_chat, "full",
         anonymous={"path": "/v1/chat/completions", "body": CHAT}),
    Case("openai", "llm.chat", "responses", llm_responses, "full",
         anonymous={"path": "/v1/responses", "body": {"model": MODEL, "input": "hi"}}),
    Case("anthropic", "llm.messages", "messages", llm_messages, "full",
         anonymous={"path": "/v1/messages", "body": MESSAGES}),
    Case("anthropic", "llm.messages", "messages (streamed)", llm_messages_stream, "full",
         anonymous={"path": "/v1/messages", "body": {**MESSAGES, "stream": True}}),
    Case("anthropic", "llm.count_tokens", "count_tokens", llm_count_tokens, "full", gated=True,
         anonymous={"path": "/v1/messages/count_tokens", "body": {"model": MODEL, "messages": MESSAGES["messages"]}},
         na={"output": NO_OUTPUT}),
    *(
        Case("openai", f"llm.response.{action}", f"responses/{{id}}{suffix or f' ({method})'}",
             lambda p, action=action: llm_stored(p, action), "full", gated=True, setup=1,
             anonymous={"path": f"/v1/responses/resp_x{suffix}", "method": method, "body": {}},
             na={"input": NO_INPUT} | ({"output": NO_OUTPUT} if action in ("delete", "cancel") else {}))
        for action, method, suffix in (
            ("get", "GET", ""), ("delete", "DELETE", ""), ("cancel", "POST", "/cancel"),
            ("items", "GET", "/input_items"),
        )
    ),
    Case("openai", "llm.embed", "embeddings", llm_embed, "full",
         anonymous={"path": "/v1/embeddings", "body": {"model": MODEL, "input": "hi"}},
         na={"output": "numbers only: embedding vectors"}),
    Case("openai", "llm.models", "models", llm_models, "full", gated=True,
         anonymous={"path": "/v1/models", "method": "GET"},
         empty_when_ungranted=True, na={"input": NO_INPUT, "output": CATALOG, "grant": LISTING}),
    Case("openai", "llm.models", "models/{id}", llm_model, "full", gated=True,
         anonymous={"path": f"/v1/models/{MODEL}", "method": "GET"}, na={"input": NO_INPUT, "output": CATALOG}),
    Case("openai", "llm.models", "no route", lambda p: llm_unrouted(p, "/v1/nope"), "full", gated=True,
         anonymous={"path": "/v1/nope", "method": "GET"},
         na={"input": NO_INPUT, "output": NO_OUTPUT, "grant": UNROUTED}),
    Case("openai", "llm.models", "wrong method", lambda p: llm_unrouted(p, "/v1/chat/completions"), "full",
         gated=True, anonymous={"path": "/v1/chat/completions", "method": "GET"},
         na={"input": NO_INPUT, "output": NO_OUTPUT, "grant": UNROUTED}),
    Case("code", "mcp.tool", "tools.call", code_inner_tool, "coder", ungranted="narrow-coder", setup=1,
         row=("code", "mcp.tool"), na={"anonymous": INHERITS}),
    Case("agent", "mcp.tool", "tool run", agent_inner_tool, "agent", setup=1, row=("agent", "mcp.tool"),
         na={"anonymous": INHERITS, "grant": LOOP}),
    Case("agent", "mcp.tool", "tool run (Messages)", agent_inner_tool_messages, "agent", setup=1,
         row=("agent", "mcp.tool"), na={"anonymous": INHERITS, "grant": LOOP}),
]  # fmt: skip


def case_params(check: str) -> list[Any]:
    return [pytest.param(case, id=case.id, marks=()) for case in CASES if check not in case.na]


# -- the suite stays complete --------------------------------------------------------------------------------------


def test_every_operation_has_a_case() -> None:
    assert {case.operation for case in CASES} == set(OPERATIONS)


def test_every_mcp_request_handler_maps_to_an_operation_with_a_case() -> None:
    async def refuse(call: Call) -> Outcome:
        raise AssertionError("not called")

    served = served_methods(McpDoor(refuse, RegistryView).server)
    assert served <= set(MCP_OPERATIONS), f"MCP methods with no operation: {sorted(served - set(MCP_OPERATIONS))}"
    assert {MCP_OPERATIONS[m] for m in served} <= {c.operation for c in CASES}


ELSEWHERE = {
    "/healthz": "liveness: answers the same to anyone and reaches nothing",
    "/readyz": "readiness: names which part is not ready, takes no key (tests/deploy/test_readiness.py)",
    "/metrics": "the Prometheus scrape: [metrics] token, 401 without it (tests/telemetry/test_metrics_endpoint.py)",
    "/oauth/callback": "browser flows bound to the person who started them (tests/auth)",
    "/oauth/start": "browser flows bound to the person who started them (tests/auth)",
    "/api/v1/{path:path}": "the admin API: RBAC and the audit chain on every operation (tests/admin/test_scope.py)",
    "/ui/{path:path}": "the admin console: each action is an admin API request with the session's credential "
    "(tests/console)",
}
"""Routes outside the virtual-key pipeline, and what governs them instead."""


def test_every_route_of_the_hub_is_in_the_matrix_or_governed_elsewhere(tmp_path: Path) -> None:
    from starlette.routing import Route

    from hub.http import build_app
    from hub.settings import settings_from_dict

    app: Any = build_app(settings_from_dict({}, tmp_path / "agenthub.toml"))
    routes = {route.path for route in app.app.routes if isinstance(route, Route)} | {"/mcp", "/mcp/{server}"}
    covered = {case.anonymous["path"] for case in CASES if case.anonymous is not None}
    covered = {"/mcp/{server}" if p.startswith("/mcp/") else p for p in covered}
    covered |= {"/v1/models/{model:path}"} if "/v1/models/fast" in covered else set()
    covered.discard("/v1/models/fast")
    covered = {re.sub(r"^/v1/responses/resp_x", "/v1/responses/{response_id}", p) for p in covered}
    covered |= {"/v1/{path:path}"} if "/v1/nope" in covered else set()
    covered.discard("/v1/nope")
    assert routes - covered == set(ELSEWHERE), sorted(routes - covered - set(ELSEWHERE))
    assert covered <= routes


SIGN_IN = {
    "/.well-known/oauth-protected-resource": "public discovery documents (tests/signin)",
    "/.well-known/oauth-protected-resource/mcp": "public discovery documents (tests/signin)",
    "/.well-known/oauth-protected-resource/mcp/{server}": "public discovery documents (tests/signin)",
    "/.well-known/oauth-authorization-server": "public discovery documents (tests/signin)",
    "/.well-known/openid-configuration": "public discovery documents (tests/signin)",
    "/signin/authorize": "the authorization server: PKCE, exact redirects, resource indicators (tests/signin)",
    "/signin/token": "the authorization server: codes once, refresh rotation and reuse detection (tests/signin)",
    "/signin/register": "dynamic registration, capped and rate-limited per source (tests/signin)",
    "/signin/revoke": "revocation by the client that holds the token (tests/signin)",
    "/signin/login": "browser flows bound to the person who started them (tests/signin)",
    "/signin/callback": "browser flows bound to the person who started them (tests/signin)",
    "/signin/consent": "the consent page's answer, bound to the browser's flow cookie by its CSRF token (tests/signin)",
}
"""With `[sign_in]`: the authorization server's routes; the tokens it issues are principals of the MCP door's
cases above (a person crosses the same pipeline as a key)."""


def test_with_sign_in_every_route_is_in_the_matrix_or_governed_elsewhere(tmp_path: Path) -> None:
    from starlette.routing import Route

    from hub.http import build_app
    from hub.settings import settings_from_dict

    sign_in = {"issuer": "http://127.0.0.1:8787", "allowed_redirects": ["http://127.0.0.1/*"],
               "idp": {"issuer": "https://login.example", "client_id": "hub"}}  # fmt: skip
    plain: Any = build_app(settings_from_dict({}, tmp_path / "agenthub.toml"))
    signed: Any = build_app(settings_from_dict({"sign_in": sign_in}, tmp_path / "agenthub.toml"))
    before = {route.path for route in plain.app.routes if isinstance(route, Route)}
    after = {route.path for route in signed.app.routes if isinstance(route, Route)}
    assert after - before == set(SIGN_IN)
    assert before <= after


def test_every_not_applicable_reason_is_an_accepted_one() -> None:
    for case in CASES:
        assert set(case.na.values()) <= NA_REASONS, case.id
        assert set(case.na) <= {"anonymous", "grant", "input", "output"}, case.id


# -- the four checks -----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def one_row(matrix: Matrix, case: Case, found: list[Any]) -> AsyncIterator[None]:
    before = {r.call_id for r in await matrix.rows()}
    yield
    rows = [r for r in await matrix.rows() if r.call_id not in before]
    door, operation = case.row or (case.door.split("-")[0], case.operation)
    mine = [r for r in rows if (r.door, r.operation) == (door, operation)]
    assert len(mine) == 1, f"{case.id}: rows {[(r.door, r.operation, r.status) for r in rows]}"
    if case.row is None:
        assert len(rows) == 1, f"{case.id}: rows {[(r.door, r.operation, r.status) for r in rows]}"
    found.extend(mine)


@pytest.mark.parametrize("case", case_params("anonymous"))
async def test_no_key_is_401_with_one_log_row(matrix: Matrix, case: Case) -> None:
    assert case.anonymous is not None
    for key in (None, WRONG_KEY):
        found: list[Any] = []
        async with one_row(matrix, case, found):
            if case.anonymous.get("method") == "GET":
                response = await matrix.get(case.anonymous["path"], key)
            elif case.anonymous.get("method") == "DELETE":
                response = await matrix.delete(case.anonymous["path"], key)
            else:
                headers = {"accept": "application/json, text/event-stream"} if case.door.startswith("mcp") else {}
                response = await matrix.post(case.anonymous["path"], case.anonymous["body"], key, headers)
        assert response.status_code == 401, (case.id, response.text)
        assert "www-authenticate" in response.headers
        if case.door.startswith("mcp"):
            assert response.json()["error"]["code"] == -32001
        else:
            assert response.json()["error"]["type"] == "authentication_error"
        assert found[0].status == 401 and found[0].key_id is None


@pytest.mark.parametrize("case", case_params("grant"))
async def test_a_key_without_the_grant_gets_the_error_of_an_unknown_name(matrix: Matrix, case: Case) -> None:
    found: list[Any] = []
    denied = await case.run(Probe(matrix, case.ungranted, measured=lambda: one_row(matrix, case, found)))
    if case.empty_when_ungranted:
        assert denied.label == "ok", (case.id, denied)
        assert "fixture" not in denied.text and MODEL not in denied.text, (case.id, denied.text)
        return
    unknown = await case.run(Probe(matrix, case.key, unknown=True))
    assert denied.label == unknown.label == "not_found", (case.id, denied, unknown)
    assert found[0].status == 404
    if denied.message and unknown.message:
        assert _shape(denied.message) == _shape(unknown.message), (case.id, denied.message, unknown.message)


def _shape(message: str) -> str:
    """A refusal message with the name it refers to left out (`unknown tool: x`, `no MCP server named 'x'`)."""
    return re.sub(r"'[^']*'", "''", message).split(":")[0]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
async def test_the_limit_reached_is_429(matrix: Matrix, case: Case) -> None:
    """The measured request is the first over the key's limit: after the counted requests of the run's own setup,
    or its own second time (on one MCP session); a gated operation once a request of the key was refused."""
    prepared = case.gated and case.setup > 0  # the run makes its counted requests, then `before` goes over the limit
    key = await matrix.limited(case.key, case.setup + 1 if prepared else max(case.setup, 1))

    async def exhaust() -> None:
        assert (await rest_tool(Probe(matrix, key))).label == "ok"
        assert (await rest_tool(Probe(matrix, key))).label == "rate_limited"

    warmup = False
    before: Callable[[], Awaitable[None]] | None = None
    if case.gated and (case.door.startswith("mcp") or prepared) and case.operation != "mcp.session":
        before = exhaust  # on a session opened before the key went over its limit
    elif case.gated:
        await exhaust()
    elif case.setup == 0 and case.door.startswith("mcp"):
        warmup = True
    elif case.setup == 0:
        first = await case.run(Probe(matrix, key))
        assert first.label == "ok", (case.id, first)
    found: list[Any] = []
    probe = Probe(matrix, key, measured=lambda: one_row(matrix, case, found), warmup=warmup, before=before)
    denied = await case.run(probe)
    assert denied.label == "rate_limited", (case.id, denied)
    assert found[0].status == 429


@pytest.mark.parametrize("case", case_params("input"))
async def test_a_guardrail_hit_in_the_input_is_blocked(matrix: Matrix, case: Case) -> None:
    found: list[Any] = []
    answer = await case.run(Probe(matrix, case.key, BLOCKED, measured=lambda: one_row(matrix, case, found)))
    assert answer.label == "forbidden", (case.id, answer)
    assert BLOCKED not in answer.message
    assert found[0].status == 403


@pytest.mark.parametrize("case", case_params("output"))
async def test_a_guardrail_hit_in_the_output_is_redacted(matrix: Matrix, case: Case) -> None:
    answer = await case.run(Probe(matrix, case.key, SECRET))
    assert answer.label == "ok", (case.id, answer)
    assert SECRET not in answer.text, (case.id, answer.text)
    assert "[REDACTED:" in answer.text, (case.id, answer.text)
