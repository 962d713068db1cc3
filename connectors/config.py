"""Upstream MCP server configuration: one tagged union over the three transports.

The table name in the hub's config (`[servers.NAME]`) is the server's name and tool prefix; it is
passed in as `name` and never read from the upstream's own `serverInfo`, which is not unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.auth.config import AuthConfig, NoAuth

SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?=[A-Za-z0-9-])){0,31}$")
"""Server names become tool prefixes (`server__tool`): 1-32 characters of `[A-Za-z0-9_-]`, starting with a letter or
a digit, with no `__` and no `_` at the end. So the first `__` of an exposed name always ends the server's name:
`fx__*` matches the tools of `fx` and of no other server (a server `fx_` would expose `fx___tool`)."""


def name_key(name: str) -> str:
    """What two server names must not share: names equal but for case, or for `-` against `_` (`GitHub`,
    `github`; `my-tools`, `my_tools`), would be told apart by nobody reading a tool list or a Code Mode program."""
    return name.casefold().replace("-", "_")


def colliding(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of names among `names` that collide (see `name_key`), in order."""
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for name in names:
        key = name_key(name)
        if key in seen:
            pairs.append((seen[key], name))
        else:
            seen[key] = name
    return pairs


class _UpstreamBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    """The server's name: the key of its `[servers.NAME]` table."""
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Per-call timeout for requests to this upstream, in seconds."""
    connect_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long one connection attempt (spawn or HTTP handshake) may take."""
    session: Literal["shared", "per_client"] = "shared"
    """`shared`: one long-lived session for every caller. `per_client`: one upstream session per downstream MCP
    session, for servers that keep per-client state or ask the client for sampling, elicitation or roots."""
    enabled: bool = True
    code_mode: bool = False
    """Offer this server's tools through the Code Mode meta-tools instead of the plain tool list."""
    pin: bool = False
    """Pin this server's tool definitions when they are first seen: a definition that later changes (or a tool that
    appears) is held back from every key until an admin approves it again."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if "__" in value:
            raise ValueError("a server name may not contain '__' (it separates server and tool in exposed names)")
        if value.endswith("_"):
            raise ValueError("a server name may not end in '_' (its tools would look like another server's)")
        if value and not SERVER_NAME.match(value):
            raise ValueError("a server name is 1-32 characters of [A-Za-z0-9_-], starting with a letter or digit")
        return value


class StdioConfig(_UpstreamBase):
    """An upstream started as a child process, speaking MCP over its stdin and stdout."""

    transport: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list[str])
    env: dict[str, str] = Field(default_factory=dict[str, str])
    """Extra environment for the child, on top of a minimal safe base (PATH, HOME, LANG...)."""
    cwd: str | None = None


class SseConfig(_UpstreamBase):
    """An upstream speaking the legacy HTTP+SSE transport (`GET /sse` + `POST /messages`)."""

    transport: Literal["sse"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict[str, str])
    auth: AuthConfig = Field(default_factory=NoAuth)
    """How the hub authenticates to this upstream: `none`, static `headers` or `oauth2` (see docs/upstream-auth.md)."""


class HttpConfig(_UpstreamBase):
    """An upstream speaking Streamable HTTP."""

    transport: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict[str, str])
    auth: AuthConfig = Field(default_factory=NoAuth)
    """How the hub authenticates to this upstream: `none`, static `headers` or `oauth2` (see docs/upstream-auth.md)."""


UpstreamConfig = Annotated[StdioConfig | SseConfig | HttpConfig, Field(discriminator="transport")]
"""Any upstream's configuration, discriminated on `transport`."""
