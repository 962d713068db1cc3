"""Typed errors of the LLM back end.

Every message is safe to show to a caller: a provider's own error body is never passed through, only its
HTTP status and, when it is a short machine code, its error code. Secrets never appear in any message.

```
LLMError
├── ConfigError                  bad configuration or an unresolvable secret reference
├── UnknownModel                 the requested model is neither an alias nor `provider/model`
├── NoDeploymentAvailable        nothing allowed, everything cooling down, or every attempt failed
└── ProviderError                one attempt against one provider failed
    ├── ProviderHTTPError        the provider answered with an error status (`status`, `code`, `retry_after`)
    ├── ProviderTimeout          connect, read or first-chunk timeout
    ├── ProviderUnavailable      connection refused, reset or cut mid-body
    ├── ProviderResponseError    the body was malformed, too large or not the expected shape
    ├── UnsupportedParameter     the provider cannot honour a request parameter (refused, not dropped)
    └── UnsupportedOperation     the provider has no such endpoint (e.g. embeddings on Anthropic)
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Attempt",
    "ConfigError",
    "LLMError",
    "NoDeploymentAvailable",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "UnknownModel",
    "UnsupportedOperation",
    "UnsupportedParameter",
]

_SAFE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


def safe_code(value: object) -> str | None:
    """Return `value` if it looks like a short machine error code, else None (free text is never kept)."""
    if isinstance(value, str) and _SAFE_CODE.match(value):
        return value
    return None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one hop: which deployment and key, and how it ended (`error` is None on success)."""

    provider: str
    model: str
    key: str
    error: ProviderError | None = None
    elapsed: float = 0.0

    def describe(self) -> str:
        """A one-line safe summary, e.g. `openai/gpt-4o[main]: HTTP 503`."""
        outcome = "ok" if self.error is None else self.error.reason
        return f"{self.provider}/{self.model}[{self.key}]: {outcome}"


class LLMError(Exception):
    """Base class of every error the `llm` package raises. `attempts` lists what was tried."""

    attempts: tuple[Attempt, ...] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(LLMError):
    """The configuration is invalid, or a secret reference cannot be resolved."""


class UnknownModel(LLMError):
    """The requested model is neither a configured alias nor `provider/model` of a configured provider."""

    def __init__(self, model: str) -> None:
        super().__init__(f"unknown model {model[:200]!r}")
        self.model = model


class NoDeploymentAvailable(LLMError):
    """No hop could serve the request: none allowed, all cooling down, or every attempt failed."""

    def __init__(self, model: str, attempts: Sequence[Attempt], skipped: Sequence[str] = ()) -> None:
        parts = [a.describe() for a in attempts] + list(skipped)
        detail = "; ".join(parts) if parts else "no deployment allowed"
        super().__init__(f"no deployment available for {model[:200]!r}: {detail}")
        self.model = model
        self.attempts = tuple(attempts)
        self.skipped = tuple(skipped)

    @property
    def last_error(self) -> ProviderError | None:
        """The error of the last attempt, if any attempt was made."""
        for attempt in reversed(self.attempts):
            if attempt.error is not None:
                return attempt.error
        return None


class ProviderError(LLMError):
    """One attempt failed. `retryable` says whether retrying or falling back may help."""

    retryable: bool = True

    def __init__(self, reason: str, *, provider: str = "", model: str = "") -> None:
        where = f"{provider}/{model}: " if provider else ""
        super().__init__(f"{where}{reason}")
        self.reason = reason
        self.provider = provider
        self.model = model


class ProviderHTTPError(ProviderError):
    """The provider answered with an error status; the body is reduced to a safe `code`."""

    def __init__(
        self,
        status: int,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        provider: str = "",
        model: str = "",
    ) -> None:
        reason = f"HTTP {status}" + (f" ({code})" if code else "")
        super().__init__(reason, provider=provider, model=model)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.retryable = status in (408, 409, 429) or status >= 500

    @property
    def is_auth(self) -> bool:
        """True for 401/403: the key is rejected, another key may work."""
        return self.status in (401, 403)


class ProviderTimeout(ProviderError):
    """The provider did not answer (or stalled) within the configured time."""


class ProviderUnavailable(ProviderError):
    """The connection failed: refused, reset, or cut before the body was complete."""


class ProviderResponseError(ProviderError):
    """The provider's body was malformed, too large, or not the expected shape."""


class UnsupportedParameter(ProviderError):
    """The provider cannot honour a parameter of the request; refused rather than silently dropped."""

    retryable = False

    def __init__(self, parameter: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(f"parameter {parameter!r} is not supported by this provider", provider=provider, model=model)
        self.parameter = parameter


class UnsupportedOperation(ProviderError):
    """The provider has no endpoint for this operation (embeddings, responses)."""

    retryable = False

    def __init__(self, operation: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(f"{operation} is not supported by this provider", provider=provider, model=model)
        self.operation = operation
