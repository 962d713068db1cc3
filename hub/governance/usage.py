"""Values the limits engine hands out: usage, reservations, snapshots and the rate-limit headers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from hub.governance.counters import Slot

__all__ = [
    "MICROS",
    "EntityKind",
    "EntityRef",
    "LimitStatus",
    "Metric",
    "Reservation",
    "Usage",
    "UsageSnapshot",
    "format_reset",
    "rate_headers",
    "usd_to_micros",
]

MICROS = 1_000_000
"""Micro-dollars per US dollar: budgets count whole micro-dollars, so sums are exact."""


def usd_to_micros(usd: float) -> int:
    """US dollars as whole micro-dollars (rounded to nearest)."""
    return round(usd * MICROS)


class Metric(StrEnum):
    """What a counter counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    USD = "usd"


METRICS = (Metric.REQUESTS, Metric.TOKENS, Metric.USD)
"""The metrics in the order of `Usage.amounts()`."""


class EntityKind(StrEnum):
    """The levels of the hierarchy, lowest first."""

    KEY = "key"
    TEAM = "team"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class EntityRef:
    """One key, team or customer."""

    kind: EntityKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a call uses (or is estimated to use): requests, tokens and US dollars.

    `tokens` is what token rate limits count: every token the model processed, input (uncached, read from a cache
    and written to one) plus output (reasoning included). A cache read is cheap but still counts: it fills the
    model's context like any input token. The cache and reasoning parts are also reported on their own (all zero
    for calls that are not LLM calls), for the request log; they are inside `tokens`, never added to it.
    """

    requests: int = 1
    tokens: int = 0
    usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    output_tokens: int = 0
    """Of `tokens`: what the model produced (reasoning included); the rest of `tokens` is input."""
    priced: bool = True
    """Whether `usd` is the cost; False when the model that served has no price (`usd` is then 0, and the request
    log records the cost as unknown). Where a US-dollar budget applies, such a call is refused before it is sent."""

    def amounts(self) -> tuple[int, int, int]:
        """(requests, tokens, micro-dollars), in the order of `METRICS`.

        Raises:
            ValueError: a negative or non-finite value.
        """
        if self.requests < 0 or self.tokens < 0 or not (0.0 <= self.usd < math.inf):
            raise ValueError(f"usage must be non-negative and finite: {self}")
        return (self.requests, self.tokens, usd_to_micros(self.usd))


class LimitStatus(NamedTuple):
    """The binding limit of one metric (the level with the least left): what the headers report."""

    limit: float
    remaining: float
    resets_in: float
    """Seconds until that window resets."""


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """One limit of one entity in one window, for the admin API. US-dollar values are in dollars."""

    entity: str
    metric: str
    period: str
    limit: float
    used: float
    """Settled usage in this window."""
    in_flight: float
    """Reserved by calls still running."""
    remaining: float
    window_start: float
    """Unix seconds."""
    resets_at: float
    """Unix seconds."""


class Reservation:
    """A granted reservation; hand it back to `Limiter.settle` or `Limiter.refund` exactly once.

    The statuses reflect the counters right after this reservation (so `remaining` already counts it).
    """

    __slots__ = (
        "_compute",
        "_heading",
        "_statuses",
        "done",
        "hold_id",
        "key",
        "metric_indexes",
        "slots",
        "window_ends",
    )

    def __init__(
        self,
        key: str,
        hold_id: str,
        slots: tuple[Slot, ...],
        metric_indexes: tuple[int, ...],
        window_ends: tuple[float, ...],
        statuses: Callable[[], dict[Metric, LimitStatus]],
        headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.key = key
        self.hold_id = hold_id
        self.slots = slots
        self.metric_indexes = metric_indexes
        self.window_ends = window_ends
        self._compute = statuses
        self._heading = headers
        """What `headers` returns, computed without the statuses (None: from them)."""
        self._statuses: dict[Metric, LimitStatus] | None = None
        self.done = False
        """Whether it was settled or refunded."""

    def _status(self, metric: Metric) -> LimitStatus | None:
        statuses = self._statuses
        if statuses is None:
            statuses = self._statuses = self._compute()
        return statuses.get(metric)

    @property
    def requests(self) -> LimitStatus | None:
        """Binding request limit, or None when no level limits requests."""
        return self._status(Metric.REQUESTS)

    @property
    def tokens(self) -> LimitStatus | None:
        """Binding token limit, or None when no level limits tokens."""
        return self._status(Metric.TOKENS)

    @property
    def budget(self) -> LimitStatus | None:
        """Binding budget (US dollars), or None when no level has a budget."""
        return self._status(Metric.USD)

    @property
    def budget_remaining_usd(self) -> float | None:
        """US dollars left on the tightest budget after this reservation, or None without budgets."""
        return None if self.budget is None else self.budget.remaining

    def headers(self) -> dict[str, str]:
        """`x-ratelimit-*` headers (OpenAI's names) plus `x-budget-remaining-usd`."""
        heading = self._heading
        if heading is not None:
            return heading()
        statuses = self._statuses
        if statuses is None:
            statuses = self._statuses = self._compute()
        return rate_headers(statuses)


_LAST_RESET = [(-1, "")]
"""The last duration `format_reset` wrote, in milliseconds, with its text (one tuple, replaced whole, so a reader
never sees the duration of one with the text of another): the requests and tokens limits of a key usually share
their window, so a response's second reset header is the first one's."""


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's `x-ratelimit-reset-*` headers write it: `250ms`, `1s`, `6m0s`, `1h2m3.5s`."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    last_millis, last_text = _LAST_RESET[0]
    if millis == last_millis:
        return last_text
    text = _format_millis(millis)
    _LAST_RESET[0] = (millis, text)
    return text


def _format_millis(millis: int) -> str:
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


_RATE_HEADERS = tuple(
    (metric, f"x-ratelimit-limit-{metric}", f"x-ratelimit-remaining-{metric}", f"x-ratelimit-reset-{metric}")
    for metric in (Metric.REQUESTS, Metric.TOKENS)
)


def rate_headers(statuses: dict[Metric, LimitStatus]) -> dict[str, str]:
    """Response headers for the binding limits: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and
    `x-budget-remaining-usd`; metrics without a limit are left out."""
    headers: dict[str, str] = {}
    for metric, limit_name, remaining_name, reset_name in _RATE_HEADERS:
        status = statuses.get(metric)
        if status is not None:
            headers[limit_name] = str(int(status.limit))
            headers[remaining_name] = str(int(status.remaining))
            headers[reset_name] = format_reset(status.resets_in)
    budget = statuses.get(Metric.USD)
    if budget is not None:
        headers["x-budget-remaining-usd"] = f"{budget.remaining:.6f}"
    return headers
