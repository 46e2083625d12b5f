"""The representation of values in the Polars backend, and what a compilation knows.

money   Decimal(38, 10) in fen (features arrive as Int64 fen and are cast)
number  Decimal(38, 10); division by zero gives null (unknown), never an error
count   Int64;  text String;  date Date;  bool Boolean (three-valued)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from common.money import to_fen
from eligibility import ast as A
from eligibility.checked import Binding, Typed
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
    # The features functions read besides their arguments (age_on's birth_on), by name.
    feature: Callable[[str], pl.Expr] | None = None
    _let_cache: dict[str, pl.Expr] = field(default_factory=dict)

    def type_of(self, node: A.Node) -> Type:
        return self.typed.types[id(node)]


def as_decimal(expr: pl.Expr, t: Type) -> pl.Expr:
    """An expression of a numeric type as Decimal(38, 10)."""
    return expr if t in ("number", "money") else expr.cast(DEC)


def literal(value: Any, t: Type, unit: str = "") -> pl.Expr:
    """A constant in this backend's representation of type `t`."""
    if value is None:
        return pl.lit(None)
    if t == "money":
        return pl.lit(to_fen(Decimal(value), unit), dtype=DEC)
    if t == "count":
        return pl.lit(int(value), dtype=pl.Int64)
    if t == "number":
        return pl.lit(Decimal(value), dtype=DEC)
    if t == "date":
        return pl.lit(value, dtype=pl.Date)
    if t == "bool":
        return pl.lit(bool(value), dtype=pl.Boolean)
    return pl.lit(str(value), dtype=pl.String)


def dtype_of(t: Type) -> pl.DataType:
    """The Polars type that holds values of type `t` in this representation."""
    return {
        "count": pl.Int64(),
        "number": DEC,
        "money": DEC,
        "date": pl.Date(),
        "bool": pl.Boolean(),
    }.get(t, pl.String())
