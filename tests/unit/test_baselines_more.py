"""The hand-written baselines of the six relation policies agree with the compiled plan.

The compiled policies (`jobs.evaluate.evaluate`) and the same policies by hand in
Polars and in DuckDB SQL (`disburse.bench.baselines_more`: the childcare subsidy,
the two allowances for the very old, the job-expansion and stay-at-post grants
and the third-child grant) must give identical decision tables on a synthetic
city, on the shared city with broken rows quarantined (employers from outside the
city among them), and on a copy of the first whose persons, households, accounts
and employment spells are pushed to the edges the policies name (birthdays on
the first of the month, 18th, 80th, 90th and 100th birthdays on the run's dates,
a leap-day child, twins, the first hire of the year shared by two enterprises in
one month, more than 50 young hires and more than 400 stayers at one enterprise,
spells that begin or end on the festival's months or overlap, guardians and heads
who cannot be paid), so that the benchmark compares equal work and each reading checks the
others.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from disburse.bench.baselines_more import (
    MORE_POLICY_IDS,
    handwritten_duckdb_more,
    handwritten_polars_more,
)
from disburse.bench.pipeline import bench_policies
from disburse.synth import generate
from eligibility import PolicySet
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.staged import scan_staged

SYNTH_AS_OF = dt.date(2026, 4, 1)  # monthly data 2024-04..2026-03
# The first and last days on which all six policies are active; the benchmark's
# dates, 2026-03-15 and 2026-04-01, are checked on the edge city.
AS_OF_DATES = [dt.date(2026, 3, 1), dt.date(2026, 6, 30)]
BENCH_DATES = [dt.date(2026, 3, 15), dt.date(2026, 4, 1)]
TARGETS = {"person": "persons", "enterprise": "enterprises", "household": "households"}


@pytest.fixture(scope="module")
def more_policies() -> PolicySet:
    """The six policies the module writes by hand, from the benchmark's fixed set."""
    pset = bench_policies(load_source_catalogue())
    mine = [p for p in pset.policies if p.id in MORE_POLICY_IDS]
    assert sorted(p.id for p in mine) == sorted(MORE_POLICY_IDS)
    return PolicySet(pset.catalogue, mine)


@pytest.fixture(scope="module")
def synth_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The staged sources of a synthetic city of 3,000 enterprises and 15,000 persons."""
    root = tmp_path_factory.mktemp("more_city")
    generate(root / "source", enterprises=3_000, persons=15_000, seed=11, as_of=SYNTH_AS_OF)
    stage(root / "source", root / "staged", catalogue=load_source_catalogue())
    return root / "staged"


@pytest.fixture(scope="module")
def messy_city(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared city with about 1% broken rows, staged (the broken ones quarantined)."""
    out = tmp_path_factory.mktemp("more_messy") / "staged"
    stage(city, out, catalogue=load_source_catalogue())
    return out


# Birth dates at the policies' edges on the dates tested (2026-03-01 to 2026-06-30).
EDGE_BIRTHS = [
    # 80, 90 and 100 on the first of a month of the range, or a day after
    *[dt.date(y, m, d) for y in (1926, 1936, 1946) for m in (3, 4, 6) for d in (1, 2)],
    dt.date(1946, 2, 28),
    dt.date(1936, 6, 30),
    # under three in 2026 or not: third birthdays on 1 January, on a first, a leap day
    dt.date(2022, 12, 31),
    dt.date(2023, 1, 1),
    dt.date(2023, 1, 2),
    dt.date(2023, 3, 1),
    dt.date(2023, 6, 15),
    dt.date(2024, 2, 29),
    dt.date(2025, 12, 31),
    dt.date(2026, 1, 1),
    dt.date(2026, 2, 1),
    # 18 on the benchmark's dates and the range's ends: guardians of age, minors
    dt.date(2008, 3, 1),
    dt.date(2008, 3, 2),
    dt.date(2008, 3, 14),
    dt.date(2008, 3, 15),
    dt.date(2008, 3, 16),
    dt.date(2008, 4, 1),
    dt.date(2008, 4, 2),
    dt.date(2008, 6, 30),
    # children born around the third-child measures' first day, twins among them
    dt.date(2025, 6, 30),
    dt.date(2025, 7, 1),
    dt.date(2025, 7, 1),
    dt.date(2025, 7, 2),
    dt.date(2019, 9, 9),
    dt.date(2015, 5, 5),
    # 16 and 25 on the first of a hire month of 2025
    dt.date(2009, 5, 1),
    dt.date(2009, 5, 2),
    dt.date(2000, 5, 1),
    dt.date(2000, 5, 2),
]
HIRE_MONTHS = [dt.date(2025, m, 1) for m in (1, 5, 12)] + [dt.date(2026, 1, 1), dt.date(2026, 2, 1)]
LEAVE_MONTHS = [None, dt.date(2025, 12, 1), dt.date(2026, 1, 1), dt.date(2026, 2, 1)]


def _some(rng: np.random.Generator, n: int, share: float) -> pl.Series:
    return pl.Series(rng.random(n) < share)


def _payable_enterprises(city: Path) -> pl.DataFrame:
    """Active enterprises with an account, on no credit list: their amounts show."""
    listed = scan_staged(city / "credit_lists.parquet").collect()["enterprise_sk"].drop_nulls()
    return (
        scan_staged(city / "enterprises.parquet")
        .collect()
        .filter((pl.col("status") == "active") & ~pl.col("enterprise_sk").is_in(listed.implode()))
        .join(
            scan_staged(city / "enterprise_accounts.parquet").collect(),
            on="enterprise_sk",
            how="semi",
        )
        .select("enterprise_sk", "credit_code")
        .sort("credit_code")
    )


def _spells(persons: pl.DataFrame, employer: pl.DataFrame, hired: dt.date) -> pl.DataFrame:
    """One spell from `hired`, still lasting, of each person at the one employer."""
    return persons.select("person_id", "person_sk").with_columns(
        credit_code=pl.lit(employer["credit_code"].item()),
        from_month=pl.lit(hired),
        to_month=pl.lit(None, dtype=pl.Date),
        enterprise_sk=pl.lit(employer["enterprise_sk"].item(), dtype=pl.Int32),
    )


@pytest.fixture(scope="module")
def edge_city(synth_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic city with persons, households and spells moved to the policies' edges."""
    city = synth_city
    out = tmp_path_factory.mktemp("more_edge_city")
    for f in city.glob("*.parquet"):
        shutil.copy(f, out / f.name)
    rng = np.random.default_rng(5)

    persons = scan_staged(city / "persons.parquet").collect()
    n = persons.height
    births = pl.Series(EDGE_BIRTHS)[rng.integers(0, len(EDGE_BIRTHS), n)]
    persons = persons.with_columns(
        birth_on=pl.when(_some(rng, n, 0.4)).then(births).otherwise("birth_on"),
        status=pl.when(_some(rng, n, 0.05)).then(pl.lit("deceased")).otherwise("status"),
    )
    employment = scan_staged(city / "employment.parquet").collect()
    # Persons never employed become the young first hires of three enterprises: 70 taken
    # on by one in May 2025 (more than the 50 it may count), 10 of them also by an
    # enterprise with a larger credit code, 5 by one with a smaller, 5 by an employer
    # outside the city, all in the same month (the smaller credit code counts them).
    never = persons.join(employment, on="person_sk", how="anti").head(70)
    persons = persons.with_columns(
        birth_on=pl.when(pl.col("person_sk").is_in(never["person_sk"].implode()))
        .then(pl.lit(dt.date(2003, 5, 5)))
        .otherwise("birth_on")
    )
    payable = _payable_enterprises(city)
    smaller, first, larger, stays, twice = (payable[i : i + 1] for i in (0, 1, 2, 3, 4))
    may = dt.date(2025, 5, 1)
    elsewhere = pl.DataFrame(
        {"credit_code": ["91110000100000000A"], "enterprise_sk": [None]},
        schema={"credit_code": pl.String, "enterprise_sk": pl.Int32},
    )
    # Non-local persons employed from before the festival at one enterprise: past the
    # 200,000 yuan cap (400 employees); three of them also at another, each in two
    # overlapping spells there (count(staff, ...) counts spells).
    non_local = persons.filter(
        ~pl.col("region_code").str.starts_with("3301")
        & ~pl.col("person_sk").is_in(never["person_sk"].implode())
    ).head(410)
    crafted = pl.concat(
        [
            _spells(never, first, may),
            _spells(never.head(10), larger, may),
            _spells(never.tail(5), smaller, may),
            _spells(never.slice(20, 5), elsewhere, may),
            _spells(non_local, stays, dt.date(2024, 6, 1)),
            _spells(non_local.tail(3), twice, dt.date(2024, 6, 1)),
            _spells(non_local.tail(3), twice, dt.date(2025, 1, 1)),
        ]
    ).select(employment.columns)
    m = employment.height
    employment = pl.concat(
        [
            employment.with_columns(
                from_month=pl.when(_some(rng, m, 0.2))
                .then(pl.Series(HIRE_MONTHS)[rng.integers(0, len(HIRE_MONTHS), m)])
                .otherwise("from_month"),
                to_month=pl.when(_some(rng, m, 0.3))
                .then(pl.Series(LEAVE_MONTHS, dtype=pl.Date)[rng.integers(0, len(LEAVE_MONTHS), m)])
                .otherwise("to_month"),
            ).with_columns(
                to_month=pl.when(pl.col("to_month") >= pl.col("from_month")).then("to_month")
            ),
            crafted,
        ]
    ).unique(["person_id", "credit_code", "from_month"], keep="first", maintain_order=True)
    employment.write_parquet(out / "employment.parquet")
    persons.write_parquet(out / "persons.parquet")

    accounts = scan_staged(city / "person_accounts.parquet").collect()
    accounts.filter(_some(rng, accounts.height, 0.85)).write_parquet(
        out / "person_accounts.parquet"
    )
    # Households without a head, with two, and persons in none.
    members = scan_staged(city / "household_members.parquet").collect()
    k = members.height
    flip = _some(rng, k, 0.1)
    members = members.with_columns(
        role=pl.when(flip & (pl.col("role") == "head"))
        .then(pl.lit("member"))
        .when(flip)
        .then(pl.lit("head"))
        .otherwise("role")
    ).filter(_some(rng, k, 0.95))
    members.write_parquet(out / "household_members.parquet")
    # Parents who are also recorded as guardians; some relations missing.
    relations = scan_staged(city / "relations.parquet").collect()
    also = relations.filter(
        (pl.col("relation") == "parent") & _some(rng, relations.height, 0.1)
    ).with_columns(relation=pl.lit("guardian"))
    relations = pl.concat([relations, also]).unique(
        ["person_id", "related_person_id", "relation"], maintain_order=True
    )
    relations.filter(_some(rng, relations.height, 0.95)).write_parquet(out / "relations.parquet")
    return out


def _compare(staged: Path, policies: PolicySet, as_of: dt.date) -> pl.DataFrame:
    compiled = evaluate(staged, policies, as_of)
    sizes = {
        target: scan_staged(staged / f"{source}.parquet").select(pl.len()).collect().item()
        for target, source in TARGETS.items()
    }
    assert compiled.height == 3 * sizes["person"] + 2 * sizes["enterprise"] + sizes["household"]
    assert_frame_equal(handwritten_polars_more(staged, as_of), compiled)
    pytest.importorskip("duckdb")
    assert_frame_equal(handwritten_duckdb_more(staged, as_of), compiled)
    return compiled


@pytest.mark.parametrize("as_of", AS_OF_DATES, ids=str)
@pytest.mark.parametrize("which", ["synth_city", "messy_city"])
def test_baselines_more_match_compiled_plan(
    which: str, more_policies: PolicySet, as_of: dt.date, request: pytest.FixtureRequest
) -> None:
    """Compiled, hand-written Polars and hand-written DuckDB give the same decisions."""
    staged: Path = request.getfixturevalue(which)
    compiled = _compare(staged, more_policies, as_of)
    if which == "synth_city":  # every policy pays someone there: the amounts are compared
        assert set(compiled.filter("eligible")["policy_id"]) == set(MORE_POLICY_IDS)


@pytest.mark.parametrize("as_of", BENCH_DATES, ids=str)
def test_baselines_more_match_compiled_plan_at_the_edges(
    edge_city: Path, more_policies: PolicySet, as_of: dt.date
) -> None:
    """The same on persons, households and spells at the edges the policies name."""
    compiled = _compare(edge_city, more_policies, as_of)
    reasons = set(zip(compiled["policy_id"], compiled["reason"], strict=True))
    assert {
        ("childcare-subsidy", "payee"),
        ("childcare-subsidy", "under-three-in-period"),
        ("elderly-allowance", "eighty-or-over"),
        ("elderly-living-alone", "lives-alone"),
        ("job-expansion-grant", "took-on-young-people"),
        ("stay-at-post-grant", "kept-non-local-staff"),
        ("third-child-grant", "third-born-since"),
        ("third-child-grant", "payee"),
    } <= reasons
    amounts = set(zip(compiled["policy_id"], compiled["amount_fen"], strict=True))
    # the caps: 50 young hires of 1,500 yuan; 400 stayers of 500 yuan
    assert {("job-expansion-grant", 7_500_000), ("stay-at-post-grant", 20_000_000)} <= amounts
    tiers = set(compiled.filter(pl.col("policy_id") == "elderly-allowance")["amount_fen"])
    assert {10_000, 30_000, 80_000} <= tiers


@pytest.mark.parametrize("as_of", [dt.date(2026, 2, 28), dt.date(2026, 7, 1)], ids=str)
def test_baselines_more_refuse_dates_they_were_not_written_for(
    synth_city: Path, as_of: dt.date
) -> None:
    """Outside the months where all six policies are active the constants would be wrong."""
    with pytest.raises(ValueError, match="2026-03-01 to 2026-06-30"):
        handwritten_polars_more(synth_city, as_of)
    with pytest.raises(ValueError, match="2026-03-01 to 2026-06-30"):
        handwritten_duckdb_more(synth_city, as_of)
