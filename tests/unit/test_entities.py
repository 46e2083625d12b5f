"""Entity kinds the catalogue declares (a household), relations followed through others
(`via`: a person's household, then its members), and aggregates over the first N related
entities (`earliest(hires, 2, hired_in)`): refused with a position when written wrong,
and computed by the batch as a hand-written Polars reading of the same data computes them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from common.errors import ProblemsError
from eligibility import PolicySet, load_policy
from eligibility.cases import run_cases
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.policies import feature_catalogue, load_policies
from jobs.staged import scan_staged

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 3, 1)

HEADER = """\
policy: p
title: A test policy
basis: {document: Test notice}
valid: {from: 2026-01-01, until: 2026-12-31}
benefit_period: year
unbanked: hold
"""


@pytest.fixture(scope="module")
def cat():  # type: ignore[no-untyped-def]
    return load_policies(load_source_catalogue()).catalogue


@pytest.fixture(scope="module")
def staged(clean_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("entities") / "staged"
    stage(clean_city, out, catalogue=load_source_catalogue())
    return out


def _policy(tmp_path: Path, body: str, cat):  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text(HEADER + body)
    return load_policy(path, cat)


def _refused(tmp_path: Path, body: str, cat) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ProblemsError) as info:
        _policy(tmp_path, body, cat)
    return info.value.render()


# --- a household: a target that is not paid itself ---------------------------------------

HOUSEHOLD = """\
target: household
payee: {relation: members, where: role == "head"}
eligible:
  - {id: three-minors, when: "count(members, age_on(as_of) < 18) >= 3"}
amount: 500 yuan * count(members, age_on(as_of) < 18)
tests:
  - name: three children, paid to the head
    as_of: 2026-03-01
    given:
      members:
        - {id: "P1", birth_on: 1990-01-01, role: head}
        - {id: "K1", birth_on: 2015-01-01, role: member}
        - {id: "K2", birth_on: 2018-01-01, role: member}
        - {id: "K3", birth_on: 2025-01-01, role: member}
    expect: {eligible: true, amount: 1500 yuan, payee: "P1"}
  - name: two children
    as_of: 2026-03-01
    given:
      members:
        - {id: "P1", birth_on: 1990-01-01, role: head}
        - {id: "K1", birth_on: 2015-01-01, role: member}
        - {id: "K2", birth_on: 2018-01-01, role: member}
    expect: {eligible: false, reason: three-minors}
"""


def test_a_household_policy_pays_its_head_in_the_worked_examples(tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    results = run_cases(_policy(tmp_path, HOUSEHOLD, cat), cat)
    assert [r.passed for r in results] == [True, True], [r.render("") for r in results]


def test_a_household_policy_in_the_batch(staged: Path, tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    body = HOUSEHOLD.replace(">= 3", ">= 1")  # the small city has few households of three
    got = evaluate(staged, PolicySet(cat, [_policy(tmp_path, body, cat)]), AS_OF)
    persons = (
        scan_staged(staged / "persons.parquet")
        .collect()
        .select("person_sk", "person_id", "birth_on")
    )
    members = (
        scan_staged(staged / "household_members.parquet")
        .collect()
        .join(persons.drop("person_id"), on="person_sk")
    )
    age = pl.lit(AS_OF.year) - pl.col("birth_on").dt.year()
    young = (age - (pl.col("birth_on").dt.strftime("%m%d") > AS_OF.strftime("%m%d"))) < 18
    want = (
        members.group_by("household_sk")
        .agg(
            young.sum().alias("minors"),
            pl.col("person_id").filter(pl.col("role") == "head").min().alias("head"),
        )
        .filter(pl.col("minors") >= 1)
    )
    households = scan_staged(staged / "households.parquet").collect()
    assert got.height == households.height  # one row per household
    assert set(got["target"]) == {"household"}
    paid = got.filter(pl.col("eligible"))
    assert paid.height > 10
    both = paid.join(want, left_on="entity_sk", right_on="household_sk", how="full")
    assert both["minors"].null_count() == 0
    assert both["amount_fen"].null_count() == 0
    assert (both["amount_fen"] == both["minors"] * 50_000).all()
    assert (both["payee"] == both["head"]).all()
    # the identifier of a household is its number; the payee a person's
    assert paid["entity_id"].str.starts_with("H").all()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "target: household\neligible: [{id: a, when: member_count >= 1}]\namount: 1 yuan\n",
            "E129 money cannot be paid to a household",
        ),
        (
            "target: household\npayee: {relation: housemates}\n"
            "eligible: [{id: a, when: member_count >= 1}]\namount: 1 yuan\n",
            "E106 'housemates' is no relation from a household to someone who can be paid",
        ),
        (
            "target: houshold\neligible: [{id: a, when: member_count >= 1}]\namount: 1 yuan\n",
            "E135 unknown target 'houshold'",
        ),
    ],
)
def test_a_target_that_cannot_be_paid_or_is_unknown_is_refused(
    tmp_path: Path,
    cat,
    body: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    rendered = _refused(tmp_path, body, cat)
    assert message in rendered, rendered
    assert re.search(r"p\.yaml:\d+:\d+: E1", rendered)


# --- via: a person's household, then its members ------------------------------------------


def test_housemates_follow_the_household_then_its_members(
    staged: Path, tmp_path: Path, cat
) -> None:  # type: ignore[no-untyped-def]
    body = """\
target: person
eligible:
  - {id: lives-alone, when: "count(housemates) == 1 and age_on(as_of) >= 60"}
amount: 100 yuan * count(housemates, role == "head" and own_role == "member")
tests:
  - name: alone
    as_of: 2026-03-01
    given:
      birth_on: 1950-01-01
      housemates: [{id: "A", role: head, own_role: head}]
    expect: {eligible: false, reason: amount_zero}
"""
    policy = _policy(tmp_path, body, cat)
    assert [r.passed for r in run_cases(policy, cat)] == [True]
    body = body.replace("count(housemates) == 1 and ", "")
    got = evaluate(staged, PolicySet(cat, [_policy(tmp_path, body, cat)]), AS_OF)
    members = (
        scan_staged(staged / "household_members.parquet")
        .collect()
        .select("person_sk", "household_sk", "role")
    )
    # every (person, housemate) pair: the person's household's members, the person included
    pairs = members.join(members, on="household_sk", suffix="_mate")
    want = (
        pairs.filter((pl.col("role_mate") == "head") & (pl.col("role") == "member"))
        .group_by("person_sk")
        .len()
    )
    persons = scan_staged(staged / "persons.parquet").collect().select("person_sk", "birth_on")
    old = persons.filter(pl.col("birth_on") <= dt.date(1966, 3, 1))
    want = want.join(old, on="person_sk")
    paid = got.filter(pl.col("eligible"))
    assert paid.height > 10
    both = paid.join(want, left_on="entity_sk", right_on="person_sk", how="full")
    assert (both["amount_fen"] == both["len"] * 10_000).all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["housemates"].update(via=["household", "membres"]), "E106"),
        (lambda r: r["housemates"].update(via=["members", "household"]), "E136"),
        (lambda r: r["housemates"].update(to="household"), "E136"),
        (lambda r: r["housemates"].update(via=["household", "housemates"]), "E136"),
        (lambda r: r["household"]["attributes"].update(role="role"), "E113"),
        (lambda r: r["housemates"].update(source="relations"), "E112"),
        (lambda r: r["members"].update({"from": "housold"}), "E135"),
    ],
)
def test_a_relation_followed_through_others_written_wrong_is_refused(
    tmp_path: Path,
    edit,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    spec = yaml.safe_load((ROOT / "policies" / "features.yaml").read_text())
    edit(spec["relations"])
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    with pytest.raises(ProblemsError) as info:
        feature_catalogue(load_source_catalogue(), [tmp_path])
    rendered = info.value.render()
    assert "features.yaml:" in rendered, rendered
    assert message in rendered, rendered


# --- earliest / latest: the first N related entities ---------------------------------------

PICK = """\
target: enterprise
params:
  most: [{from: 2026-01-01, value: 2, ref: "Art. 1"}]
eligible:
  - {id: hired, when: "count(hires) >= 1"}
amount:
  formula: >-
    sum(earliest(hires, most, hired_in, age_on(hired_in) < 30),
        1000 yuan if is_missing(graduated_on) else 1500 yuan)
    + sum(latest(hires, 1, hired_in), 1 yuan)
tests:
  - name: the two earliest young hires, ties by identifier; the latest hire
    as_of: 2026-03-01
    given:
      hires:
        - {id: "A", birth_on: 2000-01-01, hired_in: 2025-05-01, graduated_on: 2024-06-30}
        - {id: "B", birth_on: 1980-01-01, hired_in: 2025-01-01}
        - {id: "C", birth_on: 2001-01-01, hired_in: 2025-03-01}
        - {id: "D", birth_on: 2002-01-01, hired_in: 2025-09-01, graduated_on: 2025-06-30}
        - {id: "E", birth_on: 2002-01-01, hired_in: 2025-03-01}
    expect: {eligible: true, amount: 2001 yuan}
  - name: three of them
    as_of: 2026-03-01
    params: {most: 3}
    given:
      hires:
        - {id: "A", birth_on: 2000-01-01, hired_in: 2025-05-01, graduated_on: 2024-06-30}
        - {id: "C", birth_on: 2001-01-01, hired_in: 2025-03-01}
        - {id: "E", birth_on: 2002-01-01, hired_in: 2025-03-01}
    expect: {eligible: true, amount: 3501 yuan}
"""


def test_earliest_and_latest_in_the_worked_examples(tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    results = run_cases(_policy(tmp_path, PICK, cat), cat)
    assert [r.passed for r in results] == [True, True], [r.render("") for r in results]


def test_earliest_in_the_batch(staged: Path, tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    body = """\
target: enterprise
assess: previous_year
eligible:
  - {id: hired, when: "count(hires) >= 1"}
amount: sum(earliest(hires, 2, hired_in, age_on(hired_in) < 35), 1 yuan) + sum(latest(hires, 1, hired_in), 1000 yuan if is_missing(left_in) else 10 yuan)
"""
    policy = _policy(tmp_path, body, cat)
    got = evaluate(staged, PolicySet(cat, [policy]), AS_OF)
    spells = (
        scan_staged(staged / "employment.parquet")
        .collect()
        .filter(
            pl.col("enterprise_sk").is_not_null()
            & pl.col("from_month").is_between(dt.date(2025, 1, 1), dt.date(2025, 12, 1))
        )
    )
    persons = (
        scan_staged(staged / "persons.parquet")
        .collect()
        .select("person_sk", "person_id", "birth_on")
    )
    spells = spells.join(persons.drop("person_id"), on="person_sk", how="left").join(
        persons.select("person_sk", "person_id"), on="person_sk", how="left"
    )
    rows = spells.to_dicts()
    want: dict[int, int] = {}
    by_owner: dict[int, list[dict]] = {}
    for r in rows:
        by_owner.setdefault(r["enterprise_sk"], []).append(r)
    for sk, links in by_owner.items():
        young = [
            r
            for r in links
            if r["birth_on"] is not None
            and (r["from_month"].year - r["birth_on"].year)
            - (
                (r["from_month"].month, r["from_month"].day)
                < (r["birth_on"].month, r["birth_on"].day)
            )
            < 35
        ]
        young.sort(key=lambda r: (r["from_month"], r["person_id"]))
        last = sorted(links, key=lambda r: r["person_id"])
        last.sort(key=lambda r: r["from_month"], reverse=True)
        want[sk] = len(young[:2]) * 100 + (100_000 if last[0]["to_month"] is None else 1_000)
    paid = {r["entity_sk"]: r["amount_fen"] for r in got.filter(pl.col("eligible")).to_dicts()}
    assert paid == want


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("sum(earliest(hires, 0, hired_in), 1 yuan)", "picks a whole number of at least 1"),
        ("sum(earliest(hires, 2.5, hired_in), 1 yuan)", "picks a whole number of at least 1"),
        ("sum(earliest(hires, most_text, hired_in), 1 yuan)", "picks a whole number of at least 1"),
        ("sum(earliest(hires, 2, region_code), 1 yuan)", "orders by a date or a number"),
        (
            "sum(earliest(hires, 2, hired_in, birth_on), 1 yuan)",
            "a condition on each related person",
        ),
        ("sum(earliest(hires, 2), 1 yuan)", "earliest() takes a relation, how many"),
        ("sum(earliest(hirs, 2, hired_in), 1 yuan)", "unknown relation 'hirs'"),
        ("earliest(hires, 2, hired_in)", "picks the related entities an aggregate reads"),
    ],
)
def test_a_pick_written_wrong_is_refused(
    tmp_path: Path,
    cat,
    formula: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    body = f"""\
target: enterprise
params:
  most_text: [{{from: 2026-01-01, value: "x", ref: "Art. 1"}}]
eligible:
  - {{id: hired, when: "count(hires) >= 1"}}
amount: "{formula}"
"""
    rendered = _refused(tmp_path, body, cat)
    assert message in rendered, rendered
    assert re.search(r"p\.yaml:\d+:\d+: E1", rendered)


def test_a_pick_survives_rebuilding_its_tree() -> None:
    from eligibility import ast as A
    from eligibility.parse import parse_expression

    for text in [
        "any(earliest(members, 3, birth_on, role == 'member'), birth_on >= 2026-01-01)",
        "count(latest(hires, n, hired_in))",
        "sum(earliest(hires, 2, hired_in), 1 yuan)",
    ]:
        node = parse_expression(text.replace("'", '"'))
        assert A.with_children(node, A.children(node)) == node
