"""The Polars backend: expression tree -> `pl.Expr`.

Representation, chosen so that money is exact end to end:
  money   Decimal(38, 10) in fen (features arrive as Int64 fen and are cast)
  number  Decimal(38, 10); division by zero gives null (unknown), never an error
  count   Int64;  text String;  date Date;  bool Boolean (three-valued)
Decimal products and quotients keep 10 places, rounded half to even (as
Polars does, and as the reference interpreter mirrors).  The final amount
is rounded half up (away from zero) to fen or yuan and cast to Int64 fen.

Only operations that narwhals also offers are used (arithmetic, comparison,
when/then, is_in, min/max_horizontal, coalesce, dt fields, round), so the
same compiled rules can later run on a distributed engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import singledispatch
from typing import Any

import polars as pl

from eligibility import ast as A
from eligibility.check import Binding, ColumnRef, FeatureRef, LetRef, ParamRef, RunDate, Typed
from eligibility.types import Type

DEC = pl.Decimal(38, 10)


class CompileError(Exception):
    """A node this backend cannot compile (a bug: the checker should have refused it)."""


@dataclass
class Context:
    """What names mean for one compilation: columns, parameter values, dates, lets."""

    typed: Typed
    column: Callable[[Binding], pl.Expr]
    aggregate: Callable[[A.Aggregate], pl.Expr]
    listed: Callable[[str], pl.Expr]
    params: dict[str, Any] = field(default_factory=dict)
    dates: dict[str, dt.date] = field(default_factory=dict)
    lets: dict[str, A.Node] = field(default_factory=dict)
    birth_on: pl.Expr | None = None
    _let_cache: dict[str, pl.Expr] = field(default_factory=dict)

    def type_of(self, node: A.Node) -> Type:
        return self.typed.types[id(node)]


def compile_expr(node: A.Node, ctx: Context) -> pl.Expr:
    """Compile one checked expression to a Polars expression in its representation."""
    return _compile(node, ctx)


def as_decimal(expr: pl.Expr, t: Type) -> pl.Expr:
    """An expression of a numeric type as Decimal(38, 10)."""
    return expr if t in ("number", "money") else expr.cast(DEC)


def literal(value: Any, t: Type, unit: str = "") -> pl.Expr:
    """A constant in this backend's representation of type `t`."""
    if value is None:
        return pl.lit(None)
    if t == "money":
        fen = Decimal(value) * (100 if unit == "yuan" else 1)
        return pl.lit(fen, dtype=DEC)
    if t == "count":
        return pl.lit(int(value), dtype=pl.Int64)
    if t == "number":
        return pl.lit(Decimal(value), dtype=DEC)
    if t == "date":
        return pl.lit(value, dtype=pl.Date)
    if t == "bool":
        return pl.lit(bool(value), dtype=pl.Boolean)
    return pl.lit(str(value), dtype=pl.String)


@singledispatch
def _compile(node: Any, ctx: Context) -> pl.Expr:
    raise CompileError(f"no Polars rule for {type(node).__name__}")


@_compile.register
def _(node: A.Literal, ctx: Context) -> pl.Expr:
    return literal(node.value, ctx.type_of(node), node.unit)


@_compile.register
def _(node: A.Name, ctx: Context) -> pl.Expr:
    binding = ctx.typed.bindings[id(node)]
    if isinstance(binding, LetRef):
        if binding.name not in ctx._let_cache:
            ctx._let_cache[binding.name] = _compile(ctx.lets[binding.name], ctx)
        return ctx._let_cache[binding.name]
    if isinstance(binding, ParamRef):
        return literal(ctx.params[binding.name], binding.type)
    if isinstance(binding, RunDate):
        return pl.lit(ctx.dates[binding.name], dtype=pl.Date)
    if isinstance(binding, FeatureRef | ColumnRef):
        return ctx.column(binding)
    raise CompileError(f"unbound name {node.name}")


@_compile.register
def _(node: A.ListLit, ctx: Context) -> pl.Expr:
    raise CompileError("a list is only compiled as the right side of `in`")


@_compile.register
def _(node: A.Unary, ctx: Context) -> pl.Expr:
    inner = _compile(node.operand, ctx)
    return ~inner if node.op == "not" else -inner


@_compile.register
def _(node: A.Binary, ctx: Context) -> pl.Expr:
    lt, rt, t = ctx.type_of(node.left), ctx.type_of(node.right), ctx.type_of(node)
    left, right = _compile(node.left, ctx), _compile(node.right, ctx)
    if t == "null":
        return pl.lit(None)
    if t == "count":
        ops = {"+": left + right, "-": left - right, "*": left * right}
        return ops[node.op]
    left, right = as_decimal(left, lt), as_decimal(right, rt)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    # Division by zero is unknown (null), so a condition on it fails with that reason.
    return left / pl.when(right != 0).then(right)


def _pair(left: A.Node, right: A.Node, ctx: Context) -> tuple[pl.Expr, pl.Expr]:
    lt, rt = ctx.type_of(left), ctx.type_of(right)
    a, b = _compile(left, ctx), _compile(right, ctx)
    if lt != rt and {lt, rt} <= {"count", "number", "money"}:
        return as_decimal(a, lt), as_decimal(b, rt)
    return a, b


@_compile.register
def _(node: A.Compare, ctx: Context) -> pl.Expr:
    a, b = _pair(node.left, node.right, ctx)
    match node.op:
        case "==":
            return a == b
        case "!=":
            return a != b
        case "<":
            return a < b
        case "<=":
            return a <= b
        case ">":
            return a > b
    return a >= b


@_compile.register
def _(node: A.BoolOp, ctx: Context) -> pl.Expr:
    parts = [_compile(o, ctx) for o in node.operands]
    out = parts[0]
    for p in parts[1:]:
        out = (out & p) if node.op == "and" else (out | p)
    return out


@_compile.register
def _(node: A.In, ctx: Context) -> pl.Expr:
    item = _compile(node.item, ctx)
    it = ctx.type_of(node.item)
    values = [_literal_value(x, it) for x in node.options.items]
    if it in ("number", "money"):
        item = as_decimal(item, it)
    found = item.is_in(pl.Series(values, dtype=_dtype(it)).implode())
    result = ~found if node.negated else found
    # A missing value is neither in nor out of a list: unknown, as in SQL.
    return pl.when(item.is_not_null()).then(result)


def _dtype(t: Type) -> pl.DataType:
    return {
        "count": pl.Int64(),
        "number": DEC,
        "money": DEC,
        "date": pl.Date(),
        "bool": pl.Boolean(),
    }.get(t, pl.String())


def _literal_value(node: A.Node, item_type: Type) -> Any:
    if not isinstance(node, A.Literal):
        raise CompileError("list items must be written out")
    v = node.value
    if item_type == "money" and isinstance(v, Decimal):
        return v * 100 if node.unit == "yuan" else v
    if item_type == "count" and isinstance(v, Decimal):
        return int(v)
    return v


@_compile.register
def _(node: A.Cond, ctx: Context) -> pl.Expr:
    t = ctx.type_of(node)
    then, other = _compile(node.then, ctx), _compile(node.otherwise, ctx)
    if t in ("number", "money"):
        then, other = (
            as_decimal(then, ctx.type_of(node.then)),
            as_decimal(other, ctx.type_of(node.otherwise)),
        )
    # An unknown test takes the else branch, as in the reference interpreter.
    return pl.when(_compile(node.test, ctx).fill_null(False)).then(then).otherwise(other)


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


@_compile.register
def _(node: A.Call, ctx: Context) -> pl.Expr:
    f, t = node.func, ctx.type_of(node)
    if f == "listed":
        arg = node.args[0]
        assert isinstance(arg, A.Literal)
        return ctx.listed(str(arg.value))
    args = [_compile(a, ctx) for a in node.args]
    types = [ctx.type_of(a) for a in node.args]
    if f in ("min", "max", "coalesce"):
        if t in ("number", "money"):
            args = [as_decimal(a, at) for a, at in zip(args, types, strict=True)]
        if f == "coalesce":
            return pl.coalesce(args)
        # Unknown if any argument is unknown: min(premium * 90%, 1000000 yuan) must not
        # become 1,000,000 yuan when the premium is missing.
        known = pl.all_horizontal([a.is_not_null() for a in args])
        return pl.when(known).then(
            pl.min_horizontal(args) if f == "min" else pl.max_horizontal(args)
        )
    if f == "abs":
        return args[0].abs()
    if f == "round":
        places = int(node.args[1].value) if len(node.args) == 2 else 0  # type: ignore[union-attr, arg-type]
        if types[0] == "count":
            return args[0]
        if types[0] == "money":
            # round(x) on money rounds to whole yuan; round(x, 2) to fen
            scaled = as_decimal(args[0], "money")
            return (scaled / 100).round(places, mode="half_away_from_zero") * 100
        return as_decimal(args[0], types[0]).round(places, mode="half_away_from_zero")
    if f == "months_between":
        return months_between(args[0], args[1])
    if f == "days_between":
        return (args[1] - args[0]).dt.total_days().cast(pl.Int64)
    if f == "age_on":
        assert ctx.birth_on is not None
        return years_between(ctx.birth_on, args[0])
    if f == "add_months":
        n = node.args[1]
        if isinstance(n, A.Literal):
            return args[0].dt.offset_by(f"{int(n.value)}mo")  # type: ignore[arg-type]
        return args[0].dt.offset_by(pl.format("{}mo", args[1]))
    if f == "add_days":
        return args[0] + pl.duration(days=args[1])
    if f == "month_start":
        return args[0].dt.month_start()
    if f == "year_of":
        return args[0].dt.year().cast(pl.Int64)
    if f == "is_missing":
        return args[0].is_null()
    raise CompileError(f"no Polars rule for function {f}")


@_compile.register
def _(node: A.Aggregate, ctx: Context) -> pl.Expr:
    return ctx.aggregate(node)


def round_amount(fen: pl.Expr, to: str) -> pl.Expr:
    """Round a Decimal fen amount half up to fen or whole yuan; Int64 fen."""
    if to == "yuan":
        return ((fen / 100).round(0, mode="half_away_from_zero") * 100).cast(pl.Int64)
    return fen.round(0, mode="half_away_from_zero").cast(pl.Int64)
