"""Period grammar and window arithmetic, with hypothesis over the boundaries."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from hub.governance.periods import (
    Period,
    PeriodError,
    WindowSchedule,
    add_months,
    calendar_window,
    parse_budget_period,
    parse_rate_period,
    rolling_window,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
instants = st.floats(min_value=-1e9, max_value=7e9, allow_nan=False).map(lambda x: round(x, 3))
budget_periods = st.builds(Period, st.integers(1, 14), st.sampled_from("hdwMY"))
rate_periods = st.builds(Period, st.integers(1, 90), st.sampled_from("smhd"))


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _dt(ts: float) -> datetime:
    return EPOCH + timedelta(seconds=ts)


@pytest.mark.parametrize(
    ("text", "expected"), [("1h", Period(1, "h")), ("1M", Period(1, "M")), ("12Y", Period(12, "Y"))]
)
def test_budget_periods_parse(text: str, expected: Period):
    assert parse_budget_period(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["1m", "1mo", "30D", "0d", "1.5d", " 1d", "1d ", "d", "", "-1d", "1s", "10000d"])
def test_budget_periods_outside_the_grammar_are_refused(text: str):
    with pytest.raises(PeriodError):
        parse_budget_period(text)


@pytest.mark.parametrize("text", ["1M", "1w", "0s", "1 m", "1min", "5x"])
def test_rate_periods_outside_the_grammar_are_refused(text: str):
    with pytest.raises(PeriodError):
        parse_rate_period(text)


def test_rate_periods_take_any_count():
    assert parse_rate_period("90s").fixed_seconds == 90
    assert parse_rate_period("1d").fixed_seconds == 86400
    assert Period(2, "M").fixed_seconds is None
    assert Period(2, "Y").months == 24


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("1h", _utc(2026, 3, 4, 5, 59, 59), _utc(2026, 3, 4, 5), _utc(2026, 3, 4, 6)),
        ("1d", _utc(2026, 3, 4, 0, 0, 0), _utc(2026, 3, 4), _utc(2026, 3, 5)),
        ("1w", _utc(2026, 3, 4, 12), _utc(2026, 3, 2), _utc(2026, 3, 9)),  # Wed -> Monday
        ("1w", _utc(2026, 3, 8, 23, 59), _utc(2026, 3, 2), _utc(2026, 3, 9)),  # Sunday
        ("1M", _utc(2024, 2, 29, 23), _utc(2024, 2, 1), _utc(2024, 3, 1)),
        ("1M", _utc(2026, 12, 31, 23), _utc(2026, 12, 1), _utc(2027, 1, 1)),
        ("1Y", _utc(2026, 7, 1), _utc(2026, 1, 1), _utc(2027, 1, 1)),
        ("3M", _utc(2026, 5, 15), _utc(2026, 4, 1), _utc(2026, 7, 1)),  # quarters
    ],
)
def test_calendar_windows_snap_to_utc_boundaries(period: str, now: datetime, start: datetime, end: datetime):
    window = calendar_window(parse_budget_period(period), now.timestamp())
    assert (_dt(window.start), _dt(window.end)) == (start, end)


def test_rolling_months_keep_the_anchor_day_clamped():
    anchor = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    window = rolling_window(Period(1, "M"), int(anchor.timestamp()), datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert _dt(window.start) == datetime(2026, 2, 28, 9, 30, tzinfo=UTC)
    assert _dt(window.end) == datetime(2026, 3, 31, 9, 30, tzinfo=UTC)
    before = rolling_window(Period(1, "d"), int(anchor.timestamp()), anchor.timestamp() - 1)
    assert _dt(before.end) == anchor


def test_add_months_clamps_and_crosses_years():
    assert add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 30, tzinfo=UTC), 3) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 3, 15, tzinfo=UTC), -15) == datetime(2024, 12, 15, tzinfo=UTC)


@settings(max_examples=300)
@given(period=budget_periods, now=instants)
def test_calendar_windows_contain_now_tile_time_and_start_on_a_boundary(period: Period, now: float):
    window = calendar_window(period, now)
    assert window.contains(now)
    assert calendar_window(period, window.end).start == window.end  # the next window starts where this ends
    assert calendar_window(period, window.start) == window
    start = _dt(window.start)
    assert (start.minute, start.second, start.microsecond) == (0, 0, 0)
    if period.unit != "h":
        assert start.hour == 0
    if period.unit == "w":
        assert start.weekday() == 0
    if period.unit in "MY":
        assert start.day == 1
    if period.unit == "Y":
        assert start.month == 1


@settings(max_examples=300)
@given(period=budget_periods, anchor=st.integers(-1_000_000_000, 7_000_000_000), now=instants)
def test_rolling_windows_contain_now_and_tile_time_from_the_anchor(period: Period, anchor: int, now: float):
    window = rolling_window(period, anchor, now)
    assert window.contains(now)
    assert rolling_window(period, anchor, window.end).start == window.end
    assert rolling_window(period, anchor, anchor).start == anchor
    if period.fixed_seconds is not None:
        assert window.end - window.start == period.fixed_seconds
    else:
        start, origin = _dt(window.start), _dt(anchor)
        assert start.time() == origin.time()
        assert start.day == min(origin.day, calendar.monthrange(start.year, start.month)[1])


@given(period=rate_periods, now=instants)
def test_rate_windows_are_aligned_to_the_epoch_and_cached(period: Period, now: float):
    schedule = WindowSchedule(period)
    window = schedule.window(now)
    assert window.contains(now)
    length = period.fixed_seconds
    assert length is not None
    assert window.start % length == 0
    assert schedule.window(now) is window
    assert schedule.window(window.end).start == window.end
