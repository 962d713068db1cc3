"""The unit of governed work: a `Call`, who makes it (`Principal`), and what comes back (`Outcome`)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hub.errors import HubError
from hub.governance.grants import Grant
from hub.governance.keys import VirtualKey
from hub.governance.usage import Usage

Door = Literal["mcp", "openai", "anthropic", "rest", "code", "agent", "admin"]
Operation = Literal[
    "llm.chat",
    "llm.messages",
    "llm.count_tokens",
    "llm.embed",
    "llm.models",
    "llm.response.get",
    "llm.response.delete",
    "llm.response.cancel",
    "llm.response.items",
    "mcp.session",
    "mcp.list",
    "mcp.tool",
    "mcp.prompt",
    "mcp.resource",
    "mcp.complete",
    "mcp.subscribe",
    "code.read",
    "code.run",
]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
"""Every operation a client request can be: each crosses the whole pipeline, and the door-matrix test covers each.

`llm.messages` is an Anthropic Messages request and `llm.count_tokens` counts one's input tokens (it spends
nothing, like a listing); `llm.models` lists or reads models; `llm.response.*` reads, deletes or cancels a stored
Responses API response, or lists its input items (`items`), the response id being the target; `mcp.session` opens,
keeps or probes an MCP session (`initialize`, `ping`, `server/discover`, ...); `mcp.list` lists tools, prompts,
resources or templates; `mcp.complete` is argument completion; `mcp.subscribe` subscribes to (or unsubscribes from)
a resource's updates; `code.read` is one of Code Mode's reading tools, `code.run` runs a program."""


_PROCESS = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def new_call_id() -> str:
    """A call id unique across processes: a random per-process prefix and a counter (no syscall per call)."""
    return f"call_{_PROCESS}{next(_COUNTER):x}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a virtual key (with its team and customer), and what it may reach.

    `grant` is the key's, unless narrowed (Agent Mode runs a program within its auto-approved tools): the authz
    stage checks every call, inner calls included, against it.
    """

    key: VirtualKey
    narrowing: Grant | None = None

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def grant(self) -> Grant:
        return self.narrowing if self.narrowing is not None else self.key.grant

    def narrowed(self, globs: Any) -> Principal:
        """The same principal, limited further to the MCP names `globs` (a `GlobSet` or globs) match."""
        return Principal(self.key, self.grant.narrowed(globs))

    def with_key(self, key: VirtualKey) -> Principal:
        """The same principal on a newer version of its key (its narrowing re-applied to the new grant)."""
        if self.narrowing is None:
            return Principal(key)
        return Principal(key, self.narrowing.rebased(key.grant))


@dataclass(frozen=True, slots=True)
class Malformed:
    """The payload of a request a door could not read: the call is still governed (authenticated, counted,
    recorded), and the executor refuses it with `error`."""

    error: HubError


@dataclass(frozen=True, slots=True)
class Call:
    """One governed unit of work. Frozen: stages pass `dataclasses.replace(call, ...)` on, never mutate.

    `target` is what the operation acts on (an exposed tool or prompt name, a resource URI, a model);
    `payload` its arguments (`Malformed` when the door could not read them); `scope` the server a single-server
    endpoint confines the call to; `context` door-specific values the executor needs (a progress callback, the
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
    scope: str | None = None

    def authenticated(self, principal: Principal) -> Call:
        """This call, made by `principal` (its credential dropped); `dataclasses.replace`, spelled out for the hot
        path."""
        return Call(
            self.door,
            self.operation,
            self.target,
            self.payload,
            principal,
            None,
            self.call_id,
            self.parent_id,
            self.context,
            self.scope,
        )


@dataclass(slots=True)
class Outcome:
    """What a call produced.

    `tool_error` marks an MCP tool result with `isError` (the call itself worked). `usage` is what the call
    used when the executor knows better than the estimate (LLM tokens and cost). `headers` collects what stages
    want on an HTTP response (rate-limit and budget headers). `principal` is who the call ran for, as the authn
    stage found it (for the audit stage, which runs before it).
    """

    value: Any
    tool_error: bool = False
    usage: Usage | None = None
    headers: dict[str, str] = field(default_factory=dict[str, str])
    principal: Principal | None = None
    upstream_ms: float | None = None
    """Milliseconds the executor waited on the upstream server or provider (for a stream: until it opened); None
    when the call reached none. The rest of the call's duration is the hub's own overhead."""


def agent_loop(call: Call, principal: Principal | None = None) -> bool:
    """Whether a call is an Agent Mode request: a chat completion or an Anthropic Messages request from a client
    (not a turn of a loop) whose key offers MCP tools in chat or whose body asks for Agent Mode options
    (`agenthub`). The loop is run by the agent executor; its turns and tool runs are calls of their own.
    `principal`: who made the call, when the call itself does not carry it yet (the audit stage sees calls before
    authentication)."""
    principal = principal or call.principal
    operation = call.operation
    if principal is None or (operation != "llm.chat" and operation != "llm.messages") or call.parent_id is not None:
        return False
    if not principal.key.chat_tools:
        payload = call.payload
        if not isinstance(payload, dict) or "agenthub" not in payload:
            return False
    api = call.context.get("api")
    return api == "chat" or api == "messages"
