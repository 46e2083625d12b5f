"""The six enterprise policies written by hand: in Polars and in DuckDB SQL.

Two baselines for the compiled plan (`jobs.evaluate.evaluate`), used by the
benchmark (`tests/benchmarks/test_policy_bench.py`) as the pipelines to beat
and by the tests as an independent reading of the shipped policy files:

* `handwritten_polars`: one lazy plan on the streaming engine; one group-by per
  (source, window) on the integer surrogate keys, conditions and amounts as
  plain columns, one wide row per enterprise sorted by its key, then one block
  of rows per policy, so the long table comes out in order without a sort;
* `handwritten_duckdb`: the same in one SQL query over the staged Parquet files
  (social security read once with FILTERed aggregates, which DuckDB does
  faster than two passes; Polars the other way round).

Both return exactly the compiled plan's rows and columns (`RESULT_SCHEMA`),
sorted by policy and entity.  The policies' constants are written out here,
as a person would copy them from the files in `policies/`; they hold for
as-of dates from 2026-03-01 to 2026-06-30, the months in which all six
enterprise policies are active and no dated parameter changes.

Exact money, as the compiler defines it: amounts are integer fen; a money
amount times a rate is exact (Decimal(38, 10) in Polars, DECIMAL in DuckDB);
a quotient keeps 10 decimal places rounded half to even (Decimal(38, 10) in
Polars; in DuckDB, which divides DECIMALs in floating point, integers scaled
by 10^10); the final amount is rounded half away from zero to the fen or the
yuan.  Unknown values follow docs/policies.md: a comparison with a missing
value is unknown, `unknown and false` is false, `unknown or true` is true, and
a condition that ends unknown is not met.  The few facts of the staged data
relied on (one row per enterprise and month, one account and one rating per
enterprise and year) are the keys `policies/sources.yaml` declares and ingest
enforces.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from eligibility import RESULT_SCHEMA
from jobs.staged import scan_staged, sql_relation, staged_file

__all__ = ["FIRST_AS_OF", "LAST_AS_OF", "POLICY_IDS", "handwritten_duckdb", "handwritten_polars"]

FIRST_AS_OF = dt.date(2026, 3, 1)  # tax-contribution-award is valid from 2026-03-01
LAST_AS_OF = dt.date(2026, 6, 30)  # small-business-relief is valid until 2026-06-30;
# job-stabilisation-refund's rates change on 2026-07-01

JOB_STABILISATION = "job-stabilisation-refund"
GRADUATE_HIRING = "graduate-hiring-subsidy"
TAX_AWARD = "tax-contribution-award"
HIGH_TECH = "high-tech-growth-award"
SMALL_BUSINESS = "small-business-relief"
STARTUP = "startup-subsidy"
POLICY_IDS = (
    GRADUATE_HIRING,
    HIGH_TECH,
    JOB_STABILISATION,
    SMALL_BUSINESS,
    STARTUP,
    TAX_AWARD,
)
PERIOD_ONCE = "once"

DEC = pl.Decimal(38, 10)
YUAN = 100  # fen

# job_stabilisation.yaml
SME_SIZES = ("micro", "small", "medium")
SME_RATE = Decimal("0.6")  # Art. 3(1), 60% until 2026-06-30
LARGE_RATE = Decimal("0.3")  # Art. 3(1), 30% until 2026-06-30
LAYOFF_LIMIT = Decimal("0.055")  # Art. 2(2)
LAYOFF_LIMIT_SMALL = Decimal("0.2")  # Art. 2(2), for 30 insured or fewer
SMALL_HEADCOUNT = 30
STABILISATION_CAP_FEN = 3_000_000 * YUAN
# graduate_hiring.yaml
PER_GRADUATE_FEN = 1500 * YUAN  # Art. 6
GRADUATE_CAP_FEN = 150_000 * YUAN  # Art. 6(3)
GRADUATE_MONTHS = 24  # graduated in the 24 months before the hire
# tax_contribution_award.yaml: marginal bands (from, to, rate), Art. 12(3)
TAX_BANDS = (
    (1_000_000 * YUAN, 5_000_000 * YUAN, Decimal("0.02")),
    (5_000_000 * YUAN, 20_000_000 * YUAN, Decimal("0.03")),
    (20_000_000 * YUAN, None, Decimal("0.04")),
)
TAX_AWARD_CAP_FEN = 2_000_000 * YUAN
GOOD_RATINGS = ("A", "B")
# high_tech_growth.yaml: (revenue at least, amount), Art. 8(2)
HIGH_TECH_TABLE = (
    (100_000_000 * YUAN, 500_000 * YUAN),
    (20_000_000 * YUAN, 200_000 * YUAN),
    (5_000_000 * YUAN, 100_000 * YUAN),
)
CERTIFIED_WITHIN_MONTHS = 36
# small_business_relief.yaml
RELIEF_FEN = 2000 * YUAN
REGISTERED_BEFORE = dt.date(2025, 1, 1)
TAX_MONTHS_MIN = 6
# startup_subsidy.yaml
STARTUP_WITHIN_MONTHS = 36
STARTUP_MIN_HEADCOUNT = 3
STARTUP_MIN_INSURED_MONTHS = 6
STARTUP_LARGE_HEADCOUNT = 10
STARTUP_LARGE_FEN = 10_000 * YUAN
STARTUP_FEN = 5_000 * YUAN

LISTS = ("serious_dishonesty", "tax_violation", "wage_arrears")


def _months_back(d: dt.date, n: int) -> dt.date:
    """d moved back n months (the day is kept: every date used here is valid)."""
    total = d.year * 12 + d.month - 1 - n
    return d.replace(year=total // 12, month=total % 12 + 1)


@dataclass(frozen=True)
class Dates:
    """The dates the six policies read on one as-of date."""

    as_of: dt.date
    year: str  # the benefit period of the yearly policies
    prev_first: dt.date  # previous_year: January to December of the year before
    prev_last: dt.date
    recent_first: dt.date  # last_12_months: the 12 complete months before as_of's month
    recent_last: dt.date
    three_years_ago: dt.date  # add_months(as_of, -36)

    @classmethod
    def on(cls, as_of: dt.date) -> Dates:
        """The dates for `as_of`, which must fall where all six policies are active."""
        if not FIRST_AS_OF <= as_of <= LAST_AS_OF:
            raise ValueError(
                f"the hand-written policies hold from {FIRST_AS_OF} to {LAST_AS_OF}, not {as_of}"
            )
        last_complete = _months_back(as_of.replace(day=1), 1)
        return cls(
            as_of=as_of,
            year=str(as_of.year),
            prev_first=dt.date(as_of.year - 1, 1, 1),
            prev_last=dt.date(as_of.year - 1, 12, 1),
            recent_first=_months_back(last_complete, 11),
            recent_last=last_complete,
            three_years_ago=_months_back(as_of, 36),
        )

    @property
    def social_first(self) -> dt.date:
        """First month of social security read for either window."""
        return min(self.prev_first, self.recent_first)

    @property
    def social_last(self) -> dt.date:
        """Last month of social security read for either window."""
        return max(self.prev_last, self.recent_last)


# --------------------------------------------------------------------------- Polars


def _dec(value: Decimal | int) -> pl.Expr:
    return pl.lit(Decimal(value), dtype=DEC)


def _scan(staged_dir: Path, source: str) -> pl.LazyFrame:
    return scan_staged(staged_file(staged_dir, source))


def polars_features(staged_dir: Path, d: Dates) -> pl.LazyFrame:
    """One row per enterprise with every value the six policies read."""
    sk = "enterprise_sk"
    month = pl.col("month")
    prev = month.is_between(d.prev_first, d.prev_last)
    recent = month.is_between(d.recent_first, d.recent_last)
    headcount = pl.col("insured_headcount")
    # One group-by per assessed window: measured faster than one pass over both
    # windows with filtered aggregations.  (enterprise, month) is the source's
    # key, so counting rows counts months.
    social = (
        _scan(staged_dir, "social_security_monthly")
        .filter(prev)
        .group_by(sk)
        .agg(
            pl.col("ui_premium_paid_fen").sum().alias("ui_premium_paid"),
            (pl.col("ui_premium_paid_fen") < pl.col("ui_premium_due_fen"))
            .sum()
            .alias("months_in_arrears"),
            headcount.filter(month == d.prev_first).first().alias("headcount_start"),
            headcount.filter(month == d.prev_last).first().alias("headcount_end"),
            headcount.sum().alias("headcount_total"),
            pl.len().alias("headcount_months"),
            pl.col("ui_new_claimants").sum().alias("ui_new_claimants"),
        )
    )
    social_recent = (
        _scan(staged_dir, "social_security_monthly")
        .filter(recent)
        .group_by(sk)
        .agg(
            headcount.filter(month == d.recent_last).first().alias("headcount_end_recent"),
            (headcount >= STARTUP_MIN_HEADCOUNT).sum().alias("insured_months_recent"),
        )
    )
    tax = (
        _scan(staged_dir, "tax_monthly")
        .filter(prev)
        .group_by(sk)
        .agg(
            pl.col("tax_paid_fen").sum().alias("tax_paid"),
            pl.col("revenue_fen").sum().alias("revenue"),
            (pl.col("tax_paid_fen") > 0).sum().alias("tax_months"),
        )
    )
    rating = (
        _scan(staged_dir, "tax_ratings")
        .filter(pl.col("year") == d.prev_first.year)
        .select(sk, pl.col("rating").alias("tax_rating"))
    )
    accounts = _scan(staged_dir, "enterprise_accounts").select(
        sk, pl.lit(True).alias("has_bank_account")
    )
    si_accounts = (
        _scan(staged_dir, "enterprise_si_accounts")
        .select(sk, pl.lit(True).alias("has_si_account"))
        .unique(sk)
    )
    on_list = (pl.col("listed_on") <= d.as_of) & (
        pl.col("removed_on").is_null() | (pl.col("removed_on") > d.as_of)
    )
    listed = (
        _scan(staged_dir, "credit_lists")
        .filter(pl.col(sk).is_not_null() & on_list & pl.col("list").is_in(list(LISTS)))
        .group_by(sk)
        .agg([(pl.col("list") == name).any().alias(name) for name in LISTS])
    )
    graduated = (
        _scan(staged_dir, "graduates").group_by("person_sk").agg(pl.col("graduated_on").max())
    )
    # features.yaml's graduates_hired: graduated in the 24 months before the hire
    # month, or in the hire month itself (hired_in is that month's first day).
    hired_in = pl.col("from_month")
    graduates_hired = (
        _scan(staged_dir, "employment")
        .filter(pl.col(sk).is_not_null() & hired_in.is_between(d.prev_first, d.prev_last))
        .join(graduated, on="person_sk", how="inner")
        .filter(
            (pl.col("graduated_on") >= hired_in.dt.offset_by(f"-{GRADUATE_MONTHS}mo"))
            & (pl.col("graduated_on") < hired_in.dt.offset_by("1mo"))
        )
        .group_by(sk)
        .agg(pl.len().alias("graduates_hired"))
    )
    frame = _scan(staged_dir, "enterprises").select(
        sk,
        "credit_code",
        "status",
        "size_class",
        "legal_form",
        "registered_on",
        "is_high_tech",
        "high_tech_certified_on",
    )
    for part in (
        social,
        social_recent,
        tax,
        rating,
        accounts,
        si_accounts,
        listed,
        graduates_hired,
    ):
        frame = frame.join(part, on=sk, how="left")
    zero = [
        "ui_premium_paid",
        "months_in_arrears",
        "ui_new_claimants",
        "insured_months_recent",
        "tax_paid",
        "revenue",
        "tax_months",
        "graduates_hired",
    ]
    return frame.with_columns(
        pl.col(zero).fill_null(0),
        pl.col("has_bank_account", "has_si_account", *LISTS).fill_null(False),
    )


def _conditions_polars(d: Dates) -> dict[str, list[tuple[str, pl.Expr]]]:
    """Each policy's conditions in order: (id, expression that may be unknown)."""
    c = pl.col
    active = c("status") == "active"
    account = c("has_bank_account")
    honest = ~c("serious_dishonesty")
    # layoff rates: quotients keep 10 places (Decimal), a zero denominator is unknown
    start, end = c("headcount_start"), c("headcount_end")
    by_headcount = (start - end).cast(DEC) / pl.when(start != 0).then(start.cast(DEC))
    average = c("headcount_total").cast(DEC) / pl.when(c("headcount_months") > 0).then(
        c("headcount_months").cast(DEC)
    )
    by_claimants = c("ui_new_claimants").cast(DEC) / pl.when(average != 0).then(average)
    limit = (
        pl.when(end <= SMALL_HEADCOUNT).then(_dec(LAYOFF_LIMIT_SMALL)).otherwise(_dec(LAYOFF_LIMIT))
    )
    return {
        JOB_STABILISATION: [
            ("active", active),
            ("paid-premiums", (c("ui_premium_paid") > 0) & (c("months_in_arrears") == 0)),
            ("layoff-rate", (by_headcount <= limit) | (by_claimants <= limit)),
            ("not-seriously-dishonest", honest),
            # a small or micro firm without a corporate account: its contribution account
            (
                "has-account",
                account | (c("has_si_account") & c("size_class").is_in(["micro", "small"])),
            ),
        ],
        GRADUATE_HIRING: [
            ("active", active),
            ("hired-graduates", c("graduates_hired") >= 1),
            ("premiums-paid", c("months_in_arrears") == 0),
            ("not-seriously-dishonest", honest),
            ("has-account", account),
        ],
        TAX_AWARD: [
            ("active", active),
            ("good-tax-credit", c("tax_rating").is_in(list(GOOD_RATINGS))),
            ("no-tax-violation", ~c("tax_violation") & honest),
            ("has-account", account),
        ],
        HIGH_TECH: [
            ("active", active),
            (
                "certified-recently",
                c("is_high_tech") & (c("high_tech_certified_on") >= d.three_years_ago),
            ),
            ("not-seriously-dishonest", honest),
            ("has-account", account),
        ],
        SMALL_BUSINESS: [
            (
                "small-subject",
                (c("legal_form") == "individual_business") | (c("size_class") == "micro"),
            ),
            ("active", active),
            ("established", c("registered_on") < REGISTERED_BEFORE),
            ("kept-operating", c("tax_months") >= TAX_MONTHS_MIN),
            ("not-seriously-dishonest", honest),
            ("has-account", account),
        ],
        STARTUP: [
            ("active", active),
            ("new-business", c("registered_on") >= _months_back(d.as_of, STARTUP_WITHIN_MONTHS)),
            (
                # six months with three or more insured, and three or more at the end
                "creates-jobs",
                (c("headcount_end_recent") >= STARTUP_MIN_HEADCOUNT)
                & (c("insured_months_recent") >= STARTUP_MIN_INSURED_MONTHS),
            ),
            ("not-listed", ~c("serious_dishonesty") & ~c("wage_arrears")),
            ("has-account", account),
        ],
    }


def _amounts_polars() -> dict[str, pl.Expr]:
    """Each policy's amount in Int64 fen, before eligibility (null when unknown)."""
    c = pl.col
    sme = c("size_class").is_null() | c("size_class").is_in(list(SME_SIZES))
    refund = c("ui_premium_paid").cast(DEC) * pl.when(sme).then(_dec(SME_RATE)).otherwise(
        _dec(LARGE_RATE)
    )
    tax = c("tax_paid")
    slices = []
    for low, high, rate in TAX_BANDS:
        top = tax if high is None else pl.min_horizontal(tax, high)
        slices.append(pl.max_horizontal(top - low, 0).cast(DEC) * _dec(rate))
    award = pl.min_horizontal(pl.sum_horizontal(slices), _dec(TAX_AWARD_CAP_FEN))
    award_yuan = (award / _dec(YUAN)).round(0, mode="half_away_from_zero").cast(pl.Int64)
    table = pl.lit(0, dtype=pl.Int64)
    for at_least, fen in reversed(HIGH_TECH_TABLE):
        table = pl.when(c("revenue") >= at_least).then(fen).otherwise(table)
    return {
        JOB_STABILISATION: pl.min_horizontal(refund, _dec(STABILISATION_CAP_FEN))
        .round(0, mode="half_away_from_zero")
        .cast(pl.Int64),
        GRADUATE_HIRING: pl.min_horizontal(
            PER_GRADUATE_FEN * c("graduates_hired"), GRADUATE_CAP_FEN
        ),
        TAX_AWARD: award_yuan * YUAN,
        HIGH_TECH: table.cast(pl.Int64),
        SMALL_BUSINESS: pl.lit(RELIEF_FEN, dtype=pl.Int64),
        STARTUP: pl.when(c("headcount_end_recent") >= STARTUP_LARGE_HEADCOUNT)
        .then(STARTUP_LARGE_FEN)
        .otherwise(STARTUP_FEN)
        .cast(pl.Int64),
    }


RESULT_FIELDS = ("eligible", "amount_fen", "reason", "mask", "payee", "rank")
# the budgets' rank_by of graduate_hiring.yaml and high_tech_growth.yaml
RANK_BY = {GRADUATE_HIRING: "graduates_hired", HIGH_TECH: "revenue"}


def _decision(policy_id: str, conditions: list[tuple[str, pl.Expr]]) -> list[pl.Expr]:
    """The policy's result columns from its condition columns and its amount column."""
    passed = [pl.col(f"{policy_id}:{cid}") for cid, _ in conditions]
    amount = pl.col(f"{policy_id}:amount")
    eligible = pl.all_horizontal(passed) & amount.is_not_null() & (amount > 0)
    # the first failing condition, else why an eligible-looking entity is not paid
    reason = pl.when(amount <= 0).then(pl.lit("amount_zero")).otherwise(pl.lit(None, pl.String))
    reason = pl.when(amount.is_null()).then(pl.lit("amount_unknown")).otherwise(reason)
    for (cid, _), p in reversed(list(zip(conditions, passed, strict=True))):
        reason = pl.when(~p).then(pl.lit(cid)).otherwise(reason)
    mask = pl.sum_horizontal([p.cast(pl.Int64) * (1 << i) for i, p in enumerate(passed)])
    out = {
        "eligible": eligible,
        "amount_fen": pl.when(eligible).then(amount).otherwise(0).cast(pl.Int64),
        "reason": reason,
        "mask": mask,
        "payee": pl.when(eligible).then(pl.col("credit_code")),
        "rank": (
            pl.col(RANK_BY[policy_id]).cast(pl.Float64)
            if policy_id in RANK_BY
            else pl.lit(None, dtype=pl.Float64)
        ),
    }
    return [out[f].alias(f"{policy_id}|{f}") for f in RESULT_FIELDS]


def handwritten_polars(staged_dir: Path, as_of: dt.date) -> pl.DataFrame:
    """The six enterprise policies on `as_of`, by hand in Polars: the compiled plan's rows."""
    d = Dates.on(as_of)
    conditions = _conditions_polars(d)
    amounts = _amounts_polars()
    decided = polars_features(staged_dir, d).with_columns(
        # a condition that ends unknown is not met
        *[
            expr.fill_null(False).alias(f"{pid}:{cid}")
            for pid, conds in conditions.items()
            for cid, expr in conds
        ],
        *[expr.alias(f"{pid}:amount") for pid, expr in amounts.items()],
    )
    # One row per enterprise with every policy's result, in key order (a sort of N
    # rows, not 6 N); then one block per policy, in policy order: the long table
    # comes out sorted by (policy, enterprise) without an unpivot or a sort of it.
    wide = decided.select(
        "enterprise_sk",
        "credit_code",
        *[e for pid in POLICY_IDS for e in _decision(pid, conditions[pid])],
    ).sort("enterprise_sk")
    blocks = [
        wide.select(
            pl.lit(pid).alias("policy_id"),
            pl.lit(PERIOD_ONCE if pid in (SMALL_BUSINESS, STARTUP) else d.year).alias("period"),
            pl.lit("enterprise").alias("target"),
            pl.col("enterprise_sk").alias("entity_sk"),
            pl.col("credit_code").alias("entity_id"),
            *[pl.col(f"{pid}|{f}").alias(f) for f in RESULT_FIELDS],
        )
        for pid in sorted(POLICY_IDS)
    ]
    out = pl.concat(blocks).collect(engine="streaming")
    return out.cast(RESULT_SCHEMA)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- DuckDB

# n / d rounded half to even to a whole number; NULL when d is 0.  DuckDB divides
# DECIMALs in floating point, so a Decimal(38, 10) quotient is computed on integers
# scaled by 10^10: x / y at 10 places is rdiv(X * 10^10, Y) for X = x * 10^10, Y = y * 10^10.
_RDIV = """
CREATE TEMP MACRO rdiv(n, d) AS (
    CASE WHEN d = 0 THEN NULL ELSE
        n // d + CASE
            WHEN 2 * abs(n % d) > abs(d) OR (2 * abs(n % d) = abs(d) AND (n // d) % 2 <> 0)
            THEN sign(n) * sign(d) ELSE 0 END
    END)
"""


def _sql_text(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _sql_date(d: dt.date) -> str:
    return f"DATE '{d.isoformat()}'"


def duckdb_query(staged_dir: Path, d: Dates) -> str:
    """The SQL for the six policies on the dates `d`, over the staged Parquet files."""

    def src(name: str) -> str:
        return sql_relation(staged_file(staged_dir, name))

    prev = f"month BETWEEN {_sql_date(d.prev_first)} AND {_sql_date(d.prev_last)}"
    recent = f"month BETWEEN {_sql_date(d.recent_first)} AND {_sql_date(d.recent_last)}"
    as_of = _sql_date(d.as_of)
    scale = "10000000000::HUGEINT"  # 10^10: Decimal(38, 10) as integers
    limit_small = int(LAYOFF_LIMIT_SMALL * 10**10)
    limit = int(LAYOFF_LIMIT * 10**10)
    bands = " + ".join(
        f"greatest({'tax_paid' if hi is None else f'least(tax_paid, {hi})'} - {lo}, 0) * {rate}"
        for lo, hi, rate in TAX_BANDS
    )
    high_tech = " ".join(f"WHEN revenue >= {at} THEN {fen}" for at, fen in HIGH_TECH_TABLE)
    periods = {
        pid: PERIOD_ONCE if pid in (SMALL_BUSINESS, STARTUP) else d.year for pid in POLICY_IDS
    }
    conditions: dict[str, list[tuple[str, str]]] = {
        JOB_STABILISATION: [
            ("active", "status = 'active'"),
            ("paid-premiums", "ui_premium_paid > 0 AND months_in_arrears = 0"),
            (
                "layoff-rate",
                "layoff_by_headcount <= layoff_limit OR layoff_by_claimants <= layoff_limit",
            ),
            ("not-seriously-dishonest", "NOT serious_dishonesty"),
            (
                "has-account",
                "has_bank_account OR (has_si_account AND size_class IN ('micro', 'small'))",
            ),
        ],
        GRADUATE_HIRING: [
            ("active", "status = 'active'"),
            ("hired-graduates", "graduates_hired >= 1"),
            ("premiums-paid", "months_in_arrears = 0"),
            ("not-seriously-dishonest", "NOT serious_dishonesty"),
            ("has-account", "has_bank_account"),
        ],
        TAX_AWARD: [
            ("active", "status = 'active'"),
            ("good-tax-credit", f"tax_rating IN ({_sql_text(GOOD_RATINGS)})"),
            ("no-tax-violation", "NOT tax_violation AND NOT serious_dishonesty"),
            ("has-account", "has_bank_account"),
        ],
        HIGH_TECH: [
            ("active", "status = 'active'"),
            (
                "certified-recently",
                f"is_high_tech AND high_tech_certified_on >= {_sql_date(d.three_years_ago)}",
            ),
            ("not-seriously-dishonest", "NOT serious_dishonesty"),
            ("has-account", "has_bank_account"),
        ],
        SMALL_BUSINESS: [
            ("small-subject", "legal_form = 'individual_business' OR size_class = 'micro'"),
            ("active", "status = 'active'"),
            ("established", f"registered_on < {_sql_date(REGISTERED_BEFORE)}"),
            ("kept-operating", f"tax_months >= {TAX_MONTHS_MIN}"),
            ("not-seriously-dishonest", "NOT serious_dishonesty"),
            ("has-account", "has_bank_account"),
        ],
        STARTUP: [
            ("active", "status = 'active'"),
            (
                "new-business",
                f"registered_on >= {_sql_date(_months_back(d.as_of, STARTUP_WITHIN_MONTHS))}",
            ),
            (
                "creates-jobs",
                f"headcount_end_recent >= {STARTUP_MIN_HEADCOUNT}"
                f" AND insured_months_recent >= {STARTUP_MIN_INSURED_MONTHS}",
            ),
            ("not-listed", "NOT serious_dishonesty AND NOT wage_arrears"),
            ("has-account", "has_bank_account"),
        ],
    }
    amounts = {
        JOB_STABILISATION: (
            "CAST(round(least(ui_premium_paid * CASE WHEN size_class IS NULL OR size_class IN"
            f" ({_sql_text(SME_SIZES)}) THEN {SME_RATE} ELSE {LARGE_RATE} END,"
            f" {STABILISATION_CAP_FEN}), 0) AS BIGINT)"
        ),
        GRADUATE_HIRING: f"least({PER_GRADUATE_FEN} * graduates_hired, {GRADUATE_CAP_FEN})",
        # round(x, -2): fen rounded half away from zero to whole yuan
        TAX_AWARD: f"CAST(round(least({bands}, {TAX_AWARD_CAP_FEN}), -2) AS BIGINT)",
        HIGH_TECH: f"CASE {high_tech} ELSE 0 END",
        SMALL_BUSINESS: f"{RELIEF_FEN}",
        STARTUP: (
            f"CASE WHEN headcount_end_recent >= {STARTUP_LARGE_HEADCOUNT}"
            f" THEN {STARTUP_LARGE_FEN} ELSE {STARTUP_FEN} END"
        ),
    }

    def column(pid: str, what: str) -> str:
        return f'"{pid}:{what}"'

    decided = ",\n        ".join(
        [
            f"coalesce({expr}, false) AS {column(pid, cid)}"
            for pid, conds in conditions.items()
            for cid, expr in conds
        ]
        + [f"{expr} AS {column(pid, 'amount')}" for pid, expr in amounts.items()]
    )

    def one_policy(number: int, pid: str) -> str:
        conds = conditions[pid]
        passed = [column(pid, cid) for cid, _ in conds]
        amount = column(pid, "amount")
        eligible = " AND ".join([*passed, f"{amount} IS NOT NULL", f"{amount} > 0"])
        reason = " ".join(
            f"WHEN NOT {p} THEN '{cid}'" for p, (cid, _) in zip(passed, conds, strict=True)
        )
        mask = " + ".join(f"CAST({p} AS BIGINT) * {1 << i}" for i, p in enumerate(passed))
        rank = f"CAST({RANK_BY[pid]} AS DOUBLE)" if pid in RANK_BY else "CAST(NULL AS DOUBLE)"
        return f"""
    SELECT {number} AS policy_no, '{pid}' AS policy_id, '{periods[pid]}' AS period,
        'enterprise' AS target,
        enterprise_sk AS entity_sk, credit_code AS entity_id,
        {eligible} AS eligible,
        CASE WHEN {eligible} THEN {amount} ELSE 0 END AS amount_fen,
        CASE {reason} WHEN {amount} IS NULL THEN 'amount_unknown'
            WHEN {amount} <= 0 THEN 'amount_zero' END AS reason,
        {mask} AS mask,
        CASE WHEN {eligible} THEN credit_code END AS payee,
        {rank} AS rank
    FROM decided"""

    return f"""
WITH social AS (
    SELECT enterprise_sk,
        sum(ui_premium_paid_fen) FILTER (WHERE {prev}) AS ui_premium_paid,
        count(*) FILTER (WHERE {prev} AND ui_premium_paid_fen < ui_premium_due_fen)
            AS months_in_arrears,
        any_value(insured_headcount) FILTER (WHERE month = {_sql_date(d.prev_first)})
            AS headcount_start,
        any_value(insured_headcount) FILTER (WHERE month = {_sql_date(d.prev_last)})
            AS headcount_end,
        sum(insured_headcount) FILTER (WHERE {prev}) AS headcount_total,
        count(*) FILTER (WHERE {prev}) AS headcount_months,
        sum(ui_new_claimants) FILTER (WHERE {prev}) AS ui_new_claimants,
        any_value(insured_headcount) FILTER (WHERE month = {_sql_date(d.recent_last)})
            AS headcount_end_recent,
        count(*) FILTER (WHERE {recent} AND insured_headcount >= {STARTUP_MIN_HEADCOUNT})
            AS insured_months_recent
    FROM {src("social_security_monthly")}
    WHERE month BETWEEN {_sql_date(d.social_first)} AND {_sql_date(d.social_last)}
    GROUP BY enterprise_sk
),
tax AS (
    SELECT enterprise_sk, sum(tax_paid_fen) AS tax_paid, sum(revenue_fen) AS revenue,
        count(*) FILTER (WHERE tax_paid_fen > 0) AS tax_months
    FROM {src("tax_monthly")}
    WHERE {prev}
    GROUP BY enterprise_sk
),
rating AS (
    SELECT enterprise_sk, rating AS tax_rating
    FROM {src("tax_ratings")}
    WHERE year = {d.prev_first.year}
),
accounts AS (SELECT DISTINCT enterprise_sk FROM {src("enterprise_accounts")}),
si_accounts AS (SELECT DISTINCT enterprise_sk FROM {src("enterprise_si_accounts")}),
listed AS (
    SELECT enterprise_sk,
        {", ".join(f"bool_or(list = '{n}') AS {n}" for n in LISTS)}
    FROM {src("credit_lists")}
    WHERE enterprise_sk IS NOT NULL AND list IN ({_sql_text(LISTS)})
        AND listed_on <= {as_of} AND (removed_on IS NULL OR removed_on > {as_of})
    GROUP BY enterprise_sk
),
graduated AS (
    SELECT person_sk, max(graduated_on) AS graduated_on
    FROM {src("graduates")}
    GROUP BY person_sk
),
hires AS (
    SELECT e.enterprise_sk, count(*) AS graduates_hired
    FROM {src("employment")} AS e JOIN graduated AS g ON g.person_sk = e.person_sk
    WHERE e.enterprise_sk IS NOT NULL
        AND e.from_month BETWEEN {_sql_date(d.prev_first)} AND {_sql_date(d.prev_last)}
        AND g.graduated_on >= e.from_month - INTERVAL {GRADUATE_MONTHS} MONTH
        AND g.graduated_on < e.from_month + INTERVAL 1 MONTH
    GROUP BY e.enterprise_sk
),
features AS (
    SELECT e.enterprise_sk, e.credit_code, e.status, e.size_class, e.legal_form,
        e.registered_on, e.is_high_tech, e.high_tech_certified_on,
        CAST(coalesce(s.ui_premium_paid, 0) AS BIGINT) AS ui_premium_paid,
        coalesce(s.months_in_arrears, 0) AS months_in_arrears,
        s.headcount_start, s.headcount_end, s.headcount_end_recent,
        s.headcount_total, s.headcount_months,
        CAST(coalesce(s.ui_new_claimants, 0) AS BIGINT) AS ui_new_claimants,
        coalesce(s.insured_months_recent, 0) AS insured_months_recent,
        CAST(coalesce(t.tax_paid, 0) AS BIGINT) AS tax_paid,
        CAST(coalesce(t.revenue, 0) AS BIGINT) AS revenue,
        coalesce(t.tax_months, 0) AS tax_months,
        r.tax_rating,
        a.enterprise_sk IS NOT NULL AS has_bank_account,
        sa.enterprise_sk IS NOT NULL AS has_si_account,
        {", ".join(f"coalesce(l.{n}, false) AS {n}" for n in LISTS)},
        coalesce(h.graduates_hired, 0) AS graduates_hired
    FROM {src("enterprises")} AS e
    LEFT JOIN social AS s USING (enterprise_sk)
    LEFT JOIN tax AS t USING (enterprise_sk)
    LEFT JOIN rating AS r USING (enterprise_sk)
    LEFT JOIN accounts AS a USING (enterprise_sk)
    LEFT JOIN si_accounts AS sa USING (enterprise_sk)
    LEFT JOIN listed AS l USING (enterprise_sk)
    LEFT JOIN hires AS h USING (enterprise_sk)
),
averaged AS (
    SELECT *,
        -- quotients at 10 places, half to even, as integers scaled by 10^10
        CASE WHEN headcount_months > 0
            THEN rdiv(CAST(headcount_total AS HUGEINT) * {scale}, headcount_months) END
            AS headcount_average
    FROM features
),
rates AS (
    SELECT *,
        rdiv(CAST(headcount_start - headcount_end AS HUGEINT) * {scale}, headcount_start)
            AS layoff_by_headcount,
        rdiv(CAST(ui_new_claimants AS HUGEINT) * {scale} * {scale}, headcount_average)
            AS layoff_by_claimants,
        CASE WHEN headcount_end <= {SMALL_HEADCOUNT} THEN {limit_small} ELSE {limit} END
            AS layoff_limit
    FROM averaged
),
decided AS MATERIALIZED (
    SELECT enterprise_sk, credit_code, graduates_hired, revenue,
        {decided}
    FROM rates
)
-- sorted by a policy number rather than the policy id: faster (docs/benchmarks.md)
SELECT * EXCLUDE (policy_no) FROM (
{" UNION ALL ".join(one_policy(i, pid) for i, pid in enumerate(sorted(POLICY_IDS)))}
)
ORDER BY policy_no, entity_sk
"""


def run_duckdb(query: str, *setup: str) -> pl.DataFrame:
    """A hand-written query's decision table, on a fresh in-memory DuckDB (after the
    `setup` statements), in the compiled plan's types."""
    import duckdb  # a dev dependency: the benchmark's peer, not the engine's

    with duckdb.connect() as con:
        for statement in setup:
            con.execute(statement)
        out: pl.DataFrame = con.sql(query).pl()
    return out.cast(RESULT_SCHEMA)  # type: ignore[arg-type]


def handwritten_duckdb(staged_dir: Path, as_of: dt.date) -> pl.DataFrame:
    """The six enterprise policies on `as_of`, by hand in DuckDB SQL: the compiled plan's rows."""
    return run_duckdb(duckdb_query(staged_dir, Dates.on(as_of)), _RDIV)
