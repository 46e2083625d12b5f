"""Parameters that are lists (for `in`) and tables keyed by a code (for `lookup`), with
text values written plainly (H, 3301), and their misuse refused with a position."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ProblemsError
from eligibility import load_policy
from eligibility.cases import run_cases
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

HERE = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def cat():  # type: ignore[no-untyped-def]
    return load_policies(load_source_catalogue()).catalogue


def test_list_and_table_parameters_decide_the_worked_examples(cat) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy(HERE / "key_sector_subsidy.yaml", cat)
    results = run_cases(policy, cat)
    assert len(results) == 6
    assert all(r.passed for r in results), [r.render("") for r in results]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("amount: ui_premium_paid * key_sections", "'key_sections' is a list parameter"),
        ("amount: ui_premium_paid * regional_rate", "'regional_rate' is a table parameter"),
        ('amount: ui_premium_paid * lookup(key_sections, "H")', "lookup() takes a table parameter"),
        ("amount: 100 yuan\nlet: {x: status in region_code}", "is no list parameter"),
    ],
)
def test_a_list_or_table_used_as_one_value_is_refused(
    cat,
    tmp_path: Path,
    change: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    text = (HERE / "key_sector_subsidy.yaml").read_text()
    start = text.index("amount:")
    end = text.index("\n", start)
    broken = tmp_path / "p.yaml"
    broken.write_text(text[:start] + change + text[end:])
    with pytest.raises(ProblemsError) as info:
        load_policy(broken, cat)
    rendered = info.value.render()
    assert message in rendered
    assert f"{broken}:" in rendered


def test_variants_and_a_worked_examples_own_parameters(cat) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy(HERE / "key_sector_subsidy.yaml", cat)
    assert set(policy.variants) == {"province_b"}
    results = {r.name: r for r in run_cases(policy, cat)}
    assert all(r.passed for r in results.values()), [r.render("") for r in results.values()]
    # The variant's values cite the variant as their reference.
    dated = policy.variants["province_b"].params["regional_rate"]
    assert [d.ref for d in dated] == ["variant province_b"]


def test_the_variant_in_force_is_what_runs_and_what_unnamed_examples_test(
    cat,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    text = (HERE / "key_sector_subsidy.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("unbanked: hold\n", "unbanked: hold\nvariant: province_b\n"))
    policy = load_policy(path, cat)
    assert policy.reading == "variant province_b"
    results = {r.name: r for r in run_cases(policy, cat)}
    # Written for the file as written: 60% in Hangzhou; province B pays 30%.
    assert not results["Hangzhou hotel"].passed
    assert results["Hangzhou hotel"].actual["amount"] == "3,000.00 yuan"
    assert results["a Hangzhou hotel in province B"].passed


def test_a_setting_of_another_shape_is_refused(cat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = (HERE / "key_sector_subsidy.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("regional_rate: {default: 30%}", "regional_rate: 30%"))
    with pytest.raises(ProblemsError) as info:
        load_policy(path, cat)
    assert "'regional_rate' is set to a number value, where the file gives a number table" in (
        info.value.render()
    )


SHIPPED = Path(__file__).resolve().parents[2] / "policies"


def test_a_count_parameter_sets_where_substr_cuts_and_a_variant_changes_it(cat) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy(SHIPPED / "stay_at_post_grant.yaml", cat)
    results = run_cases(policy, cat)
    assert all(r.passed for r in results), [r.render("") for r in results]
    # the same staff, two readings: the city's counts both (1000 yuan), the province's one
    amounts = {r.name: r.actual.get("amount") for r in results}
    assert amounts["from elsewhere in the province counts in the city reading"] == "1,000.00 yuan"
    assert (
        amounts["the provincial reading counts only those from outside the province"]
        == "500.00 yuan"
    )
    assert set(policy.variants) == {"province_wide"}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      home_digits: 2\n",
            "      home_digits: 2.5\n",
            "not every value of it is a whole number of at least 0 (in variant province_wide)",
        ),
        (
            "      home_digits: 2\n",
            "      home_digits: -1\n",
            "not every value of it is a whole number of at least 0 (in variant province_wide)",
        ),
        (
            "substr(region_code, 1, home_digits)",
            "substr(region_code, per_employee, home_digits)",
            "argument 2 of substr() is parameter 'per_employee'",
        ),
        (
            "substr(region_code, 1, home_digits)",
            "substr(region_code, 1, len_digits)",
            "unknown name",
        ),
    ],
)
def test_a_count_parameter_that_is_not_a_whole_number_is_refused(
    cat,
    tmp_path: Path,
    old: str,
    new: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    text = (SHIPPED / "stay_at_post_grant.yaml").read_text()
    assert old in text
    broken = tmp_path / "p.yaml"
    broken.write_text(text.replace(old, new))
    with pytest.raises(ProblemsError) as info:
        load_policy(broken, cat)
    rendered = info.value.render()
    assert message in rendered, rendered
    assert f"{broken}:" in rendered
