"""The unit of governed work: a `Call`, who makes it (`Principal`), and what comes back (`Outcome`)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.governance.keys import VirtualKey
from hub.governance.usage import Usage

Door = Literal["mcp", "openai", "rest", "code", "agent", "admin"]
Operation = Literal["llm.chat", "llm.embed", "mcp.list", "mcp.tool", "mcp.resource", "mcp.prompt", "code.run"]


_PROCESS = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def new_call_id() -> str:
    """A call id unique across processes: a random per-process prefix and a counter (no syscall per call)."""
    return f"call_{_PROCESS}{next(_COUNTER):x}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a virtual key (with its team and customer)."""

    key: VirtualKey

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True, slots=True)
class Call:
    """One governed unit of work. Frozen: stages pass `dataclasses.replace(call, ...)` on, never mutate.

    `target` is what the operation acts on (an exposed tool or prompt name, a resource URI, a model);
    `payload` its arguments; `context` door-specific values the executor needs (a progress callback, the
    downstream session for sampling), never governance data.
    """

    door: Door
    operation: Operation
    target: str
    payload: Any = None
    principal: Principal | None = None
    credential: str | None = None
    call_id: str = field(default_factory=new_call_id)
    parent_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict[str, Any])


@dataclass(slots=True)
class Outcome:
    """What a call produced.

    `tool_error` marks an MCP tool result with `isError` (the call itself worked). `usage` is what the call
    used when the executor knows better than the estimate (LLM tokens and cost). `headers` collects what stages
    want on an HTTP response (rate-limit and budget headers).
    """

    value: Any
    tool_error: bool = False
    usage: Usage | None = None
    headers: dict[str, str] = field(default_factory=dict[str, str])
