"""Feature computation on the hand-written mini city, checked against values worked out by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pytest
import yaml

from common.periods import Window
from eligibility import CheckedCatalogue, Scan, load_feature_catalogue
from eligibility.backends.polars.features import entity_frame
from eligibility.plan import EntityNeeds, Naming
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import staged_scan
from jobs.ingest import stage
from jobs.staged import staged_columns
from tests import minicity

ROOT = Path(__file__).resolve().parents[2]
Y2025 = Window(dt.date(2025, 1, 1), dt.date(2025, 12, 1))
Y2024 = Window(dt.date(2024, 1, 1), dt.date(2024, 12, 1))


class Staged(NamedTuple):
    scan: Scan
    cat: CheckedCatalogue


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    root = tmp_path_factory.mktemp("mini")
    cat = load_source_catalogue()
    stage(minicity.write(root / "data"), root / "staged", catalogue=cat)
    # The shipped catalogue plus features of every aggregation kind, for this test.
    spec = yaml.safe_load((ROOT / "policies" / "features.yaml").read_text())
    extra = {
        "first_tax": {
            "type": "money",
            "unit": "fen",
            "source": "tax_monthly",
            "column": "tax_paid_fen",
            "agg": "first",
        },
        "min_tax": {
            "type": "money",
            "unit": "fen",
            "source": "tax_monthly",
            "column": "tax_paid_fen",
            "agg": "min",
        },
        "tax_rows": {"type": "count", "source": "tax_monthly", "agg": "count"},
        "tax_year_before": {
            "type": "money",
            "unit": "fen",
            "source": "tax_monthly",
            "column": "tax_paid_fen",
            "agg": "sum",
            "window": {"years_before": 1},
        },
        "tax_before_certification": {
            "type": "money",
            "unit": "fen",
            "source": "tax_monthly",
            "column": "tax_paid_fen",
            "agg": "sum",
            "window": {"anchor": "high_tech_certified_on", "months": 12},
        },
        "tax_24_months": {
            "type": "money",
            "unit": "fen",
            "source": "tax_monthly",
            "column": "tax_paid_fen",
            "agg": "sum",
            "window": {"months": 24},
        },
        "revenue_levels": {
            "type": "count",
            "source": "tax_monthly",
            "column": "revenue_fen",
            "agg": "count_distinct",
        },
        "big_months": {
            "type": "count",
            "source": "tax_monthly",
            "agg": "months",
            "where": "revenue_fen > 4500000",
        },
    }
    for name, f in extra.items():
        spec["features"]["enterprise"][name] = {**f, "description": name}
    path = root / "features.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    return Staged(staged_scan(root / "staged"), load_feature_catalogue(path, staged_columns(cat)))


def _frame(
    staged: Staged, entity: str, names: list[str], window: Window, lists: set[str] = frozenset()
) -> pl.DataFrame:  # type: ignore[assignment]
    naming = Naming(staged.cat)
    need = EntityNeeds(
        features={(n, window if naming.windowed(entity, n) else None) for n in names},
        lists=set(lists),
    )
    needs = {"enterprise": EntityNeeds(), "person": EntityNeeds(), entity: need}
    frame = (
        entity_frame(staged.scan, staged.cat, entity, needs, dt.date(2026, 3, 1))
        .collect()
        .sort("entity_id")
    )
    return frame.rename(
        {naming.feature(entity, n, window): n for n in names if naming.windowed(entity, n)}
    )


def test_enterprise_aggregates_over_the_window(staged: Staged) -> None:
    cc = minicity.credit_codes(3)
    names = [
        "ui_premium_paid",
        "months_in_arrears",
        "headcount_start",
        "headcount_end",
        "tax_paid",
        "tax_months",
        "has_bank_account",
        "first_tax",
        "min_tax",
        "tax_rows",
        "revenue_levels",
        "big_months",
        "status",
        "tax_rating",
    ]
    f = _frame(staged, "enterprise", names, Y2025, {"serious_dishonesty"})
    rows = {r["entity_id"]: r for r in f.iter_rows(named=True)}
    a, b, c = rows[cc[0]], rows[cc[1]], rows[cc[2]]
    assert (
        a["ui_premium_paid"],
        a["months_in_arrears"],
        a["headcount_start"],
        a["headcount_end"],
    ) == (30000, 0, 12, None)
    assert (b["ui_premium_paid"], b["months_in_arrears"], b["headcount_start"]) == (0, 1, 3)
    assert (c["ui_premium_paid"], c["months_in_arrears"], c["headcount_start"]) == (
        0,
        0,
        None,
    )  # no rows: sums are 0, values unknown
    assert (a["tax_paid"], a["tax_months"], a["first_tax"], a["min_tax"], a["tax_rows"]) == (
        215000,
        2,
        120000,
        95000,
        2,
    )
    assert (a["revenue_levels"], a["big_months"]) == (2, 1)
    assert (b["tax_paid"], b["tax_months"], b["tax_rows"]) == (0, 0, 1)
    assert [r["has_bank_account"] for r in (a, b, c)] == [True, True, False]
    assert [r["listed:serious_dishonesty"] for r in (a, b, c)] == [False, False, True]
    assert (a["tax_rating"], b["tax_rating"], c["tax_rating"]) == ("A", "M", None)
    assert a["status"] == "active"


def test_relation_features_follow_the_window(staged: Staged) -> None:
    cc = minicity.credit_codes(3)
    in_2024 = _frame(staged, "enterprise", ["hire_count", "graduates_hired"], Y2024)
    in_2025 = _frame(staged, "enterprise", ["hire_count", "graduates_hired"], Y2025)
    first_2024 = in_2024.filter(pl.col("entity_id") == cc[0]).row(0, named=True)
    # Hired in January 2024; graduated in June 2024, after the hire: a hire, not a graduate hire.
    assert (first_2024["hire_count"], first_2024["graduates_hired"]) == (1, 0)
    assert in_2025["hire_count"].to_list() == [0, 0, 0]


def test_person_relation_count(staged: Staged) -> None:
    pid = minicity.person_ids(3)
    f = _frame(staged, "person", ["guardian_count", "graduated_on", "has_bank_account"], Y2025)
    rows = {r["entity_id"]: r for r in f.iter_rows(named=True)}
    assert rows[pid[0]]["graduated_on"] == dt.date(2024, 6, 30)
    assert [rows[p]["guardian_count"] for p in pid] == [0, 0, 0]  # only a spouse is recorded
    assert [rows[p]["has_bank_account"] for p in pid] == [True, True, False]


def test_a_feature_reads_its_own_look_back(staged: Staged) -> None:
    """Assessing 2026, `years_before: 1` reads 2025 and `months: 24` reads 2025-01..2026-12;
    the plain feature reads 2026, where there is nothing."""
    cc = minicity.credit_codes(3)
    y2026 = Window(dt.date(2026, 1, 1), dt.date(2026, 12, 1))
    f = _frame(staged, "enterprise", ["tax_year_before", "tax_24_months", "tax_paid"], y2026)
    rows = {r["entity_id"]: r for r in f.iter_rows(named=True)}
    a = rows[cc[0]]
    assert (a["tax_year_before"], a["tax_24_months"], a["tax_paid"]) == (215000, 215000, 0)


@pytest.mark.parametrize(
    ("certified", "expected"), [("2025-03-10", 215000), ("2025-02-15", 120000)]
)
def test_a_window_anchored_on_the_entitys_own_date(
    staged: Staged, certified: str, expected: int
) -> None:
    """The 12 months before the certification's month: certified in March 2025, A's tax of
    January and February 2025 counts; in February, only January's."""
    cc = minicity.credit_codes(3)
    base = staged.scan("enterprises").collect()
    enterprises = base.with_columns(
        pl.when(pl.col("credit_code") == cc[0])
        .then(pl.lit(dt.date.fromisoformat(certified)))
        .alias("high_tech_certified_on")
    )

    def scan(source: str) -> pl.LazyFrame:
        return enterprises.lazy() if source == "enterprises" else staged.scan(source)

    naming = Naming(staged.cat)
    assert not naming.windowed("enterprise", "tax_before_certification")
    needs = {
        "enterprise": EntityNeeds(features={("tax_before_certification", None)}),
        "person": EntityNeeds(),
    }
    f = entity_frame(scan, staged.cat, "enterprise", needs, dt.date(2026, 3, 1)).collect()
    got = dict(f.select("entity_id", "tax_before_certification").iter_rows())
    assert got[cc[0]] == expected
    assert got[cc[1]] == 0  # no certification date: no month before it
