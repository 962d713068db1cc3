"""Fixtures for the sandbox tests: one shared worker pool, and tool callers written as plain async functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from sandbox import SandboxPool, ToolCallError, ToolCatalog, ensure_artifact


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the guest (a cold build takes tens of seconds) before any test's timeout starts."""
    names = {item.nodeid for item in session.items}
    if any(name.startswith("tests/sandbox/") for name in names):
        ensure_artifact()
    if any("fuel" in name for name in names if name.startswith("tests/sandbox/")):
        ensure_artifact(fuel=True)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def pool(anyio_backend: str) -> AsyncIterator[SandboxPool]:
    async with SandboxPool(size=2) as shared:
        yield shared


GITHUB_TOOLS: list[dict[str, Any]] = [
    {
        "name": "create_issue",
        "description": "Create an issue in a repository. Returns the new issue.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "Issue title"},
                "body": {"type": "string", "description": "Markdown body"},
                "labels": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["title"],
        },
        "outputSchema": {
            "type": "object",
            "properties": {"number": {"type": "integer", "description": "Issue number"}, "url": {"type": "string"}},
            "required": ["number"],
        },
    },
    {
        "name": "list-issues",
        "description": "List open issues.",
        "inputSchema": {"type": "object", "properties": {"state": {"enum": ["open", "closed"]}}},
    },
]
SLACK_TOOLS: list[dict[str, Any]] = [
    {
        "name": "post_message",
        "description": "Post a message to a channel",
        "inputSchema": {
            "type": "object",
            "properties": {"channel": {"type": "string"}, "text": {"type": "string"}},
            "required": ["channel", "text"],
        },
    }
]


@pytest.fixture
def catalog() -> ToolCatalog:
    return ToolCatalog.from_mcp({"github": GITHUB_TOOLS, "slack": SLACK_TOOLS})


class RecordingCaller:
    """A ToolCaller that echoes its calls, refuses `forbidden`, and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((name, arguments))
        if name == "forbidden":
            raise ToolCallError("not permitted for this key")
        return {"tool": name, "arguments": arguments}


class BarrierCaller:
    """Answers only once `parties` calls are in flight together: proves the calls run concurrently."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_in = anyio.Event()

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_in.set()
        with anyio.fail_after(5):
            await self.all_in.wait()
        return arguments.get("n")
