"""What a guardrail check is asked about (:class:`Scope`) and what it answers (:class:`Verdict`).

Error tree::

    GuardrailError                 base of this package's errors
    ├── GuardrailConfigError       a configuration that cannot be built (bad rule, unknown id)
    ├── GuardrailServiceError      a remote service failed (status, body shape, transport)
    └── GuardrailBlockedError      a stream was blocked mid-way; carries the Verdict
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Decision",
    "Direction",
    "Door",
    "Finding",
    "GuardrailBlockedError",
    "GuardrailConfigError",
    "GuardrailError",
    "GuardrailServiceError",
    "Scope",
    "Verdict",
]

Direction = Literal["input", "output"]
Door = Literal["llm", "mcp"]
Decision = Literal["allow", "redact", "block"]


class GuardrailError(Exception):
    """Base class of guardrail errors."""


class GuardrailConfigError(GuardrailError):
    """The guardrail configuration cannot be built."""


class GuardrailServiceError(GuardrailError):
    """A remote guardrail service failed (HTTP status, malformed body, transport error)."""

    def __init__(self, service: str, reason: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Scope:
    """The call being checked: direction, front door, operation and who/what it concerns."""

    direction: Direction
    door: Door
    operation: str
    key: str | None = None
    team: str | None = None
    server: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection (or one failed check) for the log. It never contains the detected value.

    ``action`` is what the guardrail does with it: ``block``, ``redact``, ``log``, or ``error`` when
    the check failed (``detail["outcome"]`` then says whether it failed open or closed).
    ``path`` is the JSON pointer of the string in a JSON payload (``""`` for plain text), and
    ``start``/``end`` the character span in that string (``None`` for remote verdicts).
    """

    guardrail: str
    kind: str
    rule: str
    action: str
    path: str = ""
    start: int | None = None
    end: int | None = None
    detail: dict[str, str | float | int | bool] = field(default_factory=lambda: {})

    def as_log(self) -> dict[str, Any]:
        """A flat JSON-ready record."""
        record: dict[str, Any] = {
            "guardrail": self.guardrail,
            "kind": self.kind,
            "rule": self.rule,
            "action": self.action,
            "path": self.path,
        }
        if self.start is not None:
            record["start"] = self.start
            record["end"] = self.end
        record.update(self.detail)
        return record


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one check.

    * ``allow``: ``payload`` is the original payload;
    * ``redact``: ``payload`` is a copy with the findings replaced; send that instead;
    * ``block``: refuse the call with ``message`` (it names guardrails and rules, never a value).
    """

    decision: Decision
    payload: Any
    findings: tuple[Finding, ...] = ()
    blocked_by: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    message: str = ""

    @property
    def blocked(self) -> bool:
        """Whether the call must be refused."""
        return self.decision == "block"

    @property
    def redacted(self) -> bool:
        """Whether ``payload`` differs from what was checked."""
        return self.decision == "redact"


class GuardrailBlockedError(GuardrailError):
    """Raised by a stream scanner when output is blocked mid-stream."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
