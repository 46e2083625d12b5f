"""Every expression in plain words, with the values it compared when they are known.

    layoff_rate_headcount <= limit      ->  "layoff_rate_headcount (0.031) is at most limit (0.055)"
    not listed("serious_dishonesty")    ->  "is not on the list serious_dishonesty"

Standard library only, so that an explanation can be rendered from what the
ledger recorded, without Polars.  Money values are fen in, yuan out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from functools import singledispatch
from typing import Any

from common.money import format_fen_amount
from common.periods import months_of
from eligibility import ast as A
from eligibility.amounts import MONTH, Formula, MarginalTiers, Monthly, StepTiers, Table
from eligibility.checked import CheckedCatalogue, CheckedPolicy, LetRef, ParamRef
from eligibility.functions import FUNCTIONS, BackendRules, listed_name
from eligibility.plan import Naming, param_ref, run_dates
from eligibility.reference import Env, amount, evaluate, row_env

WORDS = {
    "==": "is",
    "!=": "is not",
    "<": "is below",
    "<=": "is at most",
    ">": "is above",
    ">=": "is at least",
}
PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}


@dataclass(frozen=True)
class Cited:
    """A parameter's value with the text that set it, shown together."""

    value: Any
    ref: str


def show_value(value: Any, type_: str | None = None) -> str:
    """A value as a person reads it: money in yuan with the fen, rates as percentages
    (`type_` "percent"), a parameter's value with the text that set it."""
    if isinstance(value, Cited):
        return f"{show_value(value.value, type_)} ({value.ref})"
    if value is None:
        return "unknown"
    if type_ == "percent" and isinstance(value, int | Decimal):
        return f"{format(round(Decimal(value) * 100, 4).normalize(), 'f')}%"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if type_ == "money" and isinstance(value, int | Decimal):
        return format_fen_amount(value)
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


@singledispatch
def _src(node: Any, outer: int) -> str:
    """`node` written back, in brackets where its precedence is below `outer`'s."""
    raise TypeError(f"no source text for {type(node).__name__}")


@_src.register
def _(node: A.Literal, outer: int) -> str:
    v = node.value
    if "%" in node.span.text and isinstance(v, Decimal):  # a rate, as it was written
        return node.span.text
    if isinstance(v, str):
        return f'"{v}"'
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date):
        return v.isoformat()
    return f"{format(v, 'f')} {node.unit}" if node.unit else format(v, "f")


@_src.register
def _(node: A.Name, outer: int) -> str:
    return node.name


@_src.register
def _(node: A.ListLit, outer: int) -> str:
    return "[" + ", ".join(_src(i, 0) for i in node.items) + "]"


@_src.register
def _(node: A.Unary, outer: int) -> str:
    if node.op == "not":
        p = PRECEDENCE["not"]
        return _wrap(f"not {_src(node.operand, p)}", p, outer)
    return f"-{_src(node.operand, PRECEDENCE['neg'])}"


@_src.register
def _(node: A.Binary, outer: int) -> str:
    p = PRECEDENCE[node.op]
    return _wrap(f"{_src(node.left, p)} {node.op} {_src(node.right, p + 1)}", p, outer)


@_src.register
def _(node: A.Compare, outer: int) -> str:
    p = PRECEDENCE["cmp"]
    return _wrap(f"{_src(node.left, p + 1)} {node.op} {_src(node.right, p + 1)}", p, outer)


@_src.register
def _(node: A.BoolOp, outer: int) -> str:
    p = PRECEDENCE[node.op]
    return _wrap(f" {node.op} ".join(_src(o, p + 1) for o in node.operands), p, outer)


@_src.register
def _(node: A.In, outer: int) -> str:
    p = PRECEDENCE["cmp"]
    word = "not in" if node.negated else "in"
    return _wrap(f"{_src(node.item, p + 1)} {word} {_src(node.options, 0)}", p, outer)


@_src.register
def _(node: A.Cond, outer: int) -> str:
    text = f"{_src(node.then, 1)} if {_src(node.test, 1)} else {_src(node.otherwise, 0)}"
    return _wrap(text, 0, outer)


@_src.register
def _(node: A.Call, outer: int) -> str:
    return f"{node.func}(" + ", ".join(_src(x, 0) for x in node.args) + ")"


@_src.register
def _(node: A.Apply, outer: int) -> str:
    return f"{node.func}(" + ", ".join(_src(x, 0) for x in node.args) + ")"


@_src.register
def _(node: A.Aggregate, outer: int) -> str:
    over = node.relation
    if node.pick is not None:  # the related entities it picks: earliest(hires, 50, hired_in)
        p = node.pick
        args = [node.relation, _src(p.n, 0), _src(p.key, 0)]
        over = f"{p.order}({', '.join([*args, *([_src(p.where, 0)] if p.where else [])])})"
    if node.body is None:
        return f"{node.func}({over})"
    return f"{node.func}({over}, {_src(node.body, 0)})"


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
        if isinstance(inner, A.Call) and FUNCTIONS[inner.func].names_list:
            return f"is not on the list {listed_name(inner)}"
        return f"not ({words(inner, values, types)})"
    return f"minus {words(node.operand, values, types)}"


@words.register
def _(node: A.Call, values: dict[str, Any], types: dict[str, str]) -> str:
    return WORDS_RULES[node.func](node, values, types)


# --- functions in words (one rule per function of `eligibility.functions`) ----------------

WordsRule = Callable[[A.Call, dict[str, Any], dict[str, str]], str]
WORDS_RULES: BackendRules[WordsRule] = BackendRules("words")


@WORDS_RULES.rule(
    "min",
    "max",
    "coalesce",
    "abs",
    "round",
    "months_between",
    "days_between",
    "age_on",
    "add_months",
    "add_days",
    "month_start",
    "year_of",
    "is_missing",
    "starts_with",
    "substr",
    "lower",
    "upper",
    "length",
    "matches",
    "lookup",
)
def _as_written(node: A.Call, values: dict[str, Any], types: dict[str, str]) -> str:
    """The call as written: an officer reads these as they wrote them."""
    return source_text(node)


@WORDS_RULES.rule("listed")
def _listed(node: A.Call, values: dict[str, Any], types: dict[str, str]) -> str:
    return f"is on the list {listed_name(node)}"


@words.register
def _(node: A.In, values: dict[str, Any], types: dict[str, str]) -> str:
    if isinstance(node.options, A.Name):  # a list parameter, with its values when known
        listed = values.get(node.options.name)
        shown = f" ({', '.join(map(str, listed))})" if isinstance(listed, list) else ""
        options = node.options.name + shown
    else:
        options = ", ".join(source_text(o) for o in node.options.items)
    return (
        f"{words(node.item, values, types)} {'is not' if node.negated else 'is'} one of {options}"
    )


def condition_text(
    node: A.Node, values: dict[str, Any] | None = None, types: dict[str, str] | None = None
) -> str:
    """A condition in plain words, with the values of the names it reads."""
    return words(node, values or {}, types or {})


# --- one entity's decision, from the run's archived row ------------------------------


_NOWHERE = A.Span("", 0, 0)


def _percentish(node: A.Node, policy: CheckedPolicy, name: str | None = None) -> bool:
    """Whether a number reads as a rate: written with %, a parameter written with %, a
    ratio (a division), or made of such; a let or parameter by `name`."""
    if name is not None:
        if name in policy.lets:
            return _percentish(policy.lets[name], policy)
        dated = policy.params.get(name, [])
        return any(_written_percent(d.node) for d in dated)
    match node:
        case A.Literal():
            return "%" in node.span.text
        case A.Name():
            b = policy.typed.bindings.get(id(node))
            return isinstance(b, LetRef | ParamRef) and _percentish(node, policy, node.name)
        case A.Binary(op="/"):
            return True
        case A.Binary(op="+" | "-"):
            return _percentish(node.left, policy) and _percentish(node.right, policy)
        case A.Cond():
            return _percentish(node.then, policy) and _percentish(node.otherwise, policy)
        case A.Call(func="min" | "max" | "round" | "coalesce" | "abs"):
            return any(_percentish(a, policy) for a in node.args)
        case A.Call(func="lookup"):
            table = node.args[0]
            return isinstance(table, A.Name) and _percentish(table, policy, table.name)
    return False


def _written_percent(node: Any) -> bool:
    if isinstance(node, A.Literal):
        return "%" in node.span.text
    if isinstance(node, A.ListLit):
        return any(_written_percent(x) for x in node.items)
    entries = getattr(node, "entries", ())
    default = getattr(node, "default", None)
    return any(_written_percent(v) for _k, v in entries) or _written_percent(default)


def _names(node: A.Node) -> list[str]:
    seen: list[str] = []
    for n in A.walk(node):
        if isinstance(n, A.Name) and n.name not in seen:
            seen.append(n.name)
    return seen


def _gap(node: A.Node, env: Env, types: dict[str, str]) -> str | None:
    """For a failed condition: how far each failed numeric comparison in it is from passing."""
    if isinstance(node, A.BoolOp):
        parts = []
        for o in node.operands:
            value = evaluate(o, env)
            if value is None:
                parts.append(f"{source_text(o)} is unknown")
            elif value is False:
                gap = _gap(o, env, types)
                if gap is not None:
                    parts.append(gap)
        return "; ".join(parts) or None
    if not isinstance(node, A.Compare) or node.op not in ("<", "<=", ">", ">="):
        return None
    left, right = evaluate(node.left, env), evaluate(node.right, env)
    if not isinstance(left, int | Decimal) or not isinstance(right, int | Decimal):
        return None
    t: str = env.typed.types[id(node.left)]
    if isinstance(node.left, A.Name):
        t = types.get(node.left.name, t)  # a rate shown as a percentage
    diff = Decimal(left) - Decimal(right)
    bare = {"<": "below", ">": "above"}
    if diff == 0:  # at the threshold of a strict comparison
        return f"{source_text(node.left)} is {show_value(left, t)}, not {bare[node.op]} it"
    side = "above" if diff > 0 else "below"
    if t == "percent":  # a difference of rates is in percentage points
        points = format(round(abs(diff) * 100, 4).normalize(), "f")
        return (
            f"{source_text(node.left)} is {points} percentage points {side} {show_value(right, t)}"
        )
    return f"{source_text(node.left)} is {show_value(abs(diff), t)} {side} {show_value(right, t)}"


@dataclass(frozen=True)
class ConditionWords:
    """One condition of one entity: its words with the values compared, and whether it held."""

    id: str
    text: str
    passed: bool
    values: dict[str, Any]
    rule: str
    officer_text: str | None = None
    ref: str | None = None
    gap: str | None = None  # for a failed comparison: how far from passing

    def to_json(self) -> dict[str, Any]:
        """As plain data; the optional parts only where there are some."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return out


@dataclass(frozen=True)
class RowExplanation:
    """Why one entity was decided as it was, from its archived row (`explain_row`)."""

    features: dict[str, Any]
    feature_types: dict[str, str]
    lets: dict[str, Any]
    lists: list[str]
    conditions: list[ConditionWords]
    amount_steps: list[str]
    amount_fen: int | None  # the archived amount
    reference_agrees: bool
    window: str
    benefit_period: str

    def first_failing(self) -> ConditionWords | None:
        """The first condition that did not hold, if any."""
        return next((c for c in self.conditions if not c.passed), None)

    def to_json(self) -> dict[str, Any]:
        """As plain data (what `disburse explain --json` shows of it)."""
        out = asdict(self)
        out["conditions"] = [c.to_json() for c in self.conditions]
        return out


def explain_row(
    policy: CheckedPolicy, cat: CheckedCatalogue, as_of: dt.date, row: dict[str, Any]
) -> RowExplanation:
    """Feature values, every condition with the values it compared, and the amount's steps
    of one entity, from its archived row (features and the compiled condition and amount
    columns).  The condition results and the amount are the archived ones; the values in
    between are computed by the reference interpreter from the archived features."""
    dates = run_dates(policy, as_of)
    env = row_env(policy, cat, as_of, row)
    values, lists = env.values, env.lists
    feats = cat.features_of(policy.target)
    types: dict[str, str] = {name: feats[name].type for name in values}
    known: dict[str, Any] = {**values, **env.params, **env.dates}
    for name, node in policy.lets.items():
        known[name] = evaluate(node, env)
        types[name] = policy.typed.types[id(node)]
    for name, versions in policy.params.items():
        types.setdefault(name, policy.typed.types.get(id(versions[0].node), ""))
        ref = param_ref(policy, name, as_of)
        if ref and name in known:
            known[name] = Cited(known[name], ref)
    for name in [*policy.lets, *policy.params]:
        if types.get(name) == "number" and _percentish(A.Name(name, _NOWHERE), policy, name):
            types[name] = "percent"
    conditions = []
    for i, c in enumerate(policy.conditions):
        passed = bool(row.get(Naming.condition(policy.id, i)))
        used = {n: known.get(n) for n in _names(c.node) if n in known}
        conditions.append(
            ConditionWords(
                id=c.id,
                text=condition_text(c.node, used, types),
                passed=passed,
                values={n: _plain(v) for n, v in used.items()},
                rule=source_text(c.node),
                officer_text=c.text or None,
                ref=c.ref or None,
                gap=None if passed else _gap(c.node, env, types),
            )
        )
    archived = row.get(Naming.amount(policy.id))
    archived_fen = None if archived is None else int(archived)
    # The engine computes an amount only for an entity that meets every condition
    # (`wide_frame`; archives written before engine version 2 hold one for every entity):
    # for the others nothing decided by an amount, and there is nothing to check.
    met = all(c.passed for c in conditions)
    return RowExplanation(
        features={n: _plain(v) for n, v in values.items()},
        feature_types=types,
        lets={n: _plain(known[n]) for n in policy.lets},
        lists=sorted(lists),
        conditions=conditions,
        amount_steps=_amount_steps(policy, env, known, types),
        amount_fen=archived_fen,
        reference_agrees=not met or amount(policy, env) == archived_fen,
        window=dates.window.label,
        benefit_period=dates.period.key,
    )


def _plain(v: Any) -> Any:
    """A value for JSON: Decimals as text, dates as ISO text, a parameter's value bare."""
    if isinstance(v, Cited):
        return _plain(v.value)
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _amount_steps(
    policy: CheckedPolicy, env: Env, known: dict[str, Any], types: dict[str, str]
) -> list[str]:
    """The amount's steps in words: its base, proration, cap and rounding."""
    am = policy.amount
    show = _Show(env, known, types)
    steps = base_steps(am.base, show)
    if am.prorated:
        steps.append(
            "prorated by the months of the benefit period covered"
            + (f" from {show.value(am.prorate_from)}" if am.prorate_from is not None else "")
            + (f" until {show.value(am.prorate_until)}" if am.prorate_until is not None else "")
        )
    if am.cap is not None:
        steps.append(f"cap: {source_text(am.cap)} = {show.value(am.cap)}")
    steps.append(am.round.words())
    return steps


class _Show:
    """Expressions of one row shown with their values (by the reference interpreter)."""

    def __init__(self, env: Env, known: dict[str, Any], types: dict[str, str]) -> None:
        self.env, self.known, self.types = env, known, types

    def eval(self, node: A.Node) -> Any:
        return evaluate(node, self.env)

    def value(self, node: A.Node) -> str:
        return show_value(self.eval(node), self.env.typed.types[id(node)])

    def with_values(self, node: A.Node) -> str:
        used = [n for n in _names(node) if n in self.known]
        shown = ", ".join(f"{n} = {show_value(self.known[n], self.types.get(n))}" for n in used)
        return f"{source_text(node)}" + (f"  [{shown}]" if shown else "")


@singledispatch
def base_steps(base: Any, show: _Show) -> list[str]:
    """A base amount of one kind (`eligibility.amounts`) in words, with its values."""
    raise TypeError(f"no words for the amount kind {type(base).__name__}")


@base_steps.register
def _formula(base: Formula, show: _Show) -> list[str]:
    return [f"formula: {show.with_values(base.expr)} = {show.value(base.expr)}"]


@base_steps.register
def _table(base: Table, show: _Show) -> list[str]:
    for when, value in base.rows:
        if show.eval(when) is True:
            return [f"table row: when {show.with_values(when)}: {show.value(value)}"]
    otherwise = show.value(base.otherwise) if base.otherwise is not None else "0"
    return ["table: no row matched; otherwise " + otherwise]


@base_steps.register
def _monthly(base: Monthly, show: _Show) -> list[str]:
    env = show.env
    shown = []
    for month in months_of(env.dates["period_start"], env.dates["period_end"]):
        value = evaluate(base.expr, replace(env, dates={**env.dates, MONTH: month}))
        shown.append(f"{month:%Y-%m} {show_value(value, 'money')}")
    return [f"monthly: {show.with_values(base.expr)}", "  " + "; ".join(shown)]


def _tier_steps(base: StepTiers | MarginalTiers, mode: str, show: _Show) -> list[str]:
    by_v = show.eval(base.by)
    steps = [f"tiers ({mode}) by {show.with_values(base.by)} = {show.value(base.by)}"]
    for b in base.brackets:
        lo_s = source_text(b.low) if b.low is not None else "-"
        hi_s = source_text(b.high) if b.high is not None else "-"
        lo_v = show.eval(b.low) if b.low is not None else None
        hi_v = show.eval(b.high) if b.high is not None else None
        inside = by_v is not None and (b.low is None or (lo_v is not None and by_v >= lo_v))
        inside = inside and (b.high is None or (hi_v is not None and by_v < hi_v))
        marker = "  <- applies" if inside and mode == "step" else ""
        steps.append(f"  bracket [{lo_s}, {hi_s}): {source_text(b.value)}{marker}")
    return steps


@base_steps.register
def _step(base: StepTiers, show: _Show) -> list[str]:
    return _tier_steps(base, "step", show)


@base_steps.register
def _marginal(base: MarginalTiers, show: _Show) -> list[str]:
    return _tier_steps(base, "marginal", show)
