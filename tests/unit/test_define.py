"""A policy's own functions (`define:`): declared once, applied wherever they are called,
decided alike by the compiled plan and the reference interpreter; their misuse refused
with a position."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from common.errors import ProblemsError
from eligibility import load_policy
from eligibility.cases import run_cases
from eligibility.reference import decide, env_for
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

HERE = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def cat():  # type: ignore[no-untyped-def]
    return load_policies(load_source_catalogue()).catalogue


def test_defined_functions_decide_the_worked_examples(cat) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy(HERE / "elderly_top_up.yaml", cat)
    results = run_cases(policy, cat)
    assert len(results) == 3
    assert all(r.passed for r in results), [r.render("") for r in results]


@pytest.mark.parametrize(
    ("born", "fen"),
    [
        (None, None),
        ("1946-03-02", None),
        ("1941-01-01", 120000),
        ("1936-03-01", 360000),
        ("1926-02-28", 600000),
    ],
)
def test_the_reference_agrees_with_the_tier_table(cat, born: str | None, fen: int | None) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy(HERE / "elderly_top_up.yaml", cat)
    as_of = dt.date(2026, 3, 1)
    values = {"status": "alive", "birth_on": dt.date.fromisoformat(born) if born else None}
    got = decide(policy, env_for(policy, as_of, values, set()), "P1")
    assert got["amount_fen"] == (fen or 0)
    assert got["eligible"] is (fen is not None)


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (HERE / "elderly_top_up.yaml").read_text()
    assert old in text
    path = tmp_path / "p.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "amount: twelve_months(elderly_tier(age_on(as_of)))",
            "amount: twelve_months(1 yuan, 2)",
            "E103 twelve_months() takes 1 arguments, got 2",
        ),
        (
            "expr: monthly * 12",
            "expr: twelve_months(monthly)",
            "E102 unknown function 'twelve_months'",
        ),
        ("  twelve_months:\n", "  status:\n", "E113 'status' is already the name"),
        ("expr: monthly * 12", "expr: monthly *", "E101"),
        ("expr: monthly * 12", "expr: monthly and 12", "E105"),
    ],
)
def test_misuse_is_refused_with_a_position(
    cat, tmp_path: Path, old: str, new: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = _broken(tmp_path, old, new)
    with pytest.raises(ProblemsError) as info:
        load_policy(path, cat)
    assert message in info.value.render()
    assert f"{path}:" in info.value.render()
