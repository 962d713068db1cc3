"""One way to drive every door the guardrails cover, and a hub for each.

`DoorClient.send(key, text)` puts `text` into a call's input and returns the output text: on the MCP door a
`tools/call` of the fixture's `echo` through the `mcp` SDK client, on the REST door `POST /v1/mcp/tool/execute`
of the same tool, on the LLM door a chat completion through the `openai` SDK from a fake provider that answers
with the last user message. Both back ends reflect the input, so a value sent is also a value returned.
A refusal raises `Refused` with the door's code: the JSON-RPC code on MCP, the HTTP status elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2
import mcp_types as types
import openai
import orjson
from mcp.shared.exceptions import MCPError

from llm.testing import FakeRequest, FakeScript, Reply, openai_app, serve
from tests.hub.harness import RunningHub, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

ADMIN = "bootstrap-admin-token-guardrails-e2e-0123456789"
AUDIT_KEY = "audit-key-guardrails-e2e-0123456789abcdef01234567"
PROVIDER_KEY = "sk-guardrails-e2e-provider-0001"

SECRET = "ghp_8fK2mQ9xLp4Rt7Vw1Zc3Nb6Yh0Jd5Gs2Ae4U"
"""A GitHub personal access token (gitleaks rule `github-pat`)."""
EMAIL = "jane.doe@acme-corp.com"
CODENAME = "Project Falcon"

DoorName = Literal["mcp", "rest", "llm"]
DOORS: tuple[DoorName, ...] = ("mcp", "rest", "llm")
REFUSED_CODE: dict[DoorName, int] = {"mcp": -32003, "rest": 403, "llm": 403}
"""How each door reports a guardrail block."""


class Refused(Exception):
    """A door refused the call."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def key(name: str, team: str | None = None) -> dict[str, Any]:
    """A config key that may use every tool and model; its secret is derived from the name."""
    entry: dict[str, Any] = {"name": name, "secret": secret_of(name), "tools": ["*"], "models": ["*"]}
    if team is not None:
        entry["team"] = team
    return entry


def secret_of(name: str) -> str:
    return f"ahk-{name}-guardrails-e2e-".ljust(44, "0")


def echo_model(request: FakeRequest) -> Reply:
    """The fake model's answer: the last user message, unchanged."""
    body: Any = request.body
    return Reply(str(body["messages"][-1]["content"]))


@dataclass
class E2eHub:
    """A running hub, its door clients and the fake provider's record of requests."""

    running: RunningHub
    model: FakeScript

    @property
    def base(self) -> str:
        return self.running.base

    def client(self, door: DoorName) -> DoorClient:
        return DoorClient(self, door)

    def provider_saw(self, text: str, since: int = 0) -> bool:
        """Whether a request that reached the fake provider (the `since`-th on) contained `text`."""
        return any(text in str(r.body) for r in self.model.requests[since:])


@contextlib.asynccontextmanager
async def e2e_hub(
    tmp_path: Path,
    guardrails: list[dict[str, Any]],
    keys: list[dict[str, Any]],
    *,
    servers: Mapping[str, Any] | None = None,
    **extra: Any,
) -> AsyncGenerator[E2eHub]:
    """A hub with the fixture server (or `servers`), the echo model as `fast`, these guardrails and keys."""
    model = FakeScript(default=Reply("unused"))
    async with serve(openai_app(model, keys=[PROVIDER_KEY])) as provider:
        config = base_config({"fixture": fixture_stdio()} if servers is None else servers, keys)
        config.update(
            guardrails=guardrails,
            providers={
                "fake": {
                    "kind": "openai",
                    "base_url": f"{provider}/v1",
                    "keys": [{"name": "main", "secret": "env:E2E_PROVIDER_KEY"}],
                    "models": ["echo"],
                }
            },
            models={"fast": {"deployments": [{"provider": "fake", "model": "echo"}]}},
            routing={"max_retries": 0},
            **extra,
        )
        async with running_hub(config, tmp_path) as running:
            yield E2eHub(running, model)


class DoorClient:
    """Sends text through one door as one key."""

    def __init__(self, hub: E2eHub, door: DoorName) -> None:
        self.hub = hub
        self.door = door

    async def send(self, key_name: str, text: str) -> str:
        """The output of one call whose input carries `text`.

        Raises:
            Refused: the door refused the call.
        """
        secret = secret_of(key_name)
        if self.door == "mcp":
            return await self._mcp(secret, text)
        if self.door == "rest":
            return await self._rest(secret, text)
        return await self._llm(secret, text)

    async def _mcp(self, secret: str, text: str) -> str:
        refused: Refused | None = None
        result: types.CallToolResult | None = None
        async with mcp_client(self.hub.running.url("/mcp"), secret) as client:
            try:
                result = await client.call_tool("fixture__echo", {"message": text})
            except MCPError as exc:  # raised once the session is closed (not inside its task group)
                refused = Refused(exc.code, exc.message)
        if refused is not None:
            raise refused
        assert result is not None and not result.is_error, result
        return "".join(c.text for c in result.content if isinstance(c, types.TextContent))

    async def _rest(self, secret: str, text: str) -> str:
        arguments = orjson.dumps({"message": text}).decode()
        body = {"id": "c1", "type": "function", "function": {"name": "fixture__echo", "arguments": arguments}}
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            response = await http.post(
                self.hub.running.url("/v1/mcp/tool/execute"), json=body, headers={"Authorization": f"Bearer {secret}"}
            )
        if response.status_code != 200:
            raise Refused(response.status_code, response.json()["error"]["message"])
        return response.json()["content"]

    async def _llm(self, secret: str, text: str) -> str:
        self.hub.model.push(echo_model)
        async with openai.AsyncOpenAI(
            base_url=self.hub.running.url("/v1"), api_key=secret, max_retries=0, timeout=PATIENCE
        ) as client:
            try:
                completion = await client.chat.completions.create(
                    model="fast", messages=[{"role": "user", "content": text}]
                )
            except openai.APIStatusError as exc:
                raise Refused(exc.status_code, exc.message) from None
        return completion.choices[0].message.content or ""
