"""Request bodies of the admin API (strict: unknown fields and wrong types are refused) and its OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.guardrails import GuardrailConfig
from hub.settings import VirtualServerConfig

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_Body):
    """A new customer."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME)
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class CustomerPatch(_Body):
    """Changes to a customer; a field sent as null is cleared."""

    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class TeamIn(_Body):
    """A new team, optionally under a customer."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME)
    customer: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class TeamPatch(_Body):
    """Changes to a team; a field sent as null is cleared."""

    customer: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class KeyPatch(_Body):
    """Changes to a virtual key's filters, limits or expiry; a field sent as null is cleared."""

    tools: list[str] | None = None
    """Globs over exposed names (`server__tool`)."""
    team: str | None = None
    customer: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    models: list[str] | None = None
    providers: list[str] | None = None
    provider_keys: list[str] | None = None
    expires_at: datetime | None = None
    code_mode: bool | None = None
    tool_search: bool | None = None
    chat_tools: list[str] | None = None
    auto_execute: list[str] | None = None
    max_agent_depth: int | None = Field(default=None, ge=1, le=100)


class KeyIn(KeyPatch):
    """A new virtual key; its secret is returned once."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME)


class RoleIn(_Body):
    """A custom role."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    permissions: list[str] = Field(max_length=200)
    """`resource:action` or `resource:action:own` (own teams only); `*` for any resource or action."""
    description: str = Field(default="", max_length=500)


class RolePatch(_Body):
    """Changes to a custom role."""

    permissions: list[str] | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)


class TokenIn(_Body):
    """A new admin API token; its secret is returned once."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME)
    roles: list[str] = Field(min_length=1, max_length=20)
    teams: list[str] = Field(default_factory=list[str], max_length=100)
    """Teams the token acts for (for `:own` permissions)."""
    expires_days: float | None = Field(default=None, gt=0, le=3650)


class UsageReset(_Body):
    """Which metric to zero (all when omitted)."""

    metric: Literal["requests", "tokens", "usd"] | None = None


class PurgeIn(_Body):
    """Apply retention now."""

    retention_days: float = Field(ge=0)


class AuthLoginIn(_Body):
    """Start (or end) an upstream OAuth authorization: for a key (its name or id), or without one for the hub's
    own identity at the server."""

    subject: str | None = Field(default=None, min_length=1, max_length=64)


class ApproveIn(_Body):
    """Approve a server's tool definitions; with `tools`, only if they are exactly the ones reviewed."""

    tools: dict[str, str] | None = None
    """Tool name -> SHA-256 of its canonical definition, as `GET /api/v1/servers/{name}/pins` shows them."""


class CheckIn(_Body):
    """A text to try on the rules in force: its direction, and the call it stands for (each field left out
    matches only the rules that do not filter on it, as for a call without it)."""

    text: str = Field(max_length=1_000_000)
    direction: Literal["input", "output"] = "input"
    door: Literal["llm", "mcp"] | None = None
    """Default: from `operation` (`llm.*` is the LLM door), else `llm`."""
    operation: str | None = Field(default=None, min_length=1, max_length=200)
    """Default: `llm.chat` on the LLM door, `mcp.tool` on the MCP door."""
    key: str | None = Field(default=None, min_length=1, max_length=200)
    team: str | None = Field(default=None, min_length=1, max_length=200)
    server: str | None = Field(default=None, min_length=1, max_length=200)


SERVER_BODY: dict[str, Any] = {
    "type": "object",
    "description": "An upstream MCP server: `name` plus the fields of a `[servers.NAME]` table "
    "(`transport` = stdio | sse | http). Header, env and auth secret values may be `env:NAME` / `file:PATH` "
    "references listed in `[admin] allowed_secret_refs`; `url` and OAuth URLs must be https on public addresses "
    "unless `[admin] allowed_endpoints` lists their origin.",
    "required": ["name", "transport"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"},
        "transport": {"enum": ["stdio", "sse", "http"]},
        "command": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "url": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "timeout_s": {"type": "number"},
        "session": {"enum": ["shared", "per_client"]},
        "enabled": {"type": "boolean"},
    },
}


class VirtualServerIn(VirtualServerConfig):
    """`POST /virtual-servers` and `PUT /virtual-servers/{name}`: a virtual server's definition and its name."""

    name: str | None = None


MODELS: tuple[type[BaseModel], ...] = (
    CustomerIn, CustomerPatch, TeamIn, TeamPatch, KeyIn, KeyPatch, RoleIn, RolePatch, TokenIn, UsageReset, PurgeIn,
    AuthLoginIn, ApproveIn, GuardrailConfig, CheckIn, VirtualServerIn,
)  # fmt: skip


def openapi_document(operations: list[tuple[str, str, str, str | None, int]]) -> dict[str, Any]:
    """OpenAPI 3.1 for `(method, path, summary, body schema name, success status)` operations."""
    schemas: dict[str, Any] = {"Server": SERVER_BODY}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "code": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                },
            }
        },
    }
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    paths: dict[str, Any] = {}
    for method, path, summary, body, status in operations:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): {"description": "success"}, "4XX": error},
        }
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if body is not None:
            ref = {"$ref": f"#/components/schemas/{body}"}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        if not path.startswith("/api/v1/auth/") and path != "/api/v1/openapi.json":
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "AgentHub admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
