"""An amount past any real entitlement is unknown (refused, reason amount_unknown), in the
compiled plan as in the reference interpreter: never an Int64 overflow, never wrapped."""

from __future__ import annotations

from pathlib import Path

from eligibility import load_policy
from eligibility.cases import run_cases
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

POLICY = """\
policy: huge
title: An amount no policy pays
basis: {document: Test notice}
target: enterprise
valid: {from: 2026-01-01, until: 2026-12-31}
benefit_period: year
eligible:
  - {id: active, when: status == "active" and has_bank_account}
amount: ui_premium_paid * 99999999999999
tests:
  - name: past ten trillion yuan
    given: {status: active, has_bank_account: true, ui_premium_paid: 100000000}
    expect: {eligible: false, reason: amount_unknown}
  - name: within
    given: {status: active, has_bank_account: true, ui_premium_paid: 0.01}
    expect: {eligible: true, amount: 999999999999.99 yuan}
"""


def test_an_amount_past_any_real_entitlement_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(POLICY)
    cat = load_policies(load_source_catalogue()).catalogue
    results = run_cases(load_policy(path, cat), cat)
    assert [(r.name, r.passed) for r in results] == [
        ("past ten trillion yuan", True),
        ("within", True),
    ], [r.render(str(path)) for r in results]
