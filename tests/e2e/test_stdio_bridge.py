"""`agenthub stdio --url`, the bridge Claude Desktop launches, against a real `agenthub serve`.

The bridge is a relay: whatever a client asks through it, the hub answers exactly as on `/mcp` (same methods, same
listings and results field for field, same refusals), in both protocol eras. It starts without importing the hub,
stops with a message and exit status 1 when it cannot serve (a refused key, a hub it cannot reach), survives the
hub going away and coming back, and ends its session when the client closes stdin.

Upstreams: the fixture server over stdio (with its `x-mcp-header` tools), the same server as a per-client session
(sampling), and `decorated_server.py` over HTTP, whose tool carries every optional field of a tool definition.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import orjson
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, BOB, mcp_client
from tests.tools import PATIENCE, ServedProcess, free_port, served, server_argv
from tests.tools.node import REPO_ROOT

pytestmark = pytest.mark.anyio

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
FIXTURE = REPO_ROOT / "tests" / "servers" / "fixture_server.py"
HANDSHAKE = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def write_config(folder: Path, *, decorated: str | None = None, **hub: Any) -> Path:
    """A hub config: the fixture upstream (stdio, with header tools), optionally the `sampler` per-client fixture
    and the decorated upstream at `decorated`; keys alice (everything) and bob (echo and greeting only)."""
    extra = "".join(f"{name} = {orjson.dumps(value).decode()}\n" for name, value in hub.items())
    servers = ""
    if decorated is not None:
        servers = f"""
[servers.sampler]
transport = "stdio"
command = "{sys.executable}"
args = ["{FIXTURE}", "--name", "sampler"]
session = "per_client"

[servers.decorated]
transport = "http"
url = "{decorated}"
"""
    path = folder / "agenthub.toml"
    path.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{folder / "hub.db"}"
upstream_start_timeout_s = 20
{extra}
[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{FIXTURE}", "--header-tools"]
{servers}
[[keys]]
name = "alice"
secret = "{ALICE}"
tools = ["*"]

[[keys]]
name = "bob"
secret = "{BOB}"
tools = ["fixture__echo", "fixture__greeting"]
"""
    )
    return path


def hub_argv(config: Path) -> list[str]:
    return [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]


def bridge_env(key: str | None) -> dict[str, str]:
    """The test's environment without any `AGENTHUB_` setting of its own, and `key` as `AGENTHUB_KEY`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGENTHUB_")}
    if key is not None:
        env["AGENTHUB_KEY"] = key
    return env


def bridge_params(url: str, key: str | None, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=AGENTHUB, args=["stdio", "--url", url, *extra], env=bridge_env(key), cwd=REPO_ROOT
    )


@pytest.fixture(scope="module")
async def decorated() -> AsyncIterator[ServedProcess]:
    async with served(server_argv("decorated_server", "--transport", "streamable-http", "--port", "{port}")) as up:
        yield up


@pytest.fixture(scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory, decorated: ServedProcess) -> AsyncIterator[ServedProcess]:
    """One `agenthub serve` for the tests that do not stop it."""
    config = write_config(tmp_path_factory.mktemp("bridge"), decorated=decorated.url("/mcp"))
    async with served(hub_argv(config)) as serving:
        yield serving


class RawBridge:
    """A bridge process driven with raw JSON-RPC lines, as an MCP client would drive it."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(orjson.dumps(message) + b"\n")

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(PATIENCE):
            line = await self._stdout.receive_until(b"\n", 16 * 1024 * 1024)
        message: dict[str, Any] = orjson.loads(line)
        return message

    async def ask(self, message_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": message_id, "method": method, "params": params or {}})
        return await self.receive()

    async def close_stdin(self) -> int:
        """Close stdin, as a client does when it is done; the exit status."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        with anyio.fail_after(PATIENCE):
            return await self.process.wait()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        chunks = [chunk async for chunk in self.process.stderr]
        return b"".join(chunks).decode(errors="replace")


@contextlib.asynccontextmanager
async def raw_bridge(url: str, key: str | None, *extra: str) -> AsyncGenerator[RawBridge]:
    process = await anyio.open_process(
        [AGENTHUB, "stdio", "--url", url, *extra], env=bridge_env(key), cwd=REPO_ROOT, start_new_session=True
    )
    try:
        yield RawBridge(process)
    finally:
        if process.returncode is None:
            process.kill()  # by its PID
        with anyio.CancelScope(shield=True), anyio.fail_after(PATIENCE):
            await process.wait()
        await process.aclose()


def crash(serving: ServedProcess) -> None:
    """Kill a server's process group at once (SIGKILL, by PID), as a crash would end it, and reap it."""
    os.killpg(serving.pid, signal.SIGKILL)
    serving.process.wait()


def initialize(message_id: int = 1) -> dict[str, Any]:
    params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    return {"jsonrpc": "2.0", "id": message_id, "method": "initialize", "params": params}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class DirectSession:
    """The same requests straight to `/mcp` over Streamable HTTP (handshake era), answers as JSON objects."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.headers = {"accept": ACCEPT, "content-type": "application/json"}

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(self.url, content=orjson.dumps(message), headers=self.headers)
        if "mcp-session-id" in response.headers:
            self.headers |= {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": HANDSHAKE}
        if response.headers["content-type"].startswith("text/event-stream"):
            data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
            answer: dict[str, Any] = orjson.loads(data[-1])
            return answer
        return orjson.loads(response.content)

    async def notify(self, message: dict[str, Any]) -> None:
        response = await self.http.post(self.url, content=orjson.dumps(message), headers=self.headers)
        assert response.status_code == 202


@contextlib.asynccontextmanager
async def direct_session(url: str, key: str) -> AsyncGenerator[tuple[DirectSession, dict[str, Any]]]:
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=PATIENCE) as http:
        direct = DirectSession(http, url)
        opened = await direct.ask(initialize())
        await direct.notify(INITIALIZED)
        try:
            yield direct, opened
        finally:
            await http.delete(url, headers=direct.headers)


RELAYED = [
    ("tools/list", {}),
    ("prompts/list", {}),
    ("resources/list", {}),
    ("resources/templates/list", {}),
    (
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "fixture__review_code"}}
        | {"argument": {"name": "language", "value": "py"}},
    ),
    ("logging/setLevel", {"level": "debug"}),
    ("tools/call", {"name": "decorated__forecast", "arguments": {"city": "Oslo"}}),
    ("tools/call", {"name": "fixture__rich_content", "arguments": {"city": "Paris"}}),
    ("tools/call", {"name": "fixture__nope", "arguments": {}}),
    ("prompts/get", {"name": "fixture__greeting", "arguments": {"name": "Ada"}}),
    ("resources/read", {"uri": "fixture://readme"}),
]


async def test_the_bridge_answers_every_request_exactly_as_mcp_does(hub: ServedProcess) -> None:
    url = hub.url("/mcp")
    via_bridge: list[dict[str, Any]] = []
    via_mcp: list[dict[str, Any]] = []
    with anyio.fail_after(PATIENCE):
        async with raw_bridge(url, ALICE) as bridge:
            bridged_opening = await bridge.ask(1, "initialize", initialize()["params"])
            await bridge.send(INITIALIZED)
            for number, (method, params) in enumerate(RELAYED, start=2):
                via_bridge.append(await bridge.ask(number, method, params))
            assert await bridge.close_stdin() == 0
        async with direct_session(url, ALICE) as (direct, opening):
            for number, (method, params) in enumerate(RELAYED, start=2):
                message = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
                via_mcp.append(await direct.ask(message))
    assert bridged_opening == opening
    assert opening["result"]["serverInfo"] == {"name": "agenthub", "version": importlib.metadata.version("agenthub")}
    assert via_bridge == via_mcp
    answers = {method: answer for (method, _), answer in zip(RELAYED, via_bridge, strict=True)}
    forecast = next(t for t in answers["tools/list"]["result"]["tools"] if t["name"] == "decorated__forecast")
    assert forecast["execution"] == {"taskSupport": "optional"}
    assert {"title", "annotations", "icons", "_meta", "outputSchema"} <= forecast.keys()
    assert answers["completion/complete"]["result"]["completion"]["values"] == ["python"]
    assert answers["logging/setLevel"] == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert via_bridge[6]["result"]["_meta"] == {"example.com/source": "decorated"}
    assert via_bridge[8]["error"]["message"] == "unknown tool: fixture__nope"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_completions_are_served_and_governed_as_on_mcp(hub: ServedProcess, mode: str) -> None:
    reference = types.PromptReference(type="ref/prompt", name="fixture__review_code")
    argument = {"name": "language", "value": "ja"}
    with anyio.fail_after(PATIENCE):
        async with Client(bridge_params(hub.url("/mcp"), ALICE), mode=mode) as alice:
            completed = await alice.complete(reference, argument)
        async with Client(bridge_params(hub.url("/mcp"), BOB), mode=mode) as bob:
            with pytest.raises(MCPError) as bridged:
                await bob.complete(reference, argument)
        async with mcp_client(hub.url("/mcp"), BOB, mode=mode) as direct_bob:
            with pytest.raises(MCPError) as direct:
                await direct_bob.complete(reference, argument)
    assert completed.completion.values == ["javascript", "java"]
    assert (bridged.value.error.code, bridged.value.error.message) == (
        direct.value.error.code,
        direct.value.error.message,
    )


async def test_a_handshake_client_sees_the_hubs_identity(hub: ServedProcess) -> None:
    with anyio.fail_after(PATIENCE):
        async with Client(bridge_params(hub.url("/mcp"), ALICE), mode="legacy") as client:
            info = client.server_info
    assert info is not None and (info.name, info.version) == ("agenthub", importlib.metadata.version("agenthub"))


async def test_a_2026_client_calls_a_tool_whose_argument_travels_in_a_header(hub: ServedProcess) -> None:
    """Under 2026-07-28 the hub checks `Mcp-Param-Region` against the `region` argument of `fixture__regional`: the
    bridge sends it, for a tool the client listed and for one it calls without listing."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    call = {"name": "fixture__regional", "arguments": {"region": "eu-west"}, "_meta": meta}
    with anyio.fail_after(PATIENCE):
        async with raw_bridge(hub.url("/mcp"), ALICE) as bridge:
            unlisted = await bridge.ask(1, "tools/call", call)
            assert await bridge.close_stdin() == 0
        async with Client(bridge_params(hub.url("/mcp"), ALICE), mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            names = [tool.name for tool in (await client.list_tools()).tools]
            listed = await client.call_tool("fixture__regional", {"region": "ünïcode région"})
    assert unlisted["result"]["isError"] is False, unlisted
    assert "fixture__regional" in names and not listed.is_error


async def test_the_hubs_requests_and_notifications_reach_the_client(hub: ServedProcess) -> None:
    """A sampling request from a per-client upstream (on the tool call's stream) and a list change (on the
    session's stream) reach the client through the bridge, and the client's answer reaches the upstream."""
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="fake-model"
        )

    params = bridge_params(hub.url("/mcp"), ALICE)
    with anyio.fail_after(PATIENCE):
        async with Client(params, mode="legacy", message_handler=on_message, sampling_callback=sampling) as client:
            sampled = await client.call_tool("sampler__ask_llm", {"prompt": "the answer?"})
            await client.call_tool("fixture__add_tool", {"name": "late"})
            await changed.wait()
            late = await client.call_tool("fixture__late", {"message": "hi"})
    assert sampled.content == [types.TextContent(type="text", text="LLM said: forty-two")]
    assert late.content == [types.TextContent(type="text", text="late: hi")]


async def test_the_bridge_imports_only_what_relaying_needs() -> None:
    """The whole start-up path (`agenthub` -> `hub.cli.launch` -> `hub.cli.stdio` -> the bridge), run until it
    gives up on a hub that is not there: none of the hub's machinery, the `mcp` SDK or pydantic is imported."""
    url = f"http://127.0.0.1:{free_port()}/mcp"
    argv = [sys.executable, "-X", "importtime", AGENTHUB, "stdio", "--url", url, "--connect-timeout", "5"]
    done = await anyio.run_process(argv, env=bridge_env(ALICE), cwd=REPO_ROOT, check=False)
    lines = done.stderr.decode(errors="replace").splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:") and "|" in line}
    heavy = [
        "hub.app",
        "hub.settings",
        "hub.cli.main",
        "hub.pipeline",
        "hub.stages",
        "hub.store",
        "hub.guardrails",
        "hub.executors",
        "hub.doors.mcp",
        "connectors",
        "llm",
        "sandbox",
        "http1",
        "mcp",
        "mcp_types",
        "pydantic",
        "sqlmodel",
        "sqlalchemy",
        "wasmtime",
        "starlette",
        "uvicorn",
    ]
    loaded = sorted(name for name in imported if any(name == h or name.startswith(h + ".") for h in heavy))
    assert done.returncode == 1
    assert {"hub.cli.stdio", "hub.doors.stdio", "httpx2"} <= imported  # the profile was read
    assert loaded == []


async def test_an_unreachable_hub_answers_the_pending_request_and_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with anyio.fail_after(PATIENCE):
        async with raw_bridge(url, ALICE, "--connect-timeout", "1") as bridge:
            await bridge.send(initialize())
            answer = await bridge.receive()
            status = await bridge.close_stdin()
            stderr = await bridge.stderr()
    assert answer["id"] == 1 and answer["error"]["code"] == -32603
    assert answer["error"]["message"].startswith(f"cannot reach the hub at {url}")
    assert status == 1
    assert f"agenthub stdio: cannot reach the hub at {url}" in stderr


async def test_an_unreachable_hub_with_stdin_closed_at_once_exits_1_with_a_message() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with anyio.fail_after(PATIENCE):
        done = await anyio.run_process(
            [AGENTHUB, "stdio", "--url", url], input=b"", env=bridge_env(ALICE), cwd=REPO_ROOT, check=False
        )
    assert done.returncode == 1 and done.stdout == b""
    assert f"cannot reach the hub at {url}" in done.stderr.decode()


async def test_a_refused_key_answers_the_pending_request_and_exits_1(hub: ServedProcess) -> None:
    url = hub.url("/mcp")
    with anyio.fail_after(PATIENCE):
        async with raw_bridge(url, "ahk-not-a-key") as bridge:
            await bridge.send(initialize())
            answer = await bridge.receive()
            status = await bridge.close_stdin()
            stderr = await bridge.stderr()
    expected = f"the hub at {url} requires a valid virtual key; it refused the key in AGENTHUB_KEY"
    assert answer == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": expected}}
    assert status == 1
    assert f"agenthub stdio: {expected}" in stderr


async def test_the_bridge_outlives_the_hub_and_carries_on_when_it_returns(tmp_path: Path) -> None:
    """While the hub is down, requests get an error naming it; once it is back (its sessions forgotten), the
    bridge opens a new session by itself and the same client carries on."""
    argv = hub_argv(write_config(tmp_path))
    port = free_port()
    with anyio.fail_after(3 * PATIENCE):
        async with served(argv, port=port) as first:
            url = first.url("/mcp")
            async with Client(bridge_params(url, ALICE), mode="legacy") as client:
                before = await client.call_tool("fixture__echo", {"message": "before"})
                await anyio.to_thread.run_sync(crash, first)
                with pytest.raises(MCPError) as gone:
                    await client.call_tool("fixture__echo", {"message": "meanwhile"})
                async with served(argv, port=port):
                    after = await client.call_tool("fixture__echo", {"message": "after"})
    assert before.content == [types.TextContent(type="text", text="before")]
    assert gone.value.error.message.startswith(f"cannot reach the hub at {url}")
    assert after.content == [types.TextContent(type="text", text="after")]


async def test_closing_stdin_stops_the_bridge_and_ends_its_session(tmp_path: Path) -> None:
    """With one session per key, another session opens only once the bridge ended its own."""
    argv = hub_argv(write_config(tmp_path, max_sessions_per_key=1))
    with anyio.fail_after(3 * PATIENCE):
        async with served(argv) as serving:
            url = serving.url("/mcp")
            async with raw_bridge(url, ALICE) as first:
                opened = await first.ask(1, "initialize", initialize()["params"])
                await first.send(INITIALIZED)
                async with httpx2.AsyncClient(headers={"authorization": f"Bearer {ALICE}"}, timeout=PATIENCE) as http:
                    capped = await http.post(
                        url,
                        content=orjson.dumps(initialize()),
                        headers={"accept": ACCEPT, "content-type": "application/json"},
                    )
                status = await first.close_stdin()
            async with raw_bridge(url, ALICE) as second:
                reopened = await second.ask(1, "initialize", initialize()["params"])
                assert await second.close_stdin() == 0
    assert "result" in opened and status == 0
    assert capped.status_code == 429
    assert "result" in reopened, reopened


async def test_a_url_without_an_mcp_endpoint_stops_the_bridge_with_the_hubs_answer(hub: ServedProcess) -> None:
    url = hub.url("/mcp/nosuchserver")
    with anyio.fail_after(PATIENCE):
        done = await anyio.run_process(
            [AGENTHUB, "stdio", "--url", url], input=b"", env=bridge_env(ALICE), cwd=REPO_ROOT, check=False
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b""
    assert f"agenthub stdio: the hub at {url} answered HTTP 404: " in stderr, stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "hub.example/mcp"], "--url must be the http:// or https:// URL of a hub's /mcp"),
        (["--url", "http://127.0.0.1:1/mcp", "--connect-timeout", "0"], "--connect-timeout must be a positive"),
    ],
)
async def test_arguments_that_cannot_work_are_refused_at_once(args: list[str], message: str) -> None:
    with anyio.fail_after(PATIENCE):
        done = await anyio.run_process(
            [AGENTHUB, "stdio", *args], input=b"", env=bridge_env(ALICE), cwd=REPO_ROOT, check=False
        )
    assert done.returncode == 2 and done.stdout == b""
    assert f"agenthub stdio: {message}" in done.stderr.decode()
