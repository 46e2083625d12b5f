"""Dates of a run: the benefit period an as-of date falls in, and the assessed window.

A benefit period has a ledger key (`2026`, `2026-H1`, `2026-Q2`, `2026-03`, `once`):
`benefit_period` makes it, `period_of_key` reads it back, `PERIOD_KEY` is its
pattern; nothing else builds or parses one.  Pure date arithmetic (standard library
only), shared by every backend, the allocation, the ledger and the explanation, so
that "previous_year" means the same months everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

FOREVER = (dt.date(1, 1, 1), dt.date(9999, 12, 31))
# The dates a file people write may give: past them lies no entity and no policy, and
# date arithmetic on them (a window a year before, a period's end) stays in range.
EARLIEST, LATEST = dt.date(1850, 1, 1), dt.date(2999, 12, 31)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The ledger key of a benefit period, as a regular expression (for validating frames).
PERIOD_KEY = r"once|[0-9]{4}(-H[12]|-Q[1-4]|-(0[1-9]|1[0-2]))?"


def month_start(d: dt.date) -> dt.date:
    """The first day of d's month."""
    return d.replace(day=1)


def add_months(d: dt.date, n: int) -> dt.date:
    """d moved by n calendar months, clamped to the month's last day (Jan 31 + 1 = Feb 28)."""
    total = d.year * 12 + d.month - 1 + n
    year, month = divmod(total, 12)
    month += 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(d.day, last))


@dataclass(frozen=True)
class Window:
    """An inclusive range of whole months [first, last], as their first days."""

    first: dt.date
    last: dt.date

    @property
    def label(self) -> str:
        return f"{self.first:%Y-%m}..{self.last:%Y-%m}"

    @property
    def months(self) -> int:
        return (self.last.year - self.first.year) * 12 + self.last.month - self.first.month + 1


@dataclass(frozen=True)
class Period:
    """A benefit period: its ledger key and its first and last days."""

    key: str
    start: dt.date
    end: dt.date

    @property
    def months(self) -> int:
        return (self.end.year - self.start.year) * 12 + self.end.month - self.start.month + 1


def benefit_period(
    kind: str, as_of: dt.date, valid_from: dt.date, valid_until: dt.date | None
) -> Period:
    """The benefit period that `as_of` falls in: once, year, quarter or month."""
    if kind == "year":
        return Period(f"{as_of.year}", dt.date(as_of.year, 1, 1), dt.date(as_of.year, 12, 31))
    if kind == "quarter":
        q = (as_of.month - 1) // 3
        start = dt.date(as_of.year, 3 * q + 1, 1)
        return Period(f"{as_of.year}-Q{q + 1}", start, add_months(start, 3) - dt.timedelta(days=1))
    if kind == "month":
        start = month_start(as_of)
        return Period(f"{as_of:%Y-%m}", start, add_months(start, 1) - dt.timedelta(days=1))
    return Period("once", valid_from, valid_until or FOREVER[1])


def claim_closes(period_end: dt.date, until: str) -> dt.date:
    """The last day a past period may still be paid: the first `until` (MM-DD) after its end."""
    month, day = int(until[:2]), int(until[3:])
    close = dt.date(period_end.year, month, day)
    return close if close > period_end else dt.date(period_end.year + 1, month, day)


def past_periods(
    kind: str,
    as_of: dt.date,
    valid_from: dt.date,
    valid_until: dt.date | None,
    periods: int,
    until: str | None = None,
) -> list[Period]:
    """The benefit periods before the one `as_of` falls in that may still be paid on `as_of`
    (back-pay), oldest first: at most `periods` of them, each overlapping the validity and,
    with `until` (MM-DD), not past its claim's close.  None for `once`."""
    if kind == "once":
        return []
    out: list[Period] = []
    day = benefit_period(kind, as_of, valid_from, valid_until).start
    for _ in range(periods):
        day -= dt.timedelta(days=1)
        p = benefit_period(kind, day, valid_from, valid_until)
        if p.end < valid_from:
            break
        if valid_until is not None and p.start > valid_until:
            day = p.start
            continue
        if until is None or as_of <= claim_closes(p.end, until):
            out.append(p)
        day = p.start
    return out[::-1]


def assessed_window(kind: str, as_of: dt.date, period: Period) -> Window:
    """The months a policy's features read.

    previous_year    the calendar year before the as-of date's
    last_12_months   the 12 complete months before the as-of month
    year_to_date     January of the as-of year to the month before the as-of month
    benefit_period   the benefit period's months up to the month before the as-of month
    as_of            the last complete month before the as-of date
    (A month's data is complete only after it ends, hence "before the as-of month".)
    """
    last_complete = add_months(month_start(as_of), -1)
    if kind == "previous_year":
        return Window(dt.date(as_of.year - 1, 1, 1), dt.date(as_of.year - 1, 12, 1))
    if kind == "last_12_months":
        return Window(add_months(last_complete, -11), last_complete)
    if kind == "year_to_date":
        first = dt.date(as_of.year, 1, 1)
        return Window(min(first, last_complete), last_complete)
    if kind == "benefit_period":
        first = month_start(period.start)
        return Window(first, max(first, last_complete))
    return Window(last_complete, last_complete)


def months_of(first: dt.date, last: dt.date) -> list[dt.date]:
    """The first days of the months from `first`'s to `last`'s, both included."""
    out, month = [], month_start(first)
    while month <= last:
        out.append(month)
        month = add_months(month, 1)
    return out


def look_back(window: Window, years_before: int = 0, months: int | None = None) -> Window:
    """`window` shifted back by whole years, then (with `months`) the last `months` months
    of it: a feature that reads ten years before the assessed window's end."""
    last = add_months(window.last, -12 * years_before)
    first = add_months(window.first, -12 * years_before)
    if months is not None:
        first = add_months(last, -(months - 1))
    return Window(first, last)


def period_of_key(key: str, once: tuple[dt.date, dt.date] = FOREVER) -> Period:
    """The benefit period a ledger key names: 2026, 2026-H1, 2026-Q2, 2026-03, or `once`
    (whose bounds are the policy's validity, given as `once`)."""
    if key == "once":
        return Period(key, *once)
    year = int(key[:4])
    if len(key) == 4:
        return Period(key, dt.date(year, 1, 1), dt.date(year, 12, 31))
    part = key[5:]
    if part.startswith("H"):
        first_month, months = 6 * (int(part[1]) - 1) + 1, 6
    elif part.startswith("Q"):
        first_month, months = 3 * (int(part[1]) - 1) + 1, 3
    else:
        first_month, months = int(part), 1
    start = dt.date(year, first_month, 1)
    return Period(key, start, add_months(start, months) - dt.timedelta(days=1))


def written_date(value: Any) -> dt.date:
    """A date a person wrote (a YAML date or YYYY-MM-DD text) within EARLIEST..LATEST;
    ValueError in the reader's words otherwise (a number is not read as a date)."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"{value} has a time of day: give the date alone, YYYY-MM-DD")
    if isinstance(value, dt.date):
        day = value
    elif isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a calendar date") from None
    else:
        raise ValueError(f"{value!r} is not a date: write YYYY-MM-DD")
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{day} is outside the years {EARLIEST.year}-{LATEST.year}")
    return day
