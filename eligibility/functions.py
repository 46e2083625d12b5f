"""The functions of the rule language: one entry each, with every backend's obligation.

An entry says what a function is (name, number of arguments, a line for the docs),
how it is typed (its type rule, run by the checker), what it reads besides its
arguments (a feature such as `birth_on`, a credit list), and how it treats an
unknown argument (`strict`: any unknown argument makes the result unknown).

Each backend gives one rule per function in a `BackendRules` table of its own
module: the Polars compiler (`eligibility.backends.polars.functions`), the
reference interpreter (`eligibility.reference`) and the plain-words renderer
(`eligibility.explain`).  The durable-rules backend (`eligibility.backends.durable`)
has no table: a function's value has no exact durable-rules form, so it is computed
by the reference rule before the fact is asserted.
Adding a function is one `@function` entry here and one rule in each table;
tests/unit/test_functions.py fails while any backend lacks a rule, and a backend
cannot register a rule for a function that has no entry.

Standard library only, like `eligibility.ast`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from common.errors import Code
from eligibility import ast as A
from eligibility.types import NUMERIC, Type, unify


class TypeContext(Protocol):
    """What a type rule may ask of the checker."""

    def problem(self, node: A.Node, code: Code, message: str, fix: str) -> None:
        """Record a problem at `node`."""

    def set_type(self, node: A.Node, t: Type) -> None:
        """Record the type of a node the checker did not type itself (listed()'s name)."""

    def param_shape(self, node: A.Node) -> str | None:
        """value, list or table for a parameter's name; None for anything else."""

    def param_literals(self, node: A.Node) -> list[A.Node]:
        """The values a value parameter takes in this reading, as written (none for others)."""


TypeRule = Callable[[A.Call, list[Type], TypeContext], Type | None]


@dataclass(frozen=True)
class Function:
    """One function of the rule language (see the module docstring)."""

    name: str
    min_args: int
    max_args: int
    type_rule: TypeRule
    doc: str
    strict: bool = True  # an unknown argument makes the result unknown
    typed_args: bool = True  # False: the checker leaves the arguments to the type rule
    reads: tuple[str, ...] = ()  # features of the entity it reads besides its arguments
    reads_fix: str = ""  # the fix when the entity lacks one of them
    names_list: bool = False  # its first argument names a credit list the entity may be on
    param_arg: int | None = None  # the argument that names a list or table parameter

    def arity(self) -> str:
        """The number of arguments it takes, for messages: '2' or '2 to 8'."""
        return (
            str(self.min_args)
            if self.min_args == self.max_args
            else f"{self.min_args} to {self.max_args}"
        )


FUNCTIONS: dict[str, Function] = {}


def function(
    name: str,
    args: int | tuple[int, int],
    doc: str,
    **options: object,
) -> Callable[[TypeRule], TypeRule]:
    """Register a function with its type rule (the decorated function)."""
    low, high = (args, args) if isinstance(args, int) else args

    def register(rule: TypeRule) -> TypeRule:
        if name in FUNCTIONS:
            raise ValueError(f"function {name!r} is registered twice")
        FUNCTIONS[name] = Function(name, low, high, rule, doc, **options)  # type: ignore[arg-type]
        return rule

    return register


def listed_name(call: A.Call) -> str:
    """The list a `names_list` function names (its first argument, a text literal)."""
    arg = call.args[0]
    assert isinstance(arg, A.Literal)
    assert isinstance(arg.value, str)
    return arg.value


# --- type rules ------------------------------------------------------------------------


def _want(
    call: A.Call, ts: list[Type], allowed: list[set[str]], result: Type, ctx: TypeContext
) -> Type | None:
    """`result` if each argument has one of its allowed types (unknown always does)."""
    for i, (t, ok) in enumerate(zip(ts, allowed, strict=False)):
        if t not in ok and t != "null":
            ctx.problem(
                call.args[i],
                Code.TYPE_MISMATCH,
                f"argument {i + 1} of {call.func}() must be {' or '.join(sorted(ok))}, found {t}",
                f"{call.func}(): {FUNCTIONS[call.func].doc} (docs/policies.md, functions)",
            )
            return None
    return result


def _one_kind(
    call: A.Call, ts: list[Type], ctx: TypeContext, kinds: set[str] | None
) -> Type | None:
    result: Type | None = ts[0]
    for t in ts[1:]:
        result = unify(result, t) if result is not None else None
    if result is None or (kinds is not None and result not in kinds):
        ctx.problem(
            call,
            Code.TYPE_MISMATCH,
            f"{call.func}() needs values of one kind, found {', '.join(ts)}",
            "give values of one kind: all money (with their unit), all numbers or all dates",
        )
        return None
    return result


ORDERED = {"count", "number", "money", "date"}


@function("min", (2, 8), "the smallest of its arguments")
def _min(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _one_kind(call, ts, ctx, ORDERED)


@function("max", (2, 8), "the largest of its arguments")
def _max(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _one_kind(call, ts, ctx, ORDERED)


@function("coalesce", (2, 8), "the first of its arguments that is known", strict=False)
def _coalesce(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _one_kind(call, ts, ctx, None)


@function("abs", 1, "the value without its sign")
def _abs(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [set(NUMERIC)], ts[0], ctx)


@function(
    "round",
    (1, 2),
    "rounded half up (away from zero) to whole units, or to the places given; "
    "money rounds in yuan: round(x) to whole yuan, round(x, 2) to the fen",
)
def _round(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    if len(call.args) == 2 and not (isinstance(call.args[1], A.Literal) and ts[1] == "count"):
        ctx.problem(
            call.args[1],
            Code.TYPE_MISMATCH,
            "round()'s places must be a whole number written out",
            "write: round(x, 2)",
        )
        return None
    return _want(call, ts[:1], [{"number", "money", "count"}], ts[0], ctx)


@function("months_between", 2, "whole months from the first date to the second, rounded down")
def _months_between(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}, {"date"}], "count", ctx)


@function("days_between", 2, "days from the first date to the second")
def _days_between(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}, {"date"}], "count", ctx)


@function(
    "age_on",
    1,
    "the person's age in whole years on a date (from the feature birth_on)",
    reads=("birth_on",),
    reads_fix="age_on applies to persons",
)
def _age_on(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}], "count", ctx)


@function("add_months", 2, "the date moved by whole months (Jan 31 + 1 month = Feb 28)")
def _add_months(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}, {"count"}], "date", ctx)


@function("add_days", 2, "the date moved by whole days")
def _add_days(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}, {"count"}], "date", ctx)


@function("month_start", 1, "the first day of the date's month")
def _month_start(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}], "date", ctx)


@function("year_of", 1, "the date's year, as a whole number")
def _year_of(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"date"}], "count", ctx)


@function(
    "listed",
    1,
    'whether the entity is on a credit list on the run\'s date: listed("serious_dishonesty")',
    strict=False,
    typed_args=False,
    names_list=True,
)
def _listed(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    arg = call.args[0]
    if not (isinstance(arg, A.Literal) and isinstance(arg.value, str)):
        ctx.problem(
            call,
            Code.TYPE_MISMATCH,
            "listed() takes the name of a list in quotes",
            'write: listed("serious_dishonesty")',
        )
        return None
    ctx.set_type(arg, "text")
    return "bool"


# --- text: codes and their parts ------------------------------------------------------

# A pattern for matches(): letters, digits and the regular-expression syntax that Python's
# `re` and Polars' Rust regex read alike (no look-around, no back-references, no flags).
SAFE_PATTERN = re.compile(r"^(?:[A-Za-z0-9_\-.\[\]^|()?*+{},]|\\[dws.\-\[\](){}|*+?^])+$")
MAX_PATTERN = 200


def _read_alike(pattern: str) -> bool:
    """Whether Python's `re` and Polars' Rust regex read the pattern alike: only the
    whitelisted characters; no `(?` groups (flags, look-around); braces only as counts
    ({2}, {2,4}, {2,}); no set operations or nested sets inside [...] ."""
    if not SAFE_PATTERN.match(pattern) or "(?" in pattern or "--" in pattern:
        return False
    bare = re.sub(r"\\.", "_", pattern)  # escaped characters stand for themselves
    if re.search(r"[{}]", re.sub(r"\{\d+(?:,\d*)?\}", "", bare)):
        return False
    depth = 0
    for c in bare:
        if c == "[":
            if depth:
                return False
            depth = 1
        elif c == "]":
            depth = 0
    return depth == 0


def _written_count(call: A.Call, i: int, ctx: TypeContext, least: int) -> bool:
    """Argument i is a whole number of at least `least`: written out, or a parameter whose
    every value is one (a variant may then change it)."""
    arg = call.args[i]
    if ctx.param_shape(arg) == "value":
        named = f"parameter {arg.name!r}" if isinstance(arg, A.Name) else "the parameter"
        values = [_whole(v) for v in ctx.param_literals(arg)]
        if values and all(v is not None and v >= least for v in values):
            return True
        ctx.problem(
            arg,
            Code.TYPE_MISMATCH,
            f"argument {i + 1} of {call.func}() is {named}, and not every value of it is "
            f"a whole number of at least {least}",
            f"give the parameter whole-number values of at least {least}",
        )
        return False
    value = _whole(arg)
    if value is None or value < least:
        ctx.problem(
            arg,
            Code.TYPE_MISMATCH,
            f"argument {i + 1} of {call.func}() must be a whole number of at least {least}, "
            "written out or a parameter",
            f"{call.func}(): {FUNCTIONS[call.func].doc}",
        )
        return False
    return True


def _whole(node: A.Node) -> int | None:
    """The whole number a literal writes (no unit), or None."""
    value = node.value if isinstance(node, A.Literal) and node.unit == "" else None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return None


@function(
    "starts_with", 2, 'whether the text starts with the other: starts_with(region_code, "3301")'
)
def _starts_with(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"text"}, {"text"}], "bool", ctx)


@function(
    "substr",
    3,
    "the part of a text from a position (the first character is 1) of a length, each a "
    'whole number or a parameter: substr(industry_code, 1, 2) of "6510" is "65"',
)
def _substr(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    if not (_written_count(call, 1, ctx, 1) and _written_count(call, 2, ctx, 0)):
        return None
    return _want(call, ts, [{"text"}], "text", ctx)


@function("lower", 1, "the text in lower case")
def _lower(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"text"}], "text", ctx)


@function("upper", 1, "the text in upper case")
def _upper(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"text"}], "text", ctx)


@function("length", 1, "the number of characters of a text")
def _length(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return _want(call, ts, [{"text"}], "count", ctx)


@function(
    "matches",
    2,
    "whether the whole text matches a pattern written out: "
    'matches(industry_code, "6[0-5][0-9]{2}"); letters, digits, [ ] - ^ . | ( ) ? * + { } and \\d \\w \\s',
)
def _matches(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    pattern = call.args[1]
    text = pattern.value if isinstance(pattern, A.Literal) else None
    if not isinstance(text, str) or len(text) > MAX_PATTERN or not _read_alike(text):
        ctx.problem(
            pattern,
            Code.TYPE_MISMATCH,
            "matches() takes a pattern written out in quotes, of letters, digits and "
            "[ ] - ^ . | ( ) ? * + { } \\d \\w \\s",
            'write: matches(industry_code, "6[0-5][0-9]{2}")',
        )
        return None
    try:
        re.compile(text)
    except re.error as exc:
        ctx.problem(
            pattern, Code.TYPE_MISMATCH, f"the pattern cannot be read: {exc}", "check the brackets"
        )
        return None
    return _want(call, ts, [{"text"}, {"text"}], "bool", ctx)


@function(
    "lookup",
    2,
    "the value a table parameter gives a code, or its default: lookup(regional_rate, region_code)",
    param_arg=0,
)
def _lookup(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    if ctx.param_shape(call.args[0]) != "table":
        ctx.problem(
            call.args[0],
            Code.TYPE_MISMATCH,
            "lookup() takes a table parameter first",
            'declare the table under params: {from: ..., value: {"3301": 60%, default: 40%}, ref: ...}',
        )
        return None
    return _want(call, ts, [set(ts[:1]), {"text"}], ts[0], ctx)


@function("is_missing", 1, "whether the value is unknown", strict=False)
def _is_missing(call: A.Call, ts: list[Type], ctx: TypeContext) -> Type | None:
    return "bool"


def functions_table() -> str:
    """The registry as a Markdown table (docs/policies.md holds it; a test keeps them equal)."""
    rows = []
    for fn in sorted(FUNCTIONS.values(), key=lambda f: f.name):
        unknown = "unknown if an argument is" if fn.strict else "decides on unknown arguments"
        rows.append(f"| `{fn.name}` | {fn.arity()} | {fn.doc} | {unknown} |")
    header = ["| function | arguments | gives | unknown values |", "| --- | --- | --- | --- |"]
    return "\n".join([*header, *rows])


# --- the backends' tables ------------------------------------------------------------------

R = TypeVar("R")


@dataclass
class BackendRules(Generic[R]):
    """One backend's rule for every function, registered by name with `@rules.rule(...)`."""

    backend: str
    rules: dict[str, R] = field(default_factory=dict)

    def rule(self, *names: str) -> Callable[[R], R]:
        """Register the decorated rule for the named functions (each must have an entry)."""

        def register(fn: R) -> R:
            for name in names:
                if name not in FUNCTIONS:
                    raise ValueError(f"{self.backend}: no function {name!r} in the registry")
                if name in self.rules:
                    raise ValueError(f"{self.backend}: two rules for {name!r}")
                self.rules[name] = fn
            return fn

        return register

    def __getitem__(self, name: str) -> R:
        try:
            return self.rules[name]
        except KeyError:
            raise NotImplementedError(
                f"the {self.backend} backend has no rule for {name}()"
            ) from None

    def missing(self) -> list[str]:
        """The registered functions this backend has no rule for."""
        return sorted(set(FUNCTIONS) - set(self.rules))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rules)


def count_arg(call: A.Call, i: int, params: Mapping[str, Any]) -> int:
    """Argument i of a call, a whole number its type rule required: written out, or the
    value in force of the parameter it names."""
    arg = call.args[i]
    if isinstance(arg, A.Name):
        return int(params[arg.name])
    assert isinstance(arg, A.Literal)
    assert isinstance(arg.value, Decimal)
    return int(arg.value)


def anchored(pattern: str) -> str:
    """A matches() pattern matched against the whole text."""
    return f"^(?:{pattern})$"
