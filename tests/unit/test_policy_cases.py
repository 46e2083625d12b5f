"""The officers' own cases in the shipped policy files, one test each, through the compiled plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from eligibility.cases import run_case
from eligibility.checked import CheckedPolicy
from eligibility.schema import Case
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

ROOT = Path(__file__).resolve().parents[2]
PSET = load_policies(load_source_catalogue(), [ROOT / "policies"])
CASES = [(p, i, c) for p in PSET.policies for i, c in enumerate(p.spec.tests)]


def test_every_policy_has_three_cases_or_more() -> None:
    assert len(PSET.policies) >= 8
    for p in PSET.policies:
        assert len(p.spec.tests) >= 3, p.id


@pytest.mark.parametrize(
    ("policy", "index", "case"), CASES, ids=[f"{p.id}: {c.name}" for p, _, c in CASES]
)
def test_officer_case(policy: CheckedPolicy, index: int, case: Case) -> None:
    result = run_case(policy, case, index, PSET.catalogue, policy.spec.valid.from_)
    assert result.passed, result.render(policy.file)


def test_shipped_policies_cover_the_required_shapes() -> None:
    specs = {p.id: p.spec for p in PSET.policies}
    assert any(s.target == "person" for s in specs.values())
    assert any(s.payee != "self" for s in specs.values()), "a benefit paid to a guardian"
    assert any(s.amount.prorate is not None for s in specs.values()), "month proration"
    assert any(s.amount.tiers is not None and s.amount.tiers.mode == "step" for s in specs.values())
    assert any(
        s.amount.tiers is not None and s.amount.tiers.mode == "marginal" for s in specs.values()
    )
    assert any(s.amount.table is not None for s in specs.values())
    assert any(s.budget is not None for s in specs.values())
    assert any(s.params for s in specs.values()), "dated parameters"
    groups = [s.group for s in specs.values() if s.group]
    assert any(groups.count(g) > 1 for g in groups), "a stacking group shared by two policies"
