"""The Polars backend stays within what narwhals also offers, so that the same compiled
policies can run on a distributed engine through narwhals (PySpark, Dask).

Every compiled expression is serialised by Polars and walked; each operation it uses
must have a narwhals counterpart (`NARWHALS`), and that counterpart must exist in the
narwhals installed.  Checked: every shipped policy's conditions, amount, rank and result,
its aggregate bodies, and every function of the registry on sample arguments.  The
feature group-bys use a few operations narwhals' group-by does not have (first/last in
month order); they are listed in `FEATURE_ONLY`, so that any other shows up here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import narwhals as nw
import polars as pl
import pytest

from common.periods import Window
from common.yamlsrc import Located
from eligibility.backends.polars import DEC, Context, compile_expr
from eligibility.backends.polars.features import _agg_expr
from eligibility.backends.polars.policy import aggregate_expressions, policy_columns, policy_result
from eligibility.checked import FeatureRef, ParamRef, RunDate, Scope
from eligibility.functions import FUNCTIONS
from eligibility.parse import parse_expression
from eligibility.plan import Naming, ParamTable, needs
from eligibility.typecheck import Checker
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

ROOT = Path(__file__).resolve().parents[2]

# A Polars operation (as `Expr.meta.serialize` names it) -> its narwhals counterpart.
NARWHALS = {
    "Column": "col",
    "Literal": "lit",
    "Alias": "Expr.alias",
    "Cast": "Expr.cast",
    "Ternary": "when",
    "Filter": "Expr.filter",
    "FillNull": "Expr.fill_null",
    "Len": "len",
    "Binary.Plus": "Expr.__add__",
    "Binary.Minus": "Expr.__sub__",
    "Binary.Multiply": "Expr.__mul__",
    "Binary.TrueDivide": "Expr.__truediv__",
    "Binary.FloorDivide": "Expr.__floordiv__",
    "Binary.Eq": "Expr.__eq__",
    "Binary.NotEq": "Expr.__ne__",
    "Binary.Lt": "Expr.__lt__",
    "Binary.LtEq": "Expr.__le__",
    "Binary.Gt": "Expr.__gt__",
    "Binary.GtEq": "Expr.__ge__",
    "Binary.And": "Expr.__and__",
    "Binary.Or": "Expr.__or__",
    "Boolean.Not": "Expr.__invert__",
    "Boolean.IsNull": "Expr.is_null",
    "Boolean.IsNotNull": "Expr.is_null",  # ~is_null()
    "Boolean.IsIn": "Expr.is_in",
    "Boolean.AllHorizontal": "all_horizontal",
    "Boolean.AnyHorizontal": "any_horizontal",
    "Boolean.Any": "Expr.any",
    "Boolean.All": "Expr.all",
    "MinHorizontal": "min_horizontal",
    "MaxHorizontal": "max_horizontal",
    "SumHorizontal": "sum_horizontal",
    "Coalesce": "coalesce",
    "Abs": "Expr.abs",
    "Floor": "Expr.floor",
    "Binary.Modulus": "Expr.__mod__",
    "Round": "Expr.round",  # half away from zero only (checked below)
    "StringExpr.Format": "format",
    "StringExpr.StartsWith": "Expr.str.starts_with",
    "StringExpr.Slice": "Expr.str.slice",
    "StringExpr.Lowercase": "Expr.str.to_lowercase",
    "StringExpr.Uppercase": "Expr.str.to_uppercase",
    "StringExpr.LenChars": "Expr.str.len_chars",
    "StringExpr.Contains": "Expr.str.contains",
    "TemporalExpr.Year": "Expr.dt.year",
    "TemporalExpr.Month": "Expr.dt.month",
    "TemporalExpr.Day": "Expr.dt.day",
    "TemporalExpr.OffsetBy": "Expr.dt.offset_by",
    "TemporalExpr.Truncate": "Expr.dt.truncate",
    "TemporalExpr.TotalSeconds": "Expr.dt.total_seconds",
    "ReplaceStrict": "Expr.replace_strict",
    "Agg.Min": "Expr.min",
    "Agg.Max": "Expr.max",
    "Agg.Sum": "Expr.sum",
    "Agg.Count": "Expr.count",
    "Agg.NUnique": "Expr.n_unique",
    "Agg.First": "Expr.first",
    "Agg.Last": "Expr.last",
    "Agg.Mean": "Expr.mean",
    "DropNulls": "Expr.drop_nulls",
}
# Feature aggregations narwhals' group-by cannot say: first/last in month order.
FEATURE_ONLY = {"SortBy"}

# A call of every function, on arguments of the kinds its type rule accepts.
SAMPLES = {
    "min": "min(amount, 2 yuan)",
    "max": "max(n, 3)",
    "coalesce": "coalesce(amount, 0 yuan)",
    "abs": "abs(rate)",
    "round": "round(rate, 2)",
    "months_between": "months_between(born, as_of)",
    "days_between": "days_between(born, as_of)",
    "age_on": "age_on(as_of)",
    "add_months": "add_months(born, n)",
    "add_days": "add_days(born, 3)",
    "month_start": "month_start(born)",
    "year_of": "year_of(born)",
    "listed": 'listed("serious_dishonesty")',
    "is_missing": "is_missing(amount)",
    "starts_with": 'starts_with(code, "33")',
    "substr": "substr(code, 1, 2)",
    "lower": "lower(code)",
    "upper": "upper(code)",
    "length": "length(code)",
    "matches": 'matches(code, "6[0-5][0-9]{2}")',
    "lookup": "lookup(rates, code)",
}
TYPES = {"amount": "money", "n": "count", "rate": "number", "born": "date", "code": "text"}


def operations(expr: pl.Expr) -> Iterator[tuple[str, Any]]:
    """Every operation of a serialised expression: its name and its parameters."""
    yield from _walk(json.loads(expr.meta.serialize(format="json")))


# Where a node's payload holds its sub-expressions.
SUB_EXPRESSIONS = ("input", "expr", "by", "predicate", "truthy", "falsy")


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, list):
        for x in node:
            yield from _walk(x)
        return
    if isinstance(node, str):  # a node without payload: "Len"
        yield node, None
        return
    ((variant, payload),) = node.items()
    children: list[Any] = []
    if variant in ("Literal", "Column"):
        yield variant, payload
    elif variant == "Function":
        yield _function_name(payload["function"]), payload["function"]
        children = payload["input"]
    elif variant == "BinaryExpr":
        yield f"Binary.{payload['op']}", payload
        children = [payload["left"], payload["right"]]
    elif variant == "Agg":
        ((name, inner),) = payload.items()
        yield f"Agg.{name}", inner
        children = [inner["input"] if isinstance(inner, dict) and "input" in inner else inner]
    elif variant == "Alias":
        yield variant, payload[1]
        children = [payload[0]]
    else:
        yield variant, payload
        children = [
            payload[f] for f in SUB_EXPRESSIONS if isinstance(payload, dict) and f in payload
        ]
    yield from _walk(children)


def _function_name(function: Any) -> str:
    if isinstance(function, str):
        return function
    name = next(iter(function))
    inner = function[name]
    if name in ("Boolean", "TemporalExpr", "StringExpr") and inner is not None:
        return f"{name}.{inner if isinstance(inner, str) else next(iter(inner))}"
    return name


def _narwhals_has(path: str) -> bool:
    target: Any = nw
    for part in path.split("."):
        if part in ("dt", "str") and target is nw.Expr:
            target = type(getattr(nw.col("x"), part))
            continue
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return True


def _check(expr: pl.Expr, allowed: set[str]) -> list[str]:
    bad = []
    for name, params in operations(expr):
        if name not in allowed:
            bad.append(name)
        elif name == "Round" and params["Round"]["mode"] != "HalfAwayFromZero":
            bad.append("Round with a mode narwhals does not give")
    return bad


def test_every_counterpart_exists_in_narwhals() -> None:
    assert [p for p in NARWHALS.values() if not _narwhals_has(p)] == []


PSET = load_policies(load_source_catalogue(), [ROOT / "policies"])


@pytest.mark.parametrize("policy", PSET.policies, ids=lambda p: p.id)
def test_compiled_policies_stay_in_the_narwhals_subset(policy: Any) -> None:
    cat, as_of = PSET.catalogue, policy.spec.valid.from_
    conditions, amount = policy_columns(policy, cat, Naming(cat), as_of)
    exprs = [*conditions, amount, *policy_result(policy, "entity_id")]
    for need in needs([policy], cat, as_of).values():
        exprs += aggregate_expressions(cat, list(need.aggregates.values()))
    assert [bad for e in exprs for bad in _check(e, set(NARWHALS))] == []


def test_feature_aggregations_stay_in_the_subset_but_for_their_known_exceptions() -> None:
    cat = PSET.catalogue
    window = Window(dt.date(2025, 1, 1), dt.date(2025, 12, 1))
    exprs = [
        _agg_expr(cat, entity, name, window)
        for entity in ("enterprise", "person")
        for name, f in cat.features_of(entity).items()
        if f.source is not None and f.agg not in (None, "value")
    ]
    assert exprs
    assert [bad for e in exprs for bad in _check(e, set(NARWHALS) | FEATURE_ONLY)] == []


def test_every_function_has_a_sample() -> None:
    assert sorted(set(FUNCTIONS) - set(SAMPLES)) == []


@pytest.mark.parametrize("func", sorted(SAMPLES))
def test_every_function_compiles_into_the_subset(func: str) -> None:
    names: dict[str, Any] = {n: FeatureRef(n, t) for n, t in TYPES.items()}  # type: ignore[arg-type]
    names["birth_on"] = FeatureRef("born", "date")
    names["as_of"] = RunDate("as_of")
    names["rates"] = ParamRef("rates", "number", "table")
    checker = Checker(Located("<test>", None), None)
    node = parse_expression(SAMPLES[func], "<test>")
    assert checker.check(node, Scope("person", names, "test")) is not None, checker.problems
    ctx = Context(
        typed=checker.typed,
        column=lambda b: (
            pl.col(b.name).cast(DEC) if b.type in ("money", "number") else pl.col(b.name)
        ),
        aggregate=lambda n: pl.lit(None),
        listed=lambda n: pl.col(Naming.listed(n)),
        dates={"as_of": dt.date(2026, 1, 1)},
        feature=lambda n: pl.col("born"),
        params={"rates": ParamTable({"33": Decimal("0.6")}, Decimal("0.4"))},
    )
    assert _check(compile_expr(node, ctx), set(NARWHALS)) == []


@pytest.mark.parametrize("to", ["fen", "yuan", "ten_yuan"])
@pytest.mark.parametrize("mode", ["half_up", "half_even", "down"])
def test_every_rounding_compiles_into_the_subset(to: str, mode: str) -> None:
    from eligibility.amounts import Rounding
    from eligibility.backends.polars.amounts import round_amount

    expr = round_amount(pl.col("fen").cast(DEC), Rounding(to, mode))  # type: ignore[arg-type]
    assert _check(expr, set(NARWHALS)) == []
