"""Typed refusals of the limits engine; the `limits` stage maps them onto the hub's errors.

```
GovernanceError
├── LimitDenied            a level refused the call (carries entity, metric, limit, retry_after, headers)
│   ├── RateLimitDenied    requests or tokens per window exhausted   -> 429 with Retry-After
│   └── BudgetDenied       US-dollar budget exhausted                -> 402
├── UnknownSubject         no limits are registered for this key, or its team/customer is unknown (fail closed)
└── CountersUnavailable    the counter store failed; deny (budgets must fail closed)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.governance.usage import EntityRef, Metric

__all__ = [
    "BudgetDenied",
    "CountersUnavailable",
    "GovernanceError",
    "LimitDenied",
    "RateLimitDenied",
    "UnknownSubject",
]


class GovernanceError(Exception):
    """Base of the governance refusals."""


class LimitDenied(GovernanceError):
    """One level (key, team or customer) refused the call; nothing was reserved on any level."""

    def __init__(
        self,
        message: str,
        *,
        entity: EntityRef,
        metric: Metric,
        limit: float,
        retry_after: int,
        resets_at: float,
        headers: dict[str, str],
    ) -> None:
        super().__init__(message)
        self.entity = entity
        """The level that refused."""
        self.metric = metric
        """What ran out: requests, tokens or usd."""
        self.limit = limit
        """The limit in the metric's unit (US dollars for budgets)."""
        self.retry_after = retry_after
        """Whole seconds until the refusing window resets (at least 1)."""
        self.resets_at = resets_at
        """Unix time at which the refusing window resets."""
        self.headers = headers
        """Response headers for the door (`retry-after`, `x-ratelimit-*`)."""


class RateLimitDenied(LimitDenied):
    """Too many requests or tokens in the current window."""


class BudgetDenied(LimitDenied):
    """The budget of the current period is spent."""


class UnknownSubject(GovernanceError, LookupError):
    """The key has no registered limits, or names an unknown team or customer."""


class CountersUnavailable(GovernanceError):
    """The counter store could not be reached or answered with an error."""
