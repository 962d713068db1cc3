"""Secret scrubbing for audit records: redact values whose keys look sensitive, and credentials inside text.

Keys are matched case-insensitively anywhere in the key (`X-Api-Key`, `db_password`, `refresh_token`), like
logfire's scrubbing: password, passwd, pwd, secret, auth (not "author"), credential, private key, api key,
token (not "tokens", which counts), bearer, session, cookie, csrf, xsrf, jwt, signature, social security,
credit card, ssn. String values anywhere are also searched for virtual keys (`ahk-...`), `Bearer ...`
credentials and `sk-...` provider keys. Redacted values become `"[REDACTED]"`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = ["DEFAULT_KEY_PATTERNS", "REDACTED", "JSONValue", "Scrubber", "scrub"]

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


class Scrubber:
    """Redacts secrets from JSON-like values; the input is never modified.

    Args:
        extra_patterns: more regexes (case-insensitive) for sensitive keys.
        safe_keys: exact keys (case-insensitive) never redacted by key, e.g. `"tokens"` if a pattern is added.
    """

    def __init__(self, extra_patterns: Iterable[str] = (), *, safe_keys: Iterable[str] = ()) -> None:
        patterns = (*DEFAULT_KEY_PATTERNS, *extra_patterns)
        self._keys = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        self._safe = frozenset(k.lower() for k in safe_keys)

    def sensitive_key(self, key: str) -> bool:
        """Whether values under `key` are redacted."""
        return key.lower() not in self._safe and self._keys.search(key) is not None

    def scrub(self, value: JSONValue) -> JSONValue:
        """A copy of `value` with sensitive values replaced by `"[REDACTED]"`."""
        if isinstance(value, str):
            return _VALUE_PATTERN.sub(REDACTED, value)
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
