"""Working days on the official calendar (policies/holidays.yaml): the objection deadline
of a notice, the calendar file's own checks, and refusing years it does not list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from common.errors import Code, DisburseError, ProblemsError
from common.holidays import load_work_calendar, load_work_calendar_text
from common.workdays import (
    OutsideCalendar,
    WorkCalendar,
    add_working_days,
    is_working_day,
    objection_deadline,
    working_days_between,
)
from eligibility.policyset import policy_files

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "holidays.yaml"
CAL = load_work_calendar(SHIPPED)
D = dt.date.fromisoformat


# --- the shipped calendar is the notice ---------------------------------------------------

# 国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04), holiday by holiday: first and
# last day off, the days it says (共N天), and the weekend days it says are worked (上班).
NOTICE_2026 = [
    ("元旦", "2026-01-01", "2026-01-03", 3, ["2026-01-04"]),
    ("春节", "2026-02-15", "2026-02-23", 9, ["2026-02-14", "2026-02-28"]),
    ("清明节", "2026-04-04", "2026-04-06", 3, []),
    ("劳动节", "2026-05-01", "2026-05-05", 5, ["2026-05-09"]),
    ("端午节", "2026-06-19", "2026-06-21", 3, []),
    ("中秋节", "2026-09-25", "2026-09-27", 3, []),
    ("国庆节", "2026-10-01", "2026-10-07", 7, ["2026-09-20", "2026-10-10"]),
]


@pytest.mark.parametrize(
    ("name", "first", "last", "days", "work"), NOTICE_2026, ids=[n[0] for n in NOTICE_2026]
)
def test_2026_is_the_state_councils_notice(
    name: str, first: str, last: str, days: int, work: list[str]
) -> None:
    off = [D(first) + dt.timedelta(days=i) for i in range(days)]
    assert off[-1] == D(last)
    assert all(d in CAL.days_off for d in off)
    assert D(first) - dt.timedelta(days=1) not in CAL.days_off  # the break is no longer
    assert D(last) + dt.timedelta(days=1) not in CAL.days_off
    assert all(is_working_day(D(w), CAL) and D(w).weekday() >= 5 for w in work)


def test_2026_lists_nothing_else() -> None:
    in_2026 = {d for d in CAL.days_off if d.year == 2026}
    assert len(in_2026) == sum(n[3] for n in NOTICE_2026) == 33
    assert sorted(d.isoformat() for d in CAL.weekend_working_days if d.year == 2026) == sorted(
        w for n in NOTICE_2026 for w in n[4]
    )
    year = CAL.years[2026]
    assert not year.provisional
    assert year.source == "国务院办公厅关于2026年部分节假日安排的通知, 2025-11-04"


def test_2027_is_provisional_with_the_fixed_dates_only() -> None:
    year = CAL.years[2027]
    assert year.provisional
    assert "replace" in year.note.lower()
    assert sorted(d.isoformat() for d in CAL.days_off if d.year == 2027) == [
        "2027-01-01",
        "2027-05-01",
        "2027-05-02",
        "2027-10-01",
        "2027-10-02",
        "2027-10-03",
    ]
    assert not any(d.year == 2027 for d in CAL.weekend_working_days)


def test_the_calendar_is_not_read_as_a_policy() -> None:
    assert SHIPPED not in policy_files([ROOT / "policies"])
    assert policy_files([ROOT / "policies"])  # the policies still are


# --- counting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("published", "n", "deadline"),
    [
        # The day before the Spring Festival break (15-23 Feb) is Saturday 14 Feb, itself a
        # working day (调休上班): not counted; the count starts after the break, and the
        # 5th working day is Saturday 28 Feb, worked for the break.
        ("2026-02-14", 1, "2026-02-24"),
        ("2026-02-14", 5, "2026-02-28"),
        ("2026-02-14", 6, "2026-03-02"),
        # The Friday before it: the next working day is that Saturday.
        ("2026-02-13", 1, "2026-02-14"),
        ("2026-02-13", 5, "2026-02-27"),
        # An ordinary Friday: the weekend is skipped, five working days end a week later.
        ("2026-03-06", 1, "2026-03-09"),
        ("2026-03-06", 5, "2026-03-13"),
        # A Friday before a worked Sunday (20 Sep, for National Day).
        ("2026-09-18", 1, "2026-09-20"),
        # A Friday before Qingming (4-6 April).
        ("2026-04-03", 1, "2026-04-07"),
        # A working Monday is not counted either.
        ("2026-03-09", 1, "2026-03-10"),
        # Published on a day off (National Day), and on a worked Sunday.
        ("2026-10-03", 1, "2026-10-08"),
        ("2026-01-04", 1, "2026-01-05"),
        # Published in a year the calendar does not list: only the days after count.
        ("2025-12-31", 1, "2026-01-04"),
    ],
    ids=lambda v: str(v),
)
def test_add_working_days(published: str, n: int, deadline: str) -> None:
    assert add_working_days(D(published), n, CAL) == D(deadline)
    assert working_days_between(D(published), D(deadline), CAL) == n


def test_counting_back_gives_n_every_day_of_2026() -> None:
    day = D("2026-01-01")
    while day.year == 2026 and day < D("2026-12-15"):
        for n in (1, 5, 10):
            end = add_working_days(day, n, CAL)
            assert is_working_day(end, CAL)
            assert working_days_between(day, end, CAL) == n
            assert working_days_between(day, end - dt.timedelta(days=1), CAL) == n - 1
        day += dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2026-01-04", True),  # Sunday, worked for New Year
        ("2026-02-16", False),  # Monday, Spring Festival
        ("2026-03-07", False),  # an ordinary Saturday
        ("2026-03-11", True),  # an ordinary Wednesday
        ("2026-10-10", True),  # Saturday, worked for National Day
        ("2027-05-03", True),  # provisional 2027: a Monday the notice may yet give off
    ],
)
def test_is_working_day(day: str, working: bool) -> None:
    assert is_working_day(D(day), CAL) is working


def test_between_the_same_day_is_zero_and_backwards_is_refused() -> None:
    assert working_days_between(D("2026-03-09"), D("2026-03-09"), CAL) == 0
    with pytest.raises(DisburseError, match="the end is before the start"):
        working_days_between(D("2026-03-10"), D("2026-03-09"), CAL)


@pytest.mark.parametrize("n", [0, -1, True])
def test_a_period_of_no_working_days_is_refused(n: int) -> None:
    with pytest.raises(DisburseError, match="cannot be counted") as err:
        add_working_days(D("2026-03-09"), n, CAL)
    assert "fix: " in err.value.render()


# --- years the calendar does not list -------------------------------------------------------


def test_a_day_in_a_year_not_listed_is_refused_where_the_year_would_go() -> None:
    with pytest.raises(OutsideCalendar) as err:
        is_working_day(D("2025-12-31"), CAL)
    text = err.value.render()
    line = SHIPPED.read_text().splitlines().index("years:") + 1
    assert text.startswith(f"{SHIPPED}:{line}:1: E148 2025-12-31 is in 2025, a year")
    assert "it lists 2026, 2027" in text
    assert "\n  fix: add 2025 to " in text
    assert err.value.code == Code.CALENDAR_NO_YEAR


def test_a_deadline_counted_past_the_last_year_is_refused_not_guessed() -> None:
    with pytest.raises(OutsideCalendar, match="2028-01-01 is in 2028"):
        add_working_days(D("2027-12-28"), 5, CAL)
    with pytest.raises(OutsideCalendar):
        working_days_between(D("2027-12-28"), D("2028-01-03"), CAL)


# --- the deadline, and the warning of a provisional year ------------------------------------


def test_a_deadline_in_a_final_year_has_no_warning() -> None:
    deadline = objection_deadline(D("2026-12-24"), 4, CAL)
    assert deadline.on == D("2026-12-30")
    assert deadline.warnings == ()


def test_a_deadline_counted_into_a_provisional_year_is_warned_not_refused() -> None:
    deadline = objection_deadline(D("2026-12-28"), 5, CAL)
    assert deadline.on == D("2027-01-05")  # 29, 30, 31 Dec; 1 Jan off; 4, 5 Jan
    (warning,) = deadline.warnings
    lines = SHIPPED.read_text().splitlines()
    assert lines[warning.line - 1].strip() == "provisional: true"
    text = warning.render()
    assert text.startswith(f"{SHIPPED}:{warning.line}:{warning.col}: warning: the deadline ")
    assert "2027, whose calendar is provisional" in text
    assert "\n  fix: replace 2027 in " in text


def test_a_deadline_wholly_in_a_provisional_year_is_warned() -> None:
    deadline = objection_deadline(D("2027-04-30"), 1, CAL)
    assert deadline.on == D("2027-05-03")
    assert [w.year for w in deadline.warnings] == [2027]


# --- the file's own checks ------------------------------------------------------------------

GOOD = """\
version: 1
years:
  2026:
    source: {title: 国务院办公厅关于2026年部分节假日安排的通知, issued_on: 2025-11-04}
    holidays:
      - name: 元旦
        off: {from: 2026-01-01, until: 2026-01-03}
        work: [2026-01-04]
"""


def _load(text: str) -> WorkCalendar:
    return load_work_calendar_text(text, "holidays.yaml")


def test_a_small_calendar_loads() -> None:
    cal = _load(GOOD)
    assert sorted(cal.days_off) == [D("2026-01-01"), D("2026-01-02"), D("2026-01-03")]
    assert cal.weekend_working_days == {D("2026-01-04")}
    assert len(cal.sha256) == 64


@pytest.mark.parametrize(
    ("old", "new", "code", "line", "col", "says"),
    [
        (
            "until: 2026-01-03",
            "until: 2026-02-30",
            Code.YAML_VALUE,
            7,
            40,
            "'2026-02-30' is not a calendar date",
        ),
        (
            "until: 2026-01-03",
            'until: "2026-02-30"',
            Code.CALENDAR_BAD_VALUE,
            7,
            33,
            "'2026-02-30' is not a calendar date",
        ),
        (
            "work: [2026-01-04]",
            "work: [2026-01-03]",
            Code.CALENDAR_DATE_TWICE,
            8,
            16,
            "2026-01-03 is listed as a working day here and as a day off on line 7",
        ),
        (
            "work: [2026-01-04]",
            "work: [2026-01-05]",
            Code.CALENDAR_BAD_VALUE,
            8,
            16,
            "2026-01-05 is a Monday, a working day anyway",
        ),
        (
            "until: 2026-01-03",
            "until: 2026-12-03",
            Code.CALENDAR_BAD_VALUE,
            7,
            33,
            "a break of 337 days",
        ),
        (
            "{from: 2026-01-01, until: 2026-01-03}",
            "{from: 2026-01-03, until: 2026-01-01}",
            Code.CALENDAR_BAD_VALUE,
            7,
            33,
            "ends on 2026-01-01, before it starts on 2026-01-03",
        ),
        (
            "{from: 2026-01-01, until: 2026-01-03}",
            "{from: 2025-11-29, until: 2025-11-30}",
            Code.CALENDAR_BAD_VALUE,
            7,
            15,
            "2025-11-29 is not in 2026 (nor in the December before it)",
        ),
        ("until:", "untill:", Code.CALENDAR_UNKNOWN_KEY, 7, 33, "unknown key 'untill'"),
        ("    holidays:", "    holiday:", Code.CALENDAR_UNKNOWN_KEY, 5, 5, "unknown key 'holiday'"),
        (
            "source: {title: 国务院办公厅关于2026年部分节假日安排的通知, issued_on: 2025-11-04}",
            "source: {title: 国务院办公厅关于2026年部分节假日安排的通知}",
            Code.CALENDAR_MISSING_KEY,
            4,
            5,
            "missing key 'issued_on'",
        ),
        (
            "    source:",
            "    provisional: true\n    source:",
            Code.CALENDAR_MISSING_KEY,
            3,
            3,
            "2026 is provisional but says not why: missing key 'note'",
        ),
        (
            "    source:",
            "    provisional: yes\n    source:",
            Code.AMBIGUOUS_BOOL,
            4,
            18,
            "'yes' is ambiguous",
        ),
        ("version: 1", "version: 2", Code.CALENDAR_BAD_VALUE, 1, 1, "2 is not allowed here"),
        ("  2026:", "  26:", Code.CALENDAR_BAD_VALUE, 3, 3, "26 is not a year written in full"),
    ],
    ids=[
        "impossible-date",
        "impossible-date-quoted",
        "holiday-and-working-day",
        "working-weekday",
        "month-typed-wrong",
        "break-reversed",
        "outside-its-year",
        "unknown-key",
        "unknown-key-of-a-year",
        "notice-without-date",
        "provisional-without-note",
        "yes-for-true",
        "version",
        "two-digit-year",
    ],
)
def test_a_broken_calendar_is_refused_at_its_place(
    old: str, new: str, code: Code, line: int, col: int, says: str
) -> None:
    assert old in GOOD
    with pytest.raises(ProblemsError) as err:
        _load(GOOD.replace(old, new, 1))
    # One problem of the code expected (a key misspelt is also a key missing).
    (problem,) = [p for p in err.value.problems if p.code == code]
    assert len(err.value.problems) == 1 or "unknown key" in problem.message
    assert (problem.code, problem.line, problem.col) == (code, line, col), problem.render()
    assert says in problem.message
    assert problem.fix
    assert "Traceback" not in err.value.render()


def test_the_unknown_key_fix_names_the_key_meant() -> None:
    with pytest.raises(ProblemsError) as err:
        _load(GOOD.replace("until:", "untill:", 1))
    assert err.value.problems[0].fix == "did you mean 'until'?"


def test_every_problem_of_the_file_is_reported_together() -> None:
    text = GOOD.replace("work: [2026-01-04]", "work: [2026-01-05]").replace(
        "until: 2026-01-03", "until: 2025-01-03"
    )
    with pytest.raises(ProblemsError) as err:
        _load(text)
    assert [p.code for p in err.value.problems] == [
        Code.CALENDAR_BAD_VALUE,
        Code.CALENDAR_BAD_VALUE,
    ]


def test_a_day_given_twice_as_a_day_off_is_refused() -> None:
    text = GOOD + "      - {name: 又一个元旦, off: {from: 2026-01-03}}\n"
    with pytest.raises(ProblemsError) as err:
        _load(text)
    (problem,) = err.value.problems
    assert (problem.code, problem.line) == (Code.CALENDAR_DATE_TWICE, 9)
    assert problem.message == (
        "又一个元旦: 2026-01-03 is listed as a day off here and as a day off on line 7"
    )


def test_a_new_years_break_may_begin_in_the_december_before() -> None:
    """As the notice for 2019 gave 30 and 31 December 2018 off and 29 December worked."""
    text = GOOD.replace(
        "{from: 2026-01-01, until: 2026-01-03}", "{from: 2025-12-30, until: 2026-01-01}"
    )
    text = text.replace("work: [2026-01-04]", "work: [2025-12-27]")
    cal = _load(text)
    assert D("2025-12-31") in cal.days_off
    # December 2025 is still outside a calendar that lists only 2026.
    with pytest.raises(OutsideCalendar):
        is_working_day(D("2025-12-27"), cal)


def test_a_missing_file_is_a_positioned_error(tmp_path: Path) -> None:
    with pytest.raises(ProblemsError) as err:
        load_work_calendar(tmp_path / "holidays.yaml")
    assert err.value.problems[0].code == Code.FILE_UNREADABLE
