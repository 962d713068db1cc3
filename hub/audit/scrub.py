"""Secret scrubbing for audit records and admin views: redact values whose keys look sensitive, and secrets
inside any text.

Keys are matched case-insensitively anywhere in the key (`X-Api-Key`, `db_password`, `refresh_token`), like
logfire's scrubbing: password, passwd, pwd, secret, auth (not "author"), credential, private key, api key,
token (not "tokens", which counts), bearer, session, cookie, csrf, xsrf, jwt, signature, social security,
credit card, ssn. String values anywhere, whatever their key, are also searched for virtual keys (`ahk-...`),
`Bearer ...` credentials, `sk-...` provider keys, and every secret the hub's gitleaks rules find (a GitHub token
in a server's `args`, a cloud key in an `env` value named `MODE`): only the secret is replaced, the text around
it is kept. Redacted values become `"[REDACTED]"`. The gitleaks scanner is built once, at the first use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from hub.guardrails.secrets import SecretScanner

__all__ = ["DEFAULT_KEY_PATTERNS", "REDACTED", "JSONValue", "Scrubber", "redact_secrets", "scrub", "secret_scanner"]

JSONValue: TypeAlias = "None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]"

REDACTED = "[REDACTED]"

DEFAULT_KEY_PATTERNS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    r"auth(?!ors?\b)",
    "credential",
    r"private[._ -]?key",
    r"api[._ -]?key",
    r"access[._ -]?key",
    r"token(?!s)",
    "bearer",
    "session",
    "cookie",
    "csrf",
    "xsrf",
    "jwt",
    "signature",
    r"social[._ -]?security",
    r"credit[._ -]?card",
    r"\bssn\b",
)

_VALUE_PATTERN = re.compile(
    r"\bahk-[A-Za-z0-9_-]{8,}"  # our virtual keys
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{8,}"  # HTTP bearer credentials
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # common provider key shape
)


_MIN_SECRET = 8
"""Shorter strings hold no secret any rule finds; they are not scanned."""

_scanner: SecretScanner | None = None
_scanner_lock = threading.Lock()


def secret_scanner() -> SecretScanner:
    """The gitleaks scanner of the bundled rules, built at the first call and shared (scans are thread-safe)."""
    global _scanner
    with _scanner_lock:
        if _scanner is None:
            from hub.guardrails.secrets import SecretScanner  # re2 and the rule set load with the first scan

            _scanner = SecretScanner()
        return _scanner


def redact_secrets(text: str) -> str:
    """`text` with every secret the gitleaks rules find replaced by `"[REDACTED]"`."""
    if len(text) < _MIN_SECRET:
        return text
    hits = secret_scanner().scan(text)
    if not hits:
        return text
    parts: list[str] = []
    cursor = 0
    for start, end in _merged((h.start, h.end) for h in hits):
        parts += [text[cursor:start], REDACTED]
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class Scrubber:
    """Redacts secrets from JSON-like values; the input is never modified.

    Args:
        extra_patterns: more regexes (case-insensitive) for sensitive keys.
        safe_keys: exact keys (case-insensitive) never redacted by key, e.g. `"tokens"` if a pattern is added.
        scan_values: also redact what the gitleaks rules find in string values (see `redact_secrets`).
    """

    def __init__(
        self, extra_patterns: Iterable[str] = (), *, safe_keys: Iterable[str] = (), scan_values: bool = True
    ) -> None:
        patterns = (*DEFAULT_KEY_PATTERNS, *extra_patterns)
        self._keys = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        self._safe = frozenset(k.lower() for k in safe_keys)
        self._scan_values = scan_values

    def sensitive_key(self, key: str) -> bool:
        """Whether values under `key` are redacted."""
        return key.lower() not in self._safe and self._keys.search(key) is not None

    def scrub(self, value: JSONValue) -> JSONValue:
        """A copy of `value` with sensitive values replaced by `"[REDACTED]"`."""
        if isinstance(value, str):
            value = _VALUE_PATTERN.sub(REDACTED, value)
            return redact_secrets(value) if self._scan_values else value
        if isinstance(value, Mapping):
            return {
                str(k): (REDACTED if v is not None and self.sensitive_key(str(k)) else self.scrub(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


_DEFAULT = Scrubber()


def scrub(value: JSONValue) -> JSONValue:
    """Scrub with the default patterns (see `Scrubber`)."""
    return _DEFAULT.scrub(value)
