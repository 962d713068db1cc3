"""Seeded request-log rows for the log API tests, and the reference answers computed from them in Python."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.audit.requestlog import LogEntry, RequestLog
from hub.store.sql import SqlStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
"""The seeded rows lie in the three days before this."""

KEYS = [("key_a", "alpha", "payments", "acme"), ("key_b", "beta", "payments", "acme"),
        ("key_c", "gamma", "platform", None), (None, None, None, None)]  # fmt: skip
LLM = [("openai", "llm.chat", "gpt-4o"), ("openai", "llm.embed", "text-embedding-3-small"),
       ("anthropic", "llm.messages", "claude-sonnet-4-5")]  # fmt: skip
MCP = [("fixture", "echo"), ("fixture", "add"), ("github", "search_issues")]
OUTCOMES = [("ok", 200, None), ("ok", 200, None), ("ok", 200, None), ("tool_error", 200, None),
            ("rate_limit_error", 429, "rate limit reached"), ("upstream_error", 502, "upstream failed")]  # fmt: skip

ROOT = "call_loop_root"
"""An Agent Mode loop: two model turns, a Code Mode run with three inner tool calls, one of them with a child."""
TREE = {
    "call_turn_1": ROOT, "call_code": ROOT, "call_turn_2": ROOT,
    "call_inner_1": "call_code", "call_inner_2": "call_code", "call_inner_3": "call_code",
    "call_deep": "call_inner_2",
}  # fmt: skip


def seeded(count: int = 300, seed: int = 7) -> list[LogEntry]:
    """`count` varied rows over three days (some sharing a timestamp), then one call tree."""
    rng = random.Random(seed)
    rows: list[LogEntry] = []
    for n in range(count):
        key_id, key_name, team, customer = rng.choice(KEYS)
        outcome, status, error = rng.choice(OUTCOMES)
        seconds = rng.randrange(3 * 86400)
        if n % 10 == 9:
            seconds = int((NOW - rows[-1].ts).total_seconds())  # the same time as the row before: ties on ts
        ts = NOW - timedelta(seconds=seconds)
        entry = LogEntry(
            ts=ts, call_id=f"call_{n:04d}", parent_id=None, key_id=key_id, key_name=key_name, door="openai",
            operation="llm.chat", target="", outcome=outcome, status=status,
            latency_ms=round(rng.uniform(1, 2000), 3), error=error, team=team, customer=customer,
        )  # fmt: skip
        if rng.random() < 0.5:
            door, operation, model = rng.choice(LLM)
            entry.door, entry.operation, entry.target, entry.model = door, operation, model, model
            entry.tokens = rng.randrange(10, 5000)
            entry.cost_usd = round(entry.tokens * 0.000002, 9) if rng.random() < 0.8 else None
            entry.upstream_ms = round(entry.latency_ms * 0.9, 3)
            entry.deployment = f"{door}/{model}"
        else:
            server, tool = rng.choice(MCP)
            entry.door, entry.operation, entry.target = "mcp", "mcp.tool", f"{server}__{tool}"
            entry.server, entry.tool = server, tool
        rows.append(entry)
    base = NOW - timedelta(hours=1)
    rows.append(_tree_row(ROOT, None, None, base, "llm.chat", "agent"))
    for n, (call_id, parent) in enumerate(TREE.items(), start=1):
        operation = "llm.chat" if "turn" in call_id else "code.run" if call_id == "call_code" else "mcp.tool"
        rows.append(_tree_row(call_id, parent, ROOT, base + timedelta(seconds=n), operation, "agent"))
    return rows


def _tree_row(call_id: str, parent: str | None, loop: str | None, ts: datetime, operation: str, door: str) -> LogEntry:
    return LogEntry(
        ts=ts, call_id=call_id, parent_id=parent, key_id="key_a", key_name="alpha", door=door, operation=operation,
        target="fixture__echo" if operation == "mcp.tool" else "gpt-4o", outcome="ok", status=200, latency_ms=5.0,
        error=None, team="payments", customer="acme", loop_id=loop,
        server="fixture" if operation == "mcp.tool" else None, tool="echo" if operation == "mcp.tool" else None,
        model="gpt-4o" if operation == "llm.chat" else None,
    )  # fmt: skip


async def seed(store: SqlStore, entries: list[LogEntry]) -> None:
    """Write `entries` through the request log's own flush (rows, rollup), in their order."""
    log = RequestLog(store, batch=64)
    for entry in entries:
        log.record(replace(entry))
    await log.flush()
    assert log.written == len(entries)


MATCHERS: dict[str, Callable[[LogEntry, Any], bool]] = {
    "key": lambda e, v: e.key_id == v,
    "team": lambda e, v: e.team == v,
    "customer": lambda e, v: e.customer == v,
    "door": lambda e, v: e.door == v,
    "operation": lambda e, v: e.operation == v,
    "model": lambda e, v: e.model == v,
    "server": lambda e, v: e.server == v,
    "tool": lambda e, v: e.tool == v,
    "status": lambda e, v: e.status == int(v),
    "outcome": lambda e, v: e.outcome == v,
    "min_latency_ms": lambda e, v: e.latency_ms >= float(v),
    "min_cost_usd": lambda e, v: e.cost_usd is not None and e.cost_usd >= float(v),
    "loop": lambda e, v: e.loop_id == v or e.call_id == v,
    "since": lambda e, v: e.ts >= datetime.fromisoformat(v),
    "until": lambda e, v: e.ts < datetime.fromisoformat(v),
}
"""What each filter selects, written plainly: the reference the database's answers are checked against."""


def expected(entries: list[LogEntry], params: dict[str, str]) -> list[str]:
    """The call ids `params` select, newest first (ties on ts: the row written later first)."""
    chosen = [(e.ts, n, e.call_id) for n, e in enumerate(entries)
              if all(MATCHERS[name](e, value) for name, value in params.items())]  # fmt: skip
    return [call_id for _ts, _n, call_id in sorted(chosen, reverse=True)]
