"""Degrees, employment spells and personal bank accounts.

Employment links the population to the enterprises: a current spell for most
people of working age (employers drawn in proportion to their insured
headcount), an earlier spell for some, spells that ended in the window at
firms that shed staff, and a first job for most of the window's new graduates.
Some employers are registered outside the city: valid credit codes that are
not in the enterprise register.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from disburse.synth import _tables as T
from disburse.synth._calendar import (
    civil_from_days,
    date_strings,
    days_from_civil,
    month_of_days,
    month_strings,
)
from disburse.synth._context import Context, IntArray, blocks, draw, scramble, sort_by
from disburse.synth._ids import credit_codes
from disburse.synth.enterprises import Enterprises, bank_accounts
from disburse.synth.monthly import Monthly
from disburse.synth.population import MAX_YEARS, Population, by_age

OUTSIDE_EMPLOYER_SHARE = 0.10
GRADUATE_HIRED_SHARE = 0.85


@dataclass(slots=True)
class Outside:
    """Enterprises registered outside the city (valid codes, not in the register)."""

    code: pl.Series

    @property
    def n(self) -> int:
        """Number of outside enterprises."""
        return len(self.code)


def build_outside(ctx: Context, n_enterprises: int) -> Outside:
    """A pool of outside employers and listed subjects: about one per 20 local enterprises."""
    rng = ctx.rng("outside")
    regions = [r for r in T.OUTSIDE_REGIONS if r not in set(ctx.region_codes)]
    n = max(20, n_enterprises // 20)
    digits = np.array([[int(c) for c in r] for r in regions], dtype=np.int64)
    region = rng.integers(0, len(regions), n)
    # Numbered after the local ones, so no body repeats within the run.
    body = scramble(np.arange(n_enterprises, n_enterprises + n), 10**8, int(rng.integers(0, 10**8)))
    return Outside(
        code=credit_codes("credit_code", ["91"], np.zeros(n, np.int64), digits[region], body)
    )


@dataclass(slots=True)
class Graduates:
    """The graduates frame and each person's latest graduation day (-1 if none)."""

    frame: pl.DataFrame
    person: IntArray
    latest_day: IntArray


def build_graduates(ctx: Context, pop: Population) -> Graduates:
    """Degrees and diplomas: a chain of levels per person, graduating in June or July."""
    rng = ctx.rng("graduates")
    today = ctx.window.today
    n = pop.n
    lows = [b[0] for b in T.EDUCATION_BY_AGE]
    band_of_age = np.full(MAX_YEARS + 2, -1, dtype=np.int16)
    for b, low in enumerate(lows):
        band_of_age[low:] = b
    band = band_of_age[pop.age]
    highest = np.zeros(n, dtype=np.int16)  # 0 none, 1 vocational .. 5 doctor
    for b, (_, shares) in enumerate(T.EDUCATION_BY_AGE):
        members = np.flatnonzero(band == b)
        highest[members] = draw(rng, shares, members.shape[0])
    graduate = np.flatnonzero(highest > 0)
    highest = highest[graduate]
    k = graduate.shape[0]
    birth_year, birth_month, _ = civil_from_days(pop.birth_day[graduate])
    # School starts in September for those six by 31 August.
    entry_shift = (birth_month >= 9).astype(np.int64)
    spread = draw(rng, (0.6, 0.3, 0.1), k)
    doctor_extra = rng.integers(0, 4, k)
    winter = rng.random(k) < 0.05  # some master's and doctoral degrees are conferred in December

    persons, days, levels = [], [], []
    for level, name in enumerate(T.LEVELS):
        if name in ("vocational", "associate"):
            has = highest == level + 1
        elif name == "doctor":
            has = highest == 5
        else:
            has = highest >= level + 1
        idx = np.flatnonzero(has)
        year = birth_year[idx] + T.GRADUATION_AGE[level] + spread[idx] + entry_shift[idx]
        if name == "doctor":
            year = year + doctor_extra[idx]
        june = days_from_civil(year, 6, 10) + rng.integers(0, 36, idx.shape[0])
        december = days_from_civil(year, 12, 15) + rng.integers(0, 15, idx.shape[0])
        day = np.where(winter[idx] & (level >= 3), december, june)
        done = day <= today  # the rest are still studying
        persons.append(graduate[idx[done]])
        days.append(day[done])
        levels.append(np.full(int(done.sum()), level, dtype=np.int64))
    person = np.concatenate(persons)
    day = np.concatenate(days)
    level_col = np.concatenate(levels)
    order = sort_by(person * 8 + level_col, np.arange(person.shape[0], dtype=np.int64))
    person, day, level_col = person[order], day[order], level_col[order]
    latest = np.full(n, -1, dtype=np.int64)
    np.maximum.at(latest, person, day)
    frame = pl.DataFrame(
        [
            pop.person_id.gather(pl.Series(person, dtype=pl.UInt32)),
            date_strings("graduated_on", day),
            pick_level(level_col),
        ]
    )
    return Graduates(frame=frame, person=person, latest_day=latest)


def pick_level(level: IntArray) -> pl.Series:
    """The level names of level indices."""
    return pl.Series("level", list(T.LEVELS), dtype=pl.String).gather(
        pl.Series(level, dtype=pl.UInt32)
    )


class _Tickets:
    """Draws indices with probability proportional to non-negative integer weights.

    Each index is repeated as many times as its weight (one "ticket" per
    insured employee) and tickets are drawn uniformly: one gather per draw.
    """

    def __init__(self, weights: IntArray) -> None:
        self.tickets = np.repeat(np.arange(weights.shape[0], dtype=np.int32), weights)

    def draw(self, rng: np.random.Generator, k: int) -> IntArray:
        """k indices (-1 each if every weight is zero)."""
        if k == 0 or self.tickets.shape[0] == 0:
            return np.full(k, -1, dtype=np.int64)
        return self.tickets[rng.integers(0, self.tickets.shape[0], k)].astype(np.int64)


@dataclass(slots=True)
class Employment:
    """The employment spells (ordered by person, then first month) as arrays; the frame
    is made from them a block of rows at a time (`frame`)."""

    person: IntArray
    employer: IntArray  # enterprise index, or ent.n + j for outside employer j
    first: IntArray  # absolute months
    last: IntArray  # -1 for a spell still current
    person_id: pl.Series
    codes: pl.Series  # credit codes of the local enterprises, then the outside ones
    local_count: int  # number of local enterprises

    @property
    def count(self) -> int:
        """Number of spells."""
        return int(self.person.shape[0])

    @property
    def local_employer(self) -> IntArray:
        """Enterprise indices of spells at local employers."""
        return self.employer[self.employer < self.local_count]

    def frame(self, rows: slice = slice(None)) -> pl.DataFrame:
        """The employment rows `rows` (all of them by default)."""
        last = self.last[rows]
        return pl.DataFrame(
            [
                self.person_id.gather(pl.Series(self.person[rows], dtype=pl.UInt32)),
                self.codes.gather(pl.Series(self.employer[rows], dtype=pl.UInt32)).alias(
                    "credit_code"
                ),
                month_strings("from_month", self.first[rows]),
                month_strings("to_month", last, last >= 0),
            ]
        )


def build_employment(
    ctx: Context,
    pop: Population,
    ent: Enterprises,
    monthly: Monthly,
    outside: Outside,
    graduates: Graduates,
) -> Employment:
    """Insured employment spells of the population."""
    rng = ctx.rng("employment")
    w = ctx.window
    n = pop.n
    birth_month = month_of_days(pop.birth_day)
    adult_month = birth_month + 18 * 12  # first month a spell may start
    working = pop.alive & (pop.age >= 16) & (pop.age <= 64)

    staff_end = _Tickets(monthly.headcount_end)
    staff_start = _Tickets(monthly.headcount_start)
    leavers = _Tickets(np.maximum(monthly.headcount_start - monthly.headcount_end, 0))

    def employers(k: int, weights: _Tickets, p_outside: float) -> IntArray:
        # Indices into local enterprises, or n_e + j for outside employer j.
        local = weights.draw(rng, k)
        away = (rng.random(k) < p_outside) | (local < 0)
        return np.where(away, ent.n + rng.integers(0, outside.n, k), local)

    def not_before_registration(employer: IntArray, month: IntArray) -> IntArray:
        local = employer < ent.n
        reg = ent.registered_month[np.minimum(employer, ent.n - 1)]
        return np.where(local, np.maximum(month, reg), month)

    spells_person, spells_employer, spells_from, spells_to = [], [], [], []

    def add(person: IntArray, employer: IntArray, start: IntArray, end: IntArray) -> None:
        spells_person.append(person)
        spells_employer.append(employer)
        spells_from.append(start)
        spells_to.append(end)

    # New graduates of the window: most find a first job within six months.
    graduated_month = np.where(graduates.latest_day >= 0, month_of_days(graduates.latest_day), -1)
    new_graduate = working & (graduates.latest_day >= w.first_day)
    hired = new_graduate & (rng.random(n) < GRADUATE_HIRED_SHARE)
    start = graduated_month + rng.integers(0, 6, n)
    hired &= start <= w.last_month
    grads = np.flatnonzero(hired)
    employer = employers(grads.shape[0], staff_end, 0.08)
    add(
        grads,
        employer,
        not_before_registration(employer, start[grads]),
        np.full(grads.shape[0], -1),
    )

    # Everyone else of working age: a current spell with some probability by age and sex.
    p_employed = np.where(
        pop.male,
        by_age(tuple((b[0], b[1]) for b in T.EMPLOYED_BY_AGE), pop.age),
        by_age(tuple((b[0], b[2]) for b in T.EMPLOYED_BY_AGE), pop.age),
    )
    others = working & ~new_graduate
    employed = others & (rng.random(n) < p_employed)
    current = np.flatnonzero(employed)
    k = current.shape[0]
    employer = employers(k, staff_end, OUTSIDE_EMPLOYER_SHARE)
    tenure = np.floor(rng.exponential(60.0, k)).astype(np.int64)
    start = np.maximum(w.last_month - tenure, adult_month[current])
    start = np.minimum(not_before_registration(employer, start), w.last_month)
    add(current, employer, start, np.full(k, -1))

    # An earlier spell at another employer for some, ending before the current one.
    earlier = (rng.random(k) < 0.3) & (start - adult_month[current] > 24)
    who = current[earlier]
    prior_end = start[earlier] - 1 - rng.integers(0, 3, who.shape[0])
    prior_start = np.maximum(
        prior_end - np.floor(rng.exponential(36.0, who.shape[0])).astype(np.int64), adult_month[who]
    )
    prior_employer = employers(who.shape[0], staff_start, OUTSIDE_EMPLOYER_SHARE)
    prior_start = not_before_registration(prior_employer, prior_start)
    ok = prior_start <= prior_end
    add(who[ok], prior_employer[ok], prior_start[ok], prior_end[ok])

    # Spells that ended in the window and were not followed by another: most
    # at firms that shed staff, around the month they did.
    laid_off = np.flatnonzero(others & ~employed & (rng.random(n) < 0.08))
    k = laid_off.shape[0]
    at_shedder = rng.random(k) < 0.6
    employer = np.where(
        at_shedder,
        employers(k, leavers, 0.0),
        employers(k, staff_start, OUTSIDE_EMPLOYER_SHARE),
    )
    local = np.minimum(employer, ent.n - 1)
    end = np.where(
        at_shedder & (employer < ent.n),
        monthly.change_month[local] + rng.integers(0, 4, k),
        w.first_month + rng.integers(0, w.months, k),
    )
    end = np.where(employer < ent.n, np.minimum(end, ent.closed_month[local]), end)
    end = np.clip(end, w.first_month, w.last_month)
    begin = np.maximum(
        end - np.floor(rng.exponential(48.0, k)).astype(np.int64), adult_month[laid_off]
    )
    begin = np.minimum(not_before_registration(employer, begin), end)
    keep = end >= adult_month[laid_off]
    add(laid_off[keep], employer[keep], begin[keep], end[keep])

    person = np.concatenate(spells_person)
    employer = np.concatenate(spells_employer)
    first = np.concatenate(spells_from)
    last = np.concatenate(spells_to)
    # Ordered by person, then first month.
    lowest = int(first.min()) if first.shape[0] else 0
    span = int(first.max()) - lowest + 1 if first.shape[0] else 1
    order = sort_by(person * span + (first - lowest), np.arange(person.shape[0]))
    return Employment(
        person=person[order],
        employer=employer[order],
        first=first[order],
        last=last[order],
        person_id=pop.person_id,
        codes=pl.concat([ent.code, outside.code]),
        local_count=ent.n,
    )


def build_person_accounts(ctx: Context, pop: Population) -> tuple[IntArray, Iterator[pl.DataFrame]]:
    """Social security card accounts: most adults, some children and some of the dead.

    Returns the holders (person indices) and the frame's blocks, drawn as they are
    taken."""
    rng = ctx.rng("person_accounts")
    p = np.where(pop.age >= 16, 0.92, 0.3)
    p = np.where(pop.alive, p, 0.4)
    holder = np.flatnonzero(rng.random(pop.n) < p)

    def part(rows: slice) -> pl.DataFrame:
        who = holder[rows]
        bank, account_no = bank_accounts(rng, who.shape[0], person=True)
        return pl.DataFrame(
            [pop.person_id.gather(pl.Series(who, dtype=pl.UInt32)), bank, account_no]
        )

    return holder, blocks(holder.shape[0], part)
