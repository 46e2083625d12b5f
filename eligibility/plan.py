"""What a set of policies needs on one as-of date, and how its columns are named.

Backend-neutral: the dates of each policy's run (benefit period, assessed
window), its parameter values in force, and the features, relation aggregates,
lists and payees it reads.  The feature builder computes exactly these; the
compilers read them by the names given here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from common.errors import Code, Problem, ProblemsError
from common.periods import Period, Window, assessed_window, benefit_period
from eligibility import ast as A
from eligibility.check import CheckedCatalogue, CheckedPolicy, FeatureRef, Typed

FAR_FUTURE = dt.date(9999, 12, 31)


@dataclass(frozen=True)
class RunDates:
    """The dates one policy sees on one as-of date."""

    as_of: dt.date
    period: Period
    window: Window
    policy_start: dt.date
    policy_end: dt.date

    def names(self) -> dict[str, dt.date]:
        """The run-date names of the rule language and their values."""
        last = self.window.last
        window_end = (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(
            days=1
        )
        return {
            "as_of": self.as_of,
            "period_start": self.period.start,
            "period_end": self.period.end,
            "window_start": self.window.first,
            "window_end": window_end,
            "policy_start": self.policy_start,
            "policy_end": self.policy_end,
        }


def is_active(policy: CheckedPolicy, as_of: dt.date) -> bool:
    """Whether the policy may pay on `as_of` (within its validity)."""
    valid = policy.spec.valid
    return valid.from_ <= as_of and (valid.until is None or as_of <= valid.until)


def run_dates(policy: CheckedPolicy, as_of: dt.date) -> RunDates:
    """The benefit period and assessed window of a policy on `as_of`."""
    spec = policy.spec
    period = benefit_period(spec.benefit_period, as_of, spec.valid.from_, spec.valid.until)
    window = assessed_window(spec.assess, as_of, period)
    return RunDates(as_of, period, window, spec.valid.from_, spec.valid.until or FAR_FUTURE)


def param_values(policy: CheckedPolicy, as_of: dt.date) -> dict[str, Any]:
    """Each parameter's value in force on `as_of` (money in fen, as Decimal)."""
    out: dict[str, Any] = {}
    problems = []
    for name, dated in policy.params.items():
        current = [(d, node, ref) for d, node, ref in dated if d <= as_of]
        if not current:
            line, col = policy.located.at(("params", name))
            problems.append(
                Problem(
                    policy.file,
                    line,
                    col,
                    Code.PARAM_NO_VALUE,
                    f"parameter {name!r} has no value on {as_of}",
                    f"its first value applies from {dated[0][0]}",
                )
            )
            continue
        node = current[-1][1]
        assert isinstance(node, A.Literal)
        value = node.value
        if node.unit == "yuan" and isinstance(value, Decimal):
            value = value * 100
        out[name] = value
    if problems:
        raise ProblemsError(problems)
    return out


def body_digest(policy_id: str, node: A.Aggregate) -> str:
    """A short stable digest naming one aggregate of one policy."""
    text = (
        f"{policy_id}|{node.func}|{node.relation}|{node.span.text}|{node.span.line}:{node.span.col}"
    )
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class Naming:
    """Column names in an entity's feature frame."""

    def __init__(self, cat: CheckedCatalogue) -> None:
        self.cat = cat

    def windowed(self, entity: str, name: str) -> bool:
        """Whether a feature's value depends on the assessed window."""
        f = self.cat.features_of(entity)[name]
        if f.source is not None:
            return f.source in self.cat.spec.timed
        rel = self.cat.relation(f.relation or "")
        return rel.during is not None or self._body_windowed(
            self.cat.relation_features[f"{entity}.{name}"], self.cat.typed
        )

    def _body_windowed(self, node: A.Aggregate, typed: Typed) -> bool:
        rel = self.cat.relation(node.relation)
        if node.body is None:
            return False
        for n in A.walk(node.body):
            b = typed.bindings.get(id(n))
            if isinstance(b, FeatureRef) and self.windowed(rel.to, b.name):
                return True
        return rel.during is not None

    def feature(self, entity: str, name: str, window: Window) -> str:
        return f"{name}@{window.label}" if self.windowed(entity, name) else name

    def aggregate(self, policy_id: str, node: A.Aggregate, window: Window) -> str:
        return f"agg:{node.relation}:{node.func}:{body_digest(policy_id, node)}@{window.label}"

    @staticmethod
    def listed(name: str) -> str:
        return f"listed:{name}"

    @staticmethod
    def payee(policy_id: str) -> str:
        return f"payee:{policy_id}"


@dataclass
class AggregateNeed:
    """One relation aggregate to compute for an owner entity."""

    column: str
    node: A.Aggregate
    typed: Typed
    window: Window
    kind: str = "aggregate"  # aggregate | payee
    dates: dict[str, dt.date] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EntityNeeds:
    """Everything one entity kind's feature frame must hold."""

    features: set[tuple[str, Window | None]] = field(default_factory=set)
    aggregates: dict[str, AggregateNeed] = field(default_factory=dict)
    lists: set[str] = field(default_factory=set)


def needs(
    policies: list[CheckedPolicy], cat: CheckedCatalogue, as_of: dt.date
) -> dict[str, EntityNeeds]:
    """The features, aggregates, lists and payees the given policies read on `as_of`."""
    naming = Naming(cat)
    out: dict[str, EntityNeeds] = {"enterprise": EntityNeeds(), "person": EntityNeeds()}
    for p in policies:
        rd = run_dates(p, as_of)
        window = rd.window
        dates, params = rd.names(), param_values(p, as_of)
        top = out[p.target]
        for n in _top_level_names(p):
            b = p.typed.bindings.get(id(n))
            if isinstance(b, FeatureRef):
                add_feature(out, cat, naming, p.target, b.name, window)
        for entity, name in p.typed.lists:
            if entity == p.target:
                top.lists.add(name)
        for agg in top_level_aggregates(p):
            col = naming.aggregate(p.id, agg, window)
            top.aggregates[col] = AggregateNeed(
                col, agg, p.typed, window, "aggregate", dates, params
            )
            _member_needs(out, cat, naming, agg, p.typed, window)
        if p.spec.payee != "self":
            rel = p.spec.payee.relation
            body = p.payee_where
            node = A.Aggregate("any", rel, body, body.span if body else A.Span(p.file, 1, 1))
            col = naming.payee(p.id)
            top.aggregates[col] = AggregateNeed(col, node, p.typed, window, "payee", dates, params)
            if body is not None:
                _member_needs(out, cat, naming, node, p.typed, window)
        if "birth_on" in cat.features_of(p.target) and p.typed.uses_age:
            add_feature(out, cat, naming, p.target, "birth_on", window)
    return out


def add_feature(
    out: dict[str, EntityNeeds],
    cat: CheckedCatalogue,
    naming: Naming,
    entity: str,
    name: str,
    window: Window,
) -> None:
    """Record one feature (and, for a relation feature, what its body reads)."""
    out[entity].features.add((name, window if naming.windowed(entity, name) else None))
    agg = cat.relation_features.get(f"{entity}.{name}")
    if agg is not None:
        _member_needs(out, cat, naming, agg, cat.typed, window)


def _member_needs(
    out: dict[str, EntityNeeds],
    cat: CheckedCatalogue,
    naming: Naming,
    agg: A.Aggregate,
    typed: Typed,
    window: Window,
) -> None:
    member = cat.relation(agg.relation).to
    if agg.body is None:
        return
    for n in A.walk(agg.body):
        b = typed.bindings.get(id(n))
        if isinstance(b, FeatureRef):
            add_feature(out, cat, naming, member, b.name, window)
        if isinstance(n, A.Call) and n.func == "listed":
            arg = n.args[0]
            assert isinstance(arg, A.Literal)
            out[member].lists.add(str(arg.value))
        if isinstance(n, A.Call) and n.func == "age_on":
            add_feature(out, cat, naming, member, "birth_on", window)


def _top_level_nodes(p: CheckedPolicy) -> list[A.Node]:
    roots: list[A.Node] = [*p.lets.values(), *(c.node for c in p.conditions)]
    am = p.amount
    roots += [
        x
        for x in (
            am.formula,
            am.tiers_by,
            am.otherwise,
            am.prorate_from,
            am.prorate_until,
            am.cap,
            p.rank_by,
        )
        if x is not None
    ]
    for lo, hi, value in am.brackets:
        roots += [x for x in (lo, hi, value) if x is not None]
    for when, value in am.table:
        roots += [when, value]
    out: list[A.Node] = []

    def visit(n: A.Node) -> None:
        out.append(n)
        if not isinstance(n, A.Aggregate):
            for c in A.children(n):
                visit(c)

    for r in roots:
        visit(r)
    return out


def _top_level_names(p: CheckedPolicy) -> list[A.Name]:
    return [n for n in _top_level_nodes(p) if isinstance(n, A.Name)]


def top_level_aggregates(p: CheckedPolicy) -> list[A.Aggregate]:
    return [n for n in _top_level_nodes(p) if isinstance(n, A.Aggregate)]
