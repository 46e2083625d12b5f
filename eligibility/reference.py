"""The reference interpreter: the plainest row-at-a-time reading of the rule language.

The meaning the compiled backends must agree with (tests/properties), and what
`explain` uses to show the values between an entity's features and its result.
Standard library only.  Values: money and number are Decimal (money in fen), count
is int, None is unknown.  Products and quotients of decimals keep 10 places, half
to even; final amounts round half up to fen or yuan.

One rule per node kind (`evaluate`), per function (`RULES`, by the registry in
`eligibility.functions`) and per kind of amount (`base_amount`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from functools import singledispatch
from typing import Any

from common.money import FEN_PER_YUAN, MAX_ENTITLEMENT_FEN, to_fen
from common.periods import add_months, months_of
from eligibility import ast as A
from eligibility.amounts import (
    MONTH,
    Amount,
    Formula,
    MarginalTiers,
    Monthly,
    Rounding,
    StepTiers,
    Table,
)
from eligibility.checked import (
    ArgRef,
    CheckedCatalogue,
    CheckedPolicy,
    ColumnRef,
    FeatureRef,
    LetRef,
    ParamRef,
    RunDate,
    Typed,
)
from eligibility.functions import FUNCTIONS, BackendRules, anchored, count_arg, listed_name
from eligibility.plan import Naming, param_values, run_dates, top_level_aggregates

PLACES = Decimal("1e-10")


def q(x: Decimal) -> Decimal:
    """Keep 10 decimal places, half to even (as Decimal(38, 10) arithmetic does)."""
    return x.quantize(PLACES, rounding=ROUND_HALF_EVEN)


@dataclass
class Env:
    """One row: feature values, lists the entity is on, aggregates' values, dates, params."""

    typed: Typed
    values: dict[str, Any]
    lists: set[str] = field(default_factory=set)
    aggregates: dict[int, Any] = field(default_factory=dict)
    dates: dict[str, dt.date] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lets: dict[str, A.Node] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # feature name -> type, for money scaling


def _num(v: Any, t: str) -> Any:
    if v is None:
        return None
    return Decimal(str(v)) if t in ("number", "money") else v


@singledispatch
def evaluate(node: Any, env: Env) -> Any:
    """The value of `node` on one row."""
    raise TypeError(f"no reference rule for {type(node).__name__}")


@evaluate.register
def _literal(node: A.Literal, env: Env) -> Any:
    t, v = env.typed.type_of(node), node.value
    if v is None:
        return None
    if t == "money":
        return to_fen(Decimal(str(v)), node.unit)
    if t == "count" and isinstance(v, Decimal):
        return int(v)
    return v


@evaluate.register
def _name(node: A.Name, env: Env) -> Any:
    b = env.typed.bindings[id(node)]
    if isinstance(b, LetRef):
        return evaluate(env.lets[node.name], env)
    if isinstance(b, ParamRef):
        return env.params[node.name]
    if isinstance(b, RunDate):
        return env.dates[node.name]
    if isinstance(b, FeatureRef | ColumnRef):
        key = node.name if isinstance(b, FeatureRef) else Naming.link(node.name)
        return _num(env.values.get(key), b.type)
    if isinstance(b, ArgRef):  # a defined function's argument: the call's expression
        return evaluate(b.node, env)
    raise TypeError(b)


@evaluate.register
def _unary(node: A.Unary, env: Env) -> Any:
    v = evaluate(node.operand, env)
    if v is None:
        return None
    return (not v) if node.op == "not" else -v


@evaluate.register
def _binary(node: A.Binary, env: Env) -> Any:
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    if a is None or b is None:
        return None
    if env.typed.type_of(node) == "count":
        return {"+": a + b, "-": a - b, "*": a * b}[node.op]
    x, y = Decimal(a), Decimal(b)
    if node.op == "+":
        return x + y
    if node.op == "-":
        return x - y
    if node.op == "*":
        return q(x * y)
    # Division by zero is unknown, so a condition on it fails with that reason.
    return None if y == 0 else q(x / y)


@evaluate.register
def _compare(node: A.Compare, env: Env) -> Any:
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    if a is None or b is None:
        return None
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "==": lambda x, y: x == y,
        "!=": lambda x, y: x != y,
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }
    return ops[node.op](a, b)


@evaluate.register
def _boolop(node: A.BoolOp, env: Env) -> Any:
    """Three-valued: unknown and false is false, unknown or true is true."""
    vals = [evaluate(o, env) for o in node.operands]
    decisive = node.op == "or"  # the value that decides whatever the others are
    if any(v is decisive for v in vals):
        return decisive
    return None if any(v is None for v in vals) else not decisive


@evaluate.register
def _in(node: A.In, env: Env) -> Any:
    v = evaluate(node.item, env)
    if v is None:
        return None
    if isinstance(node.options, A.Name):  # a list parameter: its values in force
        options = list(env.params[node.options.name])
    else:
        options = [evaluate(o, env) for o in node.options.items]
    found = v in options
    return not found if node.negated else found


@evaluate.register
def _cond(node: A.Cond, env: Env) -> Any:
    # An unknown test takes the else branch.
    return evaluate(node.then if evaluate(node.test, env) is True else node.otherwise, env)


@evaluate.register
def _call(node: A.Call, env: Env) -> Any:
    skip = FUNCTIONS[node.func].param_arg  # a list or table parameter: the rule reads it
    args = [None if i == skip else evaluate(a, env) for i, a in enumerate(node.args)]
    if skip is not None:
        args[skip] = node.args[skip]
    if FUNCTIONS[node.func].strict and any(a is None for a in args):
        return None
    return RULES[node.func](node, args, env)


@evaluate.register
def _apply(node: A.Apply, env: Env) -> Any:
    return evaluate(node.body, env)


@evaluate.register
def _aggregate(node: A.Aggregate, env: Env) -> Any:
    return env.aggregates[id(node)]


COUNTED_ELSEWHERE = "counted_elsewhere"


def aggregate_over(node: A.Aggregate, members: list[Env], *, once: bool = False) -> Any:
    """An aggregate's value from the rows of its related entities: each an Env whose
    values hold the member's features, its link's attributes and its `entity_id`.  An
    unknown body counts as not holding (as the compiled plan's does).  `once` (the
    policy's `once_per` aggregate): a member whose `counted_elsewhere` is true was
    counted for another entitlement and is left out, before any pick."""
    if once:
        members = [m for m in members if m.values.get(COUNTED_ELSEWHERE) is not True]
    chosen = picked(node.pick, members) if node.pick is not None else members
    if node.body is None:
        return len(chosen)
    values = [evaluate(node.body, m) for m in chosen]
    if node.func == "count":
        return sum(1 for v in values if v is True)
    if node.func == "any":
        return any(v is True for v in values)
    if node.func == "all":
        return all(v is True for v in values)
    return sum((v for v in values if v is not None), start=0)


def picked(pick: A.Pick, members: list[Env]) -> list[Env]:
    """The related entities a pick takes: of those with a key that meet its condition,
    the first n in key order (the latest: the last n), ties by identifier."""
    keyed = []
    for m in members:
        key = evaluate(pick.key, m)
        if key is None or (pick.where is not None and evaluate(pick.where, m) is not True):
            continue
        keyed.append((key, str(m.values.get("entity_id")), m))
    keyed.sort(key=lambda k: k[1])  # by identifier, then (stable) by key
    keyed.sort(key=lambda k: k[0], reverse=pick.order == "latest")
    if not members:
        return []
    n = evaluate(pick.n, members[0])
    return [m for _, _, m in keyed[: int(n)]]


# --- functions ---------------------------------------------------------------------------

Rule = Callable[[A.Call, list[Any], Env], Any]
RULES: BackendRules[Rule] = BackendRules("reference")


def months_between(a: dt.date, b: dt.date) -> int:
    """Whole months from a to b, rounded down."""
    return (b.year * 12 + b.month) - (a.year * 12 + a.month) - (1 if b.day < a.day else 0)


def years_between(a: dt.date, b: dt.date) -> int:
    """Whole years from a to b."""
    return b.year - a.year - (1 if (b.month, b.day) < (a.month, a.day) else 0)


def _decimals(node: A.Call, args: list[Any], env: Env) -> list[Any]:
    """The arguments as Decimal where the call's result is a decimal (number or money)."""
    if env.typed.type_of(node) in ("number", "money"):
        return [None if a is None else Decimal(a) for a in args]
    return args


@RULES.rule("min")
def _min(node: A.Call, args: list[Any], env: Env) -> Any:
    return min(_decimals(node, args, env))


@RULES.rule("max")
def _max(node: A.Call, args: list[Any], env: Env) -> Any:
    return max(_decimals(node, args, env))


@RULES.rule("coalesce")
def _coalesce(node: A.Call, args: list[Any], env: Env) -> Any:
    return next((a for a in _decimals(node, args, env) if a is not None), None)


@RULES.rule("lookup")
def _lookup(node: A.Call, args: list[Any], env: Env) -> Any:
    name = node.args[0]
    assert isinstance(name, A.Name)
    table = env.params[name.name]
    return table.values.get(str(args[1]), table.default)


@RULES.rule("is_missing")
def _is_missing(node: A.Call, args: list[Any], env: Env) -> Any:
    return args[0] is None


@RULES.rule("abs")
def _abs(node: A.Call, args: list[Any], env: Env) -> Any:
    return abs(args[0])


@RULES.rule("round")
def _round(node: A.Call, args: list[Any], env: Env) -> Any:
    places = int(args[1]) if len(args) == 2 else 0
    at = env.typed.type_of(node.args[0])
    unit = Decimal(1).scaleb(-places)
    if at == "count":
        return args[0]
    if at == "money":  # money rounds in yuan
        yuan = Decimal(args[0]) / FEN_PER_YUAN
        return yuan.quantize(unit, rounding=ROUND_HALF_UP) * FEN_PER_YUAN
    return Decimal(args[0]).quantize(unit, rounding=ROUND_HALF_UP)


@RULES.rule("months_between")
def _months_between(node: A.Call, args: list[Any], env: Env) -> Any:
    return months_between(args[0], args[1])


@RULES.rule("days_between")
def _days_between(node: A.Call, args: list[Any], env: Env) -> Any:
    return (args[1] - args[0]).days


@RULES.rule("age_on")
def _age_on(node: A.Call, args: list[Any], env: Env) -> Any:
    birth = env.values.get("birth_on")
    return None if birth is None else years_between(birth, args[0])


@RULES.rule("add_months")
def _add_months(node: A.Call, args: list[Any], env: Env) -> Any:
    return add_months(args[0], int(args[1]))


@RULES.rule("add_days")
def _add_days(node: A.Call, args: list[Any], env: Env) -> Any:
    return args[0] + dt.timedelta(days=int(args[1]))


@RULES.rule("month_start")
def _month_start(node: A.Call, args: list[Any], env: Env) -> Any:
    return args[0].replace(day=1)


@RULES.rule("year_of")
def _year_of(node: A.Call, args: list[Any], env: Env) -> Any:
    return args[0].year


@RULES.rule("listed")
def _listed(node: A.Call, args: list[Any], env: Env) -> Any:
    return listed_name(node) in env.lists


@RULES.rule("starts_with")
def _starts_with(node: A.Call, args: list[Any], env: Env) -> Any:
    return str(args[0]).startswith(args[1])


@RULES.rule("substr")
def _substr(node: A.Call, args: list[Any], env: Env) -> Any:
    start, length = count_arg(node, 1, env.params) - 1, count_arg(node, 2, env.params)
    return str(args[0])[start : start + length]


@RULES.rule("lower")
def _lower(node: A.Call, args: list[Any], env: Env) -> Any:
    return str(args[0]).lower()


@RULES.rule("upper")
def _upper(node: A.Call, args: list[Any], env: Env) -> Any:
    return str(args[0]).upper()


@RULES.rule("length")
def _length(node: A.Call, args: list[Any], env: Env) -> Any:
    return len(str(args[0]))


@RULES.rule("matches")
def _matches(node: A.Call, args: list[Any], env: Env) -> Any:
    return re.match(anchored(str(args[1])), str(args[0])) is not None


# --- amounts -------------------------------------------------------------------------------


def _money(node: A.Node | None, env: Env) -> Decimal | None:
    if node is None:
        return None
    v = evaluate(node, env)
    return None if v is None else Decimal(v)


@singledispatch
def base_amount(base: Any, env: Env) -> Decimal | None:
    """The base amount of one kind (`eligibility.amounts`), exact fen, before proration."""
    raise TypeError(f"no reference rule for the amount kind {type(base).__name__}")


@base_amount.register
def _formula(base: Formula, env: Env) -> Decimal | None:
    return _money(base.expr, env)


@base_amount.register
def _table(base: Table, env: Env) -> Decimal | None:
    for when, value in base.rows:
        if evaluate(when, env) is True:
            return _money(value, env)
    return _money(base.otherwise, env) if base.otherwise is not None else Decimal(0)


@base_amount.register
def _step(base: StepTiers, env: Env) -> Decimal | None:
    by = evaluate(base.by, env)
    if by is None:
        return None
    for b in base.brackets:
        low = evaluate(b.low, env) if b.low is not None else None
        high = evaluate(b.high, env) if b.high is not None else None
        if (b.low is None or (low is not None and by >= low)) and (
            b.high is None or (high is not None and by < high)
        ):
            return _money(b.value, env)
    return Decimal(0)


@base_amount.register
def _marginal(base: MarginalTiers, env: Env) -> Decimal | None:
    by = evaluate(base.by, env)
    if by is None:
        return None
    total = Decimal(0)
    for b in base.brackets:
        low = Decimal(evaluate(b.low, env)) if b.low is not None else Decimal(0)
        top = (
            min(Decimal(by), Decimal(evaluate(b.high, env))) if b.high is not None else Decimal(by)
        )
        total += q(max(top - low, Decimal(0)) * Decimal(evaluate(b.value, env)))
    return total


@base_amount.register
def _monthly(base: Monthly, env: Env) -> Decimal | None:
    total = Decimal(0)
    for month in months_of(env.dates["period_start"], env.dates["period_end"]):
        value = _money(base.expr, replace(env, dates={**env.dates, MONTH: month}))
        if value is None:  # an unknown month: the sum is unknown
            return None
        total += value
    return total


def prorate_fraction(amount: Amount, env: Env) -> Decimal | None:
    """Months of the benefit period between the proration bounds (both months included)
    over the period's months; unknown if a bound is."""
    start, end = env.dates["period_start"], env.dates["period_end"]
    first, last = start.year * 12 + start.month, end.year * 12 + end.month
    lo = evaluate(amount.prorate_from, env) if amount.prorate_from is not None else start
    hi = evaluate(amount.prorate_until, env) if amount.prorate_until is not None else end
    if lo is None or hi is None:
        return None
    months = max(min(hi.year * 12 + hi.month, last) - max(lo.year * 12 + lo.month, first) + 1, 0)
    return q(Decimal(months) / Decimal(last - first + 1))


def round_amount(fen: Decimal, rounding: Rounding) -> int:
    """Exact fen rounded as the policy says (to fen, yuan or ten yuan; half up, half to
    even or down), as integer fen."""
    mode = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "down": ROUND_DOWN}
    units = (fen / rounding.unit_fen).quantize(Decimal(1), rounding=mode[rounding.mode])
    return int(units * rounding.unit_fen)


def amount(policy: CheckedPolicy, env: Env) -> int | None:
    """The policy's amount for one row, in fen, before eligibility."""
    am = policy.amount
    base = base_amount(am.base, env)
    if base is not None and am.prorated:
        fraction = prorate_fraction(am, env)
        base = None if fraction is None else q(base * fraction)
    if base is not None and am.cap is not None:
        cap = _money(am.cap, env)
        base = None if cap is None else min(base, cap)
    if base is None or abs(base) > MAX_ENTITLEMENT_FEN:  # past any real entitlement: unknown
        return None
    return round_amount(base, am.round)


def decide(
    policy: CheckedPolicy, env: Env, entity_id: str, payee: str | None = None
) -> dict[str, Any]:
    """eligible, amount_fen, reason, mask, payee for one row, as the backends must give them."""
    results = [evaluate(c.node, env) is True for c in policy.conditions]
    mask = sum(1 << i for i, ok in enumerate(results) if ok)
    return verdict(policy, mask, amount(policy, env), entity_id, payee)


def verdict(
    policy: CheckedPolicy, mask: int, fen: int | None, entity_id: str, payee: str | None
) -> dict[str, Any]:
    """The result of one row from the mask of the conditions that hold (bit i: condition
    i) and the amount: the first failing condition is the reason, then the payee, then
    an unknown or zero amount.  Shared by every row-at-a-time backend."""
    who = entity_id if policy.spec.payee == "self" else payee
    failing = (c.id for i, c in enumerate(policy.conditions) if not mask >> i & 1)
    reason = next(failing, None)
    if reason is None:
        reason = (
            "payee"
            if who is None
            else "amount_unknown"
            if fen is None
            else "amount_zero"
            if fen <= 0
            else None
        )
    eligible = reason is None
    return {
        "eligible": eligible,
        "amount_fen": fen if eligible else 0,
        "reason": reason,
        "mask": mask,
        "payee": who if eligible else None,
    }


def env_for(policy: CheckedPolicy, as_of: dt.date, values: dict[str, Any], lists: set[str]) -> Env:
    """The environment of one row of `policy` on `as_of`."""
    return Env(
        typed=policy.typed,
        values=values,
        lists=lists,
        dates=run_dates(policy, as_of).names(),
        params=param_values(policy, as_of),
        lets=policy.lets,
    )


class RowReader:
    """Reads the environments of one policy's rows of the wide frame (`eligibility.plan.
    Naming`'s columns: its features, the lists it is on, the policy's aggregates over
    relations), as `explain` and the durable-rules backend read them.  What is the same
    for every row (which column holds what, the dates, the params) is worked out once."""

    def __init__(self, policy: CheckedPolicy, cat: CheckedCatalogue, as_of: dt.date) -> None:
        window = run_dates(policy, as_of).window
        naming = Naming(cat)
        entity = policy.target
        feats = cat.features_of(entity)
        self.features = [
            (name, naming.feature(entity, name, window), feats[name].type, feats[name].unit)
            for ent, name in sorted(policy.typed.features)
            if ent == entity
        ]
        self.aggregates = [
            (id(agg), naming.aggregate(policy.id, agg, window))
            for agg in top_level_aggregates(policy)
        ]
        self.base = env_for(policy, as_of, {}, set())
        self._lists: tuple[tuple[str, ...], list[tuple[str, str]]] = ((), [])

    def env(self, row: dict[str, Any]) -> Env:
        """The environment of the entity of `row`."""
        values: dict[str, Any] = {}
        for name, column, kind, unit in self.features:
            v = row.get(column)
            if v is not None and kind == "money":
                v = to_fen(Decimal(str(v)), unit or "fen")
            elif v is not None and kind == "number":
                v = Decimal(str(v))
            values[name] = v
        columns = tuple(row)
        if columns != self._lists[0]:  # the rows of one frame share their columns
            named = [(k, lst) for k in columns if (lst := Naming.list_of(k)) is not None]
            self._lists = (columns, named)
        lists = {lst for k, lst in self._lists[1] if row[k]}
        return replace(
            self.base,
            values=values,
            lists=lists,
            aggregates={key: row.get(column) for key, column in self.aggregates},
        )


def row_env(
    policy: CheckedPolicy, cat: CheckedCatalogue, as_of: dt.date, row: dict[str, Any]
) -> Env:
    """The environment of one entity from its row of the wide frame (`RowReader`)."""
    return RowReader(policy, cat, as_of).env(row)
