"""Build the local engines (secrets, PII, regex) from configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import re2

from .config import GuardrailConfig, PatternConfig, SecretRuleConfig
from .gitleaks import RuleError, SecretRule, build_rule, default_ruleset
from .pii import PatternRule, PiiScanner
from .secrets import SecretScanner
from .text import Hit
from .verdict import GuardrailConfigError

__all__ = ["RegexScanner", "TextScanner", "build_scanner"]


class TextScanner(Protocol):
    """A local engine: text in, hits out. Pure CPU work, safe to run in a worker thread."""

    def scan(self, text: str) -> list[Hit]:
        """Hits in ``text``."""
        ...


class RegexScanner:
    """Named RE2 patterns; each hit is labelled with its pattern's name."""

    def __init__(self, rules: Sequence[PatternRule]) -> None:
        self.rules = tuple(rules)

    def scan(self, text: str) -> list[Hit]:
        """Hits of every pattern in ``text``."""
        return [hit for rule in self.rules for hit in rule.scan(text)]


def _pattern(cfg: PatternConfig) -> PatternRule:
    return PatternRule.build(
        cfg.name, cfg.pattern, ignore_case=cfg.ignore_case, validator=cfg.validator, group=cfg.group
    )


def _added_rule(cfg: SecretRuleConfig) -> SecretRule:
    if not cfg.regex:
        raise GuardrailConfigError(f"added secret rule {cfg.id!r} needs a regex")
    raw: dict[str, Any] = {
        "id": cfg.id,
        "description": cfg.description or "",
        "regex": cfg.regex,
        "keywords": cfg.keywords or [],
        "entropy": cfg.entropy or 0.0,
        "secretGroup": cfg.secret_group or 0,
    }
    if cfg.allow_regexes or cfg.stopwords:
        raw["allowlists"] = [{"regexes": cfg.allow_regexes, "stopwords": cfg.stopwords}]
    return build_rule(raw)


def _override_fields(cfg: SecretRuleConfig) -> dict[str, Any]:
    if cfg.allow_regexes or cfg.stopwords:
        raise GuardrailConfigError(f"override of {cfg.id!r}: allow_regexes/stopwords apply to added rules only")
    fields = cfg.model_dump(exclude={"id", "allow_regexes", "stopwords"}, exclude_none=True)
    if not fields:
        raise GuardrailConfigError(f"override of {cfg.id!r} changes nothing")
    return fields


def build_scanner(cfg: GuardrailConfig) -> TextScanner:
    """The local engine for a ``secrets``, ``pii`` or ``regex`` guardrail.

    Raises:
        GuardrailConfigError: a rule does not compile or names an unknown rule id.
    """
    try:
        if cfg.kind == "secrets":
            ruleset = default_ruleset()
            if cfg.disable_rules or cfg.add_rules or cfg.override_rules:
                ruleset = ruleset.with_changes(
                    disable=cfg.disable_rules,
                    add=[_added_rule(r) for r in cfg.add_rules],
                    override={r.id: _override_fields(r) for r in cfg.override_rules},
                )
            return SecretScanner(
                ruleset,
                max_decode_depth=cfg.max_decode_depth,
                path_scoped_rules=cfg.path_scoped_rules,
                honor_allow_comment=cfg.honor_allow_comment,
            )
        if cfg.kind == "pii":
            return PiiScanner(cfg.entities, phone_regions=cfg.phone_regions, custom=[_pattern(p) for p in cfg.custom])
        if cfg.kind == "regex":
            rules = [_pattern(p) for p in cfg.patterns]
            if cfg.pattern:
                rules.insert(0, PatternRule.build(cfg.name, cfg.pattern, ignore_case=cfg.ignore_case))
            return RegexScanner(rules)
    except (RuleError, re2.error) as exc:
        raise GuardrailConfigError(f"guardrail {cfg.name!r}: {exc}") from exc
    raise GuardrailConfigError(f"guardrail {cfg.name!r}: {cfg.kind} is not a local engine")
