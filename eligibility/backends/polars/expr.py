"""Expressions: the tree of `eligibility.ast` -> `pl.Expr`, one rule per node kind.

Representation, chosen so that money is exact end to end:
  money   Decimal(38, 10) in fen (features arrive as Int64 fen and are cast)
  number  Decimal(38, 10); division by zero gives null (unknown), never an error
  count   Int64;  text String;  date Date;  bool Boolean (three-valued)
Decimal products and quotients keep 10 places, rounded half to even (as
Polars does, and as the reference interpreter mirrors).  The final amount
is rounded half up (away from zero) to fen or yuan and cast to Int64 fen.

Only operations that narwhals also offers are used (arithmetic, comparison,
when/then, is_in, min/max_horizontal, coalesce, dt fields, round), so the
same compiled rules can later run on a distributed engine
(tests/unit/test_polars_backend.py holds the compiled plans to that subset).
Function calls compile by their rule in `eligibility.backends.polars.functions`.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch
from typing import Any

import polars as pl

from common.money import to_fen
from eligibility import ast as A
from eligibility.backends.polars.base import (
    CompileError,
    Context,
    as_decimal,
    dtype_of,
    literal,
)
from eligibility.backends.polars.functions import RULES
from eligibility.checked import ArgRef, ColumnRef, FeatureRef, LetRef, OwnerRef, ParamRef, RunDate
from eligibility.functions import FUNCTIONS
from eligibility.types import Type


def compile_expr(node: A.Node, ctx: Context) -> pl.Expr:
    """Compile one checked expression to a Polars expression in its representation."""
    return _compile(node, ctx)


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
    if isinstance(binding, FeatureRef | ColumnRef | OwnerRef):
        return ctx.column(binding)
    if isinstance(binding, ArgRef):  # a defined function's argument: the call's expression
        return _compile(binding.node, ctx)
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


def operands(left: A.Node, right: A.Node, ctx: Context) -> tuple[pl.Expr, pl.Expr]:
    """The two sides of a comparison, in one representation (a count beside a number as
    a Decimal)."""
    lt, rt = ctx.type_of(left), ctx.type_of(right)
    a, b = _compile(left, ctx), _compile(right, ctx)
    if lt != rt and {lt, rt} <= {"count", "number", "money"}:
        return as_decimal(a, lt), as_decimal(b, rt)
    return a, b


@_compile.register
def _(node: A.Compare, ctx: Context) -> pl.Expr:
    a, b = operands(node.left, node.right, ctx)
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
    if it in ("number", "money"):
        item = as_decimal(item, it)
    if isinstance(node.options, A.Name):  # a list parameter: its values in force
        values = list(ctx.params[node.options.name])
        found = item.is_in(pl.Series(values, dtype=dtype_of(it)).implode())
    elif all(isinstance(x, A.Literal) for x in node.options.items):
        values = [_literal_value(x, it) for x in node.options.items]
        found = item.is_in(pl.Series(values, dtype=dtype_of(it)).implode())
    else:  # items computed per row (features, lets): compared one by one
        found = pl.any_horizontal(
            [
                (item == _as(_compile(x, ctx), ctx.type_of(x), it)).fill_null(False)
                for x in node.options.items
            ]
        )
    result = ~found if node.negated else found
    # A missing value is neither in nor out of a list: unknown, as in SQL.
    return pl.when(item.is_not_null()).then(result)


def _as(expr: pl.Expr, t: Type, like: Type) -> pl.Expr:
    """`expr` of type `t` in the representation of `like` (a count compared with a number)."""
    return as_decimal(expr, t) if like in ("number", "money") else expr


def _literal_value(node: A.Node, item_type: Type) -> Any:
    if not isinstance(node, A.Literal):
        raise CompileError("list items must be written out")
    v = node.value
    if item_type == "money" and isinstance(v, Decimal):
        return to_fen(v, node.unit)
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


@_compile.register
def _(node: A.Call, ctx: Context) -> pl.Expr:
    skip = FUNCTIONS[node.func].param_arg  # a list or table parameter: the rule reads it
    args = [pl.lit(None) if i == skip else _compile(a, ctx) for i, a in enumerate(node.args)]
    return RULES[node.func](node, args, ctx)


@_compile.register
def _(node: A.Apply, ctx: Context) -> pl.Expr:
    return _compile(node.body, ctx)


@_compile.register
def _(node: A.Aggregate, ctx: Context) -> pl.Expr:
    return ctx.aggregate(node)
