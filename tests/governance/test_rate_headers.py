"""A reservation's `x-ratelimit-*` and budget headers, written straight from its plan's lines when each metric has
at most one line, are exactly the headers of its binding statuses (`rate_headers` of `requests`, `tokens` and
`budget`), for plans of every shape on the key, team and customer levels, as the counters fill and windows turn.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hub.governance.clock import ManualClock
from hub.governance.config import BudgetConfig, GovernanceConfig, RateLimitConfig
from hub.governance.errors import BudgetDenied, RateLimitDenied
from hub.governance.limits import Limiter
from hub.governance.usage import LimitStatus, Metric, Reservation, Usage, format_reset, rate_headers
from hub.store.counters import InMemoryCounters

pytestmark = pytest.mark.anyio

PERIODS = ["1s", "7s", "1m", "90s", "1h", "1d"]


def _rate(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.4:
        return None
    requests = rng.choice([None, 3, 10, 1000])
    tokens = rng.choice([None, 50, 5000]) if requests is not None else rng.choice([50, 5000])
    return {"requests": requests, "tokens": tokens, "period": rng.choice(PERIODS)}


def _budget(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.5:
        return None
    return {"max_usd": rng.choice([0.5, 2.0, 100.0]), "reset": rng.choice(["1h", "1d", "1w"])}


def _level(name: str, rng: random.Random) -> dict[str, Any]:
    level: dict[str, Any] = {"name": name}
    rate, budget = _rate(rng), _budget(rng)
    if rate is not None:
        level["rate_limit"] = rate
    if budget is not None:
        level["budget"] = budget
    return level


def _expected(reservation: Reservation) -> dict[str, str]:
    found = (
        (Metric.REQUESTS, reservation.requests),
        (Metric.TOKENS, reservation.tokens),
        (Metric.USD, reservation.budget),
    )
    statuses: dict[Metric, LimitStatus] = {metric: status for metric, status in found if status is not None}
    return rate_headers(statuses)


@pytest.mark.parametrize("seed", range(40))
async def test_the_headers_are_those_of_the_binding_statuses(seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock()
    config = GovernanceConfig.model_validate(
        {"customers": [_level("acme", rng)], "teams": [{**_level("platform", rng), "customer": "acme"}]}
    )
    limiter = Limiter(InMemoryCounters(), config, clock=clock)
    own = _level("own", rng)
    rate, budget = own.get("rate_limit"), own.get("budget")
    limiter.set_key(
        "ci-bot",
        team="platform" if rng.random() < 0.7 else None,
        rate_limit=None if rate is None else RateLimitConfig.model_validate(rate),
        budget=None if budget is None else BudgetConfig.model_validate(budget),
    )
    compared = 0
    for _ in range(30):
        clock.advance(rng.choice([0.0, 0.0004, 0.25, 1.5, 13.0, 61.0]))
        estimate = Usage(requests=1, tokens=rng.choice([0, 7, 40]), usd=rng.choice([0.0, 0.01, 0.3]))
        try:
            reservation = await limiter.reserve("ci-bot", estimate, spend=rng.random() < 0.8)
        except (RateLimitDenied, BudgetDenied):
            continue
        clock.advance(rng.choice([0.0, 0.3]))  # the headers are those of the reservation's instant, not later
        headers = reservation.headers()
        assert headers == _expected(reservation), seed
        assert list(headers) == list(_expected(reservation)), "the same order on the wire"
        compared += 1
        if rng.random() < 0.6:
            await limiter.settle(reservation, Usage(requests=1, tokens=rng.choice([0, 20]), usd=0.05))
    assert compared, "some reservation was granted"


async def test_a_key_with_two_lines_of_one_metric_reports_the_tighter_one() -> None:
    clock = ManualClock()
    config = GovernanceConfig.model_validate(
        {"teams": [{"name": "platform", "rate_limit": {"requests": 5, "period": "1h"}}]}
    )
    limiter = Limiter(InMemoryCounters(), config, clock=clock)
    limiter.set_key("ci-bot", team="platform", rate_limit=RateLimitConfig(requests=100, period="1m"))
    reservation = await limiter.reserve("ci-bot")
    assert reservation.headers() == _expected(reservation)
    assert reservation.headers()["x-ratelimit-limit-requests"] == "5"


def test_format_reset_gives_the_same_text_whether_or_not_it_just_wrote_that_duration() -> None:
    rng = random.Random(7)
    samples = [rng.choice([0.0, 0.0004, 0.25, 1.0, 59.9995, 61.25, 3723.5, 86400.0]) for _ in range(200)]
    fresh = {value: format_reset(value) for value in sorted(set(samples), reverse=True)}
    assert [format_reset(value) for value in samples] == [fresh[value] for value in samples]
    assert (format_reset(0.25), format_reset(1.0), format_reset(360.0), format_reset(3723.5)) == (
        "250ms",
        "1s",
        "6m0s",
        "1h2m3.5s",
    )
