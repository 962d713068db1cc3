"""`agenthub serve --workers N` as a real process tree for the tests: the config file, the processes, the calls.

The hub under test routes `fast` to an OpenAI-compatible fake served in the test's own event loop, so an LLM call is
a governed call with no upstream process to manage. Each call opens a connection of its own: the kernel hands each
new connection to whichever worker accepts first, so consecutive calls are not tied to one worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncGenerator, Generator, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.tools import ServedProcess, served
from tests.tools.patience import PATIENCE

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
ALICE = "ahk-workers-alice-secret-000000000000000000000"
PROVIDER_KEY = "sk-workers-provider-0001"
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}


def write_config(
    directory: Path,
    provider: str,
    *,
    models: str = '["*"]',
    secret: str | None = ALICE,
    rate_limit: str | None = None,
    grace: float = 30.0,
) -> Path:
    """A config with one OpenAI-compatible provider at `provider` (`fast` -> `echo`) and the key `alice` (its secret
    generated at the first start when `secret` is None)."""
    key = f'[[keys]]\nname = "alice"\nmodels = {models}\n'
    if secret is not None:
        key += f'secret = "{secret}"\n'
    if rate_limit is not None:
        key += f"rate_limit = {rate_limit}\n"
    config = directory / "agenthub.toml"
    config.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{directory / "hub.db"}"
shutdown_grace_s = {grace}

[providers.fake]
kind = "openai"
base_url = "{provider}/v1"
keys = [{{ name = "main", secret = "env:WORKERS_PROVIDER_KEY" }}]
models = ["echo"]

[models.fast]
deployments = [{{ provider = "fake", model = "echo" }}]

[routing]
max_retries = 0

{key}"""
    )
    return config


@contextlib.asynccontextmanager
async def hub_process(
    config: Path, workers: int, env: Mapping[str, str] | None = None
) -> AsyncGenerator[ServedProcess]:
    """`agenthub serve --workers N` on a free port until the block ends; then its whole process group is stopped."""
    argv = [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}", "--workers", str(workers)]
    full = {"WORKERS_PROVIDER_KEY": PROVIDER_KEY, "AGENTHUB_AUDIT_KEY": "w" * 40, **(env or {})}
    async with served(argv, env=full) as hub:
        if workers > 1:
            await wait_output(hub, "AgentHub is serving MCP at")  # every worker serves
        yield hub


async def wait_output(hub: ServedProcess, text: str, count: int = 1) -> str:
    """Wait until the hub's output holds `text` `count` times (or the hub exits); the output so far."""
    with anyio.fail_after(PATIENCE):
        while True:
            output = hub.output()
            if output.count(text) >= count:
                return output
            if not hub.running():
                raise AssertionError(f"the hub exited ({hub.process.returncode}) before {text!r}:\n{output[-4000:]}")
            await anyio.sleep(0.05)


def worker_pids(supervisor: int) -> list[int]:
    """The worker processes the supervisor runs now (children running `hub.runtime.worker serve`)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if (
            parent == supervisor
            and b"hub.runtime.worker\0serve" in cmdline
            and stat.rsplit(")", 1)[1].split()[0] != "Z"
        ):
            found.append(int(entry))
    return sorted(found)


async def wait_workers(supervisor: int, count: int, *, without: frozenset[int] = frozenset()) -> list[int]:
    """Wait until the supervisor runs `count` workers, none of them in `without`."""
    with anyio.fail_after(PATIENCE):
        while True:
            pids = worker_pids(supervisor)
            if len(pids) == count and not set(pids) & without:
                return pids
            await anyio.sleep(0.05)


@contextlib.contextmanager
def paused(pid: int) -> Generator[None]:
    """Stop a process (SIGSTOP) for the block: it accepts no connection meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def chat(hub: ServedProcess, secret: str = ALICE) -> httpx2.Response:
    """One chat completion on a new connection."""
    async with httpx2.AsyncClient(timeout=PATIENCE) as client:
        return await client.post(
            hub.url("/v1/chat/completions"), json=CHAT, headers={"authorization": f"Bearer {secret}"}
        )


def _chunk(content: str | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices: list[dict[str, Any]] = []
    if content is not None or finish is not None:
        delta = {"content": content} if content is not None else {}
        choices.append({"index": 0, "delta": delta, "finish_reason": finish})
    body: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "echo"}
    body["choices"] = choices
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


class GatedStream:
    """An OpenAI-compatible provider whose streamed answer sends its first piece, then waits for `release` before
    the rest: the test decides when a stream in flight may end."""

    def __init__(self) -> None:
        self.first_sent = anyio.Event()
        self.release = anyio.Event()

    def app(self) -> Starlette:
        async def completions(request: Request) -> Response:
            await request.body()

            async def events() -> AsyncGenerator[bytes]:
                yield _chunk("first")
                self.first_sent.set()
                await self.release.wait()
                yield _chunk(" second")
                yield _chunk(None, "stop")
                yield _chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
