"""The source catalogue: the shipped file loads, bad files are reported by position, docs stay in step."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.errors import ProblemsError
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.docs import catalogue_markdown

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
