"""Configuration of the LLM back end: providers, their keys, model aliases, prices and routing knobs.

The hub parses its TOML file and hands the `providers`, `models`, `prices` and `routing` tables to
`LLMConfig.model_validate(...)`. Secrets are references, `env:NAME` or `file:PATH`, resolved once when the
router opens (`resolve_secret`), never logged and never part of an error message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm.errors import ConfigError

__all__ = [
    "DEFAULT_PRICE",
    "DeploymentConfig",
    "KeyConfig",
    "LLMConfig",
    "ModelConfig",
    "PriceConfig",
    "ProviderConfig",
    "ProviderKind",
    "RoutingConfig",
    "VertexConfig",
    "load_config",
    "resolve_secret",
]

ProviderKind = Literal["openai", "azure", "anthropic", "gemini", "bedrock", "openai-compatible"]

_DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
}


def resolve_secret(reference: str) -> str:
    """Resolve a secret reference: `env:NAME` reads the environment, `file:PATH` reads a file (stripped).

    Raises:
        ConfigError: the reference has another form, the variable is unset or the file unreadable. The
            message names the variable or path, never a value.
    """
    scheme, _, target = reference.partition(":")
    if scheme == "env" and target:
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(f"secret reference env:{target} is not set")
        return value
    if scheme == "file" and target:
        try:
            return Path(target).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret reference file:{target} cannot be read ({type(exc).__name__})") from None
    raise ConfigError("a secret must be a reference of the form env:NAME or file:PATH")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyConfig(_Model):
    """One credential of a provider; `weight` balances requests across a provider's keys."""

    name: str = "default"
    """Stable name, used in results, errors and the hop predicate (never the secret)."""
    secret: str | None = None
    """Reference to the API key; for Bedrock the secret access key; for Vertex AI the service-account JSON."""
    access_key_id: str | None = None
    """Bedrock only: reference to the AWS access key id."""
    session_token: str | None = None
    """Bedrock only: optional reference to an AWS session token."""
    weight: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _references_only(self) -> KeyConfig:
        for field in ("secret", "access_key_id", "session_token"):
            value = getattr(self, field)
            if value is not None and not value.startswith(("env:", "file:")):
                raise ValueError(f"key {self.name!r}: {field} must be an env:NAME or file:PATH reference")
        return self


class VertexConfig(_Model):
    """Gemini through Vertex AI: project, location and the OAuth token endpoint (overridable for tests)."""

    project: str
    location: str = "us-central1"
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
    scope: str = "https://www.googleapis.com/auth/cloud-platform"


class ProviderConfig(_Model):
    """One upstream: its wire API (`kind`), base URL, keys and timeouts."""

    kind: ProviderKind
    base_url: str | None = None
    """Defaults per kind; required for azure and openai-compatible."""
    keys: tuple[KeyConfig, ...] = ()
    api_version: str | None = None
    """Azure only: the `api-version` query parameter."""
    deployments: dict[str, str] = Field(default_factory=dict)
    """Azure only: model name -> Azure deployment name (a model without an entry is used as the name)."""
    region: str | None = None
    """Bedrock only: AWS region."""
    vertex: VertexConfig | None = None
    """Gemini only: use Vertex AI with a service-account key instead of the Gemini API key."""
    models: tuple[str, ...] = ()
    """Models this provider offers, listed by `Router.list_models` as `provider/model`."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra non-secret headers sent with every request."""
    anthropic_version: str = "2023-06-01"
    timeout: float = Field(default=600.0, gt=0)
    """Whole-request timeout for non-streaming calls, seconds."""
    connect_timeout: float = Field(default=10.0, gt=0)
    first_chunk_timeout: float = Field(default=60.0, gt=0)
    """Streams: time allowed until the first content chunk (failing before it falls back)."""
    stream_idle_timeout: float = Field(default=120.0, gt=0)
    """Streams: longest silence between two reads before the stream counts as stalled."""
    max_connections: int = Field(default=256, gt=0)
    max_response_bytes: int = Field(default=32 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _kind_requirements(self) -> ProviderConfig:
        if self.kind in ("azure", "openai-compatible") and not self.base_url:
            raise ValueError(f"a provider of kind {self.kind!r} needs base_url")
        if self.kind == "azure" and not self.api_version:
            raise ValueError("a provider of kind 'azure' needs api_version")
        if self.kind == "bedrock":
            if not self.region:
                raise ValueError("a provider of kind 'bedrock' needs region")
            for key in self.keys:
                if key.access_key_id is None or key.secret is None:
                    raise ValueError(f"bedrock key {key.name!r} needs access_key_id and secret")
        if self.vertex is not None and self.kind != "gemini":
            raise ValueError("vertex applies to providers of kind 'gemini' only")
        if self.kind not in ("openai-compatible",) and not self.keys:
            raise ValueError(f"a provider of kind {self.kind!r} needs at least one key")
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("key names must be unique within a provider")
        return self

    def resolved_base_url(self) -> str:
        """The base URL without a trailing slash, the kind's default when none is configured."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.kind == "bedrock":
            return f"https://bedrock-runtime.{self.region}.amazonaws.com"
        if self.kind == "gemini" and self.vertex is not None:
            return f"https://{self.vertex.location}-aiplatform.googleapis.com/v1"
        return _DEFAULT_BASE_URLS[self.kind]


class DeploymentConfig(_Model):
    """One concrete target of an alias: a provider's model, optionally pinned to one key."""

    provider: str
    model: str
    weight: float = Field(default=1.0, gt=0)
    key: str | None = None


class ModelConfig(_Model):
    """An alias callers use as `model`: weighted deployments, then fallbacks (aliases or `provider/model`)."""

    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()


class PriceConfig(_Model):
    """USD per million tokens. Cache rates left out follow the model family's convention, reasoning the output
    price (see `llm.pricing`)."""

    input: float = Field(ge=0)
    """Uncached input tokens."""
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    """Input tokens read from a cache."""
    cache_write_5m: float | None = Field(default=None, ge=0)
    """Input tokens written to the 5-minute cache."""
    cache_write_1h: float | None = Field(default=None, ge=0)
    """Input tokens written to the 1-hour cache."""
    reasoning: float | None = Field(default=None, ge=0)
    """Reasoning tokens (part of the output)."""


DEFAULT_PRICE = "default"
"""The `[prices]` entry that prices every model no other entry and no shipped price covers."""


class RoutingConfig(_Model):
    """Retry, backoff and circuit-breaker knobs shared by every route."""

    max_retries: int = Field(default=2, ge=0)
    """Retries of one deployment before moving on to the next one."""
    backoff_initial: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(default=30.0, ge=0)
    """A Retry-After longer than this skips to the next deployment instead of waiting."""
    cooldown_failures: int = Field(default=3, ge=1)
    """Consecutive failures that open a hop's circuit."""
    cooldown_seconds: float = Field(default=30.0, ge=0)
    stream_buffer_chunks: int = Field(default=64, ge=1)
    """Chunks held back at the start of a stream until content arrives (errors before it fall back)."""


class LLMConfig(_Model):
    """The whole LLM back-end configuration."""

    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    """Overrides of the shipped price table, keyed by `provider/model` or by model name; the `default` entry prices
    every model that has no price otherwise."""
    routing: RoutingConfig = RoutingConfig()

    @model_validator(mode="after")
    def _references(self) -> LLMConfig:
        for name in self.providers:
            if "/" in name or not name:
                raise ValueError(f"provider name {name!r} must be non-empty and contain no '/'")
        for alias, model in self.models.items():
            if "/" in alias:
                raise ValueError(f"alias {alias!r} must not contain '/' (that form means provider/model)")
            for dep in model.deployments:
                provider = self.providers.get(dep.provider)
                if provider is None:
                    raise ValueError(f"alias {alias!r}: unknown provider {dep.provider!r}")
                if dep.key is not None and dep.key not in {k.name for k in provider.keys}:
                    raise ValueError(f"alias {alias!r}: provider {dep.provider!r} has no key {dep.key!r}")
            for ref in model.fallbacks:
                self.check_model_ref(ref, where=f"alias {alias!r} fallbacks")
        return self

    def check_model_ref(self, ref: str, *, where: str = "model") -> None:
        """Raise ValueError unless `ref` is a configured alias or `provider/model` of a configured provider."""
        if ref in self.models:
            return
        provider, sep, model = ref.partition("/")
        if not sep or not model or provider not in self.providers:
            raise ValueError(f"{where}: {ref!r} is neither an alias nor provider/model of a configured provider")


def load_config(data: dict[str, Any] | str) -> LLMConfig:
    """Validate a mapping, or parse TOML text, into an `LLMConfig`.

    Raises:
        ConfigError: with pydantic's field-located messages (which never contain resolved secrets).
    """
    try:
        mapping = tomllib.loads(data) if isinstance(data, str) else data
        return LLMConfig.model_validate(mapping)
    except (ValidationError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid LLM configuration: {exc}") from None
