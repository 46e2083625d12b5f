"""The expression tree of the rule language: immutable, positioned, backend-neutral.

Standard library only: no Polars, no durable-rules.  Every backend (the Polars
compiler, the durable-rules compiler, the reference interpreter, the
explanation renderer) walks these same nodes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal as Lit


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node was written: file, 1-based line and column, and its source text."""

    file: str
    line: int
    col: int
    text: str = ""


Value = Decimal | int | str | bool | dt.date | None
Unit = Lit["yuan", "fen", "%", ""]


@dataclass(frozen=True, slots=True)
class Literal:
    """A number, money amount, percentage, text, date, boolean or null, as written."""

    value: Value
    unit: Unit
    span: Span


@dataclass(frozen=True, slots=True)
class ListLit:
    """A literal list, for `in`: ["micro", "small"]."""

    items: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    """A reference to a feature, a `let` value, a parameter or a date of the run."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    """`-x` or `not x`."""

    op: Lit["-", "not"]
    operand: Node
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic: + - * /."""

    op: Lit["+", "-", "*", "/"]
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison: == != < <= > >=."""

    op: Lit["==", "!=", "<", "<=", ">", ">="]
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True, slots=True)
class BoolOp:
    """`a and b and c` or `a or b`: three-valued (unknown and false is false)."""

    op: Lit["and", "or"]
    operands: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class In:
    """`x in [..]` or `x not in [..]`."""

    item: Node
    options: ListLit | Name  # a list written out, or a list parameter
    negated: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Cond:
    """`a if test else b`."""

    test: Node
    then: Node
    otherwise: Node
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a function of the registry (`eligibility.functions`): min, round, ..."""

    func: str
    args: tuple[Node, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Pick:
    """The first `n` related entities in order of `key`, of those that meet `where`:
    `earliest(certificates, 3, issued_on)`, `latest(hires, 10, hired_in, graduate)`.
    Ties in `key` go in order of the entity's identifier."""

    order: Lit["earliest", "latest"]
    n: Node  # a whole number written out, or a parameter
    key: Node
    where: Node | None
    span: Span


@dataclass(frozen=True, slots=True)
class Aggregate:
    """any/all/count/sum over a relation: `count(hires, graduated_within_months <= 24)`.

    `body` is evaluated for each related entity (names inside refer to its
    features); `body` is None for a plain `count(hires)`.  With `pick`, only the
    related entities it picks count: `sum(earliest(certificates, 3, issued_on), ...)`.
    """

    func: Lit["any", "all", "count", "sum"]
    relation: str
    body: Node | None
    span: Span
    pick: Pick | None = None


def member_parts(node: Aggregate) -> tuple[Node, ...]:
    """The parts of an aggregate evaluated on each related entity: the pick's condition
    and key, then the body."""
    parts: list[Node | None] = [None, None, node.body]
    if node.pick is not None:
        parts[:2] = [node.pick.where, node.pick.key]
    return tuple(p for p in parts if p is not None)


@dataclass(frozen=True, slots=True)
class Apply:
    """A call of a function the policy defines (`define:`): `args` as written, and `body`,
    the definition's expression, in which the argument names stand for `args`."""

    func: str
    args: tuple[Node, ...]
    body: Node
    span: Span


Node = (
    Literal
    | ListLit
    | Name
    | Unary
    | Binary
    | Compare
    | BoolOp
    | In
    | Cond
    | Call
    | Aggregate
    | Apply
)

# Aggregates over a relation are nodes of their own; the functions are in
# `eligibility.functions`, one registry entry each.
AGGREGATES = ("any", "all", "count", "sum")
PICKS = ("earliest", "latest")  # the related entities an aggregate reads: its first N


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of a node, in source order."""
    match node:
        case Literal() | Name():
            return ()
        case ListLit(items=items):
            return items
        case Unary(operand=o):
            return (o,)
        case Binary(left=a, right=b) | Compare(left=a, right=b):
            return (a, b)
        case BoolOp(operands=ops):
            return ops
        case In(item=i, options=o):
            return (i, o)
        case Cond(test=t, then=a, otherwise=b):
            return (a, t, b)
        case Call(args=args):
            return args
        case Apply(args=args, body=body):
            return (*args, body)
        case Aggregate(pick=None, body=body):
            return () if body is None else (body,)
        case Aggregate(pick=Pick(n=n)):
            return (n, *member_parts(node))
    raise TypeError(f"not an expression node: {node!r}")


def with_children(node: Node, new: tuple[Node, ...]) -> Node:
    """`node` with its direct sub-expressions (in `children` order) replaced by `new`."""
    match node:
        case Literal() | Name():
            return node
        case ListLit():
            return ListLit(new, node.span)
        case Unary():
            return Unary(node.op, new[0], node.span)
        case Binary():
            return Binary(node.op, new[0], new[1], node.span)
        case Compare():
            return Compare(node.op, new[0], new[1], node.span)
        case BoolOp():
            return BoolOp(node.op, new, node.span)
        case In():
            options = new[1]
            assert isinstance(options, ListLit | Name)
            return In(new[0], options, node.negated, node.span)
        case Cond():
            return Cond(new[1], new[0], new[2], node.span)
        case Call():
            return Call(node.func, new, node.span)
        case Aggregate(pick=None):
            return Aggregate(node.func, node.relation, new[0] if new else None, node.span)
        case Aggregate(pick=Pick() as p):
            n, rest = new[0], list(new[1:])
            where = rest.pop(0) if p.where is not None else None
            key = rest.pop(0)
            body = rest.pop(0) if node.body is not None else None
            pick = Pick(p.order, n, key, where, p.span)
            return Aggregate(node.func, node.relation, body, node.span, pick)
        case Apply():
            return Apply(node.func, new[:-1], new[-1], node.span)
    raise TypeError(f"not an expression node: {node!r}")


def walk(node: Node) -> list[Node]:
    """Every node of the tree, parents before children."""
    out = [node]
    for child in children(node):
        out.extend(walk(child))
    return out


def walk_outside_aggregates(node: Node) -> list[Node]:
    """Every node of the tree but those inside aggregate bodies, parents before children."""
    out = [node]
    if not isinstance(node, Aggregate):
        for child in children(node):
            out.extend(walk_outside_aggregates(child))
    return out


def names(node: Node) -> set[str]:
    """The names an expression reads outside of any aggregate body."""
    found: set[str] = set()

    def visit(n: Node) -> None:
        if isinstance(n, Name):
            found.add(n.name)
        elif not isinstance(n, Aggregate):
            for c in children(n):
                visit(c)

    visit(node)
    return found
