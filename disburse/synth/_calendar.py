"""Days, months and the data window, as integers, and their text forms.

Dates are held as days since 1970-01-01 and months as `year * 12 + month - 1`
(an "absolute month"), so that all date arithmetic is integer NumPy arithmetic.
The files carry dates as "YYYY-MM-DD" and months as "YYYY-MM" text (so that
ingest can be fed an unparseable date); the text is made by gathering from a
small table of every day or month in range, which Polars does without touching
a Python object per row (strings of up to 12 bytes are stored inline).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

IntArray = npt.NDArray[np.integer[Any]]
BoolArray = npt.NDArray[np.bool_]

_EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def month_number(year: int, month: int) -> int:
    """The absolute month `year * 12 + month - 1`."""
    return year * 12 + month - 1


def month_text(month: int) -> str:
    """'YYYY-MM' for an absolute month."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def days_from_civil(
    year: npt.ArrayLike, month: npt.ArrayLike, day: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = np.asarray(year, dtype=np.int64) - (np.asarray(month) <= 2)
    m = np.asarray(month, dtype=np.int64)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(day, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: npt.NDArray[np.int64] = era * 146097 + doe - 719468
    return days


def _civil(days: npt.NDArray[np.int64]) -> tuple[IntArray, IntArray, IntArray]:
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def civil_from_days(days: npt.ArrayLike) -> tuple[IntArray, IntArray, IntArray]:
    """(year, month, day) arrays of days since 1970-01-01 (H. Hinnant's algorithm).

    Millions of dates span only some tens of thousands of days, so a large
    array is converted through a table of its range (one gather per part).
    """
    d = np.asarray(days, dtype=np.int64)
    if d.size > 4096:
        lo, hi = int(d.min()), int(d.max())
        if hi - lo < d.size:
            year, month, day = _civil(np.arange(lo, hi + 1, dtype=np.int64))
            index = d - lo
            return year[index], month[index], day[index]
    return _civil(d)


def month_of_days(days: npt.ArrayLike) -> IntArray:
    """The absolute month each day falls in."""
    d = np.asarray(days, dtype=np.int64)
    if d.size > 4096:
        lo, hi = int(d.min()), int(d.max())
        if hi - lo < d.size:
            year, month, _ = _civil(np.arange(lo, hi + 1, dtype=np.int64))
            return (year * 12 + month - 1)[d - lo]
    year, month, _ = _civil(d)
    return year * 12 + month - 1


def age_on(birth_day: npt.ArrayLike, day: int) -> npt.NDArray[np.int16]:
    """Completed years of age on `day` of people born on `birth_day` (through a table)."""
    b = np.asarray(birth_day, dtype=np.int64)
    if b.size == 0:
        return np.empty(0, dtype=np.int16)
    lo, hi = int(b.min()), int(b.max())
    by, bm, bd = _civil(np.arange(lo, hi + 1, dtype=np.int64))
    ty, tm, td = (int(v[0]) for v in _civil(np.array([day], dtype=np.int64)))
    before_birthday = (bm > tm) | ((bm == tm) & (bd > td))
    table = (ty - by - before_birthday).astype(np.int16)
    ages: npt.NDArray[np.int16] = table[b - lo]
    return ages


def first_day_of_month(months: npt.ArrayLike) -> IntArray:
    """Days since 1970-01-01 of the first day of each absolute month."""
    m = np.asarray(months, dtype=np.int64)
    return days_from_civil(m // 12, m % 12 + 1, 1)


def _table_index(
    values: npt.ArrayLike, valid: BoolArray | None
) -> tuple[npt.NDArray[np.uint32], int, int]:
    """Positions of the values in the table of their range (0 where not valid), and the range."""
    v = np.asarray(values)
    use = v if valid is None else v[valid]
    lo = int(use.min()) if use.size else 0
    hi = int(use.max()) if use.size else 0
    index = np.subtract(v, lo, dtype=np.int64 if v.dtype.itemsize > 4 else np.int32)
    if valid is not None:
        index[~valid] = 0
    return index.astype(np.uint32), lo, hi


def _gather_text(
    name: str, table: pl.Series, index: npt.NDArray[np.uint32], valid: BoolArray | None
) -> pl.Series:
    idx = pl.Series(name, index, dtype=pl.UInt32)
    if valid is not None and not bool(valid.all()):
        idx = pl.select(pl.when(pl.Series(valid)).then(idx)).to_series()
    return table.gather(idx).alias(name)


def date_strings(name: str, days: npt.ArrayLike, valid: BoolArray | None = None) -> pl.Series:
    """A String series of 'YYYY-MM-DD' dates (null where `valid` is False)."""
    if np.size(days) == 0:
        return pl.Series(name, [], dtype=pl.String)
    index, lo, hi = _table_index(days, valid)
    table = pl.Series(np.arange(lo, hi + 1, dtype=np.int32)).cast(pl.Date).dt.to_string("%Y-%m-%d")
    return _gather_text(name, table, index, valid)


def month_strings(name: str, months: npt.ArrayLike, valid: BoolArray | None = None) -> pl.Series:
    """A String series of 'YYYY-MM' months (null where `valid` is False)."""
    if np.size(months) == 0:
        return pl.Series(name, [], dtype=pl.String)
    index, lo, hi = _table_index(months, valid)
    table = pl.Series([month_text(k) for k in range(lo, hi + 1)], dtype=pl.String)
    return _gather_text(name, table, index, valid)


# Spring Festival (春节) month by year: the month whose takings and insured
# headcount dip as migrant workers go home.  Outside the table, February.
_SPRING_FESTIVAL_MONTH = {
    2015: 2, 2016: 2, 2017: 1, 2018: 2, 2019: 2, 2020: 1, 2021: 2, 2022: 2,
    2023: 1, 2024: 2, 2025: 1, 2026: 2, 2027: 2, 2028: 1, 2029: 2, 2030: 2,
}  # fmt: skip


def spring_festival_month(year: int) -> int:
    """The calendar month (1 or 2) in which the Spring Festival falls."""
    return _SPRING_FESTIVAL_MONTH.get(year, 2)


@dataclass(frozen=True, slots=True)
class Window:
    """The data window: `months` calendar months ending with the month before `as_of`."""

    as_of: dt.date
    months: int

    @property
    def last_month(self) -> int:
        """The absolute month before `as_of`'s month."""
        return month_number(self.as_of.year, self.as_of.month) - 1

    @property
    def first_month(self) -> int:
        """The first absolute month of the window."""
        return self.last_month - self.months + 1

    @property
    def today(self) -> int:
        """Day number of the last day with data: the day before `as_of`."""
        return day_number(self.as_of) - 1

    @property
    def first_day(self) -> int:
        """Day number of the first day of the window."""
        return int(first_day_of_month(self.first_month))

    def rating_years(self) -> list[int]:
        """Years rated: those in the window that ended before `as_of`.

        A tax credit rating assesses a closed year (it is published the next
        spring), so the year still running on `as_of` has none yet.
        """
        first_year = self.first_month // 12
        return [y for y in range(first_year, self.as_of.year) if y * 12 + 11 >= self.first_month]
