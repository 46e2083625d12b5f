"""Back-pay (`back_pay`): which past periods a night still pays, and that it pays each key
once, as a grant, never adjusting or reversing what an earlier night decided; through the
real allocation and posting (scenarios over a scratch ledger) and `allocate_back_pay`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from common.periods import claim_closes, past_periods
from disburse.cli import main
from eligibility.check import load_policy
from jobs.allocate import allocate_back_pay
from jobs.scenarios import run_scenarios
from tests.unit.test_scenarios import CAT

D = dt.date


def keys(kind: str, as_of: dt.date, n: int, **kw: object) -> list[str]:
    valid_from = kw.pop("valid_from", D(2020, 1, 1))
    valid_until = kw.pop("valid_until", None)
    return [
        p.key
        for p in past_periods(kind, as_of, valid_from, valid_until, n, **kw)  # type: ignore[arg-type]
    ]


def test_the_periods_before_the_current_one_oldest_first() -> None:
    assert keys("year", D(2026, 2, 10), 3) == ["2023", "2024", "2025"]
    assert keys("quarter", D(2026, 2, 10), 2) == ["2025-Q3", "2025-Q4"]
    assert keys("month", D(2026, 1, 31), 2) == ["2025-11", "2025-12"]
    assert keys("once", D(2026, 2, 10), 3) == []


def test_only_periods_within_the_validity() -> None:
    assert keys("year", D(2026, 2, 10), 3, valid_from=D(2025, 7, 1)) == ["2025"]
    # a policy that ended pays back-pay for the periods it was valid in
    assert keys("month", D(2026, 3, 5), 3, valid_until=D(2026, 1, 15)) == ["2025-12", "2026-01"]


def test_a_claim_window_closes_on_the_first_such_day_after_the_period() -> None:
    assert claim_closes(D(2025, 12, 31), "03-31") == D(2026, 3, 31)
    assert claim_closes(D(2025, 3, 31), "03-31") == D(2026, 3, 31)
    assert claim_closes(D(2025, 2, 28), "03-31") == D(2025, 3, 31)
    assert keys("year", D(2026, 3, 31), 2, until="03-31") == ["2025"]
    assert keys("year", D(2026, 4, 1), 2, until="03-31") == []
    # each month of last year until the 31st of March
    assert keys("month", D(2026, 3, 1), 3, until="03-31") == ["2025-12", "2026-01", "2026-02"]


HEAD = """\
policy: late
title: A yearly grant still paid for last year to whoever was missed
basis: {document: Test notice}
target: enterprise
valid: {from: 2025-01-01}
assess: as_of
benefit_period: year
"""
BODY = """\
eligible:
  - {id: active, when: status == "active" and has_bank_account}
amount: 1000 yuan
"""
FIRM = "{status: active, has_bank_account: true}"


def outcome(tmp_path: Path, back_pay: str, scenarios: str, body: str = BODY) -> list[str]:
    path = tmp_path / "late.yaml"
    path.write_text(HEAD + back_pay + body + "scenarios:\n" + scenarios)
    policy = load_policy(path, CAT)
    results = run_scenarios(policy, CAT)
    return [r.render(str(path), verbose=True) + ("" if r.passed else "\nFAIL") for r in results]


def assert_passes(lines: list[str]) -> None:
    assert all("FAIL" not in line for line in lines), "\n".join(lines)


def test_a_firm_first_seen_after_the_year_is_paid_that_year_once(tmp_path: Path) -> None:
    lines = outcome(
        tmp_path,
        "back_pay: {periods: 1}\n",
        f"""\
  - name: first seen in February
    given: {FIRM}
    runs:
      - as_of: 2026-02-10
        expect:
          transfers:
            - {{kind: grant, amount: 1000 yuan, period: 2026}}
            - {{kind: grant, amount: 1000 yuan, period: 2025}}
      - as_of: 2026-03-10
        expect: {{transfers: []}}
    expect_total: [{{period: 2025, amount: 1000 yuan}}, {{period: 2026, amount: 1000 yuan}}]
""",
    )
    assert_passes(lines)


def test_without_back_pay_a_missed_year_is_lost(tmp_path: Path) -> None:
    lines = outcome(
        tmp_path,
        "",
        f"""\
  - name: first seen in February
    given: {FIRM}
    runs:
      - as_of: 2026-02-10
        expect: {{transfers: [{{kind: grant, amount: 1000 yuan, period: 2026}}]}}
""",
    )
    assert_passes(lines)


@pytest.mark.parametrize(
    "back_pay",
    ["back_pay: {periods: 1, until: 01-31}\n", "back_pay: {periods: 1, since: 2026-01-01}\n"],
    ids=["window-closed", "before-the-ledger"],
)
def test_a_closed_window_or_a_period_before_since_is_not_paid(
    tmp_path: Path, back_pay: str
) -> None:
    lines = outcome(
        tmp_path,
        back_pay,
        f"""\
  - name: first seen in February
    given: {FIRM}
    runs:
      - as_of: 2026-02-10
        expect: {{transfers: [{{kind: grant, amount: 1000 yuan, period: 2026}}]}}
""",
    )
    assert_passes(lines)


def test_what_an_earlier_night_reversed_stays_reversed(tmp_path: Path) -> None:
    # Paid in June, reversed in October (the firm closed); qualifies again in 2026: the
    # night of 2026 pays 2026 only, the reversed key of 2025 is not granted again.
    lines = outcome(
        tmp_path,
        "back_pay: {periods: 1}\n",
        f"""\
  - name: reversed, then qualifies again
    given: {FIRM}
    runs:
      - as_of: 2025-06-10
        expect: {{transfers: [{{kind: grant, amount: 1000 yuan}}]}}
      - as_of: 2025-10-10
        given: {{status: revoked}}
        expect: {{transfers: [{{kind: reversal, amount: -1000 yuan}}]}}
      - as_of: 2026-02-10
        given: {{status: active}}
        expect: {{transfers: [{{kind: grant, amount: 1000 yuan, period: 2026}}]}}
    expect_total: [{{period: 2025, amount: 0 yuan}}]
""",
    )
    assert_passes(lines)


def test_a_scenario_names_the_period_it_expects(tmp_path: Path) -> None:
    """A wrong period is a failure, shown with the periods posted."""
    lines = outcome(
        tmp_path,
        "back_pay: {periods: 2}\n",
        f"""\
  - name: first seen in February
    given: {FIRM}
    runs:
      - as_of: 2026-02-10
        expect:
          transfers:
            - {{kind: grant, amount: 1000 yuan, period: 2026}}
            - {{kind: grant, amount: 1000 yuan, period: 2024}}
""",
    )
    text = "\n".join(lines)
    assert "FAIL" in text
    assert "grant +1,000.00 yuan for 2025" in text


def test_back_pay_is_allocated_against_the_period_s_budget(tmp_path: Path) -> None:
    path = tmp_path / "late.yaml"
    path.write_text(
        HEAD
        + "back_pay: {periods: 1}\n"
        + "budget: {total_yuan: 1000, over_budget: pro_rata}\n"
        + BODY.replace("1000 yuan", "300 yuan")
    )
    policy = load_policy(path, CAT)
    day = D(2025, 12, 31)
    claims = pl.DataFrame(
        {
            "policy_id": ["late"] * 4,
            "period": ["2025"] * 4,
            "target": ["enterprise"] * 4,
            "entity_id": ["A", "B", "C", "D"],
            "eligible": [True, True, True, False],
            "amount_fen": [30_000, 30_000, 30_000, 30_000],
            "payee": ["A", "B", "C", "D"],
            "rank": [None, None, None, None],
            "as_of": [day] * 4,
        },
        schema_overrides={"rank": pl.Float64},
    )
    # The ledger holds 800 yuan of 2025 for X, and A's key was reversed (net 0).
    known = pl.DataFrame(
        {
            "policy_id": ["late", "late"],
            "benefit_period": ["2025", "2025"],
            "entity": ["X", "A"],
            "payee": ["X", "A"],
            "net_fen": [80_000, 0],
        }
    )
    out = allocate_back_pay(claims, [policy], [], known)
    got = dict(zip(out.entitlements["entity"], out.entitlements["amount_fen"], strict=True))
    assert got == {"B": 10_000, "C": 10_000}  # the 200 yuan left, shared; A decided; D refused
    assert set(out.entitlements["benefit_period"]) == {"2025"}
    rep = out.policies["late@2025"]
    assert rep.budget is not None
    assert rep.budget.outcome == "pro_rata"
    assert rep.entitled_fen == 20_000


def test_back_pay_refused_where_it_cannot_hold(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "back_pay: {periods: 1, until: 02-30}\n" + BODY)
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code != 0
    assert "bad.yaml:8:" in result.output
    assert "month 2 has no day 30" in result.output
    assert "Traceback" not in result.output
    bad.write_text(HEAD + "back_pay: {periods: 0}\n" + BODY)
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code != 0
    assert "bad.yaml:8:" in result.output
