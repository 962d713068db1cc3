"""The hub's errors, and the one table that maps each to its wire form on every door.

```
HubError                       base; never shown with internals
├── BadRequest                 malformed input                         400  invalid_request_error   -32602
│   ├── PayloadTooLarge        body over the configured limit          413  invalid_request_error   -32600
│   ├── MethodNotAllowed       a method the path does not serve        405  invalid_request_error   -32601
│   └── PriceMissing           a budget applies, the model is unpriced 400  price_missing           -32602
├── Unauthenticated            missing, unknown, revoked, expired key  401  authentication_error    -32001
├── Forbidden                  not permitted / blocked by a guardrail  403  permission_error        -32003
│   └── AuthorizationNeeded    the caller must authorize an upstream   403  permission_error        -32042
├── NotFound                   unknown tool/prompt/resource/model      404  not_found_error         -32602
├── BudgetExceeded             a budget on some level is spent         402  insufficient_quota      -32004
├── RateLimited                too many requests or tokens             429  rate_limit_error        -32005
├── UpstreamFailed             the upstream failed or is unavailable   502  upstream_error          -32603
│   └── UpstreamOverloaded     an Anthropic upstream is overloaded     529  overloaded_error        -32603
├── UpstreamTimedOut           the upstream did not answer in time     504  timeout_error           -32001
└── Internal                   anything unexpected (fail closed)       500  internal_error          -32603
```

On MCP a tool the key may not use raises `NotFound`, exactly like an unknown name. `AuthorizationNeeded` is the
MCP URL-elicitation-required error: its `data` lists the URL the caller must open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Wire:
    """How one error class looks on the wire."""

    status: int
    openai_type: str
    jsonrpc_code: int


class HubError(Exception):
    """Base of every error the hub reports to a caller."""

    wire: ClassVar[Wire] = Wire(500, "internal_error", -32603)

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        data: object = None,
        jsonrpc_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.data = data
        self._jsonrpc_code = jsonrpc_code

    @property
    def jsonrpc_code(self) -> int:
        """The JSON-RPC error code (an upstream's own code is kept when it rejected a request)."""
        return self._jsonrpc_code if self._jsonrpc_code is not None else self.wire.jsonrpc_code

    @property
    def code(self) -> str:
        """A stable snake_case code for the error envelope."""
        return self.wire.openai_type


class BadRequest(HubError):
    wire = Wire(400, "invalid_request_error", -32602)


class PayloadTooLarge(BadRequest):
    wire = Wire(413, "invalid_request_error", -32600)


class MethodNotAllowed(BadRequest):
    """A known HTTP path asked with a method it does not serve; `allow` lists those it does (the `Allow` header)."""

    wire = Wire(405, "invalid_request_error", -32601)

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message, headers={"Allow": allow})

    @property
    def code(self) -> str:
        return "method_not_allowed"


class PriceMissing(BadRequest):
    """A US-dollar budget applies to the caller and the model that would serve the call has no price (neither
    listed nor a configured default): the call is refused before it is sent rather than run for free. A 400, not a
    5xx, so that clients do not retry what only a configuration change (a `[prices]` entry) can fix."""

    wire = Wire(400, "price_missing", -32602)


class Unauthenticated(HubError):
    wire = Wire(401, "authentication_error", -32001)


class Forbidden(HubError):
    wire = Wire(403, "permission_error", -32003)


class AuthorizationNeeded(Forbidden):
    """The caller has not authorized the hub at an upstream yet (per-user OAuth); `url` is where to do it.

    On MCP it is the URL-elicitation-required error (-32042) with `data.elicitations`; on REST a 403 whose message
    carries the URL.
    """

    wire = Wire(403, "permission_error", -32042)

    def __init__(self, server: str, url: str, elicitation_id: str) -> None:
        message = f"authorize AgentHub to use '{server}' on your behalf: open {url}"
        elicitation = {"mode": "url", "url": url, "message": message, "elicitationId": elicitation_id}
        super().__init__(message, data={"elicitations": [elicitation]})
        self.server = server
        self.url = url

    @property
    def code(self) -> str:
        return "upstream_authorization_required"


class NotFound(HubError):
    wire = Wire(404, "not_found_error", -32602)


class BudgetExceeded(HubError):
    wire = Wire(402, "insufficient_quota", -32004)


class RateLimited(HubError):
    wire = Wire(429, "rate_limit_error", -32005)


class UpstreamFailed(HubError):
    wire = Wire(502, "upstream_error", -32603)


class UpstreamOverloaded(UpstreamFailed):
    """Anthropic's `overloaded_error` (529), passed on by the Anthropic Messages door, whose clients retry on it."""

    wire = Wire(529, "overloaded_error", -32603)


class UpstreamTimedOut(HubError):
    wire = Wire(504, "timeout_error", -32001)


class Internal(HubError):
    wire = Wire(500, "internal_error", -32603)


def unknown(kind: str, name: str) -> NotFound:
    """The one error for a name that does not exist and for a name the caller may not use (indistinguishable):
    `unknown tool: x`, `unknown model: y`."""
    return NotFound(f"unknown {kind}: {name[:200]}")


def openai_envelope(error: HubError) -> dict[str, object]:
    """The OpenAI error envelope for `error`."""
    return {"error": {"message": error.message, "type": error.wire.openai_type, "code": error.code, "param": None}}
