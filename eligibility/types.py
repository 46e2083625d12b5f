"""The types of the rule language and the rules that combine them.

money is an amount in fen, exact (integer fen in data, exact decimals in
between); count is a whole number; number is an exact decimal (rates, ratios);
text, date and bool are what they say.  Mixing money with a bare number in a
comparison or a sum is refused, because "revenue > 5000000" hides its unit:
write "revenue > 5000000 yuan".
"""

from __future__ import annotations

from typing import Literal

Type = Literal["text", "count", "number", "money", "date", "bool", "null"]
TYPES: tuple[Type, ...] = ("text", "count", "number", "money", "date", "bool", "null")
NUMERIC: frozenset[str] = frozenset({"count", "number", "money"})

SOURCE_TYPES: dict[str, Type] = {
    "string": "text",
    "int": "count",
    "bool": "bool",
    "date": "date",
    "month": "date",
}


def arithmetic(op: str, left: Type, right: Type) -> Type | str:
    """The type of `left op right`, or an error message."""
    if left == "null" or right == "null":
        return "null" if left == right else (right if left == "null" else left)
    if left not in NUMERIC or right not in NUMERIC:
        return f"cannot use {op} on {left} and {right}"
    if op in "+-":
        if left == right:
            return left
        if "money" in (left, right):
            return f"cannot {'add' if op == '+' else 'subtract'} money and a plain {right if left == 'money' else left}: give it a unit (yuan or fen)"
        return "number"
    if op == "*":
        if left == right == "money":
            return "money times money has no meaning"
        if "money" in (left, right):
            return "money"
        return "count" if left == right == "count" else "number"
    # division
    if right == "money":
        return "number" if left == "money" else "cannot divide a plain number by money"
    if left == "money":
        return "money"
    return "number"


def comparable(left: Type, right: Type) -> bool:
    """Whether two types may be compared with < <= == ..."""
    if "null" in (left, right):
        return False
    if left == right:
        return True
    return {left, right} <= {"count", "number"}


def unify(a: Type, b: Type) -> Type | None:
    """The common type of two branches (of `if`, min/max, coalesce), or None."""
    if a == b:
        return a
    if a == "null":
        return b
    if b == "null":
        return a
    if {a, b} <= {"count", "number"}:
        return "number"
    return None
