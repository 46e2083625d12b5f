"""Every expression in plain words, with the values it compared when they are known.

    layoff_rate_headcount <= limit      ->  "layoff_rate_headcount (0.031) is at most limit (0.055)"
    not listed("serious_dishonesty")    ->  "is not on the list serious_dishonesty"

Standard library only, so that an explanation can be rendered from what the
ledger recorded, without Polars.  Money values are fen in, yuan out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import singledispatch
from typing import Any

from eligibility import ast as A

WORDS = {
    "==": "is",
    "!=": "is not",
    "<": "is below",
    "<=": "is at most",
    ">": "is above",
    ">=": "is at least",
}
PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}


def show_value(value: Any, type_: str | None = None) -> str:
    """A value as a person reads it: money in yuan with the fen, ratios as they are."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if type_ == "money" and isinstance(value, int | Decimal):
        fen = Decimal(value)
        sign = "-" if fen < 0 else ""
        whole = int(abs(fen)) // 100
        cents = abs(fen) - whole * 100
        return (
            f"{sign}{whole:,}.{int(cents):02d} yuan"
            if cents == int(cents)
            else f"{sign}{abs(fen) / 100:,} yuan"
        )
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def source_text(node: A.Node) -> str:
    """The expression written back in the rule language (normalised spacing)."""
    return _src(node, 0)


def _src(node: A.Node, outer: int) -> str:
    match node:
        case A.Literal(value=v, unit=unit):
            if isinstance(v, str):
                return f'"{v}"'
            if v is None:
                return "null"
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, dt.date):
                return v.isoformat()
            return f"{format(v, 'f')} {unit}" if unit else format(v, "f")
        case A.Name(name=n):
            return n
        case A.ListLit(items=items):
            return "[" + ", ".join(_src(i, 0) for i in items) + "]"
        case A.Unary(op="not", operand=o):
            return _wrap(f"not {_src(o, PRECEDENCE['not'])}", PRECEDENCE["not"], outer)
        case A.Unary(operand=o):
            return f"-{_src(o, PRECEDENCE['neg'])}"
        case A.Binary(op=op, left=a, right=b):
            p = PRECEDENCE[op]
            return _wrap(f"{_src(a, p)} {op} {_src(b, p + 1)}", p, outer)
        case A.Compare(op=op, left=a, right=b):
            p = PRECEDENCE["cmp"]
            return _wrap(f"{_src(a, p + 1)} {op} {_src(b, p + 1)}", p, outer)
        case A.BoolOp(op=op, operands=ops):
            p = PRECEDENCE[op]
            return _wrap(f" {op} ".join(_src(o, p + 1) for o in ops), p, outer)
        case A.In(item=i, options=o, negated=neg):
            p = PRECEDENCE["cmp"]
            return _wrap(f"{_src(i, p + 1)} {'not in' if neg else 'in'} {_src(o, 0)}", p, outer)
        case A.Cond(test=t, then=a, otherwise=b):
            return _wrap(f"{_src(a, 1)} if {_src(t, 1)} else {_src(b, 0)}", 0, outer)
        case A.Call(func=f, args=args):
            return f"{f}(" + ", ".join(_src(x, 0) for x in args) + ")"
        case A.Aggregate(func=f, relation=r, body=body):
            return f"{f}({r})" if body is None else f"{f}({r}, {_src(body, 0)})"
    raise TypeError(node)


def _wrap(text: str, own: int, outer: int) -> str:
    return f"({text})" if own < outer else text


@singledispatch
def words(node: Any, values: dict[str, Any], types: dict[str, str]) -> str:
    """The node in plain words; names show their values when `values` has them."""
    return source_text(node)


def _name(name: str, values: dict[str, Any], types: dict[str, str]) -> str:
    if name in values:
        return f"{name} ({show_value(values[name], types.get(name))})"
    return name


@words.register
def _(node: A.Name, values: dict[str, Any], types: dict[str, str]) -> str:
    return _name(node.name, values, types)


@words.register
def _(node: A.Compare, values: dict[str, Any], types: dict[str, str]) -> str:
    return f"{words(node.left, values, types)} {WORDS[node.op]} {words(node.right, values, types)}"


@words.register
def _(node: A.BoolOp, values: dict[str, Any], types: dict[str, str]) -> str:
    joiner = ", and " if node.op == "and" else ", or "
    parts = [words(o, values, types) for o in node.operands]
    return ("either " if node.op == "or" else "") + joiner.join(parts)


@words.register
def _(node: A.Unary, values: dict[str, Any], types: dict[str, str]) -> str:
    if node.op == "not":
        inner = node.operand
        if isinstance(inner, A.Call) and inner.func == "listed":
            return f"is not on the list {source_text(inner.args[0]).strip(chr(34))}"
        return f"not ({words(inner, values, types)})"
    return f"minus {words(node.operand, values, types)}"


@words.register
def _(node: A.Call, values: dict[str, Any], types: dict[str, str]) -> str:
    if node.func == "listed":
        return f"is on the list {source_text(node.args[0]).strip(chr(34))}"
    return source_text(node)


@words.register
def _(node: A.In, values: dict[str, Any], types: dict[str, str]) -> str:
    options = ", ".join(source_text(o) for o in node.options.items)
    return (
        f"{words(node.item, values, types)} {'is not' if node.negated else 'is'} one of {options}"
    )


def condition_text(
    node: A.Node, values: dict[str, Any] | None = None, types: dict[str, str] | None = None
) -> str:
    """A condition in plain words, with the values of the names it reads."""
    return words(node, values or {}, types or {})
