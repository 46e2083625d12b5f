"""once_per (issue 18.6): the policies of a group are checked together (E138), and the
compiled plan leaves out a member counted for another entitlement: in the ledger, or by
a claim that comes first in the same run (the earliest pick key, then the smaller owner
identifier, then the smaller policy id), across the policies of the group."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from common.errors import Code
from eligibility import COUNTED_SCHEMA, check_files, wide_plans
from eligibility.backends.polars.features import COUNTED_SOURCE
from eligibility.plan import Naming, once_aggregate, run_dates
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

CAT = load_policies(load_source_catalogue()).catalogue
AS_OF = dt.date(2026, 4, 10)
E1, E2 = "91330106000000001A", "91330106000000002B"
M1, M2, M3 = "330106200501010011", "330106200501010022", "330106200501010033"


def policy(pid: str, amount: str, once: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "policy": pid,
        "title": pid,
        "basis": {"document": "test"},
        "target": "enterprise",
        "valid": {"from": dt.date(2026, 1, 1), "until": dt.date(2026, 12, 31)},
        "assess": "previous_year",
        "benefit_period": "year",
        "unbanked": "hold",
        "let": {"counted": amount},
        "eligible": [{"id": "hired", "when": "counted >= 1"}],
        "amount": "100 yuan * counted",
        **extra,
    }
    if once is not None:
        spec["once_per"] = once
    return spec


def write(folder: Path, *specs: dict[str, Any]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for spec in specs:
        path = folder / f"{spec['policy']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        paths.append(path)
    return paths


EARLIEST = "count(earliest(hires, 10, hired_in))"


@pytest.mark.parametrize(
    ("other", "says"),
    [
        (policy("b", "count(hires)", None), "declares no once_per"),
        (
            policy("b", "count(hires)", {"relation": "hires", "across": ["a"]}, assess="as_of"),
            "counts otherwise",
        ),
        (policy("b", "count(hires)", {"relation": "hires", "across": ["a", "c"]}), "otherwise"),
    ],
    ids=["no-once-per", "another-window", "another-group"],
)
def test_the_policies_a_group_names_must_count_the_same_way(
    tmp_path: Path, other: dict[str, Any], says: str
) -> None:
    a = policy("a", EARLIEST, {"relation": "hires", "across": ["b"]})
    extra = [policy("c", "count(hires)", {"relation": "hires", "across": ["a", "b"]})]
    report = check_files(write(tmp_path, a, other, *extra), CAT)
    mine = [p for p in report.problems if p.file.endswith("a.yaml")]
    assert [p.code for p in mine] == [Code.ONCE_PER_ACROSS]
    assert says in mine[0].message


def test_a_group_that_agrees_is_accepted(tmp_path: Path) -> None:
    a = policy("a", EARLIEST, {"relation": "hires", "across": ["b"]})
    b = policy("b", "count(hires)", {"relation": "hires", "across": ["a"]})
    assert check_files(write(tmp_path, a, b), CAT).problems == []


def _scan(frames: dict[str, pl.DataFrame]) -> Any:
    def scan(source: str) -> pl.LazyFrame:
        return frames[source].lazy()

    return scan


def test_one_run_counts_each_member_once_across_the_group_and_the_ledger(
    tmp_path: Path,
) -> None:
    a = policy("a", EARLIEST, {"relation": "hires", "across": ["b"]})
    b = policy("b", "count(hires)", {"relation": "hires", "across": ["a"]})
    report = check_files(write(tmp_path, a, b), CAT)
    assert report.problems == []
    pa, pb = sorted(report.policies, key=lambda p: p.id)
    frames = {
        "enterprises": pl.DataFrame(
            {"enterprise_sk": [1, 2], "credit_code": [E1, E2]},
            schema={"enterprise_sk": pl.Int32, "credit_code": pl.String},
        ),
        "persons": pl.DataFrame(
            {"person_sk": [1, 2, 3], "person_id": [M1, M2, M3]},
            schema={"person_sk": pl.Int32, "person_id": pl.String},
        ),
        "employment": pl.DataFrame(
            {
                "enterprise_sk": [1, 2, 1, 2, 2, 2],
                "person_sk": [1, 1, 2, 2, 3, 3],
                "from_month": [dt.date(2025, m, 1) for m in (3, 2, 5, 1, 7, 9)],
                "to_month": [None] * 6,
            },
            schema={
                "enterprise_sk": pl.Int32,
                "person_sk": pl.Int32,
                "from_month": pl.Date,
                "to_month": pl.Date,
            },
        ),
    }
    # M2 is counted already: for E1 under a, this very key (so E1 keeps it).
    counted = pl.DataFrame(
        [("a,b", M2, "a", "2026", E1)], schema=COUNTED_SCHEMA, orient="row"
    ).lazy()
    assert COUNTED_SOURCE not in frames
    wide = wide_plans(_scan(frames), [pa, pb], CAT, AS_OF, counted)["enterprise"].collect(
        engine="streaming"
    )
    naming = Naming(CAT)

    def lists(p: Any, what: Any) -> dict[str, list[str]]:
        agg = once_aggregate(p)
        assert agg is not None
        col = what(naming.aggregate(p.id, agg, run_dates(p, AS_OF).window))
        return {r["entity_id"]: r[col] or [] for r in wide.iter_rows(named=True)}

    # M1: hired by E2 in February, E1 in March: the earlier hire under a (which picks by
    # hire month; b has no pick key, so a's claims come first) counts them.
    # M2: counted by E1 under a in the ledger: E1 keeps it, E2 may not count it.
    # M3: E2's alone, taken on twice (July and September): a counts them once, first
    # (a pick key), b not.
    assert lists(pa, Naming.counted) == {E1: [M2], E2: [M1, M3]}
    assert lists(pb, Naming.counted) == {E1: [], E2: []}
    assert lists(pa, Naming.passed_over) == {E1: [M1], E2: [M2]}
    assert lists(pb, Naming.passed_over) == {E1: [M1, M2], E2: [M1, M2, M3]}
    amounts = dict(zip(wide["entity_id"], wide[Naming.amount("a")], strict=True))
    assert amounts == {E1: 100_00, E2: 2 * 100_00}  # M3 once, not twice
