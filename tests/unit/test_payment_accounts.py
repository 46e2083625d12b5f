"""Where the money goes: `payment: {account: coalesce(basic, social_insurance)}` names the
payee's accounts in order of preference; the first on file is paid.  Refused with a
position when it names what the payee does not have; stated and tested by worked examples
(`accounts:` given, `account:` expected); chosen by the batch from the account sources."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from common.errors import ProblemsError
from eligibility import check_files, load_policy, paid_to
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

HEADER = """\
policy: p
title: A test policy
basis: {document: Test notice}
valid: {from: 2026-01-01, until: 2026-12-31}
benefit_period: year
target: enterprise
unbanked: hold
eligible:
  - {id: active, when: status == "active"}
amount: 100 yuan
"""


@pytest.fixture(scope="module")
def cat():  # type: ignore[no-untyped-def]
    return load_policies(load_source_catalogue()).catalogue


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(HEADER + body)
    return path


def test_the_catalogues_first_account_unless_the_policy_says(tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    assert load_policy(_write(tmp_path, ""), cat).accounts == ("basic",)
    said = "payment: {account: 'coalesce(social_insurance, basic)', ref: Art. 5}\n"
    assert load_policy(_write(tmp_path, said), cat).accounts == ("social_insurance", "basic")
    one = "payment: {account: social_insurance}\n"
    assert load_policy(_write(tmp_path, one), cat).accounts == ("social_insurance",)


@pytest.mark.parametrize(
    ("account", "message", "fix"),
    [
        (
            "coalesce(basic, social_insurence)",
            "has no account 'social_insurence'",
            "social_insurance",
        ),
        ("card", "an enterprise has no account 'card'", "the enterprise's accounts"),
        ("basic or social_insurance", "one account's name, or coalesce()", "coalesce(basic"),
        ("coalesce(basic, 1)", "one account's name, or coalesce()", "first of them on file"),
    ],
)
def test_payment_names_the_payees_accounts(  # type: ignore[no-untyped-def]
    tmp_path: Path, cat, account: str, message: str, fix: str
) -> None:
    path = _write(tmp_path, f"payment:\n  account: {account}\n")
    with pytest.raises(ProblemsError) as info:
        load_policy(path, cat)
    (p,) = [p for p in info.value.problems if p.code == "E139"]
    assert message in p.message, p.render()
    assert fix in p.fix, p.render()
    assert p.line == HEADER.count("\n") + 2, p.render()
    assert p.col >= len("  account: ") + 1, p.render()


def _case(accounts: str, expected: str) -> str:
    return f"""\
payment: {{account: "coalesce(basic, social_insurance)"}}
tests:
  - name: where it is paid
    given: {{status: active, accounts: {accounts}}}
    expect: {{eligible: true, amount: 100 yuan, account: {expected}}}
"""


@pytest.mark.parametrize(
    ("accounts", "expected", "holds"),
    [
        ("[basic, social_insurance]", "basic", True),
        ("[social_insurance]", "social_insurance", True),
        ("[]", "none", True),
        ("[basic, social_insurance]", "social_insurance", False),
        ("[social_insurance]", "basic", False),
    ],
)
def test_worked_examples_state_the_account(  # type: ignore[no-untyped-def]
    tmp_path: Path, cat, accounts: str, expected: str, holds: bool
) -> None:
    report = check_files([_write(tmp_path, _case(accounts, expected))], cat)
    assert not report.problems, [p.render() for p in report.problems]
    (result,) = [r for rs in report.cases.values() for r in rs]
    assert result.passed is holds, result


def test_a_worked_example_with_an_unknown_account_is_refused(tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    report = check_files([_write(tmp_path, _case("[basik]", "basic"))], cat)
    (p,) = report.problems
    assert p.code == "E123"
    assert "accounts lists the enterprise's accounts" in p.message
    report = check_files([_write(tmp_path, _case("[basic]", "basik"))], cat)
    (p,) = report.problems
    assert p.code == "E139"
    assert "did you mean 'basic'" in p.fix


def test_the_batch_pays_the_first_account_on_file(tmp_path: Path, cat) -> None:  # type: ignore[no-untyped-def]
    both = "payment: {account: 'coalesce(social_insurance, basic)'}\n"
    policy = load_policy(_write(tmp_path, both), cat)
    files = {
        "enterprise_accounts": pl.LazyFrame({"credit_code": ["A", "B"]}),
        "enterprise_si_accounts": pl.LazyFrame({"credit_code": ["B", "C", "C"]}),
    }
    payees = pl.LazyFrame({"policy_id": ["p"] * 4, "payee": ["A", "B", "C", "D"]})
    out = paid_to(files.__getitem__, cat, [policy], payees).collect().sort("payee")
    assert out.to_dict(as_series=False) == {
        "policy_id": ["p"] * 4,
        "payee": ["A", "B", "C", "D"],
        "account": ["basic", "social_insurance", "social_insurance", None],
    }
