"""The reference interpreter: the plainest row-at-a-time reading of the rule language.

Used only by tests, as the meaning the compiled backends must agree with.
Standard library only.  Values: money and number are Decimal (money in fen),
count is int, None is unknown.  Products and quotients of decimals keep 10
places, half to even; final amounts round half up to fen or yuan.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from common.periods import add_months
from eligibility import ast as A
from eligibility.check import CheckedPolicy, ColumnRef, FeatureRef, LetRef, ParamRef, RunDate, Typed
from eligibility.plan import param_values, run_dates

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


def evaluate(node: A.Node, env: Env) -> Any:
    """The value of `node` on one row."""
    t = env.typed.types[id(node)]
    match node:
        case A.Literal(value=v, unit=unit):
            if v is None:
                return None
            if t == "money":
                return Decimal(str(v)) * (100 if unit == "yuan" else 1)
            if t == "count" and isinstance(v, Decimal):
                return int(v)
            return v
        case A.Name(name=name):
            b = env.typed.bindings[id(node)]
            if isinstance(b, LetRef):
                return evaluate(env.lets[name], env)
            if isinstance(b, ParamRef):
                return env.params[name]
            if isinstance(b, RunDate):
                return env.dates[name]
            if isinstance(b, FeatureRef | ColumnRef):
                v = env.values.get(name if isinstance(b, FeatureRef) else f"link:{name}")
                return _num(v, b.type)
            raise TypeError(b)
        case A.Unary(op="not", operand=o):
            v = evaluate(o, env)
            return None if v is None else not v
        case A.Unary(op="-", operand=o):
            v = evaluate(o, env)
            return None if v is None else -v
        case A.Binary(op=op, left=left, right=right):
            a, b = evaluate(left, env), evaluate(right, env)
            if a is None or b is None:
                return None
            if t == "count":
                return {"+": a + b, "-": a - b, "*": a * b}[op]
            x, y = Decimal(a), Decimal(b)
            if op == "+":
                return x + y
            if op == "-":
                return x - y
            if op == "*":
                return q(x * y)
            return None if y == 0 else q(x / y)
        case A.Compare(op=op, left=left, right=right):
            a, b = evaluate(left, env), evaluate(right, env)
            if a is None or b is None:
                return None
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[
                op
            ]
        case A.BoolOp(op=op, operands=ops):
            vals = [evaluate(o, env) for o in ops]
            if op == "and":
                if any(v is False for v in vals):
                    return False
                return None if any(v is None for v in vals) else True
            if any(v is True for v in vals):
                return True
            return None if any(v is None for v in vals) else False
        case A.In(item=item, options=options, negated=neg):
            v = evaluate(item, env)
            if v is None:
                return None
            found = v in [evaluate(o, env) for o in options.items]
            return not found if neg else found
        case A.Cond(test=test, then=a, otherwise=b):
            return evaluate(a, env) if evaluate(test, env) is True else evaluate(b, env)
        case A.Call():
            return _call(node, env, t)
        case A.Aggregate():
            return env.aggregates[id(node)]
    raise TypeError(node)


def months_between(a: dt.date, b: dt.date) -> int:
    """Whole months from a to b, rounded down."""
    return (b.year * 12 + b.month) - (a.year * 12 + a.month) - (1 if b.day < a.day else 0)


def years_between(a: dt.date, b: dt.date) -> int:
    """Whole years from a to b."""
    return b.year - a.year - (1 if (b.month, b.day) < (a.month, a.day) else 0)


def _call(node: A.Call, env: Env, t: str) -> Any:
    f = node.func
    if f == "listed":
        arg = node.args[0]
        assert isinstance(arg, A.Literal)
        return arg.value in env.lists
    args = [evaluate(a, env) for a in node.args]
    if f in ("min", "max"):
        if any(a is None for a in args):
            return None
        vals = [Decimal(a) if t in ("number", "money") else a for a in args]
        return min(vals) if f == "min" else max(vals)
    if f == "coalesce":
        return next(
            (Decimal(a) if t in ("number", "money") else a for a in args if a is not None), None
        )
    if f == "is_missing":
        return args[0] is None
    if any(a is None for a in args):
        return None
    if f == "abs":
        return abs(args[0])
    if f == "round":
        places = int(node.args[1].value) if len(node.args) == 2 else 0  # type: ignore[union-attr, arg-type]
        at = env.typed.types[id(node.args[0])]
        if at == "count":
            return args[0]
        if at == "money":
            return (Decimal(args[0]) / 100).quantize(
                Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP
            ) * 100
        return Decimal(args[0]).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if f == "months_between":
        return months_between(args[0], args[1])
    if f == "days_between":
        return (args[1] - args[0]).days
    if f == "age_on":
        birth = env.values.get("birth_on")
        return None if birth is None else years_between(birth, args[0])
    if f == "add_months":
        return add_months(args[0], int(args[1]))
    if f == "add_days":
        return args[0] + dt.timedelta(days=int(args[1]))
    if f == "month_start":
        return args[0].replace(day=1)
    if f == "year_of":
        return args[0].year
    raise TypeError(f)


def _round_amount(fen: Decimal, to: str) -> int:
    if to == "yuan":
        return int((fen / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 100)
    return int(fen.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def amount(policy: CheckedPolicy, env: Env) -> int | None:
    """The policy's amount for one row, in fen, before eligibility."""
    am = policy.amount

    def money(n: A.Node) -> Decimal | None:
        v = evaluate(n, env)
        return None if v is None else Decimal(v)

    base: Decimal | None
    if am.kind == "formula":
        assert am.formula is not None
        base = money(am.formula)
    elif am.kind == "table":
        base = None
        for when, value in am.table:
            if evaluate(when, env) is True:
                base = money(value)
                break
        else:
            base = money(am.otherwise) if am.otherwise is not None else Decimal(0)
    else:
        assert am.tiers_by is not None
        by = evaluate(am.tiers_by, env)
        if by is None:
            base = None
        elif am.tiers_mode == "step":
            base = Decimal(0)
            for lo, hi, value in am.brackets:
                lo_v = evaluate(lo, env) if lo is not None else None
                hi_v = evaluate(hi, env) if hi is not None else None
                if (lo is None or (lo_v is not None and by >= lo_v)) and (
                    hi is None or (hi_v is not None and by < hi_v)
                ):
                    base = money(value)
                    break
        else:
            total = Decimal(0)
            for lo, hi, rate in am.brackets:
                low = Decimal(evaluate(lo, env)) if lo is not None else Decimal(0)
                top = (
                    min(Decimal(by), Decimal(evaluate(hi, env))) if hi is not None else Decimal(by)
                )
                total += q(max(top - low, Decimal(0)) * Decimal(evaluate(rate, env)))
            base = total
    if base is not None and (am.prorate_from is not None or am.prorate_until is not None):
        start, end = env.dates["period_start"], env.dates["period_end"]
        first, last = start.year * 12 + start.month, end.year * 12 + end.month
        lo_d = evaluate(am.prorate_from, env) if am.prorate_from is not None else start
        hi_d = evaluate(am.prorate_until, env) if am.prorate_until is not None else end
        if lo_d is None or hi_d is None:
            base = None
        else:
            months = max(
                min(hi_d.year * 12 + hi_d.month, last)
                - max(lo_d.year * 12 + lo_d.month, first)
                + 1,
                0,
            )
            base = q(base * q(Decimal(months) / Decimal(last - first + 1)))
    if base is not None and am.cap is not None:
        cap = money(am.cap)
        base = None if cap is None else min(base, cap)
    return None if base is None else _round_amount(base, am.round)


def decide(
    policy: CheckedPolicy, env: Env, entity_id: str, payee: str | None = None
) -> dict[str, Any]:
    """eligible, amount_fen, reason, mask, payee for one row, as the backends must give them."""
    results = [evaluate(c.node, env) is True for c in policy.conditions]
    mask = sum(1 << i for i, ok in enumerate(results) if ok)
    who = entity_id if policy.spec.payee == "self" else payee
    fen = amount(policy, env)
    reason = next((c.id for c, ok in zip(policy.conditions, results, strict=True) if not ok), None)
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
