"""The source catalogue: the shipped file loads, bad files are reported by position, docs stay in step."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from pydantic import ValidationError

from common.errors import ProblemsError
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.docs import catalogue_markdown
from jobs.policies import check_features

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_catalogue_has_the_sources_policies_read() -> None:
    cat = load_source_catalogue()
    assert set(cat.sources) >= {
        "enterprises",
        "enterprise_accounts",
        "tax_monthly",
        "tax_ratings",
        "social_security_monthly",
        "persons",
        "relations",
        "households",
        "household_members",
        "employment",
        "graduates",
        "person_accounts",
        "credit_lists",
    }
    assert cat.entity_sources == {
        "enterprise": "enterprises",
        "person": "persons",
        "household": "households",
    }
    assert cat.ordered()[:3] == ["enterprises", "households", "persons"]


def test_delivery_docs_are_generated_from_the_catalogue() -> None:
    """docs/sources.md must equal what the catalogue generates: regenerate it with
    `disburse sources --markdown > docs/sources.md` after editing policies/sources.yaml."""
    assert (ROOT / "docs" / "sources.md").read_text(encoding="utf-8") == catalogue_markdown(
        load_source_catalogue()
    )


def test_every_column_is_documented() -> None:
    text = catalogue_markdown(load_source_catalogue())
    for source in load_source_catalogue().sources.values():
        for name in source.columns:
            assert f"| `{name}` |" in text


BAD = """\
version: 1
sources:
  things:
    bureau: x
    description: yy
    key: [id]
    columns:
      id: {type: string, description: z, requird: true}
      n: {type: float, description: z}
      d: {type: date, description: z, min: 3}
"""


def test_bad_catalogue_reports_every_problem_with_position(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(BAD)
    with pytest.raises(ProblemsError) as info:
        load_source_catalogue(path)
    rendered = info.value.render()
    assert f"{path}:8:42: E010 unknown key 'requird'\n  fix: did you mean 'required'?" in rendered
    assert (
        f"{path}:9:11: E012 'float' is not allowed here\n"
        "  fix: use one of 'string', 'int', 'bool', 'date' or 'month'"
    ) in rendered
    assert "min and max apply to int columns only" in rendered
    assert len(info.value.problems) == 3


def _with_references(refs: dict[tuple[str, str], str]) -> dict[str, object]:
    """The shipped catalogue as data, with extra columns (source, column) referencing a source."""
    data = load_source_catalogue().model_dump(by_alias=True, exclude_none=True)
    for (source, column), target in refs.items():
        data["sources"][source]["columns"][column] = {
            "type": "string",
            "description": "a reference added by the test",
            "references": target,
        }
    return data


def test_sources_are_scheduled_after_the_entities_they_reference() -> None:
    """An entity source may reference another: the one it references is staged first, even
    when it sorts after it by name (enterprises -> persons)."""
    cat = Catalogue.model_validate(_with_references({("enterprises", "legal_rep_id"): "persons"}))
    assert cat.depends_on("enterprises") == {"persons"}
    assert cat.depends_on("employment") == {"enterprises", "persons"}
    order = list(cat.schedule().static_order())
    assert sorted(order) == sorted(cat.sources)
    for name in order:
        for dep in cat.depends_on(name):
            assert order.index(dep) < order.index(name), (dep, name)


@pytest.mark.parametrize(
    ("refs", "circle"),
    [
        (
            {("enterprises", "legal_rep_id"): "persons", ("persons", "employer"): "enterprises"},
            "enterprises -> persons -> enterprises",
        ),
        ({("persons", "guardian_id"): "persons"}, "persons -> persons"),
    ],
)
def test_references_in_a_circle_are_refused(refs: dict[tuple[str, str], str], circle: str) -> None:
    with pytest.raises(ValidationError) as info:
        Catalogue.model_validate(_with_references(refs))
    message = str(info.value)
    assert "reference each other in a circle" in message
    assert set(circle.split(" -> ")) == set(message.split("(")[1].split(")")[0].split(" -> "))


def _with_column(source: str, column: str, spec: dict[str, object]) -> dict[str, object]:
    data = load_source_catalogue().model_dump(by_alias=True, exclude_none=True)
    data["sources"][source]["columns"][column] = {"description": "added by the test", **spec}
    return data


def test_every_money_column_is_bounded() -> None:
    """Every column in fen declares unit: fen, so ingest bounds it (max_fen, else the default)."""
    from jobs.catalogue import DEFAULT_MAX_FEN, INT64_MAX

    cat = load_source_catalogue()
    money = {
        (name, c): col.money_bound
        for name, source in cat.sources.items()
        for c, col in source.columns.items()
        if c.endswith("_fen")
    }
    assert money
    bounds = [b for b in money.values() if b is not None]
    assert len(bounds) == len(money)
    # 24 months of the largest bound are far within 64 bits: every sum of a monthly source is exact.
    assert 24 * max(bounds) < INT64_MAX
    added = Catalogue.model_validate(
        _with_column("tax_monthly", "vat_fen", {"type": "int", "unit": "fen"})
    )
    assert added.sources["tax_monthly"].columns["vat_fen"].money_bound == DEFAULT_MAX_FEN


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "int"}, "vat_fen: a column in fen is money: declare unit: fen"),
        ({"type": "string", "unit": "fen"}, "unit: fen applies to int columns only"),
        ({"type": "int", "max_fen": 10}, "max_fen applies to money columns only"),
        ({"type": "int", "unit": "fen", "max_fen": 0}, "greater than or equal to 1"),
        ({"type": "int", "unit": "fen", "max_fen": 2**63}, "less than or equal to"),
    ],
)
def test_money_columns_are_declared_with_their_bound(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Catalogue.model_validate(_with_column("tax_monthly", "vat_fen", spec))


# --- features.yaml against sources.yaml: every reference, positioned ----------------------

POLICIES = ROOT / "policies"
ENTERPRISE_FEATURE = "    hire_count:\n"  # new enterprise features go before it
PERSON_FEATURE = "    guardian_count:\n"  # new person features go before it


def _feature(name: str, **spec: str) -> str:
    """A feature as features.yaml writes it, to insert before another."""
    body = "".join(f"      {k}: {v}\n" for k, v in {**spec, "description": "added"}.items())
    return f"    {name}:\n{body}"


class Mutation(NamedTuple):
    file: str  # the file changed: features.yaml or sources.yaml
    old: str  # replaced, once (it must occur in the file)
    new: str
    code: str
    at: str  # where the problem is: the first occurrence of this text in features.yaml
    message: str
    fix: str = ""


MUTATIONS = {
    # entities:
    "entity source unknown": Mutation(
        "features.yaml", "    source: enterprises\n    payable: true\n    description: A registered",
        "    source: enterprisez\n    payable: true\n    description: A registered",
        "E130", "source: enterprisez", "unknown source 'enterprisez'", "did you mean 'enterprises'",
    ),
    "entity source defines another entity": Mutation(
        "features.yaml", "    source: persons\n    payable: true\n    description: A registered resident",
        "    source: enterprises\n    payable: true\n    description: A registered resident",
        "E132", "source: enterprises\n    payable: true\n    description: A registered resident",
        "source 'enterprises' does not define the persons", "source: persons",
    ),
    "entity source defines no entity": Mutation(
        "features.yaml", "    source: persons\n    payable: true\n    description: A registered resident",
        "    source: graduates\n    payable: true\n    description: A registered resident",
        "E132", "source: graduates\n    payable: true\n    description: A registered resident",
        "source 'graduates' does not define the persons", "source: persons",
    ),
    "entity kind of features undeclared": Mutation(
        "features.yaml", "  person:\n    status:", "  persn:\n    status:",
        "E135", "persn:\n    status:", "unknown entity kind 'persn'", "did you mean 'person'",
    ),
    "entity kind of a relation undeclared": Mutation(
        "features.yaml", "    from: household\n", "    from: housold\n",
        "E135", "from: housold", "unknown entity kind 'housold'", "did you mean 'household'",
    ),
    # timed:
    "timed source unknown": Mutation(
        "features.yaml", "  tax_monthly: {column: month}", "  tax_monthlx: {column: month}",
        "E130", "tax_monthlx:", "unknown source 'tax_monthlx'", "did you mean 'tax_monthly'",
    ),
    "timed column unknown": Mutation(
        "features.yaml", "  tax_monthly: {column: month}", "  tax_monthly: {column: monthx}",
        "E131", "column: monthx", "source 'tax_monthly' has no column 'monthx'",
        "did you mean 'month'",
    ),
    "timed column not a month": Mutation(
        "features.yaml", "  tax_monthly: {column: month}", "  tax_monthly: {column: tax_paid_fen}",
        "E105", "column: tax_paid_fen}", "column tax_monthly.tax_paid_fen is count, where date",
        "give a date column of tax_monthly: month",
    ),
    # relations:
    "relation source unknown": Mutation(
        "features.yaml", "    source: employment\n    from_key: enterprise_sk\n    to_key: person_sk\n    during",
        "    source: employmentx\n    from_key: enterprise_sk\n    to_key: person_sk\n    during",
        "E130", "source: employmentx", "unknown source 'employmentx'", "did you mean 'employment'",
    ),
    "relation from_key unknown": Mutation(
        "features.yaml", "    from_key: enterprise_sk\n    to_key: person_sk\n    during",
        "    from_key: enterprise_skx\n    to_key: person_sk\n    during",
        "E131", "from_key: enterprise_skx", "source 'employment' has no column 'enterprise_skx'",
        "did you mean 'enterprise_sk'",
    ),
    "relation from_key not the entity's key": Mutation(
        "features.yaml", "    from_key: enterprise_sk\n    to_key: person_sk\n    during",
        "    from_key: credit_code\n    to_key: person_sk\n    during",
        "E133", "from_key: credit_code", "from_key 'credit_code' does not hold the key of an enterprise",
        "from_key: enterprise_sk",
    ),
    "relation to_key unknown": Mutation(
        "features.yaml", "    to_key: related_person_sk\n    where: relation in",
        "    to_key: related_persn_sk\n    where: relation in",
        "E131", "to_key: related_persn_sk", "source 'relations' has no column 'related_persn_sk'",
        "did you mean 'related_person_sk'",
    ),
    "relation to_key of the wrong entity": Mutation(
        "features.yaml", "    from_key: person_sk\n    to_key: related_person_sk\n    where: relation in",
        "    from_key: person_sk\n    to_key: household_id\n    where: relation in",
        "E133", "to_key: household_id", "to_key 'household_id' does not hold the key of a person",
        "give one of person_sk, related_person_sk",
    ),
    "relation during unknown": Mutation(
        "features.yaml", "during: from_month", "during: from_monthx",
        "E131", "during: from_monthx", "source 'employment' has no column 'from_monthx'",
        "did you mean 'from_month'",
    ),
    "relation during not a date": Mutation(
        "features.yaml", "during: from_month", "during: credit_code",
        "E105", "during: credit_code", "column employment.credit_code is text, where date",
        "give a date column of employment: from_month, to_month",
    ),
    "relation attribute unknown": Mutation(
        "features.yaml", "hired_in: from_month", "hired_in: from_monthx",
        "E131", "hired_in: from_monthx", "source 'employment' has no column 'from_monthx'",
        "did you mean 'from_month'",
    ),
    "relation where reads an unknown column": Mutation(
        "features.yaml", 'where: relation == "spouse"', 'where: relatio == "spouse"',
        "E104", 'relatio == "spouse"', "unknown name 'relatio'",
        "did you mean 'relation'? A source's columns are listed by `disburse sources`",
    ),
    # features:
    "feature source unknown": Mutation(
        "features.yaml", "      source: tax_ratings", "      source: tax_ratingz",
        "E130", "source: tax_ratingz", "unknown source 'tax_ratingz'", "did you mean 'tax_ratings'",
    ),
    "feature column unknown": Mutation(
        "features.yaml", "column: ui_premium_paid_fen", "column: ui_premium_payed_fen",
        "E131", "column: ui_premium_payed_fen",
        "source 'social_security_monthly' has no column 'ui_premium_payed_fen'",
        "did you mean 'ui_premium_paid_fen'",
    ),
    "feature where reads an unknown column": Mutation(
        "features.yaml", "where: insured_headcount >= 3", "where: insured_headcont >= 3",
        "E104", "insured_headcont >= 3", "unknown name 'insured_headcont'",
        "did you mean 'insured_headcount'?",
    ),
    "feature relation unknown": Mutation(
        "features.yaml", "relation: guardians\n      agg: count", "relation: guardianz\n      agg: count",
        "E106", "relation: guardianz", "unknown relation 'guardianz'", "did you mean 'guardians'",
    ),
    "feature relation from another entity": Mutation(
        "features.yaml", "relation: guardians\n      agg: count", "relation: hires\n      agg: count\n",
        "E106", "relation: hires\n      agg: count\n\n",
        "relation 'hires' starts from an enterprise, not a person",
        "relations from a person are: guardians, household, housemates, spouses",
    ),
    "feature reads a source that does not name its entity": Mutation(
        "features.yaml", PERSON_FEATURE,
        _feature("tax_seen", type="money", unit="fen", source="tax_monthly", column="tax_paid_fen", agg="sum")
        + PERSON_FEATURE,
        "E133", "source: tax_monthly\n      column: tax_paid_fen\n      agg: sum\n      description: added",
        "feature 'tax_seen' reads tax_monthly, whose rows do not name a person",
        "references persons",
    ),
    "feature value of a many-row source": Mutation(
        "features.yaml", PERSON_FEATURE,
        _feature("graduated", type="date", source="graduates", column="graduated_on", agg="value")
        + PERSON_FEATURE,
        "E112", "agg: value\n      description: added",
        "feature 'graduated' reads graduates, which has many rows per person", "give agg: sum",
    ),
    "feature months of a source without months": Mutation(
        "features.yaml", PERSON_FEATURE,
        _feature("degree_months", type="count", source="graduates", agg="months") + PERSON_FEATURE,
        "E112", "agg: months\n      description: added",
        "agg: months reads the months of a monthly source, and graduates is not one", "",
    ),
    "feature aggregates the entity's own record": Mutation(
        "features.yaml", PERSON_FEATURE,
        _feature("born", type="date", source="persons", column="birth_on", agg="max") + PERSON_FEATURE,
        "E112", "agg: max\n      description: added",
        "feature 'born' reads the person's own record, one row per person", "write agg: value",
    ),
    # what sources.yaml lacks that features.yaml reads
    "sources.yaml lacks a column a feature reads": Mutation(
        "sources.yaml", "      ui_new_claimants:", "      new_claimants:",
        "E131", "column: ui_new_claimants",
        "source 'social_security_monthly' has no column 'ui_new_claimants'",
        "did you mean 'new_claimants'",
    ),
    "sources.yaml lacks a source a feature reads": Mutation(
        "sources.yaml", "  graduates:\n", "  graduations:\n",
        "E130", "source: graduates", "unknown source 'graduates'", "did you mean 'graduations'",
    ),
    "sources.yaml lacks a source a relation reads": Mutation(
        "sources.yaml", "  employment:\n", "  employments:\n",
        "E130", "source: employment", "unknown source 'employment'", "did you mean 'employments'",
    ),
    "sources.yaml changes a column's type": Mutation(
        "sources.yaml", "      graduated_on:\n        type: date", "      graduated_on:\n        type: string",
        "E105", "type: date\n      source: graduates",
        "feature 'graduated_on' is declared date but column graduates.graduated_on is text", "",
    ),
    "sources.yaml lacks the credit lists": Mutation(
        "sources.yaml", "  credit_lists:\n", "  credit_list:\n",
        "E130", "lists:\n  serious", "unknown source 'credit_lists': listed() reads the credit lists",
        "did you mean 'credit_list'",
    ),
    "sources.yaml credit lists lack a column": Mutation(
        "sources.yaml", "      removed_on:\n", "      delisted_on:\n",
        "E131", "lists:\n  serious", "source 'credit_lists' has no column 'removed_on'", "",
    ),
    "sources.yaml credit lists name no person": Mutation(
        "sources.yaml", "          - {source: persons, on_missing: keep}\n", "",
        "E133", "lists:\n  serious", "listed() on a person reads credit_lists, whose rows do not name a person",
        "",
    ),
    "an account's source unknown": Mutation(
        "features.yaml", "        source: enterprise_si_accounts\n", "        source: enterprise_si_acounts\n",
        "E130", "source: enterprise_si_acounts", "unknown source 'enterprise_si_acounts' for the social_insurance account",
        "did you mean 'enterprise_si_accounts'",
    ),
    "an account source without the number": Mutation(
        "sources.yaml", "      account_no:\n", "      account_number:\n",
        "E131", "source: enterprise_accounts\n", "source 'enterprise_accounts' has no column 'account_no'",
        "'account_number'",
    ),
    "accounts on a household": Mutation(
        "features.yaml", "names the member it pays (payee:).\n",
        "names the member it pays (payee:).\n    accounts:\n      joint:\n"
        "        source: person_accounts\n        description: x\n",
        "E134", "accounts:\n      joint:", "money is not paid to a household (payable: false)", "payable: true",
    ),
}  # fmt: skip


def _catalogue_copy(tmp_path: Path, m: Mutation) -> tuple[Path, str]:
    """A catalogue folder: the shipped one with `m` applied; and the text of its features.yaml."""
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for name in ("features.yaml", "sources.yaml"):
        text = (POLICIES / name).read_text(encoding="utf-8")
        if name == m.file:
            assert text.count(m.old) >= 1, m.old
            text = text.replace(m.old, m.new, 1)
        (folder / name).write_text(text, encoding="utf-8")
    return folder, (folder / "features.yaml").read_text(encoding="utf-8")


def _position(text: str, at: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of `at` in `text`."""
    i = text.index(at)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


@pytest.mark.parametrize("m", MUTATIONS.values(), ids=list(MUTATIONS))
def test_every_reference_of_the_feature_catalogue_is_checked(tmp_path: Path, m: Mutation) -> None:
    """Each kind of reference features.yaml makes into sources.yaml (and within itself) is a
    problem with its code, its place in features.yaml, what is wrong and a fix."""
    _assert_problem(tmp_path, m)


def _assert_problem(tmp_path: Path, m: Mutation) -> None:
    """The catalogue with `m` applied is refused, with `m`'s problem at its place."""
    folder, features = _catalogue_copy(tmp_path, m)
    with pytest.raises(ProblemsError) as info:
        check_features(folder / "features.yaml", load_source_catalogue(folder / "sources.yaml"))
    line, col = _position(features, m.at)
    path = folder / "features.yaml"
    mine = [p for p in info.value.problems if p.code == m.code]
    assert mine, info.value.render()
    p = mine[0]
    assert (p.file, p.line, p.col) == (str(path), line, col), info.value.render()
    assert m.message in p.message, p.render()
    assert m.fix in p.fix, p.render()


def test_the_shipped_catalogues_fit_each_other() -> None:
    cat = check_features(POLICIES / "features.yaml", load_source_catalogue())
    assert cat.id_column("enterprise") == "credit_code"
    assert cat.id_column("person") == "person_id"


# --- names: features, relations, attributes, lists, and a policy's own, never shared ------

CLASHES = {
    "feature and relation": (
        ENTERPRISE_FEATURE,
        _feature("hires", type="count", source="tax_monthly", agg="count") + ENTERPRISE_FEATURE,
        "hires:\n      type: count",
        "'hires' is both a feature of an enterprise and a relation from it",
    ),
    "feature and run date": (
        PERSON_FEATURE,
        _feature("period_start", type="date", source="persons", column="birth_on", agg="value")
        + PERSON_FEATURE,
        "period_start:",
        "feature 'period_start' is also a run date",
    ),
    "feature and a key of worked examples": (
        PERSON_FEATURE,
        _feature("lists", type="count", source="graduates", agg="count") + PERSON_FEATURE,
        "lists:\n      type: count",
        "feature 'lists': worked examples give 'lists' beside the features",
    ),
    "relation and a key of worked examples": (
        "  spouses:\n    from: person",
        "  lists:\n    from: person",
        "lists:\n    from: person",
        "relation 'lists': worked examples give 'lists' beside the relations",
    ),
    "attribute and feature": (
        "      relation: relation\n",
        "      relation: relation\n      status: relation\n",
        "status: relation",
        "attribute 'status' of relation 'guardians' is also a feature of the related person",
    ),
    "list and feature": (
        "  wage_arrears: wage",
        "  status: on the status list\n  wage_arrears: wage",
        "status: on the status list",
        "credit list 'status' is also a feature of an enterprise",
    ),
    "list and relation": (
        "  wage_arrears: wage",
        "  spouses: married off\n  wage_arrears: wage",
        "spouses: married off",
        "credit list 'spouses' is also a relation",
    ),
}


@pytest.mark.parametrize(("old", "new", "at", "message"), CLASHES.values(), ids=list(CLASHES))
def test_catalogue_names_never_clash(
    tmp_path: Path, old: str, new: str, at: str, message: str
) -> None:
    _assert_problem(tmp_path, Mutation("features.yaml", old, new, "E113", at, message))


POLICY_CLASHES = {
    "parameter and relation": (
        "params:\n", "params:\n  hires: [{from: 2026-01-01, value: 3, ref: x}]\n",
        "hires:", "parameter 'hires' hides a relation of the same name", "rename the parameter",
    ),
    "parameter and run date": (
        "params:\n", "params:\n  as_of: [{from: 2026-01-01, value: 3, ref: x}]\n",
        "as_of:", "parameter 'as_of' hides a run date of the same name", "rename the parameter",
    ),
    "parameter and feature": (
        "params:\n", "params:\n  status: [{from: 2026-01-01, value: 3, ref: x}]\n",
        "status:", "parameter 'status' hides a feature of the same name", "rename the parameter",
    ),
    "let and relation": (
        "\neligible:\n", "\nlet:\n  hires: graduates_hired + 1\neligible:\n",
        "hires: graduates_hired", "'hires' is already the name of a relation", "choose another name",
    ),
    "let and run date": (
        "\neligible:\n", "\nlet:\n  period_end: as_of\neligible:\n",
        "period_end: as_of", "'period_end' is already the name of a run date", "choose another name",
    ),
    "let and parameter": (
        "\neligible:\n", "\nlet:\n  per_graduate: 3 yuan\neligible:\n",
        "per_graduate: 3 yuan", "'per_graduate' is already the name of a parameter",
        "choose another name",
    ),
    "define and relation": (
        "\neligible:\n", "\ndefine:\n  hires: {args: [x], expr: x + 1}\neligible:\n",
        "hires: {args", "'hires' is already the name of a relation", "choose another name",
    ),
    "define and function": (
        "\neligible:\n", "\ndefine:\n  coalesce: {args: [x], expr: x + 1}\neligible:\n",
        "coalesce: {args", "'coalesce' is already the name of a function", "choose another name",
    ),
    "define and feature": (
        "\neligible:\n", "\ndefine:\n  status: {args: [x], expr: x + 1}\neligible:\n",
        "status: {args", "'status' is already the name of a feature", "choose another name",
    ),
    "define and let": (
        "\neligible:\n",
        "\nlet:\n  twice: graduates_hired * 2\ndefine:\n  twice: {args: [x], expr: x * 2}\neligible:\n",
        "twice: {args", "'twice' is already the name of a let", "choose another name",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "at", "message", "fix"), POLICY_CLASHES.values(), ids=list(POLICY_CLASHES)
)
def test_a_policys_own_names_never_take_the_catalogues(
    tmp_path: Path, old: str, new: str, at: str, message: str, fix: str
) -> None:
    """A policy's parameter, let or define never takes the name of a feature, relation, run
    date, function, or another of its own: E113 at its name."""
    from eligibility import load_policy

    text = (POLICIES / "graduate_hiring.yaml").read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    cat = check_features(POLICIES / "features.yaml", load_source_catalogue())
    with pytest.raises(ProblemsError) as info:
        load_policy(path, cat)
    line, col = _position(text, at)
    clashes = [p for p in info.value.problems if p.code == "E113"]
    assert [(p.line, p.col, p.message, p.fix) for p in clashes] == [(line, col, message, fix)], (
        info.value.render()
    )


# --- sources.yaml written wrong: every problem at its place --------------------------------

SOURCE_MISTAKES = {
    "unknown key": (
        "    key: [person_id, level]", "    key: [person_id, level]\n    keys: [x]",
        "E010", "keys: [x]", "unknown key 'keys'", "did you mean 'key'?",
    ),
    "wrong type": (
        "      graduated_on:\n        type: date", "      graduated_on:\n        type: datetime",
        "E012", "type: datetime", "'datetime' is not allowed here", "use one of 'string'",
    ),
    "key column unknown": (
        "    key: [person_id, level]", "    key: [person_id, levels]",
        "E012", "levels]", "key column 'levels' is not among the columns", "did you mean 'level'?",
    ),
    "not_before unknown": (
        "not_before: birth_on", "not_before: born_on",
        "E012", "not_before: born_on", "died_on: not_before names unknown column 'born_on'",
        "did you mean 'birth_on'?",
    ),
    "in_list unknown": (
        "        in_list: regions\n        description: 6-digit GB/T 2260 division of the registered",
        "        in_list: region\n        description: 6-digit GB/T 2260 division of the registered",
        "E012", "in_list: region\n", "enterprises.region_code: unknown list 'region'",
        "did you mean 'regions'?",
    ),
    "references no entity source": (
        "        references: persons\n        pii: id\n        description: The graduate.",
        "        references: person\n        pii: id\n        description: The graduate.",
        "E012", "references: person\n", "graduates.person_id: references 'person', which is not",
        "did you mean 'persons'?",
    ),
    "money without its unit": (
        "        unit: fen\n        max_fen: 100_000_000_000  # 1 billion", "        # 1 billion",
        "E012", "ui_premium_due_fen:", "ui_premium_due_fen: a column in fen is money",
        "add unit: fen",
    ),
    "a rule of another type": (
        "not_before: birth_on", "not_before: birth_on\n        min: 3",
        "E012", "min: 3", "min and max apply to int columns only", "",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "code", "at", "message", "fix"),
    SOURCE_MISTAKES.values(),
    ids=list(SOURCE_MISTAKES),
)
def test_source_catalogue_mistakes_are_positioned(
    tmp_path: Path, old: str, new: str, code: str, at: str, message: str, fix: str
) -> None:
    text = (POLICIES / "sources.yaml").read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemsError) as info:
        load_source_catalogue(path)
    assert len(info.value.problems) == 1, info.value.render()
    p = info.value.problems[0]
    assert (p.file, p.line, p.col, p.code) == (str(path), *_position(text, at), code), p.render()
    assert message in p.message, p.render()
    assert fix in p.fix, p.render()
