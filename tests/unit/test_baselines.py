"""The hand-written baselines agree with the compiled plan, row for row.

The compiled policies (`jobs.evaluate.evaluate`), the same policies by hand in
Polars and by hand in DuckDB SQL (`disburse.bench.baselines`) must give identical
decision tables on a small synthetic city, and on a copy of it whose monthly
figures are pushed to the edges the policies name (zero headcounts, layoff
rates at the limit, half-fen and half-yuan roundings, band and table edges,
missing months and ratings), so that the benchmark compares equal work and
each reading checks the others.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from disburse.bench.baselines import POLICY_IDS, handwritten_duckdb, handwritten_polars
from disburse.bench.pipeline import bench_policies
from disburse.synth import generate
from eligibility import PolicySet
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.staged import scan_staged

SYNTH_AS_OF = dt.date(2026, 4, 1)  # monthly data 2024-04..2026-03: both windows complete
# The first and last days on which all six enterprise policies are active; the
# benchmark's date, 2026-04-01, is checked on the edge city.
AS_OF_DATES = [dt.date(2026, 3, 1), dt.date(2026, 6, 30)]


@pytest.fixture(scope="module")
def enterprise_policies() -> PolicySet:
    """The benchmark's enterprise policies the baselines write by hand (its fixed set,
    `disburse.bench.pipeline.POLICIES`)."""
    pset = bench_policies(load_source_catalogue())
    assert set(POLICY_IDS) <= {p.id for p in pset.policies if p.target == "enterprise"}
    return PolicySet(pset.catalogue, [p for p in pset.policies if p.id in POLICY_IDS])


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The staged sources of a synthetic city of 3,000 enterprises and 15,000 persons."""
    root = tmp_path_factory.mktemp("city")
    generate(root / "source", enterprises=3_000, persons=15_000, seed=11, as_of=SYNTH_AS_OF)
    stage(root / "source", root / "staged", catalogue=load_source_catalogue())
    return root / "staged"


def _pick(rng: np.random.Generator, values: list[int], n: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)[rng.integers(0, len(values), n)]


@pytest.fixture(scope="module")
def edge_city(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The city with monthly figures, dates and classes moved to the policies' edges."""
    out = tmp_path_factory.mktemp("edge_city")
    for f in city.glob("*.parquet"):
        shutil.copy(f, out / f.name)
    rng = np.random.default_rng(3)

    ss = scan_staged(city / "social_security_monthly.parquet").collect()
    ss = ss.filter(pl.Series(rng.random(ss.height) >= 0.05))  # missing months
    n = ss.height
    edge = pl.Series(rng.random(n) < 0.6)
    paid = _pick(rng, [0, 1, 5, 15, 25, 35, 1_000_001], n)
    ss = ss.with_columns(
        insured_headcount=pl.when(edge)
        .then(pl.Series(_pick(rng, [0, 1, 2, 3, 9, 10, 11, 29, 30, 31, 189, 200, 944, 1000], n)))
        .otherwise("insured_headcount"),
        ui_new_claimants=pl.when(edge)
        .then(pl.Series(_pick(rng, [0, 0, 0, 1, 2, 6, 11, 50, 56], n)))
        .otherwise("ui_new_claimants"),
        ui_premium_paid_fen=pl.when(edge).then(pl.Series(paid)).otherwise("ui_premium_paid_fen"),
        ui_premium_due_fen=pl.when(edge)
        .then(pl.Series(paid + (rng.random(n) < 0.03)))
        .otherwise("ui_premium_due_fen"),
    )
    # Claimants over the average headcount where the average repeats (200 / 11 months):
    # 1 / 18.1818181818 is 0.055 only after rounding the quotient to 10 places.
    variant = pl.col("enterprise_sk") % 97
    in_2025 = pl.col("month").dt.year() == 2025
    crafted = variant.is_in([1, 2, 3]) & in_2025
    ss = ss.filter(~(crafted & (pl.col("month") == dt.date(2025, 12, 1)))).with_columns(
        insured_headcount=pl.when(crafted)
        .then(pl.when(pl.col("month") == dt.date(2025, 11, 1)).then(18 + variant).otherwise(18))
        .otherwise("insured_headcount"),
        ui_new_claimants=pl.when(crafted)
        .then((pl.col("month") == dt.date(2025, 6, 1)).cast(pl.Int64))
        .otherwise("ui_new_claimants"),
        ui_premium_paid_fen=pl.when(crafted).then(1_000).otherwise("ui_premium_paid_fen"),
        ui_premium_due_fen=pl.when(crafted).then(1_000).otherwise("ui_premium_due_fen"),
    )
    ss.write_parquet(out / "social_security_monthly.parquet")

    # Yearly totals at band and table edges: the whole year's tax in June 2025.
    tax_edges = [10**8 - 1, 10**8, 10**8 + 1, 10**8 + 2_500, 10**8 + 7_500, 5 * 10**8 + 2_500]
    tax_edges += [2 * 10**9 + 1_250, 2 * 10**9 + 3_750, 5 * 10**9 + 2_500, 6 * 10**9]
    revenue_edges = [5 * 10**8 - 1, 5 * 10**8, 2 * 10**9, 10**10 - 1, 10**10]
    tax = scan_staged(city / "tax_monthly.parquet").collect()
    sk = pl.col("enterprise_sk")
    june = pl.col("month") == dt.date(2025, 6, 1)
    chosen = (sk % 3 == 0) & in_2025
    tax = tax.with_columns(
        tax_paid_fen=pl.when(chosen)
        .then(pl.when(june).then(pl.lit(tax_edges).list.get(sk % len(tax_edges))).otherwise(0))
        .otherwise("tax_paid_fen"),
        revenue_fen=pl.when(chosen)
        .then(
            pl.when(june).then(pl.lit(revenue_edges).list.get(sk % len(revenue_edges))).otherwise(0)
        )
        .otherwise("revenue_fen"),
    )
    tax.write_parquet(out / "tax_monthly.parquet")

    ratings = scan_staged(city / "tax_ratings.parquet").collect()
    ratings.filter(pl.col("enterprise_sk") % 5 != 0).write_parquet(out / "tax_ratings.parquet")

    ent = scan_staged(city / "enterprises.parquet").collect()
    dates = [
        dt.date(2023, 3, 31),
        dt.date(2023, 4, 1),
        dt.date(2023, 4, 2),
        dt.date(2024, 12, 31),
        dt.date(2025, 1, 1),
    ]
    edge_date = (pl.col("enterprise_sk") % 11).replace_strict(
        dict(enumerate(dates)), default=None, return_dtype=pl.Date
    )
    ent = ent.with_columns(
        size_class=pl.when(pl.col("enterprise_sk") % 11 == 10).then(None).otherwise("size_class"),
        registered_on=pl.coalesce(edge_date, "registered_on"),
        is_high_tech=pl.when(edge_date.is_not_null()).then(True).otherwise("is_high_tech"),
        high_tech_certified_on=pl.coalesce(edge_date, "high_tech_certified_on"),
    )
    ent.write_parquet(out / "enterprises.parquet")
    return out


def _compare(staged: Path, policies: PolicySet, as_of: dt.date) -> None:
    compiled = evaluate(staged, policies, as_of)
    assert (
        compiled.height
        == 6 * scan_staged(staged / "enterprises.parquet").select(pl.len()).collect().item()
    )
    assert_frame_equal(handwritten_polars(staged, as_of), compiled)
    pytest.importorskip("duckdb")
    assert_frame_equal(handwritten_duckdb(staged, as_of), compiled)


@pytest.mark.parametrize("as_of", AS_OF_DATES, ids=str)
def test_baselines_match_compiled_plan(
    city: Path, enterprise_policies: PolicySet, as_of: dt.date
) -> None:
    """Compiled, hand-written Polars and hand-written DuckDB give the same decisions."""
    _compare(city, enterprise_policies, as_of)


def test_baselines_match_compiled_plan_at_the_edges(
    edge_city: Path, enterprise_policies: PolicySet
) -> None:
    """The same on figures at the limits, roundings and band edges the policies name."""
    as_of = dt.date(2026, 4, 1)
    compiled = evaluate(edge_city, enterprise_policies, as_of)
    reasons = set(compiled["reason"].drop_nulls())
    assert {"layoff-rate", "amount_zero", "good-tax-credit", "certified-recently"} <= reasons
    _compare(edge_city, enterprise_policies, as_of)


def test_baselines_refuse_dates_they_were_not_written_for(city: Path) -> None:
    """Outside the months where all six policies are active the constants would be wrong."""
    with pytest.raises(ValueError, match="2026-03-01"):
        handwritten_polars(city, dt.date(2026, 2, 28))
