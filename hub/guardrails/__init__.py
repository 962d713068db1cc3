"""Guardrails: secrets (gitleaks rules on RE2), PII, custom regexes and remote content-safety services.

The pipeline's guardrail stage needs only this surface::

    guardrails = Guardrails(settings.guardrails)            # list[GuardrailConfig], at start-up
    verdict = await guardrails.check(payload, Scope("input", "llm", "llm.chat", key="k", team="t"))
    if verdict.blocked: raise ...(verdict.message)          # names guardrails and rules, never values
    payload = verdict.payload                               # redacted copy when verdict.redacted
    scanner = guardrails.stream(Scope("output", "llm", "llm.chat"))   # None: nothing applies
    text = await scanner.feed(chunk); tail = await scanner.finish()   # GuardrailBlockedError on block
    await guardrails.aclose()

The configuration models and verdict types load with the package; the engine and scanners (RE2, phonenumbers,
the gitleaks rules, the remote clients) load on first use, so a hub without guardrails does not carry them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .config import GuardrailConfig, PatronusEvaluatorConfig, PatternConfig, SecretRuleConfig
from .verdict import (
    Decision,
    Direction,
    Door,
    Finding,
    GuardrailBlockedError,
    GuardrailConfigError,
    GuardrailError,
    GuardrailServiceError,
    Scope,
    Verdict,
)

__all__ = [
    "Decision",
    "Direction",
    "Door",
    "Finding",
    "GitleaksRuleset",
    "GuardrailBlockedError",
    "GuardrailConfig",
    "GuardrailConfigError",
    "GuardrailError",
    "GuardrailServiceError",
    "Guardrails",
    "PatronusEvaluatorConfig",
    "PatternConfig",
    "PiiScanner",
    "Scope",
    "SecretRuleConfig",
    "SecretScanner",
    "StreamScanner",
    "Verdict",
    "default_ruleset",
    "load_ruleset",
]

if TYPE_CHECKING:
    from .engine import Guardrails
    from .gitleaks import GitleaksRuleset, default_ruleset, load_ruleset
    from .pii import PiiScanner
    from .secrets import SecretScanner
    from .stream import StreamScanner

_LAZY = {
    "Guardrails": "engine",
    "GitleaksRuleset": "gitleaks",
    "default_ruleset": "gitleaks",
    "load_ruleset": "gitleaks",
    "PiiScanner": "pii",
    "SecretScanner": "secrets",
    "StreamScanner": "stream",
}


def __getattr__(name: str) -> Any:
    """Load the engine and scanner modules on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
