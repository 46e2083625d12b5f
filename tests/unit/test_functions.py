"""Every function of the registry and every kind of amount has a rule in every backend.

Adding a function is one entry in `eligibility.functions` and one rule per backend;
adding a kind of amount is one class in `eligibility.amounts` and one rule per backend.
These tests fail while a backend lacks one, and a rule for a function that has no
entry is refused when its backend is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eligibility import amounts
from eligibility import ast as A
from eligibility.backends.polars import amounts as polars_amounts
from eligibility.backends.polars.functions import RULES as POLARS
from eligibility.explain import WORDS_RULES, base_steps
from eligibility.functions import FUNCTIONS, BackendRules, function
from eligibility.reference import RULES as REFERENCE
from eligibility.reference import base_amount

FUNCTION_TABLES = {"Polars": POLARS, "reference": REFERENCE, "words": WORDS_RULES}
AMOUNT_RULES: dict[str, Callable[..., Any]] = {
    "Polars": polars_amounts.base_amount,
    "reference": base_amount,
    "words": base_steps,
}


@pytest.mark.parametrize("backend", sorted(FUNCTION_TABLES))
def test_every_function_has_a_rule(backend: str) -> None:
    assert FUNCTION_TABLES[backend].missing() == []


@pytest.mark.parametrize("backend", sorted(AMOUNT_RULES))
def test_every_kind_of_amount_has_a_rule(backend: str) -> None:
    registered = set(AMOUNT_RULES[backend].registry)  # type: ignore[attr-defined]
    assert [k.__name__ for k in amounts.KINDS if k not in registered] == []


def test_a_new_function_without_rules_is_missing_in_every_backend() -> None:
    @function("twice", 1, "the value doubled")
    def _twice(call: A.Call, ts: list[Any], ctx: Any) -> Any:
        return ts[0]

    try:
        for table in FUNCTION_TABLES.values():
            assert table.missing() == ["twice"]
    finally:
        del FUNCTIONS["twice"]


def test_a_rule_needs_a_registered_function() -> None:
    rules: BackendRules[Any] = BackendRules("test")
    with pytest.raises(ValueError, match="no function 'floor'"):
        rules.rule("floor")(lambda *a: None)


@pytest.mark.parametrize(
    "pattern",
    ["(?=6)65", "(6)\\\\1", "(?i)ab", "a{2", "x" * 201, "[[:alpha:]]", "\\\\p{Han}", "$"],
)
def test_matches_refuses_patterns_the_two_engines_may_read_apart(pattern: str) -> None:
    from common.yamlsrc import Located
    from eligibility.checked import FeatureRef, Scope
    from eligibility.parse import parse_expression
    from eligibility.typecheck import Checker

    checker = Checker(Located("<test>", None), None)
    node = parse_expression(f'matches(code, "{pattern}")', "<test>")
    scope = Scope("enterprise", {"code": FeatureRef("code", "text")}, "test")
    assert checker.check(node, scope) is None
    assert [p.code for p in checker.problems] == ["E105"]
