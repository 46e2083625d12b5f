"""Inside an aggregate body, `owner.x` and the policy's lets read the entity the aggregate is
taken for: in the worked examples and in the batch, where the owner's features stand beside
each link, counted here against the same count written by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from eligibility import PolicySet, load_policy
from eligibility.cases import run_cases
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.policies import load_policies
from jobs.staged import scan_staged

HERE = Path(__file__).resolve().parents[1] / "policies"
AS_OF = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def staged(clean_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("owner") / "staged"
    stage(clean_city, out, catalogue=load_source_catalogue())
    return out


def test_the_worked_examples_read_the_owner(tmp_path: Path) -> None:
    cat = load_policies(load_source_catalogue()).catalogue
    results = run_cases(load_policy(HERE / "household_member_top_up.yaml", cat), cat)
    assert [r.passed for r in results] == [True, True], [r.render("") for r in results]


def test_the_batch_reads_the_owner_beside_each_link(staged: Path, tmp_path: Path) -> None:
    cat = load_policies(load_source_catalogue()).catalogue
    text = (HERE / "household_member_top_up.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("age_on(as_of) >= 80", "age_on(as_of) >= 18"))
    got = evaluate(staged, PolicySet(cat, [load_policy(path, cat)]), AS_OF)
    persons = (
        scan_staged(staged / "persons.parquet")
        .collect()
        .select("person_sk", "status", pl.col("region_code").str.slice(0, 4).alias("city"))
    )
    links = (
        scan_staged(staged / "relations.parquet")
        .collect()
        .filter(pl.col("relation").is_in(["parent", "guardian"]))
    )
    same_city = (
        links.join(persons, on="person_sk")
        .join(
            persons.rename(
                {"person_sk": "related_person_sk", "city": "g_city", "status": "g_status"}
            ),
            on="related_person_sk",
        )
        .filter(pl.col("city") == pl.col("g_city"))
        .group_by("person_sk")
        .agg(pl.len().alias("n"))
    )
    paid = got.filter(pl.col("eligible")).select(
        pl.col("entity_sk").alias("person_sk"), "amount_fen"
    )
    want = same_city.join(persons.filter(pl.col("status") == "alive"), on="person_sk")
    assert paid.height > 0
    both = paid.join(want, on="person_sk", how="left")
    assert both["n"].null_count() == 0
    assert (both["amount_fen"] == both["n"] * 10_000).all()
    assert paid.height == want.filter(pl.col("n") > 0).height
