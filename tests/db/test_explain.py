"""`disburse explain` on fixed cases: golden text files, refreshed only with --update-golden,
and the JSON contract (amount_fen is what the ledger holds; conditions with id, text,
passed and values), answered from the record alone."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from common.identifiers import is_resident_id
from disburse.cli import main
from eligibility.explain import explain_row
from jobs.catalogue import load_source_catalogue
from jobs.explain import archived_decisions, archived_policies, explain, render_explanation
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers.db import open_engine
from ledgers.holdings import holdings
from ledgers.runs import get_run, latest_run_id
from tests.keys import KEY

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
AS_OF = dt.date(2026, 3, 15)


@pytest.fixture(scope="module")
def night(clean_city: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small fixed city after one nightly run into SQLite: (db url, allocation, the whole
    decision table as derived from the run's archive).  The city is copied beside the
    database: a test moves it away."""
    root = tmp_path_factory.mktemp("explain")
    data = root / "data"
    shutil.copytree(clean_city, data)
    url = f"sqlite:///{root / 'ledger.db'}"
    # A fixed ledger key where the run looks for it: the golden files show transfer hashes.
    (root / "store").mkdir()
    (root / "store" / "ledger.key").write_text(KEY.secret.hex() + "\n")
    cat = load_source_catalogue()
    with open_engine(url, init=True) as engine:
        out = run_nightly_on(
            engine,
            RunRequest(data, AS_OF, root / "store", features_path(None)),
            catalogue=cat,
            pset=load_policies(cat),
        )
        run = get_run(engine, out.run_id)
    assert run is not None
    assert run.claims is not None
    assert run.allocation is not None
    decisions = archived_decisions(run).collect()
    claims = pl.read_parquet(run.claims.path)
    # The run keeps only the claims: exactly the eligible rows of the whole table.
    assert claims.height > 0
    assert claims.equals(decisions.filter(pl.col("eligible")))
    assert decisions.filter(~pl.col("eligible")).height > 0
    return url, pl.read_parquet(run.allocation.path), decisions


def cases(allocation: pl.DataFrame, decisions: pl.DataFrame) -> dict[str, tuple[str, str]]:
    """Fixed cases, picked by rule (the first in id order), so the city decides them."""
    paid = allocation.filter(pl.col("amount_fen") > 0).sort(["policy_id", "entity"])
    out = {
        "paid-job-stabilisation": paid.filter(
            pl.col("policy_id") == "job-stabilisation-refund"
        ).row(0, named=True)["entity"],
        "paid-elderly-allowance": paid.filter(pl.col("policy_id") == "elderly-allowance").row(
            0, named=True
        )["entity"],
    }
    cases = {
        "paid-job-stabilisation": ("job-stabilisation-refund", out["paid-job-stabilisation"]),
        "paid-elderly-allowance": ("elderly-allowance", out["paid-elderly-allowance"]),
    }
    lost = allocation.filter(pl.col("stacking").str.starts_with("lost:")).sort(
        ["policy_id", "entity"]
    )
    if lost.height:
        r = lost.row(0, named=True)
        cases["lost-stacking"] = (r["policy_id"], r["entity"])
    refused = decisions.filter(
        (pl.col("policy_id") == "job-stabilisation-refund") & ~pl.col("eligible")
    ).sort(["reason", "entity_id"])
    for reason in ("layoff-rate", "paid-premiums", "active"):
        rows = refused.filter(pl.col("reason") == reason)
        if rows.height:
            cases[f"refused-{reason}"] = ("job-stabilisation-refund", rows["entity_id"][0])
    return cases


# Aggregates member by member (issue 18.9): an enterprise's hires (a pick), a person's
# housemates (two hops), a household's members (a count and a pick), each refused by or
# paid through a condition on them.
MEMBER_CASES = {
    "refused-took-on-young-people": ("job-expansion-grant", "took-on-young-people"),
    "paid-job-expansion": ("job-expansion-grant", None),
    "refused-lives-alone": ("elderly-living-alone", "lives-alone"),
    "refused-third-born-since": ("third-child-grant", "third-born-since"),
    # a feature of the catalogue over a relation, and an any() reading owner.region_code
    "refused-hired-graduates": ("graduate-hiring-subsidy", "hired-graduates"),
    "paid-stay-at-post": ("stay-at-post-grant", None),
}


def member_cases(engine: Engine, decisions: pl.DataFrame) -> dict[str, tuple[str, str]]:
    """For each of MEMBER_CASES, the first entity in id order decided so whose explanation
    lists some related members."""
    out = {}
    for name, (policy_id, reason) in MEMBER_CASES.items():
        rows = decisions.filter(
            (pl.col("policy_id") == policy_id) & pl.col("reason").eq_missing(reason)
        ).sort("entity_id")
        for entity in rows["entity_id"]:
            members = explain(engine, policy_id, entity).members
            if members and members[0].total > 0:
                out[name] = (policy_id, entity)
                break
    return out


def test_explanations_match_their_golden_files(night, update_golden: bool) -> None:
    url, allocation, decisions = night
    picked = cases(allocation, decisions)
    assert {"paid-job-stabilisation", "paid-elderly-allowance", "refused-layoff-rate"} <= set(
        picked
    )
    with open_engine(url) as engine:
        found = member_cases(engine, decisions)
        assert set(found) == set(MEMBER_CASES)
        picked |= found
        for name, (policy_id, entity) in sorted(picked.items()):
            text = render_explanation(explain(engine, policy_id, entity)) + "\n"
            golden = GOLDEN / f"explain-{name}.txt"
            if update_golden:
                golden.parent.mkdir(parents=True, exist_ok=True)
                golden.write_text(text, encoding="utf-8")
            assert golden.is_file(), f"{golden} is missing: run pytest --update-golden"
            assert text == golden.read_text(encoding="utf-8"), (
                f"{name}: explanation differs from {golden}; if the change is intended, "
                "refresh with pytest --update-golden and review the diff"
            )


def test_json_carries_the_ledger_amount_and_every_condition(night) -> None:
    url, allocation, _decisions = night
    paid = allocation.filter(
        (pl.col("policy_id") == "job-stabilisation-refund") & (pl.col("amount_fen") > 0)
    ).sort("entity")
    entity = paid["entity"][0]
    out = CliRunner().invoke(
        main,
        [
            "explain",
            "--db",
            url,
            "--policy",
            "job-stabilisation-refund",
            "--entity",
            entity,
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    e = json.loads(out.output)
    with open_engine(url) as engine:
        held = holdings(engine, ["job-stabilisation-refund"]).nonzero()
    assert e["amount_fen"] == held.filter(pl.col("entity") == entity)["net_fen"].item()
    assert e["amount_fen"] == paid["amount_fen"][0]
    assert e["reference_agrees"] is True
    assert e["paid_to"] == {"account": "basic", "preference": ["basic", "social_insurance"]}
    assert [c["id"] for c in e["conditions"]] == [
        "active",
        "paid-premiums",
        "layoff-rate",
        "not-seriously-dishonest",
        "has-account",
    ]
    assert all(c["passed"] for c in e["conditions"])
    assert all({"id", "text", "passed", "values"} <= set(c) for c in e["conditions"])
    assert "ui_premium_paid" in e["conditions"][1]["values"]


def test_a_refused_entity_names_its_first_failing_condition(night) -> None:
    url, _allocation, decisions = night
    row = (
        decisions.filter(
            (pl.col("policy_id") == "job-stabilisation-refund")
            & (pl.col("reason") == "layoff-rate")
        )
        .sort("entity_id")
        .row(0, named=True)
    )
    with open_engine(url) as engine:
        e = explain(engine, "job-stabilisation-refund", row["entity_id"]).to_json()
    assert e["eligible"] is False
    assert e["first_failing"]["id"] == "layoff-rate"
    assert e["amount_fen"] == 0
    assert e["transfers"] == []
    passed = [c["passed"] for c in e["conditions"]]
    assert passed[:2] == [True, True]
    assert passed[2] is False


def test_personal_data_is_masked_unless_asked(night) -> None:
    url, allocation, _ = night
    person = allocation.filter(pl.col("policy_id") == "elderly-allowance").sort("entity")["entity"][
        0
    ]
    with open_engine(url) as engine:
        masked = render_explanation(explain(engine, "elderly-allowance", person))
        shown = render_explanation(explain(engine, "elderly-allowance", person, unmask=True))
    # The masked form stands where the number would be; the number itself appears nowhere.
    assert person[:6] + "*" * 10 + person[-2:] in masked
    assert person not in masked
    assert person in shown


def test_unknown_entity_and_policy_are_clear_errors(night) -> None:
    url, _, _ = night
    r = CliRunner().invoke(
        main, ["explain", "--db", url, "--policy", "job-stabilisation-refund", "--entity", "X1"]
    )
    assert r.exit_code == 1
    assert "was not evaluated" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["explain", "--db", url, "--policy", "nope", "--entity", "X1"])
    assert r.exit_code == 1
    assert "no nightly run has evaluated policy 'nope'" in r.output


def test_explain_needs_no_source_file(night, tmp_path: Path) -> None:
    """The sources folder can be gone: explain reads only the run's record."""
    url, allocation, _ = night
    first = allocation.sort(["policy_id", "entity"]).row(0, named=True)
    policy, entity, period = first["policy_id"], first["entity"], first["benefit_period"]
    data = Path(url.removeprefix("sqlite:///")).parent / "data"
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    try:
        with open_engine(url) as engine:
            assert explain(engine, policy, entity, period=period).allocation is not None
    finally:
        shutil.move(moved, data)


def test_the_reference_checks_the_amounts_of_entities_that_met_every_condition(night) -> None:
    """An archived amount is checked against the reference interpreter where the entity met
    every condition; a refused entity's amount (null now, a number in archives written
    before engine version 2) decided nothing and is not checked."""
    url, allocation, decisions = night
    policy_id = "job-stabilisation-refund"
    with open_engine(url) as engine:
        run = get_run(engine, latest_run_id(engine) or 0)
    assert run is not None
    assert run.archive is not None
    cat, policies = archived_policies(run, [policy_id])
    policy = policies[policy_id]
    wide = pl.read_parquet(run.archive.features["enterprise"].path)
    column = f"__amount:{policy_id}"
    paid = allocation.filter((pl.col("policy_id") == policy_id) & (pl.col("amount_fen") > 0))
    refused = decisions.filter((pl.col("policy_id") == policy_id) & (pl.col("reason") == "active"))

    def row(entity: str) -> dict[str, object]:
        return wide.filter(pl.col("entity_id") == entity).row(0, named=True)

    met = row(paid["entity"][0])
    assert explain_row(policy, cat, run.as_of, met).reference_agrees is True
    met[column] = int(met[column]) + 1
    assert explain_row(policy, cat, run.as_of, met).reference_agrees is False
    unmet = row(refused["entity_id"][0])
    assert unmet[column] is None
    assert explain_row(policy, cat, run.as_of, unmet).reference_agrees is True
    unmet[column] = 123_456  # as an archive written before engine version 2 holds it
    assert explain_row(policy, cat, run.as_of, unmet).reference_agrees is True


MASKED_ID = re.compile(r"^\d{6}\*{10}[0-9X]{2}$")


@pytest.mark.parametrize(
    ("name", "relation"),
    [
        ("refused-took-on-young-people", "hires"),
        ("refused-lives-alone", "housemates"),
        ("refused-third-born-since", "members"),
        ("refused-hired-graduates", "hires"),
    ],
)
def test_a_decisive_aggregate_lists_its_members(night, name: str, relation: str) -> None:
    """An enterprise's, a person's and a household's aggregate: every member listed, masked,
    each counted or with the part that failed, and together they give the recorded value."""
    url, _allocation, decisions = night
    with open_engine(url) as engine:
        policy_id, entity = member_cases(engine, decisions)[name]
        e = explain(engine, policy_id, entity)
        out = CliRunner().invoke(
            main, ["explain", "--db", url, "--policy", policy_id, "--entity", entity, "--json"]
        )
    assert out.exit_code == 0, out.output
    assert e.members
    assert json.loads(out.output)["members"] == [m.to_json() for m in e.members]
    first = e.first_failing
    assert first is not None
    b = e.members[-1]
    assert b.relation == relation
    assert first["id"] in b.read_by
    assert b.recomputed is None, "the staged members give the value the run recorded"
    assert b.total == len(b.members) + b.more
    assert 0 < b.total <= 20
    for m in b.members:
        assert MASKED_ID.match(m.member), m.member
        if not m.counted:
            assert re.match(
                r"(not (counted|picked)|does not hold|picked #\d+ .*; (not counted|does not hold)): ",
                m.text,
            ), m.text
    if b.aggregate.startswith(("count(", "graduates_hired (count(")):
        assert b.counted == int(b.value)
    text = render_explanation(e)
    assert "related members (the aggregates that decided):" in text
    assert all(f"      {m.member}: {m.text}" in text for m in b.members)


def test_a_refusal_by_a_pick_says_which_members_were_picked(night) -> None:
    url, _allocation, decisions = night
    with open_engine(url) as engine:
        policy_id, entity = member_cases(engine, decisions)["refused-third-born-since"]
        e = explain(engine, policy_id, entity)
    pick = e.members[-1] if e.members else None
    assert pick is not None
    assert pick.aggregate.startswith("any(earliest(members, 3, birth_on, ")
    picked = [m for m in pick.members if m.text.startswith("picked #")]
    assert [m.text.split(" ")[1] for m in picked] == ["#1", "#2", "#3"]
    assert all("does not hold: birth_on >= born_from" in m.text for m in picked)
    assert all(m.text.startswith("not picked: ") for m in pick.members[3:])


def test_no_member_identity_number_appears_unless_unmasked(night) -> None:
    url, _allocation, decisions = night
    with open_engine(url) as engine:
        for policy_id, entity in member_cases(engine, decisions).values():
            shown = explain(engine, policy_id, entity, unmask=True)
            masked = explain(engine, policy_id, entity)
            ids = [m.member for b in shown.members or () for m in b.members]
            assert ids
            assert all(is_resident_id(i) for i in ids), ids
            text, as_json = render_explanation(masked), json.dumps(masked.to_json())
            for i in ids:
                assert i not in text
                assert i not in as_json
                assert i[:6] + "*" * 10 + i[-2:] in text
            assert all(i in render_explanation(shown) for i in ids)


def test_members_are_not_listed_once_the_staged_sources_are_gone(night, tmp_path: Path) -> None:
    url, _allocation, decisions = night
    with open_engine(url) as engine:
        policy_id, entity = member_cases(engine, decisions)["refused-lives-alone"]
        run = get_run(engine, latest_run_id(engine) or 0)
        assert run is not None
        assert run.store_dir is not None
        staged = Path(run.store_dir) / "runs" / str(run.run_id) / "sources"
        members = staged / "household_members.parquet"
        shutil.move(members, tmp_path / "members.parquet")
        try:
            partly = explain(engine, policy_id, entity)
        finally:
            shutil.move(tmp_path / "members.parquet", members)
        shutil.move(staged, tmp_path / "sources")
        try:
            e = explain(engine, policy_id, entity)
        finally:
            shutil.move(tmp_path / "sources", staged)
    assert partly.members is None
    assert e.members is None
    assert "related members: not shown: the run's staged sources are gone" in (
        render_explanation(e)
    )
    assert e.first_failing is not None
    assert e.first_failing["id"] == "lives-alone"
