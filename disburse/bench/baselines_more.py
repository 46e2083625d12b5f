"""The other six shipped policies written by hand: in Polars and in DuckDB SQL.

`disburse.bench.baselines` writes the six enterprise policies that read monthly
figures; this module writes the six that read relations: the person policies
(childcare-subsidy, paid to a guardian; elderly-allowance; elderly-living-alone,
which counts the person's household), the enterprise policies over employment
spells (job-expansion-grant, each young person counted for one enterprise only;
stay-at-post-grant, which compares each employee's registration with the
enterprise's) and the household policy (third-child-grant, paid to the head):

* `handwritten_polars_more`: one lazy plan on the streaming engine; one wide frame
  per entity kind (persons, enterprises, households) with every value and
  condition as a plain column, sorted by its surrogate key, then one block of rows
  per policy, so the long table comes out in order without a sort of it;
* `handwritten_duckdb_more`: the same in one SQL query over the staged Parquet files.

Both return exactly the rows and columns of the compiled plan
(`jobs.evaluate.evaluate` of these six policies, `RESULT_SCHEMA`), sorted by
policy and entity.  The constants are written out here as a person copies them
from the policy files (`disburse/bench/policies/`, the benchmark's fixed copy of
the shipped `policies/`, the same files today); they hold for as-of dates from 2026-03-01 to
2026-06-30, the months in which all six are active (stay-at-post-grant is valid
from 2026-03-01 until 2026-06-30; the others from 2026-01-01 or earlier, the
job-expansion grant until 2026-12-31) and no dated parameter changes (every
parameter of the six has one value, in force from before 2026-03-01).  That is
also the range of the other six (`baselines.FIRST_AS_OF`, `LAST_AS_OF`): all
twelve shipped policies are active together from 2026-03-01 to 2026-06-30, which
holds the benchmark's dates, 2026-03-15 and 2026-04-01.

Every amount here is whole fen with no rounding to do (3,600 yuan a year is 300
yuan a month: the childcare subsidy's proration, months / 12 at 10 places in the
compiler, rounds back to it), so no Decimal is needed.  An age is taken as the
compiler's `age_on` takes it, whole years with the birthday counted on its day;
`age_on(d) >= n` is `birth_on <= d - n years`, which is exact for the dates read
here (the first of a month, or an as-of date that is never 29 February in the
range).  Unknown values follow docs/policies.md (a condition that ends unknown is
not met); the columns these policies read are required ones, except `to_month`
(empty while a spell lasts) and the surrogate keys of subjects from outside the
city, and an entity with no rows of a source has no account, no household, no
hires.  The few facts of the staged data relied on are the keys
`policies/sources.yaml` declares and ingest enforces: one account per person and
per enterprise, one household per person.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from disburse.bench.baselines import (
    PERIOD_ONCE,
    RESULT_FIELDS,
    YUAN,
    _months_back,
    _scan,
    _sql_date,
    _sql_text,
    run_duckdb,
)
from eligibility import RESULT_SCHEMA
from jobs.staged import sql_relation, staged_file

__all__ = [
    "MORE_FIRST_AS_OF",
    "MORE_LAST_AS_OF",
    "MORE_POLICY_IDS",
    "handwritten_duckdb_more",
    "handwritten_polars_more",
]

MORE_FIRST_AS_OF = dt.date(2026, 3, 1)  # stay-at-post-grant is valid from 2026-03-01
MORE_LAST_AS_OF = dt.date(2026, 6, 30)  # stay-at-post-grant is valid until 2026-06-30

CHILDCARE = "childcare-subsidy"
ELDERLY = "elderly-allowance"
ALONE = "elderly-living-alone"
JOB_EXPANSION = "job-expansion-grant"
STAY_AT_POST = "stay-at-post-grant"
THIRD_CHILD = "third-child-grant"
MORE_POLICY_IDS = (CHILDCARE, ELDERLY, ALONE, JOB_EXPANSION, STAY_AT_POST, THIRD_CHILD)
TARGET = {
    CHILDCARE: "person",
    ELDERLY: "person",
    ALONE: "person",
    JOB_EXPANSION: "enterprise",
    STAY_AT_POST: "enterprise",
    THIRD_CHILD: "household",
}

REGISTERED_HERE = "3301"  # GB/T 2260 prefix of the city's household registrations
# childcare_subsidy.yaml
CHILDCARE_YEAR_FEN = 3600 * YUAN  # Art. 2, prorated by month (Art. 5)
CHILDCARE_MONTH_FEN = CHILDCARE_YEAR_FEN // 12
assert CHILDCARE_MONTH_FEN * 12 == CHILDCARE_YEAR_FEN  # whole fen a month: nothing to round
UNDER_MONTHS = 36  # under three
GUARDIAN_RELATIONS = ("parent", "guardian")  # features.yaml, relation guardians
GUARDIAN_AGE = 18  # payee: age_on(as_of) >= 18
# elderly_allowance.yaml: (age on the first of the month at least, monthly amount), Art. 3
ELDERLY_TIERS = ((100, 800 * YUAN), (90, 300 * YUAN), (80, 100 * YUAN))
ELDERLY_AGE = 80  # Art. 2
# elderly_living_alone.yaml
ALONE_FEN = 200 * YUAN  # Art. 3, monthly
ALONE_AGE = 80  # Art. 2, from_age
# job_expansion_grant.yaml
PER_YOUNG_HIRE_FEN = 1500 * YUAN  # Art. 3, per_person
MOST_YOUNG_HIRES = 50  # Art. 3, most
YOUNG_FROM_AGE, YOUNG_TO_AGE = 16, 24  # Art. 2, 16 to oldest
# stay_at_post_grant.yaml
PER_STAYER_FEN = 500 * YUAN  # Art. 3, per_employee
STAYER_CAP_FEN = 200_000 * YUAN  # Art. 3
STAY_FROM = dt.date(2026, 1, 1)  # Art. 2, employed on 1 January
STAY_UNTIL = dt.date(2026, 2, 1)  # Art. 2, and still employed in February
HOME_DIGITS = 4  # Art. 2, registered outside the city: the first 4 digits differ
# third_child_grant.yaml
THIRD_CHILD_FEN = 10_000 * YUAN  # Art. 3, grant
THIRD_BORN_FROM = dt.date(2025, 7, 1)  # Art. 2, born_from
CHILD_UNDER = 18  # Art. 2, child_under: a minor on the run's date
THIRD = 3


def _years_back(d: dt.date, n: int) -> dt.date:
    """d moved back n years (never 29 February here: see the module's docstring)."""
    return d.replace(year=d.year - n)


def _month_index(d: dt.date) -> int:
    return d.year * 12 + d.month


@dataclass(frozen=True)
class MoreDates:
    """The dates the six policies read on one as-of date."""

    as_of: dt.date
    year: str  # the benefit period of the yearly policies
    year_start: dt.date
    year_end: dt.date
    month: str  # the benefit period of the monthly allowances
    month_start: dt.date  # their period_start, the day ages are taken on
    prev_first: dt.date  # job-expansion-grant's previous_year: hires of the year before
    prev_last: dt.date
    under_three_after: dt.date  # add_months(birth_on, 36) > period_start: born after this
    adult_by: dt.date  # age_on(as_of) >= 18: born on or before this
    minor_after: dt.date  # add_months(birth_on, 12 * 18) > as_of: born after this

    @classmethod
    def on(cls, as_of: dt.date) -> MoreDates:
        """The dates for `as_of`, which must fall where all six policies are active."""
        if not MORE_FIRST_AS_OF <= as_of <= MORE_LAST_AS_OF:
            raise ValueError(
                f"the hand-written policies hold from {MORE_FIRST_AS_OF} to {MORE_LAST_AS_OF},"
                f" not {as_of}"
            )
        year_start = dt.date(as_of.year, 1, 1)
        return cls(
            as_of=as_of,
            year=str(as_of.year),
            year_start=year_start,
            year_end=dt.date(as_of.year, 12, 31),
            month=f"{as_of:%Y-%m}",
            month_start=as_of.replace(day=1),
            prev_first=dt.date(as_of.year - 1, 1, 1),
            prev_last=dt.date(as_of.year - 1, 12, 1),
            # a first of the month: add_months(b, 36) passes it exactly when b passes it
            # less 36 months (both move by whole months, clamping only days 29 to 31)
            under_three_after=_months_back(year_start, UNDER_MONTHS),
            adult_by=_years_back(as_of, GUARDIAN_AGE),
            # as_of is never 28 February here, the one date where the clamped
            # 29 February + 18 years would differ from a year count
            minor_after=_years_back(as_of, CHILD_UNDER),
        )

    def aged_by(self, age: int) -> dt.date:
        """The last birth date of those `age` or older on the first of the month."""
        return _years_back(self.month_start, age)

    def period(self, policy_id: str) -> str:
        """The benefit period key of a policy's rows."""
        if policy_id in (ELDERLY, ALONE):
            return self.month
        if policy_id in (STAY_AT_POST, THIRD_CHILD):
            return PERIOD_ONCE
        return self.year


# Each policy's condition ids, in the file's order (the mask's bits, the reasons).
CONDITIONS: dict[str, tuple[str, ...]] = {
    CHILDCARE: ("alive", "under-three-in-period", "registered-here"),
    ELDERLY: ("alive", "eighty-or-over", "registered-here", "has-account"),
    ALONE: ("alive", "old-enough", "lives-alone", "has-account"),
    JOB_EXPANSION: (
        "active",
        "took-on-young-people",
        "no-arrears",
        "not-seriously-dishonest",
        "has-account",
    ),
    STAY_AT_POST: ("active", "kept-non-local-staff", "not-seriously-dishonest", "has-account"),
    THIRD_CHILD: ("three-children", "third-born-since"),
}


# --------------------------------------------------------------------------- Polars


def _decision(policy_id: str, payee: pl.Expr) -> list[pl.Expr]:
    """The policy's result columns from its condition columns, amount column and payee
    (no amount of the six can be unknown: each is known wherever its conditions hold)."""
    passed = [pl.col(f"{policy_id}:{cid}") for cid in CONDITIONS[policy_id]]
    amount = pl.col(f"{policy_id}:amount")
    eligible = pl.all_horizontal(passed) & payee.is_not_null() & (amount > 0)
    # the first failing condition, else why an eligible-looking entity is not paid
    reason = pl.when(amount <= 0).then(pl.lit("amount_zero")).otherwise(pl.lit(None, pl.String))
    reason = pl.when(payee.is_null()).then(pl.lit("payee")).otherwise(reason)
    for cid, p in reversed(list(zip(CONDITIONS[policy_id], passed, strict=True))):
        reason = pl.when(~p).then(pl.lit(cid)).otherwise(reason)
    out = {
        "eligible": eligible,
        "amount_fen": pl.when(eligible).then(amount).otherwise(0).cast(pl.Int64),
        "reason": reason,
        "mask": pl.sum_horizontal([p.cast(pl.Int64) * (1 << i) for i, p in enumerate(passed)]),
        "payee": pl.when(eligible).then(payee),
        "rank": pl.lit(None, dtype=pl.Float64),  # none of the six has a budget to rank by
    }
    return [out[f].alias(f"{policy_id}|{f}") for f in RESULT_FIELDS]


def _columns(policy_id: str, conditions: list[pl.Expr], amount: pl.Expr) -> list[pl.Expr]:
    """A policy's conditions (an unknown one is not met) and amount as named columns."""
    return [
        *[
            c.fill_null(False).alias(f"{policy_id}:{cid}")
            for cid, c in zip(CONDITIONS[policy_id], conditions, strict=True)
        ],
        amount.cast(pl.Int64).alias(f"{policy_id}:amount"),
    ]


def _flag(frame: pl.LazyFrame, sk: str, name: str) -> pl.LazyFrame:
    """The keys of `frame` with a true column `name`: left-joined, a missing one is false."""
    return frame.select(pl.col(sk), pl.lit(True).alias(name))


def _persons_wide(staged_dir: Path, d: MoreDates) -> pl.LazyFrame:
    """One row per person: the three person policies' conditions, amounts and payees."""
    sk = "person_sk"
    c = pl.col
    persons = _scan(staged_dir, "persons").select(
        sk, "person_id", "status", "birth_on", "region_code"
    )
    accounts = _scan(staged_dir, "person_accounts").filter(c(sk).is_not_null())
    members = _scan(staged_dir, "household_members").filter(
        c(sk).is_not_null() & c("household_sk").is_not_null()
    )
    # count(housemates): the members of the person's household, the person included
    household_size = members.join(
        members.group_by("household_sk").agg(pl.len().alias("household_size")),
        on="household_sk",
    ).select(sk, "household_size")

    alive = c("status") == "alive"
    born = c("birth_on")
    under_three = (born <= d.year_end) & (born > d.under_three_after)
    here = c("region_code").str.starts_with(REGISTERED_HERE)
    # The payee of a child the subsidy would pay: the guardian (a parent or legal
    # guardian) with the smallest identity number among those alive, of age and with
    # an account; looked up for those children only.
    children = persons.filter(alive & under_three & here).select(sk)
    payable = (
        persons.filter(alive & (born <= d.adult_by))
        .join(accounts, on=sk, how="semi")
        .select(c(sk).alias("related_person_sk"), c("person_id").alias("guardian_id"))
    )
    guardian = (
        _scan(staged_dir, "relations")
        .filter(
            c("relation").is_in(list(GUARDIAN_RELATIONS))
            & c(sk).is_not_null()
            & c("related_person_sk").is_not_null()
        )
        .join(children, on=sk, how="semi")
        .join(payable, on="related_person_sk")
        .group_by(sk)
        .agg(c("guardian_id").min().alias("guardian"))
    )
    frame = (
        persons.join(_flag(accounts, sk, "has_bank_account"), on=sk, how="left")
        .join(household_size, on=sk, how="left")
        .join(guardian, on=sk, how="left")
        .with_columns(c("has_bank_account").fill_null(False), c("household_size").fill_null(0))
    )

    # The childcare months: from the month of birth to the month before the third
    # birthday if that falls on the 1st, else to the birthday's month (Art. 5),
    # within the year.
    birth_month = born.dt.year().cast(pl.Int64) * 12 + born.dt.month().cast(pl.Int64)
    last_month = birth_month + UNDER_MONTHS - (born.dt.day() == 1).cast(pl.Int64)
    months = pl.max_horizontal(
        pl.min_horizontal(last_month, _month_index(d.year_end))
        - pl.max_horizontal(birth_month, _month_index(d.year_start))
        + 1,
        0,
    )
    allowance = pl.lit(0, dtype=pl.Int64)
    for age, fen in reversed(ELDERLY_TIERS):
        allowance = pl.when(born <= d.aged_by(age)).then(fen).otherwise(allowance)
    account = c("has_bank_account")
    return frame.with_columns(
        *_columns(CHILDCARE, [alive, under_three, here], CHILDCARE_MONTH_FEN * months),
        *_columns(ELDERLY, [alive, born <= d.aged_by(ELDERLY_AGE), here, account], allowance),
        *_columns(
            ALONE,
            [alive, born <= d.aged_by(ALONE_AGE), c("household_size") == 1, account],
            pl.lit(ALONE_FEN),
        ),
    )


def _enterprises_wide(staged_dir: Path, d: MoreDates) -> pl.LazyFrame:
    """One row per enterprise: the two enterprise policies' conditions and amounts."""
    sk = "enterprise_sk"
    c = pl.col
    enterprises = _scan(staged_dir, "enterprises").select(
        sk, "credit_code", "status", "region_code"
    )
    month = c("month")
    arrears = (
        _scan(staged_dir, "social_security_monthly")
        .filter(c(sk).is_not_null() & month.is_between(d.prev_first, d.prev_last))
        .group_by(sk)
        # (enterprise, month) is the source's key: counting rows counts months
        .agg((c("ui_premium_paid_fen") < c("ui_premium_due_fen")).sum().alias("months_in_arrears"))
    )
    listed = _scan(staged_dir, "credit_lists").filter(
        c(sk).is_not_null()
        & (c("list") == "serious_dishonesty")
        & (c("listed_on") <= d.as_of)
        & (c("removed_on").is_null() | (c("removed_on") > d.as_of))
    )
    accounts = _scan(staged_dir, "enterprise_accounts").filter(c(sk).is_not_null())
    employment = _scan(staged_dir, "employment").filter(
        c("person_sk").is_not_null() & c(sk).is_not_null()
    )
    persons = _scan(staged_dir, "persons")

    # Job expansion: a hire of the year before that is the person's first insured job
    # (with any employer) at 16 to 24 (whole years on the first of the hire month).
    # Each such person counts for one enterprise: the one that took them on first, then
    # the smaller credit code (docs/policies.md, "Counted once"), whether or not that
    # enterprise is paid; then each enterprise counts at most its first 50.
    first_insured = (
        _scan(staged_dir, "employment")
        .filter(c("person_sk").is_not_null())
        .group_by("person_sk")
        .agg(c("from_month").min().alias("first_insured_in"))
    )
    hired = c("from_month")
    young_hires = (
        employment.filter(hired.is_between(d.prev_first, d.prev_last))
        .join(first_insured, on="person_sk")
        .filter(hired == c("first_insured_in"))
        .join(persons.select("person_sk", "birth_on"), on="person_sk")
        .filter(
            (c("birth_on") <= hired.dt.offset_by(f"-{YOUNG_FROM_AGE}y"))
            & (c("birth_on") > hired.dt.offset_by(f"-{YOUNG_TO_AGE + 1}y"))
        )
        .join(enterprises.select(sk, "credit_code"), on=sk)
        .group_by("person_sk")
        .agg(c(sk).sort_by(["from_month", "credit_code"]).first())
        .group_by(sk)
        .agg(pl.len().cast(pl.Int64).alias("young_hires"))
    )
    # Stay at post: spells from 1 January or before, lasting into February, of employees
    # registered outside the city (the first four digits of the two division codes differ).
    left = c("to_month")
    stayers = (
        employment.filter((hired <= STAY_FROM) & (left.is_null() | (left >= STAY_UNTIL)))
        .join(
            persons.select("person_sk", c("region_code").str.slice(0, HOME_DIGITS).alias("home")),
            on="person_sk",
        )
        .join(
            enterprises.select(sk, c("region_code").str.slice(0, HOME_DIGITS).alias("seat")),
            on=sk,
        )
        .filter(c("home") != c("seat"))
        .group_by(sk)
        .agg(pl.len().cast(pl.Int64).alias("non_local_stayers"))
    )
    frame = (
        enterprises.join(arrears, on=sk, how="left")
        .join(_flag(listed.unique(sk), sk, "serious_dishonesty"), on=sk, how="left")
        .join(_flag(accounts, sk, "has_bank_account"), on=sk, how="left")
        .join(young_hires, on=sk, how="left")
        .join(stayers, on=sk, how="left")
        .with_columns(
            c("months_in_arrears", "young_hires", "non_local_stayers").fill_null(0),
            c("serious_dishonesty", "has_bank_account").fill_null(False),
        )
    )
    active = c("status") == "active"
    honest = ~c("serious_dishonesty")
    account = c("has_bank_account")
    counted = pl.min_horizontal(c("young_hires"), MOST_YOUNG_HIRES)
    return frame.with_columns(
        *_columns(
            JOB_EXPANSION,
            [active, counted >= 1, c("months_in_arrears") == 0, honest, account],
            PER_YOUNG_HIRE_FEN * counted,
        ),
        *_columns(
            STAY_AT_POST,
            [active, c("non_local_stayers") >= 1, honest, account],
            pl.min_horizontal(PER_STAYER_FEN * c("non_local_stayers"), STAYER_CAP_FEN),
        ),
    )


def _households_wide(staged_dir: Path, d: MoreDates) -> pl.LazyFrame:
    """One row per household: the third-child grant's conditions, amount and payee."""
    sk = "household_sk"
    c = pl.col
    persons = _scan(staged_dir, "persons").select("person_sk", "person_id", "status", "birth_on")
    members = (
        _scan(staged_dir, "household_members")
        .filter(c(sk).is_not_null() & c("person_sk").is_not_null())
        .select(sk, "person_sk", "role")
        .join(persons, on="person_sk")
    )
    children = (
        members.filter((c("role") == "member") & (c("birth_on") > d.minor_after))
        .group_by(sk)
        .agg(
            pl.len().cast(pl.Int64).alias("children"),
            (c("birth_on") < THIRD_BORN_FROM).sum().cast(pl.Int64).alias("born_before"),
        )
    )
    accounts = _scan(staged_dir, "person_accounts").filter(c("person_sk").is_not_null())
    head = (
        members.filter((c("role") == "head") & (c("status") == "alive"))
        .join(accounts, on="person_sk", how="semi")
        .group_by(sk)
        .agg(c("person_id").min().alias("head"))
    )
    frame = (
        _scan(staged_dir, "households")
        .select(sk, "household_id")
        .join(children, on=sk, how="left")
        .join(head, on=sk, how="left")
        .with_columns(c("children", "born_before").fill_null(0))
    )
    # Of the first three children in order of birth, one was born on or after the
    # measures took effect: fewer of them were born before than there are of them.
    third_born_since = c("born_before") < pl.min_horizontal(c("children"), THIRD)
    return frame.with_columns(
        *_columns(THIRD_CHILD, [c("children") >= THIRD, third_born_since], pl.lit(THIRD_CHILD_FEN))
    )


def handwritten_polars_more(staged_dir: Path, as_of: dt.date) -> pl.DataFrame:
    """The six relation policies on `as_of`, by hand in Polars: the compiled plan's rows."""
    d = MoreDates.on(as_of)
    c = pl.col
    wide = {
        "person": _persons_wide(staged_dir, d).select(
            c("person_sk").alias("entity_sk"),
            c("person_id").alias("entity_id"),
            *_decision(CHILDCARE, c("guardian")),
            *_decision(ELDERLY, c("person_id")),
            *_decision(ALONE, c("person_id")),
        ),
        "enterprise": _enterprises_wide(staged_dir, d).select(
            c("enterprise_sk").alias("entity_sk"),
            c("credit_code").alias("entity_id"),
            *_decision(JOB_EXPANSION, c("credit_code")),
            *_decision(STAY_AT_POST, c("credit_code")),
        ),
        "household": _households_wide(staged_dir, d).select(
            c("household_sk").alias("entity_sk"),
            c("household_id").alias("entity_id"),
            *_decision(THIRD_CHILD, c("head")),
        ),
    }
    # One sort per entity kind of its N rows; then one block per policy, in policy order.
    wide = {target: frame.sort("entity_sk") for target, frame in wide.items()}
    blocks = [
        wide[TARGET[pid]].select(
            pl.lit(pid).alias("policy_id"),
            pl.lit(d.period(pid)).alias("period"),
            pl.lit(TARGET[pid]).alias("target"),
            "entity_sk",
            "entity_id",
            *[c(f"{pid}|{f}").alias(f) for f in RESULT_FIELDS],
        )
        for pid in sorted(MORE_POLICY_IDS)
    ]
    out = pl.concat(blocks).collect(engine="streaming")
    return out.cast(RESULT_SCHEMA)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- DuckDB


def duckdb_query_more(staged_dir: Path, d: MoreDates) -> str:
    """The SQL for the six policies on the dates `d`, over the staged Parquet files."""

    def src(name: str) -> str:
        return sql_relation(staged_file(staged_dir, name))

    as_of = _sql_date(d.as_of)
    tiers = " ".join(
        f"WHEN birth_on <= {_sql_date(d.aged_by(age))} THEN {fen}" for age, fen in ELDERLY_TIERS
    )
    under_three = (
        f"birth_on <= {_sql_date(d.year_end)} AND birth_on > {_sql_date(d.under_three_after)}"
    )
    here = f"starts_with(region_code, '{REGISTERED_HERE}')"
    conditions: dict[str, list[str]] = {
        CHILDCARE: ["status = 'alive'", under_three, here],
        ELDERLY: [
            "status = 'alive'",
            f"birth_on <= {_sql_date(d.aged_by(ELDERLY_AGE))}",
            here,
            "has_bank_account",
        ],
        ALONE: [
            "status = 'alive'",
            f"birth_on <= {_sql_date(d.aged_by(ALONE_AGE))}",
            "household_size = 1",
            "has_bank_account",
        ],
        JOB_EXPANSION: [
            "status = 'active'",
            "counted >= 1",
            "months_in_arrears = 0",
            "NOT serious_dishonesty",
            "has_bank_account",
        ],
        STAY_AT_POST: [
            "status = 'active'",
            "non_local_stayers >= 1",
            "NOT serious_dishonesty",
            "has_bank_account",
        ],
        THIRD_CHILD: [f"children >= {THIRD}", f"born_before < least(children, {THIRD})"],
    }
    amounts = {
        # months from the month of birth to the month before the third birthday if it
        # falls on the 1st, else to its month, within the year (Art. 5)
        CHILDCARE: (
            f"{CHILDCARE_MONTH_FEN} * greatest(least(birth_month + {UNDER_MONTHS}"
            f" - CAST(day(birth_on) = 1 AS BIGINT), {_month_index(d.year_end)})"
            f" - greatest(birth_month, {_month_index(d.year_start)}) + 1, 0)"
        ),
        ELDERLY: f"CASE {tiers} ELSE 0 END",
        ALONE: f"{ALONE_FEN}",
        JOB_EXPANSION: f"{PER_YOUNG_HIRE_FEN} * counted",
        STAY_AT_POST: f"least({PER_STAYER_FEN} * non_local_stayers, {STAYER_CAP_FEN})",
        THIRD_CHILD: f"{THIRD_CHILD_FEN}",
    }
    payees = {
        CHILDCARE: "guardian",
        ELDERLY: "entity_id",
        ALONE: "entity_id",
        JOB_EXPANSION: "entity_id",
        STAY_AT_POST: "entity_id",
        THIRD_CHILD: "head",
    }
    frames = {
        "person": "persons_decided",
        "enterprise": "enterprises_decided",
        "household": "households_decided",
    }

    def column(pid: str, what: str) -> str:
        return f'"{pid}:{what}"'

    def decided(target: str) -> str:
        return ",\n        ".join(
            [
                f"coalesce({expr}, false) AS {column(pid, cid)}"
                for pid in MORE_POLICY_IDS
                if TARGET[pid] == target
                for cid, expr in zip(CONDITIONS[pid], conditions[pid], strict=True)
            ]
            + [
                f"CAST({amounts[pid]} AS BIGINT) AS {column(pid, 'amount')}"
                for pid in MORE_POLICY_IDS
                if TARGET[pid] == target
            ]
        )

    def one_policy(number: int, pid: str) -> str:
        passed = [column(pid, cid) for cid in CONDITIONS[pid]]
        amount, payee = column(pid, "amount"), payees[pid]
        eligible = " AND ".join([*passed, f"{payee} IS NOT NULL", f"{amount} > 0"])
        reason = " ".join(
            f"WHEN NOT {p} THEN '{cid}'" for p, cid in zip(passed, CONDITIONS[pid], strict=True)
        )
        mask = " + ".join(f"CAST({p} AS BIGINT) * {1 << i}" for i, p in enumerate(passed))
        return f"""
    SELECT {number} AS policy_no, '{pid}' AS policy_id, '{d.period(pid)}' AS period,
        '{TARGET[pid]}' AS target, entity_sk, entity_id,
        {eligible} AS eligible,
        CASE WHEN {eligible} THEN {amount} ELSE 0 END AS amount_fen,
        CASE {reason} WHEN {payee} IS NULL THEN 'payee'
            WHEN {amount} <= 0 THEN 'amount_zero' END AS reason,
        {mask} AS mask,
        CASE WHEN {eligible} THEN {payee} END AS payee,
        CAST(NULL AS DOUBLE) AS rank
    FROM {frames[TARGET[pid]]}"""

    hire_window = f"{_sql_date(d.prev_first)} AND {_sql_date(d.prev_last)}"
    return f"""
WITH persons AS (
    SELECT person_sk, person_id, status, birth_on, region_code FROM {src("persons")}
),
person_accounts AS (
    SELECT person_sk FROM {src("person_accounts")} WHERE person_sk IS NOT NULL
),
members AS (
    SELECT household_sk, person_sk, role FROM {src("household_members")}
    WHERE household_sk IS NOT NULL AND person_sk IS NOT NULL
),
household_size AS (
    SELECT m.person_sk, s.household_size
    FROM members AS m
    JOIN (SELECT household_sk, count(*) AS household_size FROM members GROUP BY household_sk)
        AS s USING (household_sk)
),
-- the payee of a child the subsidy would pay: the smallest identity number of its
-- parents and guardians alive, of age and with an account
guardians AS (
    SELECT r.person_sk, min(g.person_id) AS guardian
    FROM {src("relations")} AS r
    JOIN persons AS g ON g.person_sk = r.related_person_sk
    WHERE r.relation IN ({_sql_text(GUARDIAN_RELATIONS)})
        AND r.person_sk IN (
            SELECT person_sk FROM persons
            WHERE status = 'alive' AND {under_three} AND {here})
        AND g.status = 'alive' AND g.birth_on <= {_sql_date(d.adult_by)}
        AND g.person_sk IN (SELECT person_sk FROM person_accounts)
    GROUP BY r.person_sk
),
persons_decided AS MATERIALIZED (
    SELECT person_sk AS entity_sk, person_id AS entity_id, guardian,
        {decided("person")}
    FROM (
        SELECT p.*, year(p.birth_on) * 12 + month(p.birth_on) AS birth_month,
            a.person_sk IS NOT NULL AS has_bank_account,
            coalesce(h.household_size, 0) AS household_size,
            g.guardian
        FROM persons AS p
        LEFT JOIN person_accounts AS a USING (person_sk)
        LEFT JOIN household_size AS h USING (person_sk)
        LEFT JOIN guardians AS g USING (person_sk)
    )
),
enterprises AS (
    SELECT enterprise_sk, credit_code, status, region_code FROM {src("enterprises")}
),
employment AS (
    SELECT person_sk, enterprise_sk, from_month, to_month FROM {src("employment")}
    WHERE person_sk IS NOT NULL
),
arrears AS (
    -- (enterprise, month) is the source's key: counting rows counts months
    SELECT enterprise_sk,
        count(*) FILTER (WHERE ui_premium_paid_fen < ui_premium_due_fen) AS months_in_arrears
    FROM {src("social_security_monthly")}
    WHERE enterprise_sk IS NOT NULL AND month BETWEEN {hire_window}
    GROUP BY enterprise_sk
),
listed AS (
    SELECT DISTINCT enterprise_sk FROM {src("credit_lists")}
    WHERE enterprise_sk IS NOT NULL AND list = 'serious_dishonesty'
        AND listed_on <= {as_of} AND (removed_on IS NULL OR removed_on > {as_of})
),
accounts AS (
    SELECT enterprise_sk FROM {src("enterprise_accounts")} WHERE enterprise_sk IS NOT NULL
),
first_insured AS (
    SELECT person_sk, min(from_month) AS first_insured_in FROM employment GROUP BY person_sk
),
-- a hire of the year before that is the person's first insured job, at 16 to 24; each
-- person counts for the enterprise that took them on first, then the smaller credit
-- code (docs/policies.md, "Counted once"); each enterprise counts at most 50
young_hires AS (
    SELECT enterprise_sk, count(*) AS young_hires FROM (
        SELECT e.person_sk, arg_min(e.enterprise_sk, (e.from_month, n.credit_code))
            AS enterprise_sk
        FROM employment AS e
        JOIN first_insured AS f ON f.person_sk = e.person_sk
            AND f.first_insured_in = e.from_month
        JOIN persons AS p ON p.person_sk = e.person_sk
        JOIN enterprises AS n ON n.enterprise_sk = e.enterprise_sk
        WHERE e.from_month BETWEEN {hire_window}
            AND p.birth_on <= e.from_month - INTERVAL {YOUNG_FROM_AGE} YEAR
            AND p.birth_on > e.from_month - INTERVAL {YOUNG_TO_AGE + 1} YEAR
        GROUP BY e.person_sk
    )
    GROUP BY enterprise_sk
),
-- spells from 1 January or before, lasting into February, of employees registered
-- outside the city (the first four digits of the division codes differ)
stayers AS (
    SELECT e.enterprise_sk, count(*) AS non_local_stayers
    FROM employment AS e
    JOIN persons AS p ON p.person_sk = e.person_sk
    JOIN enterprises AS n ON n.enterprise_sk = e.enterprise_sk
    WHERE e.from_month <= {_sql_date(STAY_FROM)}
        AND (e.to_month IS NULL OR e.to_month >= {_sql_date(STAY_UNTIL)})
        AND substr(p.region_code, 1, {HOME_DIGITS}) <> substr(n.region_code, 1, {HOME_DIGITS})
    GROUP BY e.enterprise_sk
),
enterprises_decided AS MATERIALIZED (
    SELECT enterprise_sk AS entity_sk, credit_code AS entity_id,
        {decided("enterprise")}
    FROM (
        SELECT n.enterprise_sk, n.credit_code, n.status,
            coalesce(r.months_in_arrears, 0) AS months_in_arrears,
            l.enterprise_sk IS NOT NULL AS serious_dishonesty,
            a.enterprise_sk IS NOT NULL AS has_bank_account,
            least(coalesce(y.young_hires, 0), {MOST_YOUNG_HIRES}) AS counted,
            coalesce(s.non_local_stayers, 0) AS non_local_stayers
        FROM enterprises AS n
        LEFT JOIN arrears AS r USING (enterprise_sk)
        LEFT JOIN listed AS l USING (enterprise_sk)
        LEFT JOIN accounts AS a USING (enterprise_sk)
        LEFT JOIN young_hires AS y USING (enterprise_sk)
        LEFT JOIN stayers AS s USING (enterprise_sk)
    )
),
-- of the first three children in order of birth, one was born on or after the
-- measures took effect: fewer of them were born before than there are of them
children AS (
    SELECT m.household_sk, count(*) AS children,
        count(*) FILTER (WHERE p.birth_on < {_sql_date(THIRD_BORN_FROM)}) AS born_before
    FROM members AS m JOIN persons AS p USING (person_sk)
    WHERE m.role = 'member' AND p.birth_on > {_sql_date(d.minor_after)}
    GROUP BY m.household_sk
),
heads AS (
    SELECT m.household_sk, min(p.person_id) AS head
    FROM members AS m JOIN persons AS p USING (person_sk)
    WHERE m.role = 'head' AND p.status = 'alive'
        AND m.person_sk IN (SELECT person_sk FROM person_accounts)
    GROUP BY m.household_sk
),
households_decided AS MATERIALIZED (
    SELECT household_sk AS entity_sk, household_id AS entity_id, head,
        {decided("household")}
    FROM (
        SELECT h.household_sk, h.household_id, hd.head,
            coalesce(c.children, 0) AS children, coalesce(c.born_before, 0) AS born_before
        FROM {src("households")} AS h
        LEFT JOIN children AS c USING (household_sk)
        LEFT JOIN heads AS hd USING (household_sk)
    )
)
SELECT * EXCLUDE (policy_no) FROM (
{" UNION ALL ".join(one_policy(i, pid) for i, pid in enumerate(sorted(MORE_POLICY_IDS)))}
)
ORDER BY policy_no, entity_sk
"""


def handwritten_duckdb_more(staged_dir: Path, as_of: dt.date) -> pl.DataFrame:
    """The six relation policies on `as_of`, by hand in DuckDB SQL: the compiled plan's rows."""
    return run_duckdb(duckdb_query_more(staged_dir, MoreDates.on(as_of)))
