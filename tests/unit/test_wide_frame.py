"""The wide frame computes a policy's amount, and its payee, only for the entities that
meet its conditions: at the sizes where Polars runs a plan in parallel chunks, its claims
must be those of computing every amount and every payee for every entity."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from eligibility.backends.polars.features import entity_frame, split_payees
from eligibility.backends.polars.policy import (
    _amount_col,
    _cond_col,
    parts_of_wide,
    policy_columns,
    wide_frame,
)
from eligibility.plan import Naming, needs
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import decisions_of_wide, staged_scan, wide_plans
from jobs.ingest import stage
from jobs.policies import load_policies

AS_OF = dt.date(2026, 3, 15)
COPIES = 40  # 400 enterprises x 40 = 16,000 rows; persons 2,000 x 40 = 80,000


@pytest.fixture(scope="module")
def staged(clean_city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide") / "staged"
    stage(clean_city, out, catalogue=load_source_catalogue())
    return out


@pytest.mark.parametrize("target", ["enterprise", "person"])
def test_amounts_only_where_conditions_hold_decide_as_amounts_everywhere(
    staged: Path, target: str
) -> None:
    pset = load_policies(load_source_catalogue())
    cat = pset.catalogue
    policies = [p for p in pset.active(AS_OF) if p.target == target]
    sk = f"{target}_sk"
    one = entity_frame(
        staged_scan(staged), cat, target, needs(policies, cat, AS_OF), AS_OF
    ).collect()
    n = one.height
    # Many copies of the city under new keys: past Polars' parallel chunk size.
    frame = pl.concat(
        [one.with_columns((pl.col(sk) + i * n).cast(one.schema[sk])) for i in range(COPIES)]
    )
    got = wide_frame(frame.lazy(), policies, cat, AS_OF, sk).collect(engine="streaming")
    naming = Naming(cat)
    columns = [policy_columns(p, cat, naming, AS_OF) for p in policies]
    every = [e for conditions, amount in columns for e in [*conditions, amount]]
    want = frame.lazy().with_columns(every).sort(sk).collect(engine="streaming")
    assert got.height == want.height == COPIES * n
    met_any = False
    for p in policies:
        conds = [_cond_col(p, i) for i in range(len(p.conditions))]
        met = pl.all_horizontal(conds) if conds else pl.lit(True)
        amount = _amount_col(p)
        assert got.select(conds).equals(want.select(conds)), p.id
        # Where all conditions hold the amounts agree; elsewhere none is computed.
        assert got.filter(met).select(sk, amount).equals(want.filter(met).select(sk, amount))
        assert got.filter(~met)[amount].null_count() == got.filter(~met).height
        met_any = met_any or got.filter(met).height > 0
    assert met_any


def test_payees_only_where_conditions_hold_decide_as_payees_everywhere(staged: Path) -> None:
    pset = load_policies(load_source_catalogue())
    cat = pset.catalogue
    policies = [p for p in pset.active(AS_OF) if p.target == "person"]
    assert any(p.spec.payee != "self" for p in policies)
    sk, st, need = "person_sk", staged_scan(staged), needs(policies, cat, AS_OF)
    everywhere = wide_frame(entity_frame(st, cat, "person", need, AS_OF), policies, cat, AS_OF, sk)
    rest, payees = split_payees(st, cat, "person", need, AS_OF)
    restricted = wide_frame(
        entity_frame(st, cat, "person", rest, AS_OF), policies, cat, AS_OF, sk, payees
    )
    want = parts_of_wide(everywhere, policies, sk, "entity_id")
    got = parts_of_wide(restricted, policies, sk, "entity_id")
    for p in policies:
        a = got[p.id].collect(engine="streaming")
        b = want[p.id].collect(engine="streaming")
        assert a.equals(b), p.id
        if p.spec.payee != "self":
            paid = a.filter(pl.col("eligible"))
            assert paid.height > 0, p.id
            assert paid["payee"].null_count() == 0, p.id
            assert (paid["payee"] != paid["entity_id"]).all(), p.id
            # Refused for want of a payee: met every condition, no guardian qualifies.
            assert a.filter(pl.col("reason") == "payee").height > 0, p.id


@pytest.mark.parametrize("target", ["enterprise", "person"])
def test_claims_only_are_the_eligible_rows(staged: Path, target: str) -> None:
    pset = load_policies(load_source_catalogue())
    cat = pset.catalogue
    policies = [p for p in pset.active(AS_OF) if p.target == target]
    sk = f"{target}_sk"
    frame = entity_frame(staged_scan(staged), cat, target, needs(policies, cat, AS_OF), AS_OF)
    wide = wide_frame(frame, policies, cat, AS_OF, sk).collect(engine="streaming").lazy()
    every = parts_of_wide(wide, policies, sk, "entity_id")
    claims = parts_of_wide(wide, policies, sk, "entity_id", claims_only=True)
    for p in policies:
        want = every[p.id].filter(pl.col("eligible")).collect()
        got = claims[p.id].collect()
        assert got.equals(want), p.id
    assert sum(claims[p.id].collect().height for p in policies) > 0


def test_each_kind_computes_only_what_its_own_policies_read(staged: Path) -> None:
    """The person archive does not carry what enterprise policies read of related persons
    (the hired graduates' graduated_on), and the decisions are those of plans built from
    every policy's needs."""
    pset = load_policies(load_source_catalogue())
    cat, policies = pset.catalogue, pset.active(AS_OF)
    assert "graduate-hiring-subsidy" in {p.id for p in policies}
    wide = wide_plans(staged, policies, pset, AS_OF)
    person = set(wide["person"].collect_schema().names())
    assert "graduated_on" not in person
    assert {"birth_on", "status", "has_bank_account"} <= person
    st, every = staged_scan(staged), needs(policies, cat, AS_OF)
    assert ("graduated_on", None) in every["person"].features
    old = {}
    for entity in cat.entities():
        mine = [p for p in policies if p.target == entity]
        if not mine:
            continue
        rest, payees = split_payees(st, cat, entity, every, AS_OF)
        frame = entity_frame(st, cat, entity, rest, AS_OF)
        old[entity] = wide_frame(frame, mine, cat, AS_OF, Naming.sk(entity), payees)

    def decided(plans: dict[str, pl.LazyFrame]) -> pl.DataFrame:
        collected = {k: v.collect(engine="streaming").lazy() for k, v in plans.items()}
        return decisions_of_wide(collected, policies, AS_OF).collect(engine="streaming")

    new_decisions, old_decisions = decided(wide), decided(old)
    assert new_decisions.filter(pl.col("eligible")).height > 0
    assert new_decisions.equals(old_decisions)
