"""The strict YAML loader: positions, duplicate keys, ambiguous booleans."""

from __future__ import annotations

import datetime as dt

import pytest

from common.errors import ProblemsError
from common.yamlsrc import load_yaml_text


def test_positions_of_nested_values() -> None:
    doc = load_yaml_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}]}
    assert doc.at(("a",)) == (1, 1)
    assert doc.at(("b", 1, "c")) == (4, 6)
    assert doc.at(("b", 1, "c", "missing")) == (4, 6)  # nearest ancestor


def test_duplicate_key_is_refused_with_both_lines() -> None:
    with pytest.raises(ProblemsError) as info:
        load_yaml_text("policy: a\ntitle: x\npolicy: b\n", "p.yaml")
    (problem,) = info.value.problems
    assert problem.render() == (
        "p.yaml:3:1: E002 duplicate key 'policy' (first given on line 1)\n"
        "  fix: keep one of them: YAML would silently use the last"
    )


@pytest.mark.parametrize("word", ["no", "yes", "off", "On", "Y", "n"])
def test_yaml11_booleans_are_refused(word: str) -> None:
    with pytest.raises(ProblemsError) as info:
        load_yaml_text(f"country: {word}\n", "p.yaml")
    assert info.value.problems[0].code == "E003"


def test_quoted_word_and_true_false_are_fine() -> None:
    doc = load_yaml_text(
        'country: "no"\nflag: true\nother: False\nn: 50_000\nd: 2026-01-01\n', "p.yaml"
    )
    assert doc.data == {
        "country": "no",
        "flag": True,
        "other": False,
        "n": 50000,
        "d": dt.date(2026, 1, 1),
    }


def test_all_problems_collected_and_sorted() -> None:
    with pytest.raises(ProblemsError) as info:
        load_yaml_text("a: no\nb: 1\nb: 2\nc: off\n", "p.yaml")
    assert [(p.line, p.code) for p in info.value.problems] == [
        (1, "E003"),
        (3, "E002"),
        (4, "E003"),
    ]


def test_syntax_error_is_positioned() -> None:
    with pytest.raises(ProblemsError) as info:
        load_yaml_text("a: [1, 2\nb: 3\n", "p.yaml")
    assert info.value.problems[0].code == "E001"
    assert info.value.problems[0].file == "p.yaml"
