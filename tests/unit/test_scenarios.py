"""Scenarios over several runs: the shipped ones hold, each through the real allocation and
posting over a scratch ledger; what each transfer kind looks like; `decide: once`; variants
and parameters; every refusal positioned, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from common.errors import Code, ProblemsError
from disburse.cli import main
from eligibility.check import load_policy
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.policyset import policy_files
from eligibility.schema import Scenario
from jobs.catalogue import load_source_catalogue
from jobs.policies import check_policies, feature_catalogue, load_policies
from jobs.scenarios import run_scenarios

ROOT = Path(__file__).resolve().parents[2]
CAT = feature_catalogue(load_source_catalogue(), [ROOT / "policies"])
SHIPPED = [load_policy(p, CAT) for p in policy_files([ROOT / "policies"])]
SCENARIOS = [(p, i, s) for p in SHIPPED for i, s in enumerate(p.spec.scenarios)]

HEAD = """\
policy: story
title: A policy told over several nights
basis: {document: Test notice}
target: enterprise
valid: {from: 2026-01-01, until: 2026-12-31}
assess: previous_year
benefit_period: year
"""
BODY = """\
params:
  rate:
    - {from: 2026-01-01, value: 60%, ref: "Art. 3"}
    - {from: 2026-07-01, value: 90%, ref: "Notice 30"}
variants:
  generous: {params: {rate: 100%}}
eligible:
  - {id: active, when: status == "active" and has_bank_account}
amount: ui_premium_paid * rate
"""
FIRM = "{status: active, has_bank_account: true, ui_premium_paid: 1000}"


def policy_file(tmp_path: Path, scenarios: str, *, head: str = HEAD, body: str = BODY) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(head + body + "scenarios:\n" + scenarios)
    return path


def scenario(tmp_path: Path, scenarios: str, **kw: str) -> tuple[CheckedPolicy, CheckedCatalogue]:
    return load_policy(policy_file(tmp_path, scenarios, **kw), CAT), CAT


def test_shipped_policies_tell_stories_over_several_runs() -> None:
    with_scenarios = {p.id for p, _, _ in SCENARIOS}
    assert {"job-stabilisation-refund", "childcare-subsidy", "third-child-grant"} <= with_scenarios
    kinds = {t.kind for _, _, s in SCENARIOS for r in s.runs for t in (r.expect.transfers or [])}
    assert kinds == {"grant", "adjustment", "reversal", "clawback"}


@pytest.mark.parametrize(
    ("policy", "index", "case"), SCENARIOS, ids=[f"{p.id}: {s.name}" for p, _, s in SCENARIOS]
)
def test_shipped_scenario(policy: CheckedPolicy, index: int, case: Scenario) -> None:
    result = run_scenarios(policy, CAT)[index]
    assert result.name == case.name
    assert result.passed, result.render(policy.file, verbose=True)
    assert len(result.runs) == len(case.runs)


def test_every_kind_of_transfer_over_one_year(tmp_path: Path) -> None:
    (result,) = run_scenarios(
        *scenario(
            tmp_path,
            f"""\
  - name: granted, raised, cut, paid, closed
    given: {FIRM}
    runs:
      - as_of: 2026-03-01
        expect: {{amount: 600 yuan, transfers: [{{kind: grant, amount: 600 yuan}}]}}
      - as_of: 2026-07-01
        expect: {{amount: 900 yuan, transfers: [{{kind: adjustment, amount: 300 yuan}}]}}
      - as_of: 2026-07-02
        given: {{ui_premium_paid: 800}}
        paid: true
        expect: {{amount: 720 yuan, transfers: [{{kind: adjustment, amount: -180 yuan}}]}}
      - as_of: 2026-08-01
        given: {{ui_premium_paid: 900}}
        expect: {{amount: 810 yuan, transfers: [{{kind: adjustment, amount: 90 yuan}}]}}
      - as_of: 2026-09-01
        given: {{status: closed}}
        expect:
          eligible: false
          reason: active
          amount: 0 yuan
          transfers: [{{kind: clawback, amount: -720 yuan}}, {{kind: reversal, amount: -90 yuan}}]
    expect_total: {{period: 2026, amount: 0 yuan}}
""",
        )
    )
    assert result.passed, result.render("story.yaml", verbose=True)
    posted = [[(t.kind, t.fen) for t in r.outcome.transfers] for r in result.runs]
    assert posted == [
        [("grant", 60000)],
        [("adjustment", 30000)],
        [("adjustment", -18000)],
        [("adjustment", 9000)],
        # the 90 yuan still payable goes back; the 720 paid is owed back
        [("reversal", -9000), ("clawback", -72000)],
    ]


STAYS = f"""\
  - name: closes after the grant
    given: {FIRM}
    runs:
      - as_of: 2026-03-01
        expect: {{amount: 600 yuan, transfers: [{{kind: grant, amount: 600 yuan}}]}}
      - as_of: 2026-09-01
        given: {{status: closed}}
        expect: {{eligible: false, amount: 600 yuan, transfers: []}}
"""


def test_decide_once_keeps_the_grant_each_run_reverses_it(tmp_path: Path) -> None:
    (once,) = run_scenarios(*scenario(tmp_path, STAYS, head=HEAD + "decide: once\n"))
    assert once.passed, once.render("story.yaml", verbose=True)
    (each,) = run_scenarios(*scenario(tmp_path, STAYS))
    assert not each.passed
    assert each.runs[1].actual == {
        "eligible": "false",
        "amount": "0.00 yuan",
        "transfers": "[reversal -600.00 yuan]",
    }
    text = each.render("story.yaml")
    assert text.startswith(f"story.yaml:{each.runs[1].line}:9: {Code.SCENARIO_FAILED} FAIL")
    assert "run 1 2026-03-01 (2026): ok" in text
    assert "fix: " in text


def test_variant_and_parameters_as_in_worked_examples(tmp_path: Path) -> None:
    results = run_scenarios(
        *scenario(
            tmp_path,
            f"""\
  - name: the generous reading
    variant: generous
    given: {FIRM}
    runs:
      - {{as_of: 2026-03-01, expect: {{amount: 1000 yuan}}}}
  - name: this scenario's own rate, from July too
    params: {{rate: 50%}}
    given: {FIRM}
    runs:
      - {{as_of: 2026-03-01, expect: {{amount: 500 yuan}}}}
      - {{as_of: 2026-08-01, expect: {{amount: 500 yuan, transfers: []}}}}
""",
        )
    )
    assert [r.passed for r in results] == [True, True]


def test_transfers_compare_in_any_order_and_totals_sum_a_year(tmp_path: Path) -> None:
    body = BODY.replace("benefit_period: year", "")
    head = HEAD.replace("benefit_period: year", "benefit_period: month")
    (result,) = run_scenarios(
        *scenario(
            tmp_path,
            f"""\
  - name: paid each month
    given: {FIRM}
    runs:
      - {{as_of: 2026-03-01, expect: {{amount: 600 yuan}}}}
      - {{as_of: 2026-04-01, expect: {{amount: 600 yuan}}}}
      - {{as_of: 2026-07-01, expect: {{amount: 900 yuan}}}}
    expect_total:
      - {{period: 2026, amount: 2100 yuan}}
      - {{period: 2026-04, amount: 600 yuan}}
      - {{period: 2026-05, amount: 0 yuan}}
""",
            head=head,
            body=body,
        )
    )
    assert result.passed, result.render("story.yaml", verbose=True)
    assert [r.outcome.period for r in result.runs] == ["2026-03", "2026-04", "2026-07"]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_policies(load_source_catalogue(), [path])
    return [p.render() for p in caught.value.problems]


def test_a_failing_scenario_refuses_the_policy_for_runs(tmp_path: Path) -> None:
    path = policy_file(
        tmp_path,
        f"""\
  - name: wrong amount
    given: {FIRM}
    runs:
      - {{as_of: 2026-03-01, expect: {{amount: 700 yuan}}}}
""",
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert f"{Code.SCENARIO_FAILED} scenario 'wrong amount' does not hold: run 1 (2026-03-01)" in (
        problem
    )
    assert "expected amount=700.00 yuan, got amount=600.00 yuan" in problem


@pytest.mark.parametrize(
    ("scenarios", "code", "where"),
    [
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n      - as_of: 2026-03-01\n"
            "        given: {ui_premium_paid: lots}\n        expect: {amount: 1 yuan}\n",
            Code.CASE_BAD_VALUE,
            "run's given, not the scenario's",
        ),
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n      - as_of: 2026-03-01\n"
            "        given: {headcout_end: 3}\n        expect: {amount: 1 yuan}\n",
            Code.CASE_UNKNOWN_FEATURE,
            "did you mean 'headcount_end'",
        ),
        (
            f"  - name: s\n    variant: stingy\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {amount: 1 yuan}}\n",
            Code.UNKNOWN_VARIANT,
            "generous",
        ),
        (
            f"  - name: s\n    params: {{rat: 10%}}\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {amount: 1 yuan}}\n",
            Code.UNKNOWN_SETTING,
            "rate",
        ),
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {reason: inactive}}\n",
            Code.CASE_UNKNOWN_REASON,
            "active",
        ),
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {amount: lots}}\n",
            Code.SCENARIO_WRONG,
            "1000 yuan",
        ),
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {transfers: [{kind: grant, amount: 0 yuan}]}}\n",
            Code.SCENARIO_WRONG,
            "moves some money",
        ),
        ("  - name: s\n    given: {}\n    runs: []\n", Code.BAD_VALUE, "at least 1 item"),
        (
            f"  - name: s\n    given: {FIRM}\n    runs:\n"
            "      - {as_of: 2026-03-01, expect: {transfers: [{kind: payment, amount: 1 yuan}]}}\n",
            Code.BAD_VALUE,
            "grant",
        ),
    ],
    ids=[
        "bad value in a run",
        "unknown feature",
        "unknown variant",
        "unknown parameter",
        "unknown reason",
        "amount not money",
        "transfer of nothing",
        "no runs",
        "no such transfer kind",
    ],
)
def test_refusals_are_positioned(tmp_path: Path, scenarios: str, code: Code, where: str) -> None:
    path = policy_file(tmp_path, scenarios)
    report = check_policies([path])
    assert not report.ok
    assert [p.code for p in report.problems] == [code], [p.render() for p in report.problems]
    (problem,) = report.problems
    assert problem.line > HEAD.count("\n") + BODY.count("\n")
    assert problem.fix
    if code is Code.CASE_BAD_VALUE:  # at the run that gave the value
        assert (
            problem.line
            == path.read_text().splitlines().index("        given: {ui_premium_paid: lots}") + 1
        )
    else:
        assert where in problem.render()


def test_policy_check_counts_scenarios() -> None:
    result = CliRunner().invoke(main, ["policy", "check", str(ROOT / "policies")])
    assert result.exit_code == 0, result.output
    n = len(SCENARIOS)
    assert result.output.rstrip().endswith(f"and {n} of {n} scenario(s) passed")
    verbose = CliRunner().invoke(main, ["policy", "check", "-v", str(ROOT / "policies")])
    assert "  run 2 2026-06-15 (once): ok, holds 10,000.00 yuan; grant +10,000.00 yuan" in (
        verbose.output
    )


def test_a_payee_the_ledger_cannot_hold_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    head = HEAD.replace("target: enterprise", "target: person").replace(
        "assess: previous_year", "payee: {relation: guardians, where: has_bank_account}"
    )
    body = 'eligible:\n  - {id: alive, when: status == "alive"}\namount: 100 yuan\n'
    path = policy_file(
        tmp_path,
        """\
  - name: a guardian whose id has a space
    given: {status: alive, guardians: [{id: "father one", has_bank_account: true}]}
    runs:
      - {as_of: 2026-03-01, expect: {amount: 100 yuan}}
""",
        head=head,
        body=body,
    )
    report = check_policies([path])
    (problem,) = report.problems
    assert problem.code is Code.SCENARIO_WRONG
    assert "cannot be posted" in problem.message
    assert "payee is not a plain id" in problem.message
    assert problem.line == head.count("\n") + body.count("\n") + 2


def test_scenarios_run_once_per_process_for_the_same_text(tmp_path: Path) -> None:
    from jobs.policies import checked_scenarios

    shipped = next(p for p in SHIPPED if p.id == "third-child-grant")
    copy = tmp_path / "copy.yaml"
    copy.write_text(Path(shipped.file).read_text())
    first = checked_scenarios(shipped, CAT)
    assert checked_scenarios(load_policy(copy, CAT), CAT) is first
    copy.write_text(Path(shipped.file).read_text().replace("10000 yuan}", "10001 yuan}"))
    changed = checked_scenarios(load_policy(copy, CAT), CAT)
    assert changed is not first
    assert not changed[0].passed
