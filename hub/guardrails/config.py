"""``[[guardrails]]`` configuration: one :class:`GuardrailConfig` per configured guardrail.

```toml
[[guardrails]]
name = "no-secrets"
kind = "secrets"          # secrets | pii | regex | bedrock | azure | model_armor | patronus
apply_to = "both"         # input | output | both
action = "block"          # block | redact | log
doors = ["llm", "mcp"]    # default: both
```

Common fields choose what is checked (direction, doors, operations, keys, teams, MCP servers), the
action, sampling, a timeout and what happens when the check itself fails (``on_error``). The other
fields belong to one kind each; setting a field of another kind is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "GuardrailConfig",
    "GuardrailKind",
    "PatronusEvaluatorConfig",
    "PatternConfig",
    "SecretRuleConfig",
    "resolve_secret",
]

GuardrailKind = Literal["secrets", "pii", "regex", "bedrock", "azure", "model_armor", "patronus"]
LOCAL_KINDS: frozenset[str] = frozenset({"secrets", "pii", "regex"})

_KIND_FIELDS: dict[str, frozenset[str]] = {
    "secrets": frozenset(
        {"disable_rules", "add_rules", "override_rules", "max_decode_depth", "path_scoped_rules", "honor_allow_comment"}
    ),
    "pii": frozenset({"entities", "phone_regions", "custom"}),
    "regex": frozenset({"pattern", "patterns", "ignore_case"}),
    "bedrock": frozenset(
        {"endpoint", "api_key", "region", "guardrail_id", "guardrail_version", "access_key_id"}
        | {"secret_access_key", "session_token"}
    ),
    "azure": frozenset(
        {"endpoint", "api_key", "categories", "severity_threshold", "blocklists", "analyze_text", "prompt_shield"}
    ),
    "model_armor": frozenset({"endpoint", "api_key", "project", "location", "template"}),
    "patronus": frozenset({"endpoint", "api_key", "evaluators", "combine"}),
}
_ALL_KIND_FIELDS = frozenset().union(*_KIND_FIELDS.values())
_REQUIRED: dict[str, tuple[str, ...]] = {
    "bedrock": ("guardrail_id",),
    "azure": ("endpoint", "api_key"),
    "model_armor": ("project", "location", "template", "api_key"),
    "patronus": ("api_key", "evaluators"),
}


def resolve_secret(value: SecretStr | None) -> str | None:
    """Return a credential, following ``env:NAME`` and ``file:/path`` references.

    Raises:
        ValueError: the referenced variable or file does not exist.
    """
    if value is None:
        return None
    raw = value.get_secret_value()
    if raw.startswith("env:"):
        name = raw[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if raw.startswith("file:"):
        return Path(raw[5:]).read_text("utf-8").strip()
    return raw


PiiEntity = Literal["email", "phone", "card", "iban", "ssn", "ip"]
PII_ENTITIES: tuple[PiiEntity, ...] = ("email", "phone", "card", "iban", "ssn", "ip")


def _check_re2(pattern: str) -> str:
    import re2  # only when a pattern is configured: the RE2 module is not needed by a hub without guardrails

    try:
        re2.compile(pattern)
    except re2.error as exc:
        raise ValueError(f"not a valid RE2 pattern: {exc}") from exc
    return pattern


class PatternConfig(BaseModel):
    """A named pattern for ``regex`` guardrails and for ``pii`` custom rules (RE2 syntax)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    """Rule name, also the placeholder label (``[REDACTED:<name>]``)."""
    pattern: str
    """RE2 pattern (linear-time; no backreferences or lookaround)."""
    ignore_case: bool = False
    validator: Literal["none", "luhn", "iban", "ssn", "ip"] = "none"
    """Check a candidate must pass to count (for example ``luhn`` for card-like numbers)."""
    group: int = Field(default=0, ge=0)
    """Capture group that holds the value to report and redact (0: the whole match)."""

    _valid = field_validator("pattern")(_check_re2)


class SecretRuleConfig(BaseModel):
    """A secret rule to add, or the fields to change in a bundled rule (gitleaks semantics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    description: str | None = None
    regex: str | None = None
    keywords: list[str] | None = None
    """Lower-case prefilter words; the rule runs only when one occurs (none: always runs)."""
    entropy: float | None = Field(default=None, ge=0)
    """Drop a finding whose secret has Shannon entropy ``<=`` this value."""
    secret_group: int | None = Field(default=None, ge=0)
    allow_regexes: list[str] = Field(default_factory=list)
    """Secrets matching any of these are ignored (added rules only)."""
    stopwords: list[str] = Field(default_factory=list)
    """Secrets containing any of these words (case-insensitive) are ignored (added rules only)."""

    @field_validator("regex")
    @classmethod
    def _regex_is_re2(cls, value: str | None) -> str | None:
        return None if value is None else _check_re2(value)


class PatronusEvaluatorConfig(BaseModel):
    """One Patronus evaluator and its criteria (ids depend on the account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluator: str
    criteria: str | None = None


class GuardrailConfig(BaseModel):
    """One configured guardrail (an entry of the ``guardrails`` list in the hub settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    """Unique name, shown in block messages and logs."""
    kind: GuardrailKind
    apply_to: Literal["input", "output", "both"] = "both"
    """Check what goes to the back end (input), what comes back (output), or both."""
    action: Literal["block", "redact", "log"] = "block"
    """Block the call, redact the findings and continue, or only record them."""
    doors: list[Literal["llm", "mcp"]] = Field(default_factory=lambda: ["llm", "mcp"], min_length=1)
    operations: list[str] = Field(default_factory=list)
    """Operations to check, e.g. ``llm.chat``, ``mcp.tool`` or ``mcp.*`` (empty: all)."""
    keys: list[str] = Field(default_factory=list)
    """Virtual key names to check (shell-style wildcards allowed; empty: all)."""
    teams: list[str] = Field(default_factory=list)
    """Team names to check (wildcards allowed; empty: all)."""
    servers: list[str] = Field(default_factory=list)
    """MCP server names to check (wildcards allowed; empty: all; set: only MCP calls to them)."""
    sampling: float = Field(default=1.0, ge=0.0, le=1.0)
    """Fraction of matching calls that are checked."""
    timeout: float = Field(default=5.0, gt=0)
    """Seconds one check may take before it counts as failed."""
    on_error: Literal["block", "allow"] = "block"
    """Fail closed (block) or open (allow) when the check errors or times out."""
    message: str | None = Field(default=None, max_length=500)
    """Block message shown to the caller instead of the default one."""
    redaction: Literal["placeholder", "mask"] = "placeholder"
    """``[REDACTED:<type>]`` or a mask of the same length."""
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    stream_window: int = Field(default=512, ge=16, le=65536)
    """Characters held back on output streams so a value split across chunks is still seen whole."""

    # secrets
    disable_rules: list[str] = Field(default_factory=list)
    add_rules: list[SecretRuleConfig] = Field(default_factory=list)
    override_rules: list[SecretRuleConfig] = Field(default_factory=list)
    max_decode_depth: int = Field(default=5, ge=0, le=10)
    path_scoped_rules: bool = False
    """Also run the gitleaks rules meant for one kind of file (``*.tf``, ``*.yaml``, ``nuget.config``...)."""
    honor_allow_comment: bool = False
    """Honour ``gitleaks:allow`` on a line (off: the sender controls that comment)."""
    # pii
    entities: list[PiiEntity] = Field(default_factory=lambda: list(PII_ENTITIES))
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB"])
    custom: list[PatternConfig] = Field(default_factory=list)
    # regex
    pattern: str | None = None
    patterns: list[PatternConfig] = Field(default_factory=list)
    ignore_case: bool = False
    # remote services
    endpoint: str | None = None
    """Base URL of the service (defaults to the public endpoint where one is fixed)."""
    api_key: SecretStr | None = None
    """Credential: the value, ``env:NAME`` or ``file:/path``."""
    region: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str = "DRAFT"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    categories: list[Literal["Hate", "SelfHarm", "Sexual", "Violence"]] = Field(
        default_factory=lambda: ["Hate", "SelfHarm", "Sexual", "Violence"]
    )
    severity_threshold: int = Field(default=4, ge=0, le=7)
    """Azure: block at or above this severity."""
    blocklists: list[str] = Field(default_factory=list)
    analyze_text: bool = True
    prompt_shield: bool = True
    project: str | None = None
    location: str | None = None
    template: str | None = None
    evaluators: list[PatronusEvaluatorConfig] = Field(default_factory=list)
    combine: Literal["all_pass", "any_pass"] = "all_pass"

    @field_validator("pattern")
    @classmethod
    def _pattern_is_re2(cls, value: str | None) -> str | None:
        return None if value is None else _check_re2(value)

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        foreign = (self.model_fields_set & _ALL_KIND_FIELDS) - _KIND_FIELDS[self.kind]
        if foreign:
            raise ValueError(f"{self.kind} guardrail {self.name!r} does not take: {', '.join(sorted(foreign))}")
        missing = [f for f in _REQUIRED.get(self.kind, ()) if getattr(self, f) in (None, [], "")]
        if missing:
            raise ValueError(f"{self.kind} guardrail {self.name!r} needs: {', '.join(missing)}")
        if self.kind == "regex" and not (self.pattern or self.patterns):
            raise ValueError(f"regex guardrail {self.name!r} needs pattern or patterns")
        if self.kind == "bedrock" and not self.endpoint and not self.region:
            raise ValueError(f"bedrock guardrail {self.name!r} needs region (or endpoint)")
        if self.kind == "bedrock" and not self.api_key and not (self.access_key_id and self.secret_access_key):
            raise ValueError(f"bedrock guardrail {self.name!r} needs api_key or access_key_id + secret_access_key")
        if self.kind == "azure" and not (self.analyze_text or self.prompt_shield):
            raise ValueError(f"azure guardrail {self.name!r}: enable analyze_text or prompt_shield")
        return self

    @property
    def is_remote(self) -> bool:
        """Whether the check calls an external service."""
        return self.kind not in LOCAL_KINDS
