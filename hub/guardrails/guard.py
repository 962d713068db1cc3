"""One configured guardrail bound to its engine, and how it selects calls and words its block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .config import GuardrailConfig
from .local import TextScanner
from .remote import RemoteGuardrail
from .text import Hit, fold_invisible, redact
from .verdict import Scope

__all__ = ["Guard", "scan_text"]


def _matches(patterns: Sequence[str], value: str | None) -> bool:
    if not patterns:
        return True
    if value is None:
        return False
    return any(fnmatchcase(value, p) for p in patterns)


def scan_text(scanner: TextScanner, text: str) -> list[Hit]:
    """Run a local engine on ``text`` with invisible characters folded away; spans are in ``text``."""
    folded = fold_invisible(text)
    hits = scanner.scan(folded.text)
    if folded.positions is None:
        return hits
    mapped: list[Hit] = []
    for hit in hits:
        start, end = folded.to_original(hit.start, hit.end)
        mapped.append(Hit(hit.rule, hit.label, start, end, {**hit.detail, "obfuscated": "invisible"}))
    return mapped


@dataclass(slots=True)
class Guard:
    """One configured guardrail with its engine (local scanner or remote adapter)."""

    cfg: GuardrailConfig
    scanner: TextScanner | None = None
    remote: RemoteGuardrail | None = None

    def applies(self, scope: Scope) -> bool:
        """Whether the guardrail covers this call (sampling aside)."""
        cfg = self.cfg
        if cfg.apply_to not in ("both", scope.direction) or scope.door not in cfg.doors:
            return False
        if cfg.servers and scope.door != "mcp":
            return False
        return (
            _matches(cfg.operations, scope.operation)
            and _matches(cfg.keys, scope.key)
            and _matches(cfg.teams, scope.team)
            and _matches(cfg.servers, scope.server)
        )

    def redact(self, text: str, hits: Sequence[Hit]) -> str:
        """``text`` with the hits replaced in this guardrail's redaction style."""
        return redact(text, hits, style=self.cfg.redaction, mask_char=self.cfg.mask_char)

    def block_reason(self, rules: Sequence[str]) -> str:
        """The caller-facing reason; rule names only, never a matched value."""
        if self.cfg.message:
            return self.cfg.message
        listed = ", ".join(dict.fromkeys(rules))
        return f"guardrail '{self.cfg.name}' ({self.cfg.kind}: {listed})"
