"""Parsing rule expressions into the tree of `eligibility.ast`.  Nothing is ever eval'ed.

The grammar is Python's expression syntax cut down to what policies say, plus
units on numbers so that money and rates are written as an officer reads them:

    expr    := or ['if' or 'else' expr]
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)*    # chains: 0 <= x < 3
             | sum ['not'] 'in' list
    sum     := product (('+'|'-') product)*
    product := unary (('*'|'/') unary)*
    unary   := '-' unary | atom
    atom    := NUMBER ['yuan'|'fen'|'%'] | STRING | DATE | true | false | null
             | NAME | NAME '(' args ')' | AGG '(' members [',' expr] ')'
             | '(' expr ')' | list
    list    := '[' [expr (',' expr)*] ']'
    AGG     := 'any' | 'all' | 'count' | 'sum'
    members := NAME | ('earliest'|'latest') '(' NAME ',' expr ',' expr [',' expr] ')'

`1500 yuan` is money, `5.5%` is the number 0.055, `2026-01-01` is a date.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from common.errors import Code, Problem, ProblemsError, did_you_mean
from eligibility import ast as A
from eligibility.functions import FUNCTIONS

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d]))
  | (?P<number>\d[\d_]*(?:\.\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>owner\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|%)
  | (?P<bad>.)
    """,
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "if", "else", "true", "false", "null", "yuan", "fen"}


Where = Callable[[int], tuple[int, int]]

# Limits far past any real policy, so that a broken or hostile file is refused with a
# message instead of exhausting the interpreter's stack or the machine's memory.
MAX_NESTING = 40  # brackets, calls, `not`, minus signs and `else` branches inside each other
MAX_DEPTH = 100  # the expression tree's depth (a sum of n terms is n deep)
MAX_LENGTH = 20_000  # characters in one expression
MAX_DIGITS = 18  # digits before the decimal point of a number written out


def _plain_where(text: str, line: int, col: int) -> Where:
    """Positions in `text` when it starts at line:col and its newlines are the file's."""

    def where(offset: int) -> tuple[int, int]:
        before = text[:offset]
        newlines = before.count("\n")
        return (line + newlines, offset - before.rfind("\n") if newlines else col + offset)

    return where


def depth(node: A.Node) -> int:
    """The depth of an expression tree (a leaf is 1), without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in A.children(n))
    return deepest


def _check_depth(node: A.Node) -> None:
    if depth(node) > MAX_DEPTH:
        raise _Fail(
            0,
            f"the expression is more than {MAX_DEPTH} operations deep",
            "split it into named parts with let:",
            Code.TOO_COMPLEX,
        )


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # date number string name op keyword end
    text: str
    offset: int


class _Fail(Exception):
    def __init__(
        self, offset: int, message: str, fix: str = "", code: Code = Code.EXPR_SYNTAX
    ) -> None:
        self.offset, self.message, self.fix, self.code = offset, message, fix, code


# What a person most likely meant by a character the language does not have.
_STRAY_FIX = {
    "=": "compare with == (or <=, >=); a single = is not a comparison",
    ";": "join conditions with `and` or `or`",
    "&": "write `and`",
    "|": "write `or`",
    "!": "write `not`, or != to compare",
    "#": "comments go on a line of their own, outside the expression",
    "（": "use ASCII brackets ( )",
    "）": "use ASCII brackets ( )",
    "，": "use an ASCII comma ,",
    "\u3000": "use an ASCII space",
    "：": "use an ASCII colon, or none: conditions compare with == < <= > >=",
}


def tokenize(text: str) -> list[Token]:
    """The tokens of an expression; a stray character is an error at its offset."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "bad"
        if kind == "ws":
            continue
        if kind == "bad":
            raise _Fail(
                m.start(),
                f"unexpected character {m.group()!r}",
                _STRAY_FIX.get(m.group(), "expressions use + - * / ( ) [ ] , and comparisons"),
            )
        word = m.group()
        if kind == "name" and word in KEYWORDS:
            kind = "keyword"
        out.append(Token(kind, word, m.start()))
    out.append(Token("end", "", len(text)))
    return out


class ExprParser:
    """A recursive-descent parser over one expression string."""

    def __init__(
        self, text: str, file: str, where: Where, defined: dict[str, int] | None = None
    ) -> None:
        self.text, self.file, self.where = text, file, where
        self.defined = defined or {}  # the policy's own functions: name -> arguments
        self.tokens: list[Token] = []
        self.i = 0
        self.nesting = 0

    # -- helpers ------------------------------------------------------------------
    def span(self, start: int, end: int | None = None) -> A.Span:
        """The span of text[start:end], positioned in the file."""
        end = (
            self.tokens[self.i - 1].offset + len(self.tokens[self.i - 1].text)
            if end is None
            else end
        )
        line, col = self.where(start)
        return A.Span(self.file, line, col, self.text[start:end].strip())

    def enter(self, offset: int) -> None:
        """One more level of brackets, calls or prefix operators, within MAX_NESTING."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise _Fail(
                offset,
                f"the expression nests more than {MAX_NESTING} levels deep",
                "split it into named parts with let:",
                Code.TOO_COMPLEX,
            )

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "keyword") and self.tok.text in texts

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> Token:
        if not self.at(text):
            found = self.tok.text or "the end"
            raise _Fail(self.tok.offset, f"expected {text!r}, found {found!r}")
        return self.take()

    # -- grammar ------------------------------------------------------------------
    def parse(self) -> A.Node:
        node = self.expr()
        if self.tok.kind != "end":
            fix = "join conditions with `and` / `or`"
            if self.tok.kind == "name" and self.tokens[self.i - 1].kind == "number":
                fix = did_you_mean(self.tok.text, ["yuan", "fen"], "units")
            raise _Fail(
                self.tok.offset, f"unexpected {self.tok.text!r} after a complete expression", fix
            )
        return node

    def expr(self) -> A.Node:
        start = self.tok.offset
        self.enter(start)
        try:
            return self._conditional(start)
        finally:
            self.nesting -= 1

    def _conditional(self, start: int) -> A.Node:
        node = self.or_()
        if self.at("if"):
            self.take()
            test = self.or_()
            if not self.at("else"):
                raise _Fail(
                    self.tok.offset, "a conditional needs `else`", "write: a if condition else b"
                )
            self.take()
            other = self.expr()
            return A.Cond(test, node, other, self.span(start))
        return node

    def or_(self) -> A.Node:
        start = self.tok.offset
        ops = [self.and_()]
        while self.at("or"):
            self.take()
            ops.append(self.and_())
        return ops[0] if len(ops) == 1 else A.BoolOp("or", tuple(ops), self.span(start))

    def and_(self) -> A.Node:
        start = self.tok.offset
        ops = [self.not_()]
        while self.at("and"):
            self.take()
            ops.append(self.not_())
        return ops[0] if len(ops) == 1 else A.BoolOp("and", tuple(ops), self.span(start))

    def not_(self) -> A.Node:
        start = self.tok.offset
        if self.at("not"):
            self.take()
            self.enter(start)
            operand = self.not_()
            self.nesting -= 1
            return A.Unary("not", operand, self.span(start))
        return self.compare()

    def compare(self) -> A.Node:
        start = self.tok.offset
        left = self.sum_()
        if self.at("in") or (self.at("not") and self.tokens[self.i + 1].text == "in"):
            negated = self.take().text == "not"
            if negated:
                self.take()
            options: A.ListLit | A.Name
            if self.tok.kind == "name":  # a list parameter
                t = self.take()
                options = A.Name(t.text, self.span(t.offset))
            elif self.at("["):
                options = self.list_()
            else:
                raise _Fail(
                    self.tok.offset,
                    "`in` needs a list",
                    'write: x in ["a", "b"], or the name of a list parameter',
                )
            return A.In(left, options, negated, self.span(start))
        parts: list[A.Node] = []
        while self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
            right = self.sum_()
            parts.append(A.Compare(op, left, right, self.span(start)))  # type: ignore[arg-type]
            left = right
        if not parts:
            return left
        return parts[0] if len(parts) == 1 else A.BoolOp("and", tuple(parts), self.span(start))

    def sum_(self) -> A.Node:
        start = self.tok.offset
        node = self.product()
        while self.at("+", "-"):
            op = self.take().text
            node = A.Binary(op, node, self.product(), self.span(start))  # type: ignore[arg-type]
        return node

    def product(self) -> A.Node:
        start = self.tok.offset
        node = self.unary()
        while self.at("*", "/"):
            op = self.take().text
            node = A.Binary(op, node, self.unary(), self.span(start))  # type: ignore[arg-type]
        return node

    def unary(self) -> A.Node:
        start = self.tok.offset
        if self.at("-"):
            self.take()
            self.enter(start)
            operand = self.unary()
            self.nesting -= 1
            if (
                isinstance(operand, A.Literal)
                and isinstance(operand.value, Decimal | int)
                and not isinstance(operand.value, bool)
            ):
                return A.Literal(-operand.value, operand.unit, self.span(start))
            return A.Unary("-", operand, self.span(start))
        return self.atom()

    def list_(self) -> A.ListLit:
        start = self.expect("[").offset
        items: list[A.Node] = []
        if not self.at("]"):
            items.append(self.expr())
            while self.at(","):
                self.take()
                if self.at("]"):
                    break
                items.append(self.expr())
        self.expect("]")
        return A.ListLit(tuple(items), self.span(start))

    def atom(self) -> A.Node:
        t = self.tok
        start = t.offset
        if t.kind == "number":
            self.take()
            digits = t.text.replace("_", "")
            if len(digits.split(".")[0].lstrip("0")) > MAX_DIGITS:
                raise _Fail(
                    start,
                    f"{t.text} is too large a number (more than {MAX_DIGITS} digits)",
                    "write amounts in yuan with their unit; no policy needs such a number",
                    Code.TOO_COMPLEX,
                )
            value = Decimal(digits)
            unit: A.Unit = ""
            if self.at("yuan", "fen", "%"):
                unit = self.take().text  # type: ignore[assignment]
            if unit == "%":
                value, unit = value / 100, ""
            return A.Literal(value, unit, self.span(start))
        if t.kind == "date":
            self.take()
            try:
                return A.Literal(dt.date.fromisoformat(t.text), "", self.span(start))
            except ValueError:
                raise _Fail(start, f"{t.text!r} is not a calendar date") from None
        if t.kind == "string":
            self.take()
            body = t.text[1:-1].replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")
            return A.Literal(body, "", self.span(start))
        if t.kind == "keyword" and t.text in ("true", "false", "null"):
            self.take()
            flag = {"true": True, "false": False, "null": None}[t.text]
            return A.Literal(flag, "", self.span(start))
        if t.kind == "name":
            self.take()
            if self.at("("):
                return self.call(t)
            return A.Name(t.text, self.span(start))
        if self.at("("):
            self.take()
            node = self.expr()
            self.expect(")")
            return node
        if self.at("["):
            return self.list_()
        found = t.text or "the end of the expression"
        raise _Fail(start, f"expected a value, found {found!r}")

    def aggregate(self, name: Token) -> A.Aggregate:
        """any/all/count/sum( relation or earliest/latest(relation, n, key[, where]) [, body] )."""
        shape = f"{name.text}() takes a relation and an expression"
        example = f'write: {name.text}(hires, level == "bachelor")'
        self.expect("(")
        t = self.tok
        if t.kind != "name":
            raise _Fail(t.offset, shape, example)
        self.take()
        pick = None
        if t.text in A.PICKS and self.at("("):
            relation, pick = self.pick(t)
        else:
            relation = t.text
            if not self.at(",", ")"):
                raise _Fail(self.tok.offset, shape, example)
        body = None
        if self.at(","):
            self.take()
            body = self.expr()
        if not self.at(")"):
            raise _Fail(self.tok.offset, shape, example)
        self.expect(")")
        if name.text in ("any", "all", "sum") and body is None:
            raise _Fail(name.offset, f"{name.text}() needs an expression after the relation")
        return A.Aggregate(name.text, relation, body, self.span(name.offset), pick)  # type: ignore[arg-type]

    def pick(self, order: Token) -> tuple[str, A.Pick]:
        """earliest/latest(relation, n, key[, where]): the first n related entities by key."""
        fix = f"write: {order.text}(certificates, 3, issued_on), or with a condition they meet first: {order.text}(certificates, 3, issued_on, level >= 3)"
        self.expect("(")
        rel = self.tok
        if rel.kind != "name":
            raise _Fail(rel.offset, f"{order.text}() takes a relation first", fix)
        self.take()
        parts: list[A.Node] = []
        while self.at(","):
            self.take()
            parts.append(self.expr())
        if len(parts) not in (2, 3) or not self.at(")"):
            raise _Fail(
                order.offset,
                f"{order.text}() takes a relation, how many, the key that orders them and "
                "optionally a condition",
                fix,
            )
        self.expect(")")
        where = parts[2] if len(parts) == 3 else None
        span = self.span(order.offset)
        return rel.text, A.Pick(order.text, parts[0], parts[1], where, span)  # type: ignore[arg-type]

    def call(self, name: Token) -> A.Node:
        if name.text in A.AGGREGATES:
            return self.aggregate(name)
        self.expect("(")
        args: list[A.Node] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.take()
                args.append(self.expr())
        self.expect(")")
        span = self.span(name.offset)
        if name.text in self.defined:  # the policy's own: the checker applies it
            want = self.defined[name.text]
            if len(args) != want:
                raise _Fail(
                    name.offset,
                    f"{name.text}() takes {want} arguments, got {len(args)}",
                    code=Code.ARITY,
                )
            return A.Call(name.text, tuple(args), span)
        fn = FUNCTIONS.get(name.text)
        if fn is None and name.text in A.PICKS:
            raise _Fail(
                name.offset,
                f"{name.text}() picks the related entities an aggregate reads, inside it",
                f"write: sum({name.text}(certificates, 3, issued_on), grant) or "
                f"count({name.text}(hires, 10, hired_in), graduate)",
                Code.UNKNOWN_FUNCTION,
            )
        if fn is None:
            known = sorted([*FUNCTIONS, *A.AGGREGATES, *self.defined])
            raise _Fail(
                name.offset,
                f"unknown function {name.text!r}",
                did_you_mean(name.text, known, "functions"),
                Code.UNKNOWN_FUNCTION,
            )
        if not fn.min_args <= len(args) <= fn.max_args:
            raise _Fail(
                name.offset,
                f"{name.text}() takes {fn.arity()} arguments, got {len(args)}",
                code=Code.ARITY,
            )
        return A.Call(name.text, tuple(args), span)


def parse_expression(
    text: str,
    file: str = "<expr>",
    line: int = 1,
    col: int = 1,
    where: Where | None = None,
    defined: dict[str, int] | None = None,
) -> A.Node:
    """Parse one expression; raises ProblemsError with the problem positioned in the file.

    `where` gives the file position of an offset in `text` (a value folded over several
    lines of YAML); without it, `text` starts at `line`:`col` and its newlines are lines.
    """
    parser = ExprParser(text, file, where or _plain_where(text, line, col), defined)
    try:
        if len(text) > MAX_LENGTH:
            raise _Fail(
                0,
                f"the expression is longer than {MAX_LENGTH:,} characters",
                "split it into named parts with let:",
                Code.TOO_COMPLEX,
            )
        parser.tokens = tokenize(text)
        node = parser.parse()
        _check_depth(node)
        return node
    except _Fail as f:
        span = parser.span(min(f.offset, len(text)), min(f.offset, len(text)))
        fix = (
            f.fix
            or 'expressions read like: headcount_end >= 3 and not listed("serious_dishonesty") (docs/policies.md)'
        )
        raise ProblemsError([Problem(file, span.line, span.col, f.code, f.message, fix)]) from None
