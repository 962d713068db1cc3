"""Errors raised by upstream connections.

```
UpstreamError                    any failure talking to an upstream MCP server
├── UpstreamUnavailable          not connected (starting, crashed, reconnecting, disabled)
├── UpstreamTimeout              no answer within the per-call timeout
├── UpstreamProtocolError        the upstream answered with a JSON-RPC error (code and message kept)
└── UnknownTarget                no tool, prompt or resource of that name in the registry
```
"""

from __future__ import annotations


class UpstreamError(Exception):
    """A failure talking to an upstream MCP server."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(message)
        self.server = server
        self.message = message


class UpstreamUnavailable(UpstreamError):
    """The upstream is not connected."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within its timeout."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with a JSON-RPC error."""

    def __init__(self, server: str, code: int, message: str, data: object = None) -> None:
        super().__init__(server, message)
        self.code = code
        self.data = data


class UnknownTarget(UpstreamError):
    """No tool, prompt or resource by that name."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__("", f"unknown {kind}: {name}")
        self.kind = kind
        self.name = name
