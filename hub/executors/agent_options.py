"""What one Agent Mode request may do: the key's `chat_tools` and `auto_execute` globs, narrowed (never widened)
by the request's `agenthub` field, its depth and its deadline.

Both LLM doors read the same field (`agenthub` in the chat completion or Messages body), so a request can narrow
its tools the same way whichever wire format it speaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.call import Principal
from hub.errors import BadRequest
from hub.governance.filters import GlobSet

__all__ = ["DEFAULT_DEADLINE_S", "AgentOptions", "agent_options"]

DEFAULT_DEADLINE_S = 300.0


@dataclass(frozen=True)
class AgentOptions:
    """What one request may do: offered MCP tools, auto-approved tools, depth and deadline."""

    chat_tools: GlobSet
    auto_execute: GlobSet
    max_depth: int
    deadline_s: float
    narrowed_chat: GlobSet | None = None
    narrowed_auto: GlobSet | None = None

    def offers(self, name: str) -> bool:
        return self.chat_tools.matches(name) and (self.narrowed_chat is None or self.narrowed_chat.matches(name))

    def approves(self, name: str) -> bool:
        return self.auto_execute.matches(name) and (self.narrowed_auto is None or self.narrowed_auto.matches(name))

    @property
    def active(self) -> bool:
        """Whether the loop may run at all (some tool is auto-approved)."""
        return bool(self.auto_execute.patterns) and (self.narrowed_auto is None or bool(self.narrowed_auto.patterns))

    def confine(self, principal: Principal) -> Principal:
        """`principal` limited to the auto-approved tools (for a program the hub runs without asking)."""
        confined = principal.narrowed(self.auto_execute)
        return confined if self.narrowed_auto is None else confined.narrowed(self.narrowed_auto)


def agent_options(principal: Principal, overrides: Any) -> AgentOptions:
    """The key's agent settings, narrowed by the request's `agenthub` field.

    Raises:
        BadRequest: the `agenthub` field is malformed.
    """
    key = principal.key
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise BadRequest("'agenthub' must be an object")
    unknown = set(overrides) - {"chat_tools", "auto_execute", "max_agent_depth", "deadline_s"}
    if unknown:
        raise BadRequest(f"unknown 'agenthub' fields: {', '.join(sorted(unknown))}")
    depth = overrides.get("max_agent_depth", key.max_agent_depth)
    deadline = overrides.get("deadline_s", DEFAULT_DEADLINE_S)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise BadRequest("'agenthub.max_agent_depth' must be a positive integer")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
        raise BadRequest("'agenthub.deadline_s' must be a positive number")
    return AgentOptions(
        chat_tools=GlobSet(key.chat_tools),
        auto_execute=GlobSet(key.auto_execute),
        max_depth=min(depth, key.max_agent_depth),
        deadline_s=min(float(deadline), DEFAULT_DEADLINE_S),
        narrowed_chat=_globs(overrides, "chat_tools"),
        narrowed_auto=_globs(overrides, "auto_execute"),
    )


def _globs(overrides: Mapping[str, Any], name: str) -> GlobSet | None:
    value = overrides.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'agenthub.{name}' must be a list of strings")
    return GlobSet(value)
