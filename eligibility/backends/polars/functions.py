"""The Polars rule of every function of the rule language (`eligibility.functions`).

Each rule gets the call, its compiled arguments and the compilation context, and
returns an expression in this backend's representation (`expr`).  Unknown values:
a function marked `strict` in the registry is unknown when any argument is; Polars'
own null propagation gives that for most, and the rules below say where it does not.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from common.money import FEN_PER_YUAN
from eligibility import ast as A
from eligibility.backends.polars.base import Context, as_decimal, dtype_of
from eligibility.functions import FUNCTIONS, BackendRules, anchored, count_arg, listed_name

Rule = Callable[[A.Call, list[pl.Expr], Context], pl.Expr]
RULES: BackendRules[Rule] = BackendRules("Polars")


def _decimals(node: A.Call, args: list[pl.Expr], ctx: Context) -> list[pl.Expr]:
    """The arguments as Decimal where the call's result is a decimal (number or money)."""
    if ctx.type_of(node) in ("number", "money"):
        return [as_decimal(a, ctx.type_of(n)) for a, n in zip(args, node.args, strict=True)]
    return args


def _extreme(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    args = _decimals(node, args, ctx)
    # Unknown if any argument is unknown: min(premium * 90%, 1000000 yuan) must not
    # become 1,000,000 yuan when the premium is missing (min_horizontal skips nulls).
    known = pl.all_horizontal([a.is_not_null() for a in args])
    return pl.when(known).then(
        pl.min_horizontal(args) if node.func == "min" else pl.max_horizontal(args)
    )


RULES.rule("min", "max")(_extreme)


@RULES.rule("coalesce")
def _coalesce(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return pl.coalesce(_decimals(node, args, ctx))


@RULES.rule("abs")
def _abs(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].abs()


@RULES.rule("round")
def _round(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    places = int(node.args[1].value) if len(node.args) == 2 else 0  # type: ignore[union-attr, arg-type]
    t = ctx.type_of(node.args[0])
    if t == "count":
        return args[0]
    if t == "money":
        # round(x) on money rounds to whole yuan; round(x, 2) to the fen
        yuan = as_decimal(args[0], "money") / FEN_PER_YUAN
        return yuan.round(places, mode="half_away_from_zero") * FEN_PER_YUAN
    return as_decimal(args[0], t).round(places, mode="half_away_from_zero")


def _months(d: pl.Expr) -> pl.Expr:
    return d.dt.year().cast(pl.Int64) * 12 + d.dt.month().cast(pl.Int64)


def months_between(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Whole months from a to b, rounded down (negative when b is before a)."""
    return _months(b) - _months(a) - (b.dt.day() < a.dt.day()).cast(pl.Int64)


def years_between(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Whole years from a to b: an age in years."""
    md_a = a.dt.month().cast(pl.Int64) * 100 + a.dt.day().cast(pl.Int64)
    md_b = b.dt.month().cast(pl.Int64) * 100 + b.dt.day().cast(pl.Int64)
    return b.dt.year().cast(pl.Int64) - a.dt.year().cast(pl.Int64) - (md_b < md_a).cast(pl.Int64)


@RULES.rule("months_between")
def _months_between(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return months_between(args[0], args[1])


SECONDS_PER_DAY = 86_400


@RULES.rule("days_between")
def _days_between(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    # total_seconds, not total_days: narwhals has the one, not the other.
    return (args[1] - args[0]).dt.total_seconds().cast(pl.Int64) // SECONDS_PER_DAY


@RULES.rule("age_on")
def _age_on(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    assert ctx.feature is not None  # the checker refuses age_on without birth_on
    return years_between(ctx.feature("birth_on"), args[0])


def _offset(node: A.Call, args: list[pl.Expr], unit: str) -> pl.Expr:
    """The date moved by a whole number of `unit`s (mo, d): a literal count, or a column's."""
    n = node.args[1]
    if isinstance(n, A.Literal):
        return args[0].dt.offset_by(f"{int(n.value)}{unit}")  # type: ignore[arg-type]
    return args[0].dt.offset_by(pl.format("{}" + unit, args[1]))


@RULES.rule("add_months")
def _add_months(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return _offset(node, args, "mo")


@RULES.rule("add_days")
def _add_days(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return _offset(node, args, "d")


@RULES.rule("month_start")
def _month_start(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].dt.truncate("1mo")


@RULES.rule("year_of")
def _year_of(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].dt.year().cast(pl.Int64)


@RULES.rule("is_missing")
def _is_missing(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].is_null()


@RULES.rule("listed")
def _listed(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return ctx.listed(listed_name(node))


@RULES.rule("starts_with")
def _starts_with(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].str.starts_with(args[1])


@RULES.rule("substr")
def _substr(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].str.slice(count_arg(node, 1, ctx.params) - 1, count_arg(node, 2, ctx.params))


@RULES.rule("lower")
def _lower(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].str.to_lowercase()


@RULES.rule("upper")
def _upper(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].str.to_uppercase()


@RULES.rule("length")
def _length(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    return args[0].str.len_chars().cast(pl.Int64)


@RULES.rule("matches")
def _matches(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    pattern = node.args[1]
    assert isinstance(pattern, A.Literal)
    return args[0].str.contains(anchored(str(pattern.value)))


@RULES.rule("lookup")
def _lookup(node: A.Call, args: list[pl.Expr], ctx: Context) -> pl.Expr:
    table = ctx.params[_param_name(node)]
    dtype = dtype_of(ctx.type_of(node))
    keys = list(table.values)
    default = pl.lit(table.default, dtype=dtype)
    found = args[1].replace_strict(
        keys, [table.values[k] for k in keys], default=default, return_dtype=dtype
    )
    return pl.when(args[1].is_not_null()).then(found)


def _param_name(node: A.Call) -> str:
    arg = node.args[FUNCTIONS[node.func].param_arg or 0]
    assert isinstance(arg, A.Name)
    return arg.name
