"""Settings: the TOML config file, validated by pydantic; each setting declared once.

Precedence: CLI flag > environment (`AGENTHUB_*`) > config file > default. Secrets are never written in the
file itself but referenced: `env:NAME` reads an environment variable, `file:PATH` reads a file (relative to
the config file). Every error names the file, the key path and the problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from connectors.auth import AuthConfigError, resolve_auth_secrets
from connectors.auth.config import resolve_reference
from connectors.config import StdioConfig, UpstreamConfig, colliding
from hub.audit.adminlog import AuditSection
from hub.console.config import ConsoleSection
from hub.governance.config import (
    BudgetConfig,
    CustomerConfig,
    GovernanceConfig,
    PricingConfig,
    RateLimitConfig,
    TeamConfig,
)
from hub.governance.filters import GlobSet
from hub.governance.periods import parse_retention
from hub.guardrails.config import GuardrailConfig
from hub.identity.oidc import AdminSection
from hub.paths import OAUTH_CALLBACK_PATH
from hub.signin.config import SignInSection
from hub.telemetry.metricsconfig import MetricsSection
from hub.telemetry.traceconfig import TelemetrySection
from llm.config import ModelConfig, PriceConfig, ProviderConfig, RoutingConfig

DEFAULT_CONFIG = "agenthub.toml"
DEFAULT_LISTEN = "127.0.0.1:8787"
MAX_WORKERS = 256
"""The most worker processes `[hub] workers` may ask for."""


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class HubSection(BaseModel):
    """`[hub]`: how the hub itself runs."""

    model_config = ConfigDict(extra="forbid")

    listen: str = DEFAULT_LISTEN
    """HOST:PORT to serve on. `agenthub serve --listen` overrides it."""
    database: str = "sqlite:///agenthub.db"
    """SQLAlchemy URL; relative SQLite paths are relative to the config file. `AGENTHUB_DATABASE_URL` overrides."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest request body accepted on any door."""
    allowed_hosts: list[str] = Field(default_factory=list[str])
    """Extra `Host` header values accepted on /mcp (DNS-rebinding defence); loopback names are always allowed
    when listening on loopback. Use `host:*` for any port."""
    allowed_origins: list[str] = Field(default_factory=list[str])
    """Extra browser `Origin` values accepted on /mcp (`scheme://host:*` for any port)."""
    upstream_start_timeout_s: float = Field(default=10.0, ge=0)
    """How long start-up waits for upstreams before serving anyway (the rest keep connecting)."""
    insecure_loopback: bool = False
    """Allow plain http to loopback addresses where https is otherwise required."""
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    """The hub's address as browsers reach it (`https://hub.example.com`); the upstream OAuth redirect URI is
    `{public_url}/oauth/callback`. Default: `http://{listen}`."""
    redis_url: str | None = None
    """Redis for rate-limit and budget counters shared by replicas; `AGENTHUB_REDIS_URL` overrides. Without it
    counters live in this process."""
    change_poll_s: float = Field(default=0.5, gt=0, le=3600)
    """Seconds between two looks at the change log for admin changes made by other processes (replicas, workers,
    the CLI); each look is one indexed read. With Redis, other replicas are also notified at once and this poll is
    the safety net."""
    list_page_size: int = Field(default=500, ge=1, le=100_000)
    """Most entries in one page of an MCP list (`tools/list`, `prompts/list`, `resources/list`,
    `resources/templates/list`); a larger catalog is paged with `nextCursor`. 500 keeps every usual catalog (and
    its list-changed refetch) to one round trip."""
    max_sessions_per_key: int = Field(default=64, ge=1)
    """Handshake-era MCP sessions one key may hold open at once (each costs memory until it ends); one more is
    refused with 429 until the client ends one or it times out."""
    session_idle_s: float = Field(default=1800.0, gt=0)
    """An MCP session with no request for this many seconds is closed."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A request's headers must be complete this many seconds after its first byte (after the connection opened,
    for a connection's first request); otherwise the connection is closed, with a 408 when part of a request came."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """A request's whole body must arrive within this many seconds of its headers; otherwise 408 and close."""
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    """An idle keep-alive connection is closed after this many seconds without a new request."""
    max_connections: int = Field(default=1000, ge=1)
    """Open client connections at most. At the cap a new connection closes the one that has waited longest without
    a complete request (headers still coming, or idle); when every connection is busy with a request it is
    refused. Lowered at start-up, with a warning, when the process's file-descriptor limit cannot hold it."""
    request_log_retention: str = "30d"
    """How long request-log rows are kept: `<N>` followed by `s`, `m` (minutes), `h` or `d` (`30d`, `12h`); `0` or
    empty keeps every row."""
    request_log_purge_interval_s: float = Field(default=3600.0, gt=0)
    """Seconds between deletions of request-log rows past the retention (the first runs at start-up)."""
    request_log_rollup_retention: str = "400d"
    """How long the request log's daily rollup (the spend and volume summaries) is kept, in the same form; a few
    rows per day and entity, so it may outlive the raw rows."""
    log_bodies: Literal["none", "errors", "all"] = "none"
    """Whether the request log keeps request and response bodies: `errors` for calls that did not end `ok`, `all`
    for every call. Stored redacted (key and secret scrubbing, PII, the local guardrails' rules) and capped."""
    log_body_max_bytes: int = Field(default=16 * 1024, ge=256, le=16 * 1024 * 1024)
    """The most bytes of each stored body (request and response apart); a longer one is cut and marked."""
    responses_retention: str = "30d"
    """How long the hub keeps what it records of stored Responses API responses (which deployment holds each, and
    its copy of the turn), in the request log's format; a response older than this is unknown to the hub. Purged
    as often as the request log."""
    responses_max_state_bytes: int = Field(default=1024 * 1024, ge=0)
    """The largest copy of one stored turn (its input items and the response) the hub keeps; a larger turn is
    recorded for routing only, so a conversation through it cannot move to another deployment."""
    workers: StrictInt | Literal["auto"] = "auto"
    """Worker processes serving on the one listening socket: a number, or `auto`: the cores this process may use
    (the workers share handshake-era MCP sessions through Redis, or through their supervisor without it). With
    more than one, a supervisor process starts them,
    restarts one that dies, reloads the configuration on `SIGHUP` and drains them on `SIGTERM`; `1` serves from a
    single process. `agenthub serve --workers` and `AGENTHUB_WORKERS` override it."""
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    """On `SIGTERM` (and for the old workers of a `SIGHUP` reload) a worker stops accepting connections and has this
    many seconds to finish its calls and streams in flight; what is left then is cut off."""
    code_mode_pool: int = Field(default=2, ge=1, le=256)
    """Code Mode sandbox processes for the whole machine; with several workers each gets an equal share, at least
    one."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= MAX_WORKERS:
            raise ValueError(f'workers must be "auto" or a number from 1 to {MAX_WORKERS}, got {value}')
        return value

    @field_validator("request_log_retention", "responses_retention", "request_log_rollup_retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        parse_retention(value)
        return value


class CodeLimits(BaseModel):
    """Per-key Code Mode limits (any subset; the rest keep the sandbox defaults)."""

    model_config = ConfigDict(extra="forbid")

    wall_time: float | None = Field(default=None, gt=0, le=600)
    memory_bytes: int | None = Field(default=None, ge=16 << 20, le=4 << 30)
    fuel: int | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0, le=10_000)
    max_tool_result_bytes: int | None = Field(default=None, gt=0)
    max_output_bytes: int | None = Field(default=None, gt=0)
    max_result_bytes: int | None = Field(default=None, gt=0)
    max_error_bytes: int | None = Field(default=None, gt=0)
    max_tool_args_bytes: int | None = Field(default=None, gt=0)
    tool_timeout: float | None = Field(default=None, gt=0, le=3600)
    total_timeout: float | None = Field(default=None, gt=0, le=3600)


class KeyConfig(BaseModel):
    """`[[keys]]`: a virtual key declared in the config file (bootstrap keys)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    secret: str | None = None
    """`env:NAME` or `file:PATH`; omitted means generated on first start and printed once."""
    tools: list[str] = Field(default_factory=list[str])
    """Globs over exposed names (`server__tool`); none means no tools."""
    team: str | None = None
    customer: str | None = None
    """The customer the key belongs to directly (a key under a team inherits the team's customer)."""
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    models: list[str] = Field(default_factory=list[str])
    """Globs over model aliases and `provider/model` names; none means no models."""
    providers: list[str] = Field(default_factory=lambda: ["*"])
    """Globs over provider names the key may reach (every hop is checked)."""
    provider_keys: list[str] | None = None
    """Optional restriction to named provider keys, as `provider:key-name` globs."""
    expires_at: datetime | None = None
    code_mode: bool = False
    tool_search: bool = False
    """`search_tools` and `call_tool` instead of the tool list, on every MCP endpoint (docs/mcp-hub.md)."""
    chat_tools: list[str] = Field(default_factory=list[str])
    auto_execute: list[str] = Field(default_factory=list[str])
    max_agent_depth: int = Field(default=10, ge=1, le=100)
    code_limits: CodeLimits | None = None
    """Code Mode limits for this key's programs (wall time, memory, tool calls, output sizes, timeouts)."""


VIRTUAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A virtual server's name: one path segment of `/mcp/v/NAME`."""
VIRTUAL_TOOL_NAME = r"^[A-Za-z0-9_.-]{1,128}$"
"""A tool name a virtual server shows (the characters MCP clients accept in tool names)."""
TOOL_SEARCH_NAMES = frozenset({"search_tools", "call_tool"})
"""The meta-tools of `tool_search`: no tool of a virtual server that offers them may be shown under these names."""


class ToolOverride(BaseModel):
    """`[virtual_servers.NAME.tools_override."server__tool"]`: how a virtual server shows one tool."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=VIRTUAL_TOOL_NAME)
    """The name clients of the virtual server call it by (the pipeline still sees the real name)."""
    description: str | None = Field(default=None, max_length=8192)


class VirtualServerConfig(BaseModel):
    """`[virtual_servers.NAME]`: a curated bundle of the catalog, served at `/mcp/v/NAME`.

    `tools`, `prompts` and `resources` are globs over the same policy names a key's `tools` globs select
    (`server__tool`, `server__prompt`, `server__<uri>`); a caller sees what both the bundle and its key allow.
    """

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=8192)
    """Sent to clients as the endpoint's `instructions`."""
    tools: list[str] = Field(default_factory=list[str])
    prompts: list[str] = Field(default_factory=list[str])
    resources: list[str] = Field(default_factory=list[str])
    """Globs over `server__<uri>` for resources and resource templates."""
    tools_override: dict[str, ToolOverride] = Field(default_factory=dict[str, ToolOverride])
    """Keyed by the real exposed name (`server__tool`), which must be one the `tools` globs select."""
    tool_search: bool = False
    """Offer `search_tools` and `call_tool` instead of the tool list (for very large bundles)."""

    @model_validator(mode="after")
    def _check_overrides(self) -> VirtualServerConfig:
        selected = GlobSet(self.tools)
        shown: dict[str, str] = {}
        for real, override in self.tools_override.items():
            if not selected.matches(real):
                raise ValueError(f"tools_override names '{real[:128]}', which none of the tools globs select")
            name = override.name or real
            if name in shown:
                raise ValueError(f"tools '{shown[name]}' and '{real[:128]}' would both be shown as '{name}'")
            if self.tool_search and name in TOOL_SEARCH_NAMES:
                raise ValueError(f"'{name}' is a tool_search meta-tool: tool '{real[:128]}' cannot be shown so")
            shown[name] = real
        return self


class Settings(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid")

    hub: HubSection = Field(default_factory=HubSection)
    servers: dict[str, UpstreamConfig] = Field(default_factory=dict[str, UpstreamConfig])
    keys: list[KeyConfig] = Field(default_factory=list[KeyConfig])
    customers: list[CustomerConfig] = Field(default_factory=list[CustomerConfig])
    teams: list[TeamConfig] = Field(default_factory=list[TeamConfig])
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    guardrails: list[GuardrailConfig] = Field(default_factory=list[GuardrailConfig])
    providers: dict[str, ProviderConfig] = Field(default_factory=dict[str, ProviderConfig])
    models: dict[str, ModelConfig] = Field(default_factory=dict[str, ModelConfig])
    prices: dict[str, PriceConfig] = Field(default_factory=dict[str, PriceConfig])
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    audit: AuditSection = Field(default_factory=AuditSection)
    admin: AdminSection = Field(default_factory=AdminSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    sign_in: SignInSection | None = None
    """People sign in to `/mcp` through the organisation's identity provider (off unless present)."""
    virtual_servers: dict[str, VirtualServerConfig] = Field(default_factory=dict[str, VirtualServerConfig])
    """Curated bundles of tools, prompts and resources, each served at `/mcp/v/NAME`."""
    console: ConsoleSection = Field(default_factory=ConsoleSection)
    """The admin console at `/ui`."""
    path: Path | None = None
    """Where the settings were read from (not a config key)."""

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[KeyConfig]) -> list[KeyConfig]:
        seen: set[str] = set()
        for key in keys:
            if key.name in seen:
                raise ValueError(f"two keys are named '{key.name}'")
            seen.add(key.name)
        return keys

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        self.governance()  # duplicate customers/teams, teams under unknown customers
        teams = {t.name for t in self.teams}
        customers = {c.name for c in self.customers}
        for key in self.keys:
            if key.team is not None and key.team not in teams:
                raise ValueError(f"key '{key.name}' names unknown team '{key.team}'")
            if key.customer is not None and key.customer not in customers:
                raise ValueError(f"key '{key.name}' names unknown customer '{key.customer}'")
        for grant in self.sign_in.grants if self.sign_in is not None else ():
            if grant.team is not None and grant.team not in teams:
                raise ValueError(f"sign_in grant for '{grant.group or grant.claim}' names unknown team '{grant.team}'")
        for name in self.virtual_servers:
            if not re.match(VIRTUAL_NAME, name):
                raise ValueError(f"virtual server name '{name[:64]}' must be letters, digits, '_', '.' or '-'")
        for first, second in colliding(self.servers):
            raise ValueError(
                f"servers '{first}' and '{second}' collide: names must differ in more than case or '-' against '_'"
            )
        return self

    def governance(self) -> GovernanceConfig:
        """Customers, teams and pricing as the limits engine takes them."""
        return GovernanceConfig(customers=self.customers, teams=self.teams, pricing=self.pricing)

    def oauth_redirect_uri(self) -> str:
        """Where upstream authorization servers send the browser back (`/oauth/callback` on the hub)."""
        base = self.hub.public_url
        if base is None:
            host, port = parse_listen(self.hub.listen)
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - compared, not bound
            shown = f"[{host}]" if ":" in host else host
            base = f"http://{shown}:{port}"
        return base.rstrip("/") + OAUTH_CALLBACK_PATH

    def redis_url(self) -> str | None:
        return os.environ.get("AGENTHUB_REDIS_URL") or self.hub.redis_url

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def database_url(self) -> str:
        """The database URL, `AGENTHUB_DATABASE_URL` first, relative SQLite paths anchored at the config file."""
        url = os.environ.get("AGENTHUB_DATABASE_URL") or self.hub.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str((self.base_dir / url[len(prefix) :]).resolve())
        return url


def parse_listen(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 as `[::1]:PORT`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"listen must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def resolve_secret(value: str, base_dir: Path, where: str) -> str:
    """Resolve an `env:NAME` / `file:PATH` reference; any other string is taken literally.

    Raises:
        ConfigError: the variable is not set or the file cannot be read.
    """
    try:
        return resolve_reference(value, base_dir, where)
    except AuthConfigError as exc:
        raise ConfigError(exc.message) from None


def load_settings(path: str | Path, *, listen: str | None = None) -> Settings:
    """Read, validate and resolve a config file.

    Raises:
        ConfigError: the file is missing, is not TOML, fails validation, or references a missing secret.
    """
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return settings_from_dict(raw, file, listen=listen)


def settings_from_dict(raw: dict[str, Any], file: Path | None = None, *, listen: str | None = None) -> Settings:
    """Validate a parsed config (see `load_settings`)."""
    label = str(file) if file is not None else "<config>"
    servers = raw.get("servers")
    if isinstance(servers, dict):
        for name, table in servers.items():
            if isinstance(table, dict):
                table.setdefault("name", name)
    if listen is not None:
        raw.setdefault("hub", {})["listen"] = listen
    try:
        settings = Settings.model_validate({**raw, "path": file.resolve() if file else None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(label, exc)) from None
    return _resolve_secrets(settings, label)


def _resolve_secrets(settings: Settings, label: str) -> Settings:
    base = settings.base_dir
    servers: dict[str, Any] = {}
    for name, server in settings.servers.items():
        update: dict[str, Any] = {}
        if isinstance(server, StdioConfig):
            update["env"] = {
                k: resolve_secret(v, base, f"{label}: servers.{name}.env.{k}") for k, v in server.env.items()
            }
        else:
            update["headers"] = {
                k: resolve_secret(v, base, f"{label}: servers.{name}.headers.{k}") for k, v in server.headers.items()
            }
            try:
                update["auth"] = resolve_auth_secrets(server.auth, base, f"{label}: servers.{name}.auth")
            except AuthConfigError as exc:
                raise ConfigError(exc.message) from None
        servers[name] = server.model_copy(update=update)
    keys = [
        k.model_copy(update={"secret": resolve_secret(k.secret, base, f"{label}: keys.{k.name}.secret")})
        if k.secret is not None
        else k
        for k in settings.keys
    ]
    changes: dict[str, Any] = {"servers": servers, "keys": keys}
    oidc = settings.admin.oidc
    if oidc is not None and oidc.client_secret is not None:
        secret = resolve_secret(oidc.client_secret, base, f"{label}: admin.oidc.client_secret")
        changes["admin"] = settings.admin.model_copy(update={"oidc": oidc.model_copy(update={"client_secret": secret})})
    sign_in = settings.sign_in
    if sign_in is not None and sign_in.idp.client_secret is not None:
        secret = resolve_secret(sign_in.idp.client_secret, base, f"{label}: sign_in.idp.client_secret")
        idp = sign_in.idp.model_copy(update={"client_secret": secret})
        changes["sign_in"] = sign_in.model_copy(update={"idp": idp})
    if settings.metrics.token is not None:
        token = resolve_secret(settings.metrics.token, base, f"{label}: metrics.token")
        changes["metrics"] = settings.metrics.model_copy(update={"token": token})
    return settings.model_copy(update=changes)


def format_validation_error(label: str, exc: ValidationError) -> str:
    """One line per problem: `file: key.path: message`."""
    lines: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p not in ("stdio", "sse", "http", "function-after[_check_name(), ...]")]
        where = ".".join(loc) or "(top level)"
        lines.append(f"{label}: {where}: {err['msg']}")
    return "\n".join(lines)
