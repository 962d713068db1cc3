"""Configuration models for budgets, rate limits, customers, teams and tool pricing.

The hub's settings embed these models; a virtual key carries a `budget` and a `rate_limit` of the same types.

```toml
[[customers]]
name = "acme"
budget = { max_usd = 1000.0, reset = "1M" }

[[teams]]
name = "platform"
customer = "acme"
budget = { max_usd = 100.0, reset = "1w", calendar_aligned = true }
rate_limit = { requests = 1000, tokens = 200000, period = "1m" }

[pricing.tools]
"tickets__*" = 0.001
```
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator

from hub.governance.periods import Period, parse_budget_period, parse_rate_period

__all__ = [
    "BudgetConfig",
    "BudgetPeriod",
    "CustomerConfig",
    "GovernanceConfig",
    "PricingConfig",
    "RateLimitConfig",
    "RatePeriod",
    "TeamConfig",
]


def _budget_period(value: object) -> Period:
    if isinstance(value, Period):
        return parse_budget_period(str(value))
    if not isinstance(value, str):
        raise ValueError("a budget reset period is a string such as '1M'")
    return parse_budget_period(value)


def _rate_period(value: object) -> Period:
    if isinstance(value, Period):
        return parse_rate_period(str(value))
    if not isinstance(value, str):
        raise ValueError("a rate-limit period is a string such as '1m'")
    return parse_rate_period(value)


BudgetPeriod = Annotated[
    Period,
    PlainValidator(_budget_period),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[1-9][0-9]{0,3}[hdwMY]$"}),
]
"""A budget reset period in the strict grammar `N(h|d|w|M|Y)`."""

RatePeriod = Annotated[
    Period,
    PlainValidator(_rate_period),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[1-9][0-9]{0,6}[smhd]$"}),
]
"""A rate-limit period in the strict grammar `N(s|m|h|d)`."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BudgetConfig(_Frozen):
    """A spending cap in US dollars that resets every period."""

    max_usd: float = Field(ge=0)
    """The most that may be spent in one period."""
    reset: BudgetPeriod
    """How often usage goes back to zero: `1h`, `1d`, `1w`, `1M`, `1Y` (any N)."""
    calendar_aligned: bool = False
    """Reset on UTC calendar boundaries (hour, day, Monday, 1st of the month, 1 January) instead of rolling."""
    starts_at: datetime | None = None
    """Anchor of rolling windows (timezone-aware). Unset means the Unix epoch, so e.g. a rolling `1M` budget
    then resets on the 1st of each month; set it to the billing start to roll from that instant."""

    if TYPE_CHECKING:  # the constructor also takes the period as text, like the config file

        def __init__(
            self,
            *,
            max_usd: float,
            reset: Period | str,
            calendar_aligned: bool = False,
            starts_at: datetime | None = None,
        ) -> None: ...

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not math.isfinite(self.max_usd):
            raise ValueError("max_usd must be finite")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at must carry a timezone (e.g. 2026-01-01T00:00:00Z)")
        return self

    @property
    def anchor(self) -> int:
        """The rolling-window anchor in whole Unix seconds."""
        return 0 if self.starts_at is None else math.floor(self.starts_at.timestamp())


class RateLimitConfig(_Frozen):
    """At most `requests` calls and/or `tokens` tokens per fixed window of `period`."""

    requests: int | None = Field(default=None, ge=1)
    """Calls admitted per window (unset: no request limit)."""
    tokens: int | None = Field(default=None, ge=1)
    """Tokens (prompt + completion) per window (unset: no token limit)."""
    period: RatePeriod
    """The window length: `1s`, `1m`, `1h`, `1d` (any N)."""

    if TYPE_CHECKING:  # the constructor also takes the period as text, like the config file

        def __init__(self, *, requests: int | None = None, tokens: int | None = None, period: Period | str) -> None: ...

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.requests is None and self.tokens is None:
            raise ValueError("a rate limit needs requests, tokens or both")
        return self


class CustomerConfig(_Frozen):
    """The top level of the budget hierarchy: a customer owns teams (and may own keys directly)."""

    name: str = Field(min_length=1)
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class TeamConfig(_Frozen):
    """A team of keys, optionally belonging to a customer."""

    name: str = Field(min_length=1)
    customer: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None


class PricingConfig(_Frozen):
    """Optional prices of MCP tool calls: `server__tool` globs to US dollars per call."""

    tools: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict[str, float])


class GovernanceConfig(_Frozen):
    """Customers, teams and pricing, checked for duplicates and dangling references."""

    customers: list[CustomerConfig] = Field(default_factory=list[CustomerConfig])
    teams: list[TeamConfig] = Field(default_factory=list[TeamConfig])
    pricing: PricingConfig = Field(default_factory=PricingConfig)

    @model_validator(mode="after")
    def _check(self) -> Self:
        customers = _unique("customer", [c.name for c in self.customers])
        _unique("team", [t.name for t in self.teams])
        for team in self.teams:
            if team.customer is not None and team.customer not in customers:
                raise ValueError(f"team {team.name!r} names unknown customer {team.customer!r}")
        return self


def _unique(kind: str, names: list[str]) -> set[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{kind} {name!r} is defined twice")
        seen.add(name)
    return seen
