"""Working days: the objection deadline of a public notice, counted on the official calendar.

A day is a working day when it is a weekday that is no day off of a public holiday
(放假), or a weekend day the State Council's notice moves work to (调休上班).  The
days off and the moved working days of each year are in `policies/holidays.yaml`,
loaded by `common.holidays.load_work_calendar`; nothing here guesses a holiday.

How a period of N working days is counted (the rule of the Civil Code, art. 201:
the day a period starts from is not counted, counting begins on the next day):

* `add_working_days(start, n, cal)` is the n-th working day after `start`; `start`
  itself is never counted, whether or not it is a working day.  A notice published on
  Friday with 5 working days runs to the next Friday; one published on the Saturday
  before the Spring Festival break (2026-02-14, itself a working day) runs from the
  first working day after the break.
* `working_days_between(start, end, cal)` counts the working days d with
  start < d <= end, so that `working_days_between(s, add_working_days(s, n, cal), cal)`
  is n.

A day in a year the calendar does not list is refused (`OutsideCalendar`, E148),
never guessed as a plain weekday.  A year the file marks `provisional` (its official
notice not yet in the file) is used, and `objection_deadline` says so in a warning.

Standard library only: no Polars, no pydantic (tests/unit/test_layers.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import Code, DisburseError

ONE_DAY = dt.timedelta(days=1)
SATURDAY = 5  # date.weekday(): Monday is 0


@dataclass(frozen=True, slots=True)
class CalendarYear:
    """One year of the calendar: where its days off come from, and whether they are final."""

    year: int
    source: str  # the notice's title and date (or the basis of a provisional year)
    provisional: bool  # True: not the official arrangement yet; deadlines in it are warned of
    note: str  # why it is provisional and what replaces it ("" when it is not)
    line: int  # where the year's entry (or its `provisional:` key) is in the file
    col: int


@dataclass(frozen=True)
class WorkCalendar:
    """The working-day calendar as loaded from a file: the years it lists, their days off
    and their weekend working days.  Build it with `common.holidays.load_work_calendar`."""

    file: str
    years: Mapping[int, CalendarYear]
    days_off: frozenset[dt.date]
    weekend_working_days: frozenset[dt.date]
    line: int = 1  # where `years:` is in the file: a missing year is added there
    col: int = 1
    sha256: str = ""  # of the file's text, for a record of which calendar counted a deadline

    def covers(self, day: dt.date) -> bool:
        """Whether `day` lies in a year the calendar lists."""
        return day.year in self.years

    def require(self, day: dt.date) -> CalendarYear:
        """The year of `day`, or OutsideCalendar (E148) if the calendar does not list it."""
        year = self.years.get(day.year)
        if year is None:
            raise OutsideCalendar(self, day)
        return year


class OutsideCalendar(DisburseError):
    """A day in a year the working-day calendar does not list (E148): whether it is a
    working day is not known, so nothing is counted across it."""

    def __init__(self, cal: WorkCalendar, day: dt.date) -> None:
        self.day = day
        listed = ", ".join(str(y) for y in sorted(cal.years)) or "none"
        super().__init__(
            f"{day.isoformat()} is in {day.year}, a year the working-day calendar does not "
            f"list (it lists {listed}): its holidays and weekend working days are not known",
            fix=(
                f"add {day.year} to {cal.file} from the notice 国务院办公厅关于{day.year}年部分"
                "节假日安排的通知 (its days off and weekend working days); until it is published, "
                "a year with provisional: true and a note"
            ),
            code=Code.CALENDAR_NO_YEAR,
            file=cal.file,
            line=cal.line,
            col=cal.col,
        )


@dataclass(frozen=True, slots=True)
class CalendarWarning:
    """A deadline counted over a provisional year: accepted, but an officer should look.

    Rendered like a problem, `file:line:col: warning: ...` and a `fix:` line."""

    file: str
    line: int
    col: int
    year: int
    message: str
    fix: str

    def render(self) -> str:
        """`file:line:col: warning: message` and an indented fix line."""
        return f"{self.file}:{self.line}:{self.col}: warning: {self.message}\n  fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Deadline:
    """The objection deadline of a notice: the last day an objection is received, and the
    warnings of the years it was counted over (provisional ones)."""

    published_on: dt.date
    working_days: int
    on: dt.date
    warnings: tuple[CalendarWarning, ...] = ()


def is_working_day(day: dt.date, cal: WorkCalendar) -> bool:
    """Whether `day` is a working day: a weekday that is no day off, or a weekend day the
    notice makes a working day.  OutsideCalendar (E148) for a year the calendar lacks."""
    cal.require(day)
    if day in cal.weekend_working_days:
        return True
    if day in cal.days_off:
        return False
    return day.weekday() < SATURDAY


def add_working_days(start: dt.date, n: int, cal: WorkCalendar) -> dt.date:
    """The n-th working day after `start` (n >= 1); `start` itself is not counted.

    Every day after `start` up to the result must lie in a year the calendar lists
    (OutsideCalendar, E148, otherwise); `start` need not.  A provisional year is used
    as the file has it: `objection_deadline` adds the warning."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DisburseError(
            f"a period of {n!r} working days cannot be counted",
            fix="give a whole number of working days, at least 1 (a notice's objection period)",
        )
    day, counted = start, 0
    while counted < n:
        day += ONE_DAY
        if is_working_day(day, cal):
            counted += 1
    return day


def working_days_between(start: dt.date, end: dt.date, cal: WorkCalendar) -> int:
    """How many working days d there are with start < d <= end (0 when end is start).

    The inverse of `add_working_days`.  Every day after `start` up to `end` must lie in a
    year the calendar lists (OutsideCalendar, E148); an `end` before `start` is refused."""
    if end < start:
        raise DisburseError(
            f"working days from {start.isoformat()} to {end.isoformat()}: the end is before "
            "the start",
            fix="give the earlier date first",
        )
    count, day = 0, start
    while day < end:
        day += ONE_DAY
        count += is_working_day(day, cal)
    return count


def objection_deadline(published_on: dt.date, n: int, cal: WorkCalendar) -> Deadline:
    """The last day to object to a notice published on `published_on` with an objection
    period of `n` working days (`add_working_days`), with a warning for each provisional
    year a counted day falls in: its days off and weekend working days may still change,
    and the deadline with them."""
    on = add_working_days(published_on, n, cal)
    warnings = tuple(
        provisional_warning(cal, cal.years[y], on)
        for y in range(published_on.year, on.year + 1)
        if y in cal.years and cal.years[y].provisional and _counts_in(y, published_on, on)
    )
    return Deadline(published_on, n, on, warnings)


def _counts_in(year: int, published_on: dt.date, on: dt.date) -> bool:
    """Whether a day after `published_on` up to `on` lies in `year`."""
    return (published_on + ONE_DAY).year <= year <= on.year


def provisional_warning(
    cal: WorkCalendar, year: CalendarYear, deadline: dt.date
) -> CalendarWarning:
    """The warning for a deadline counted over a provisional year."""
    return CalendarWarning(
        cal.file,
        year.line,
        year.col,
        year.year,
        f"the deadline {deadline.isoformat()} is counted over {year.year}, whose calendar is "
        "provisional: the official days off and weekend working days are not in it yet (its "
        "note says what is missing); the deadline may move when they are",
        f"replace {year.year} in {cal.file} by the notice 国务院办公厅关于{year.year}年部分节假日"
        "安排的通知, set provisional: false, and count the deadline again",
    )
