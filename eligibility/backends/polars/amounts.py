"""The Polars rule of every kind of amount (`eligibility.amounts`), and the steps after it.

A base amount is Decimal fen (unknown where the policy cannot say); it is then
prorated by months, capped and rounded half up to Int64 fen (`amount`).
"""

from __future__ import annotations

import operator
from dataclasses import replace
from decimal import Decimal
from functools import reduce, singledispatch
from typing import Any

import polars as pl

from common.money import MAX_ENTITLEMENT_FEN
from common.periods import months_of
from eligibility import ast as A
from eligibility.amounts import (
    MONTH,
    Amount,
    Bracket,
    Formula,
    MarginalTiers,
    Monthly,
    Rounding,
    StepTiers,
    Table,
)
from eligibility.backends.polars.base import DEC, Context, as_decimal
from eligibility.backends.polars.expr import compile_expr


def _money(node: A.Node, ctx: Context) -> pl.Expr:
    return as_decimal(compile_expr(node, ctx), ctx.type_of(node))


_ZERO = pl.lit(0, dtype=DEC)


@singledispatch
def base_amount(base: Any, ctx: Context) -> pl.Expr:
    """The base amount of one kind, as Decimal fen."""
    raise TypeError(f"no Polars rule for the amount kind {type(base).__name__}")


@base_amount.register
def _formula(base: Formula, ctx: Context) -> pl.Expr:
    return _money(base.expr, ctx)


def _first_hit(rows: list[tuple[pl.Expr, pl.Expr]], otherwise: pl.Expr) -> pl.Expr:
    """when(test).then(value)... for each row in order, else `otherwise`."""
    chain: Any = None
    for test, value in rows:
        chain = pl.when(test).then(value) if chain is None else chain.when(test).then(value)
    return otherwise if chain is None else chain.otherwise(otherwise)


@base_amount.register
def _table(base: Table, ctx: Context) -> pl.Expr:
    rows = [
        (compile_expr(when, ctx).fill_null(False), _money(value, ctx)) for when, value in base.rows
    ]
    otherwise = _money(base.otherwise, ctx) if base.otherwise is not None else _ZERO
    return _first_hit(rows, otherwise)


def _ge(by: pl.Expr, by_node: A.Node, bound: A.Node, ctx: Context) -> pl.Expr:
    by_t, bt = ctx.type_of(by_node), ctx.type_of(bound)
    b = compile_expr(bound, ctx)
    if by_t != bt:
        return as_decimal(by, by_t) >= as_decimal(b, bt)
    return by >= b


def _inside(by: pl.Expr, base: StepTiers, b: Bracket, ctx: Context) -> pl.Expr:
    test = pl.lit(True)
    if b.low is not None:
        test = test & _ge(by, base.by, b.low, ctx)
    if b.high is not None:
        test = test & ~_ge(by, base.by, b.high, ctx)
    return test.fill_null(False)


@base_amount.register
def _step(base: StepTiers, ctx: Context) -> pl.Expr:
    by = compile_expr(base.by, ctx)
    rows = [(_inside(by, base, b, ctx), _money(b.value, ctx)) for b in base.brackets]
    return pl.when(by.is_null()).then(pl.lit(None, dtype=DEC)).otherwise(_first_hit(rows, _ZERO))


@base_amount.register
def _marginal(base: MarginalTiers, ctx: Context) -> pl.Expr:
    by = as_decimal(compile_expr(base.by, ctx), ctx.type_of(base.by))
    parts = []
    for b in base.brackets:
        low = _money(b.low, ctx) if b.low is not None else _ZERO
        top = pl.min_horizontal(by, _money(b.high, ctx)) if b.high is not None else by
        parts.append(pl.max_horizontal(top - low, _ZERO) * _money(b.value, ctx))
    total = pl.sum_horizontal(parts) if len(parts) > 1 else parts[0] if parts else _ZERO
    return pl.when(by.is_not_null()).then(total)


@base_amount.register
def _monthly(base: Monthly, ctx: Context) -> pl.Expr:
    # One expression per month of the benefit period, `month` bound to its first day; an
    # unknown month leaves the sum unknown (`+` propagates it, as the reference does).
    parts = [
        _money(base.expr, replace(ctx, dates={**ctx.dates, MONTH: month}))
        for month in months_of(ctx.dates["period_start"], ctx.dates["period_end"])
    ]
    return reduce(operator.add, parts)


def _month_index(d: pl.Expr) -> pl.Expr:
    return d.dt.year().cast(pl.Int64) * 12 + d.dt.month().cast(pl.Int64)


def prorate_fraction(amount: Amount, ctx: Context) -> pl.Expr:
    """Months of the benefit period between `from` and `until` (both included) over its months."""
    first = _month_index(pl.lit(ctx.dates["period_start"], dtype=pl.Date))
    last = _month_index(pl.lit(ctx.dates["period_end"], dtype=pl.Date))
    lo = (
        first
        if amount.prorate_from is None
        else _month_index(compile_expr(amount.prorate_from, ctx))
    )
    hi = (
        last
        if amount.prorate_until is None
        else _month_index(compile_expr(amount.prorate_until, ctx))
    )
    months = pl.max_horizontal(
        pl.min_horizontal(hi, last) - pl.max_horizontal(lo, first) + 1, pl.lit(0)
    )
    total = (last - first + 1).cast(DEC)
    # An unknown bound leaves the fraction unknown (min/max_horizontal would skip it).
    return pl.when(lo.is_not_null() & hi.is_not_null()).then(months.cast(DEC) / total)


def round_amount(fen: pl.Expr, rounding: Rounding) -> pl.Expr:
    """Round a Decimal fen amount as the policy says (to fen, yuan or ten yuan; half up,
    half to even or down); Int64 fen.  Half to even is written with floor and a parity
    test, operations narwhals also has (its round has one mode, half away from zero)."""
    unit = rounding.unit_fen
    units = fen / unit if unit != 1 else fen
    if rounding.mode == "half_up":
        whole = units.round(0, mode="half_away_from_zero")
    elif rounding.mode == "down":  # toward zero: the cast truncates
        whole = units.cast(pl.Int64)
    else:
        low = units.floor()
        rest = units - low
        odd = (low % 2) != 0
        half = pl.lit(Decimal("0.5"), dtype=DEC)
        whole = pl.when(rest > half).then(low + 1).when(rest < half).then(low)
        whole = whole.when(odd).then(low + 1).otherwise(low)
    return (whole * unit).cast(pl.Int64) if unit != 1 else whole.cast(pl.Int64)


def amount(am: Amount, ctx: Context) -> pl.Expr:
    """The amount before eligibility: base, prorated, capped, rounded; Int64 fen."""
    total = base_amount(am.base, ctx)
    if am.prorated:
        total = total * prorate_fraction(am, ctx)
    if am.cap is not None:
        cap = _money(am.cap, ctx)
        total = pl.when(total.is_not_null() & cap.is_not_null()).then(pl.min_horizontal(total, cap))
    # Past any real entitlement (and toward Int64's end): unknown, so refused with a reason.
    within = total.abs() <= pl.lit(MAX_ENTITLEMENT_FEN, dtype=DEC)
    return round_amount(pl.when(within).then(total), am.round)
