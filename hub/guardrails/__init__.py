"""Guardrails: secrets (gitleaks rules on RE2), PII, custom regexes and remote content-safety services.

The pipeline's guardrail stage needs only this surface::

    guardrails = Guardrails(settings.guardrails)            # list[GuardrailConfig], at start-up
    verdict = await guardrails.check(payload, Scope("input", "llm", "llm.chat", key="k", team="t"))
    if verdict.blocked: raise ...(verdict.message)          # names guardrails and rules, never values
    payload = verdict.payload                               # redacted copy when verdict.redacted
    scanner = guardrails.stream(Scope("output", "llm", "llm.chat"))   # None: nothing applies
    text = await scanner.feed(chunk); tail = await scanner.finish()   # GuardrailBlockedError on block
    await guardrails.aclose()
"""

from .config import GuardrailConfig, PatronusEvaluatorConfig, PatternConfig, SecretRuleConfig
from .engine import Guardrails
from .gitleaks import GitleaksRuleset, default_ruleset, load_ruleset
from .pii import PiiScanner
from .secrets import SecretScanner
from .stream import StreamScanner
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
