"""Periods and windows: the arithmetic behind budget resets and rate-limit windows.

Two grammars, both strict (anything else is refused, never guessed):

- budget resets: `<N><unit>` with unit `h` (hour), `d` (day), `w` (week), `M` (month), `Y` (year);
- rate-limit periods: `<N><unit>` with unit `s`, `m` (minute), `h`, `d`.

A window is a half-open interval `[start, end)` of Unix seconds (UTC). Windows come in two kinds:

- **calendar-aligned**: boundaries fall on UTC hours, days, ISO weeks (Monday 00:00), months or years. With
  `N > 1` the windows are blocks of N units counted from 1970 (weeks from Monday 1970-01-05), so `2w` windows
  never overlap and always start on a Monday.
- **rolling**: windows of one period each, counted from an anchor instant (`anchor + k * period`; months and
  years keep the anchor's day and time of day, clamped to the month's last day).

Rate-limit windows are fixed windows aligned to the Unix epoch, so every replica computes the same window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "Period",
    "PeriodError",
    "Window",
    "WindowSchedule",
    "add_months",
    "parse_budget_period",
    "parse_rate_period",
    "parse_retention",
]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BUDGET_RE = re.compile(r"([1-9][0-9]{0,3})([hdwMY])")
_RATE_RE = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_MONDAY = 4 * 86400  # 1970-01-05 00:00 UTC, the first Monday after the epoch


class PeriodError(ValueError):
    """A period string outside the grammar."""


@dataclass(frozen=True, slots=True)
class Period:
    """A count of calendar units, such as `1M` or `30s`."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def fixed_seconds(self) -> int | None:
        """The length in seconds, or None for months and years (their length varies)."""
        per_unit = _UNIT_SECONDS.get(self.unit)
        return None if per_unit is None else per_unit * self.count

    @property
    def months(self) -> int:
        """The length in months (only for `M` and `Y`)."""
        return self.count * (12 if self.unit == "Y" else 1)


def parse_budget_period(text: str) -> Period:
    """Parse a budget reset period: `1h`, `1d`, `1w`, `1M`, `1Y` (any N from 1 to 9999).

    Raises:
        PeriodError: `text` is not in the grammar (`1mo`, `30D`, `0d`, ...).
    """
    match = _BUDGET_RE.fullmatch(text)
    if match is None:
        raise PeriodError(f"budget reset {text!r} must be N followed by one of h, d, w, M, Y (e.g. '1M')")
    return Period(int(match[1]), match[2])


def parse_rate_period(text: str) -> Period:
    """Parse a rate-limit period: `1s`, `1m`, `1h`, `1d` (any N from 1).

    Raises:
        PeriodError: `text` is not in the grammar.
    """
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise PeriodError(f"rate-limit period {text!r} must be N followed by one of s, m, h, d (e.g. '1m')")
    return Period(int(match[1]), match[2])


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval `[start, end)` in Unix seconds."""

    start: float
    end: float

    def contains(self, instant: float) -> bool:
        """Whether `instant` falls in this window."""
        return self.start <= instant < self.end

    @property
    def id(self) -> int:
        """A stable integer naming the window (its start in milliseconds)."""
        return round(self.start * 1000)


def add_months(instant: datetime, months: int) -> datetime:
    """`instant` moved by a number of months, the day clamped to the target month's length."""
    index = instant.year * 12 + instant.month - 1 + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    next_first = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=instant.tzinfo)
    last_day = (next_first - timedelta(days=1)).day
    return instant.replace(year=year, month=month, day=min(instant.day, last_day))


def _from_ts(instant: float) -> datetime:
    return _EPOCH + timedelta(seconds=instant)


def _month_index(moment: datetime) -> int:
    return (moment.year - 1970) * 12 + moment.month - 1


def _month_start(index: int) -> float:
    year, month0 = divmod(index, 12)
    return datetime(1970 + year, month0 + 1, 1, tzinfo=UTC).timestamp()


def _fixed(now: float, origin: float, length: int) -> Window:
    start = origin + math.floor((now - origin) / length) * length
    return Window(start, start + length)


def calendar_window(period: Period, now: float) -> Window:
    """The calendar-aligned window (UTC) of `period` that contains `now`."""
    length = period.fixed_seconds
    if length is not None:
        return _fixed(now, _FIRST_MONDAY if period.unit == "w" else 0, length)
    step = period.months
    index = _month_index(_from_ts(now))
    first = index - index % step
    return Window(_month_start(first), _month_start(first + step))


def rolling_window(period: Period, anchor: int, now: float) -> Window:
    """The window of `period` counted from `anchor` (whole Unix seconds) that contains `now` (which may precede
    `anchor`)."""
    length = period.fixed_seconds
    if length is not None:
        return _fixed(now, anchor, length)
    step = period.months
    origin = _from_ts(anchor)
    moment = _from_ts(now)
    k = (_month_index(moment) - _month_index(origin)) // step
    start = add_months(origin, k * step).timestamp()
    while start > now:
        k -= 1
        start = add_months(origin, k * step).timestamp()
    end = add_months(origin, (k + 1) * step).timestamp()
    while end <= now:
        k += 1
        start, end = end, add_months(origin, (k + 1) * step).timestamp()
    return Window(start, end)


class WindowSchedule:
    """The windows of one period; remembers the current window so the hot path rarely recomputes it."""

    __slots__ = ("_current", "anchor", "calendar_aligned", "period")

    def __init__(self, period: Period, *, calendar_aligned: bool = True, anchor: int = 0) -> None:
        self.period = period
        self.calendar_aligned = calendar_aligned
        self.anchor = anchor
        """Start of the rolling windows, in whole Unix seconds (whole seconds keep boundaries exact)."""
        self._current = Window(0.0, 0.0)

    def window(self, now: float) -> Window:
        """The window that contains `now`."""
        current = self._current
        if current.start <= now < current.end:
            return current
        if self.calendar_aligned:
            current = calendar_window(self.period, now)
        else:
            current = rolling_window(self.period, self.anchor, now)
        self._current = current
        return current


def parse_retention(text: str) -> timedelta | None:
    """How long something is kept (request-log rows): `<N><unit>` with unit `s`, `m` (minutes), `h` or `d`
    (`30d`, `12h`); `0` or an empty string means forever (None).

    Raises:
        ValueError: `text` is none of these.
    """
    text = text.strip()
    if text in ("", "0"):
        return None
    try:
        period = parse_rate_period(text)
    except PeriodError:
        raise ValueError(
            f"retention {text!r} must be N followed by one of s, m, h, d (e.g. '30d'), or 0 for forever"
        ) from None
    seconds = period.fixed_seconds
    assert seconds is not None  # every unit of this grammar has a fixed length
    return timedelta(seconds=seconds)
