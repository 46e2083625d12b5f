"""The working-day calendar file (policies/holidays.yaml), read and checked.

Finance keeps the file: each year, the days off (放假) and the weekend days moved to
work (调休上班) that the General Office of the State Council announces in its notice
(国务院办公厅关于<year>年部分节假日安排的通知), with that notice's title and date.
A year whose notice is not out yet may be listed `provisional: true` with a `note`:
deadlines counted over it are warned of (`common.workdays.objection_deadline`).

Read through the strict YAML loader (positions, duplicate keys, impossible dates:
E000-E007) and pydantic (unknown key E144, missing key E145, bad value E146); then
every date is checked against its year and against every other date (E146, E147).
All problems of the file are reported together, each at its place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

from common.errors import Code, Problem, ProblemsError, did_you_mean
from common.workdays import SATURDAY, CalendarYear, WorkCalendar
from common.yamlsrc import At, Loc, Located, load_yaml_file, load_yaml_text, schema_problems

HOLIDAYS_FILE = "holidays.yaml"
# The longest break one entry may give.  The longest a notice has given is 9 days (the
# Spring Festival of 2026); a month typed wrong (12 for 02) would otherwise silently take
# hundreds of working days off every deadline.  A longer break is written as two entries.
MAX_BREAK_DAYS = 14
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _calendar_date(value: Any) -> dt.date:
    """A date as YAML reads `2026-01-01` (or the same text quoted); nothing else: not a
    time of day, not a number (pydantic would read 20260101 as seconds since 1970)."""
    fix = "write a real date as YYYY-MM-DD, as the notice gives it"
    if isinstance(value, dt.datetime):
        raise At((), f"{value.isoformat()} has a time of day: a calendar date is meant", fix)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise At((), f"{value!r} is not a calendar date", fix) from None
    raise At((), f"{value!r} is not a date written as YYYY-MM-DD", fix)


def _year(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 2000 <= value <= 2999:
        return value
    raise At((), f"{value!r} is not a year written in full", "write the year as four digits: 2026")


Day = Annotated[dt.date, BeforeValidator(_calendar_date)]
Year = Annotated[int, BeforeValidator(_year)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Source(_Strict):
    """Where a year's days come from: the notice's title and the day it was issued."""

    title: str = Field(min_length=1)
    issued_on: Day | None = None  # required unless the year is provisional
    url: str | None = None  # where the text was read


class Break(_Strict):
    """The days off of one holiday: from one day to another, both included."""

    from_: Day = Field(alias="from")
    until: Day | None = None  # the same day when not given

    @property
    def last(self) -> dt.date:
        return self.until or self.from_


class Holiday(_Strict):
    """One holiday of a notice: its days off and the weekend days worked for it."""

    name: str = Field(min_length=1)
    off: Break
    work: tuple[Day, ...] = ()


class YearSpec(_Strict):
    """One year: its notice and its holidays."""

    source: Source
    provisional: StrictBool = False
    note: str | None = None
    holidays: tuple[Holiday, ...]


class HolidaysFile(_Strict):
    """The whole file."""

    version: Literal[1]
    years: dict[Year, YearSpec]


def load_work_calendar(path: Path) -> WorkCalendar:
    """Read and check a working-day calendar file; ProblemsError with every problem found."""
    return _calendar(load_yaml_file(path))


def load_work_calendar_text(text: str, file: str) -> WorkCalendar:
    """The same from the file's text (`file` names it in messages)."""
    return _calendar(load_yaml_text(text, file))


def _calendar(located: Located) -> WorkCalendar:
    try:
        spec = HolidaysFile.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(_schema_problems(located, exc)) from None
    problems = _Check(located).run(spec)
    if problems:
        raise ProblemsError(problems)
    off = {d for y in spec.years.values() for h in y.holidays for d in _days(h.off)}
    work = {d for y in spec.years.values() for h in y.holidays for d in h.work}
    years = {}
    for year, ys in spec.years.items():
        at = ("years", year, "provisional") if ys.provisional else ("years", year)
        line, col = located.at(at)
        source = ys.source.title + (
            f", {ys.source.issued_on.isoformat()}" if ys.source.issued_on else ""
        )
        years[year] = CalendarYear(year, source, ys.provisional, ys.note or "", line, col)
    line, col = located.at(("years",))
    return WorkCalendar(
        located.file,
        dict(sorted(years.items())),
        frozenset(off),
        frozenset(work),
        line,
        col,
        hashlib.sha256(located.text.encode("utf-8")).hexdigest(),
    )


def _days(b: Break) -> list[dt.date]:
    n = (b.last - b.from_).days + 1
    return [b.from_ + dt.timedelta(days=i) for i in range(max(n, 0))]


class _Check:
    """What pydantic cannot see: each date against its year and against every other."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.problems: list[Problem] = []
        self.seen: dict[dt.date, tuple[str, Loc]] = {}  # date -> (day off | working day, where)

    def problem(self, loc: Loc, code: Code, message: str, fix: str) -> None:
        self.problems.append(self.located.problem(loc, code, message, fix))

    def run(self, spec: HolidaysFile) -> list[Problem]:
        for year, ys in spec.years.items():
            at: Loc = ("years", year)
            if ys.provisional and not (ys.note or "").strip():
                self.problem(
                    at,
                    Code.CALENDAR_MISSING_KEY,
                    f"{year} is provisional but says not why: missing key 'note'",
                    "add note: what the year lacks and that the official notice replaces it",
                )
            if not ys.provisional and ys.source.issued_on is None:
                self.problem(
                    (*at, "source"),
                    Code.CALENDAR_MISSING_KEY,
                    f"{year}: missing key 'issued_on', the date of the notice",
                    "add issued_on: the date the notice is signed (its last line), as YYYY-MM-DD",
                )
            if not ys.holidays:
                self.problem(
                    (*at, "holidays"),
                    Code.CALENDAR_BAD_VALUE,
                    f"{year} lists no holidays",
                    "list the holidays of the year's notice, or remove the year",
                )
            for i, h in enumerate(ys.holidays):
                self.holiday(year, (*at, "holidays", i), h)
        if not spec.years:
            self.problem(
                ("years",),
                Code.CALENDAR_BAD_VALUE,
                "the calendar lists no year",
                "add the years deadlines are counted in, each from its notice",
            )
        return self.problems

    def holiday(self, year: int, at: Loc, h: Holiday) -> None:
        self.days_off(year, at, h)
        for j, d in enumerate(h.work):
            loc = (*at, "work", j)
            if not self.in_year(year, d, loc, h.name):
                continue
            if d.weekday() < SATURDAY:
                self.problem(
                    loc,
                    Code.CALENDAR_BAD_VALUE,
                    f"{h.name}: {d.isoformat()} is a {_WEEKDAYS[d.weekday()]}, a working day "
                    "anyway: work: lists the weekend days a notice moves work to (调休上班)",
                    "give the Saturday or Sunday the notice names, or remove it",
                )
                continue
            self.take([d], "working day", loc, h.name)

    def days_off(self, year: int, at: Loc, h: Holiday) -> None:
        b = h.off
        if b.last < b.from_:
            self.problem(
                (*at, "off", "until"),
                Code.CALENDAR_BAD_VALUE,
                f"{h.name}: the break ends on {b.last.isoformat()}, before it starts on "
                f"{b.from_.isoformat()}",
                "give from: the first day off and until: the last",
            )
            return
        if not all(
            self.in_year(year, d, loc, h.name)
            for d, loc in ((b.from_, (*at, "off", "from")), (b.last, (*at, "off", "until")))
        ):
            return
        days = (b.last - b.from_).days + 1
        if days > MAX_BREAK_DAYS:
            self.problem(
                (*at, "off", "until"),
                Code.CALENDAR_BAD_VALUE,
                f"{h.name}: a break of {days} days ({b.from_.isoformat()} to "
                f"{b.last.isoformat()}); a notice gives at most {MAX_BREAK_DAYS}",
                "check the month of both dates; a longer break is written as two entries",
            )
            return
        self.take(_days(b), "day off", (*at, "off"), h.name)

    def in_year(self, year: int, d: dt.date, loc: Loc, name: str) -> bool:
        """A notice of `year` gives days of that year, or of the December before it (the
        notice for 2019 moved 2018-12-29 to work for the New Year)."""
        if d.year == year or (d.year == year - 1 and d.month == 12):
            return True
        self.problem(
            loc,
            Code.CALENDAR_BAD_VALUE,
            f"{name}: {d.isoformat()} is not in {year} (nor in the December before it)",
            f"check the year of the date, or list it under {d.year}",
        )
        return False

    def take(self, days: list[dt.date], kind: str, loc: Loc, name: str) -> None:
        """Record `days` as `kind`; a day recorded before is reported once per entry."""
        twice = [d for d in days if d in self.seen]
        if twice:
            d = twice[0]
            first_kind, first_loc = self.seen[d]
            line = self.located.at(first_loc)[0]
            more = f" (and {len(twice) - 1} more day(s))" if len(twice) > 1 else ""
            self.problem(
                loc,
                Code.CALENDAR_DATE_TWICE,
                f"{name}: {d.isoformat()} is listed as a {kind} here and as a {first_kind} "
                f"on line {line}{more}",
                "keep the date once, as the notice gives it: a day off (放假) or a weekend "
                "working day (上班), not both",
            )
        for d in days:
            self.seen.setdefault(d, (kind, loc))


def _schema_problems(located: Located, exc: ValidationError) -> list[Problem]:
    def fix(loc: Loc) -> str:
        allowed = _allowed_keys(loc)
        return did_you_mean(str(loc[-1]), allowed, "allowed keys") if allowed else "remove it"

    return schema_problems(
        located,
        exc,
        codes=(Code.CALENDAR_UNKNOWN_KEY, Code.CALENDAR_MISSING_KEY, Code.CALENDAR_BAD_VALUE),
        unknown_key_fix=fix,
        format_hint="see the comment at the top of the file",
    )


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys allowed where the unknown key `loc` is."""
    depth = len(loc)
    if depth == 1:
        return list(HolidaysFile.model_fields)
    if loc[0] != "years":
        return []
    if depth == 3:
        return list(YearSpec.model_fields)
    if depth == 4 and loc[2] == "source":
        return list(Source.model_fields)
    if depth == 5 and loc[2] == "holidays":
        return list(Holiday.model_fields)
    if depth == 6 and loc[4] == "off":
        return [f.alias or n for n, f in Break.model_fields.items()]
    return []
