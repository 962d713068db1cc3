"""Configuration models: the issue's TOML loads; anything outside the grammar is refused with a reason."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hub.governance.config import BudgetConfig, GovernanceConfig, RateLimitConfig
from hub.governance.periods import Period

ISSUE_TOML = """
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
"""


def test_the_issue_example_loads():
    config = GovernanceConfig.model_validate(tomllib.loads(ISSUE_TOML))
    [team] = config.teams
    assert team.budget is not None and team.budget.reset == Period(1, "w") and team.budget.calendar_aligned
    assert team.rate_limit == RateLimitConfig(requests=1000, tokens=200000, period="1m")
    assert config.customers[0].budget == BudgetConfig(max_usd=1000, reset="1M")
    assert config.pricing.tools == {"tickets__*": 0.001}
    dumped = config.model_dump(mode="json")
    assert dumped["teams"][0]["rate_limit"]["period"] == "1m"
    assert GovernanceConfig.model_validate(dumped) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_usd": 1, "reset": "1mo"}, "must be N followed by"),
        ({"max_usd": 1, "reset": "30D"}, "must be N followed by"),
        ({"max_usd": 1, "reset": 30}, "is a string"),
        ({"max_usd": -1, "reset": "1d"}, "greater than or equal"),
        ({"max_usd": float("inf"), "reset": "1d"}, "finite"),
        ({"max_usd": 1, "reset": "1d", "starts_at": "2026-01-01T00:00:00"}, "timezone"),
        ({"max_usd": 1, "reset": "1d", "surprise": True}, "Extra inputs"),
    ],
)
def test_bad_budgets_are_refused(data: dict[str, object], message: str):
    with pytest.raises(ValidationError, match=message):
        BudgetConfig.model_validate(data)


def test_rolling_budgets_anchor_on_starts_at():
    budget = BudgetConfig(max_usd=1, reset="1M", starts_at=datetime(2026, 1, 15, 8, 0, 0, 900_000, tzinfo=UTC))
    assert budget.anchor == int(datetime(2026, 1, 15, 8, tzinfo=UTC).timestamp())
    assert BudgetConfig(max_usd=1, reset="1M").anchor == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"period": "1m"}, "requests, tokens or both"),
        ({"requests": 0, "period": "1m"}, "greater than or equal"),
        ({"requests": 5, "period": "1M"}, "must be N followed by"),
        ({"requests": 5, "period": Period(1, "M")}, "must be N followed by"),
    ],
)
def test_bad_rate_limits_are_refused(data: dict[str, object], message: str):
    with pytest.raises(ValidationError, match=message):
        RateLimitConfig.model_validate(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"customers": [{"name": "a"}, {"name": "a"}]}, "customer 'a' is defined twice"),
        ({"teams": [{"name": "t"}, {"name": "t"}]}, "team 't' is defined twice"),
        ({"teams": [{"name": "t", "customer": "ghost"}]}, "unknown customer 'ghost'"),
        ({"pricing": {"tools": {"x": -1}}}, "greater than or equal"),
    ],
)
def test_inconsistent_hierarchies_are_refused(data: dict[str, object], message: str):
    with pytest.raises(ValidationError, match=message):
        GovernanceConfig.model_validate(data)


def test_periods_are_accepted_as_values_too():
    assert RateLimitConfig(requests=1, period=Period(10, "s")).period == Period(10, "s")
    assert BudgetConfig.model_json_schema()["properties"]["reset"]["pattern"] == "^[1-9][0-9]{0,3}[hdwMY]$"
