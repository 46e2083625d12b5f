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
from common.money import to_fen
from common.periods import (
    Period,
    Window,
    assessed_window,
    benefit_period,
    look_back,
    past_periods,
)
from eligibility import ast as A
from eligibility.checked import (
    CheckedCatalogue,
    CheckedPolicy,
    FeatureRef,
    KeyedValues,
    LetRef,
    OwnerRef,
    Typed,
)
from eligibility.functions import FUNCTIONS, listed_name

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


def back_pay_dates(policy: CheckedPolicy, as_of: dt.date) -> list[tuple[Period, dt.date]]:
    """The past benefit periods a policy with `back_pay` still pays on `as_of`, oldest
    first, each with the day it is decided as of: its last day within the validity (what
    the period's last night would have decided, over tonight's data)."""
    spec = policy.spec
    rule = spec.back_pay
    if rule is None:
        return []
    periods = past_periods(
        spec.benefit_period, as_of, spec.valid.from_, spec.valid.until, rule.periods, rule.until
    )
    last = spec.valid.until or FAR_FUTURE
    since = rule.since or spec.valid.from_
    return [(p, min(p.end, last)) for p in periods if p.end >= since]


def param_values(policy: CheckedPolicy, as_of: dt.date) -> dict[str, Any]:
    """Each parameter's value in force on `as_of` (money in fen, as Decimal)."""
    out: dict[str, Any] = {}
    problems = []
    for name, dated in policy.params.items():
        current = [v for v in dated if v.from_ <= as_of]
        if not current:
            line, col = policy.located.at(("params", name))
            problems.append(
                Problem(
                    policy.file,
                    line,
                    col,
                    Code.PARAM_NO_VALUE,
                    f"parameter {name!r} has no value on {as_of}",
                    f"its first value applies from {dated[0].from_}",
                )
            )
            continue
        out[name] = param_value(current[-1].node, policy.typed)
    if problems:
        raise ProblemsError(problems)
    return out


def param_ref(policy: CheckedPolicy, name: str, as_of: dt.date) -> str:
    """The text that set a parameter's value in force on `as_of` ("" if none is)."""
    current = [v for v in policy.params.get(name, []) if v.from_ <= as_of]
    return current[-1].ref if current else ""


@dataclass(frozen=True)
class ParamTable:
    """A table parameter's value in force: code -> value, and the value of other codes."""

    values: dict[str, Any]
    default: Any


def literal_value(node: A.Node, typed: Typed) -> Any:
    """A literal's value in a backend's terms: money in fen (Decimal), counts as int."""
    assert isinstance(node, A.Literal)
    t, v = typed.types.get(id(node)), node.value
    if t == "money" and isinstance(v, Decimal):
        return to_fen(v, node.unit)
    if t == "count" and isinstance(v, Decimal):
        return int(v)
    return v


def param_value(node: A.Node | KeyedValues, typed: Typed) -> Any:
    """A parameter's dated value: one value, a list of values, or a ParamTable."""
    if isinstance(node, KeyedValues):
        values = {key: literal_value(v, typed) for key, v in node.entries}
        default = None if node.default is None else literal_value(node.default, typed)
        return ParamTable(values, default)
    if isinstance(node, A.ListLit):
        return [literal_value(x, typed) for x in node.items]
    return literal_value(node, typed)


def body_digest(policy_id: str, node: A.Aggregate) -> str:
    """A short stable digest naming one aggregate of one policy."""
    text = (
        f"{policy_id}|{node.func}|{node.relation}|{node.span.text}|{node.span.line}:{node.span.col}"
    )
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class Naming:
    """Column names in an entity's feature frame and its archive: the one place they are made."""

    def __init__(self, cat: CheckedCatalogue) -> None:
        self.cat = cat

    def windowed(self, entity: str, name: str) -> bool:
        """Whether a feature's value depends on the assessed window (one anchored on the
        entity's own date does not)."""
        f = self.cat.features_of(entity)[name]
        if f.source is not None:
            anchored = f.window is not None and f.window.anchor is not None
            return f.source in self.cat.spec.timed and not anchored
        return self.cat.dated(f.relation or "") or self._body_windowed(
            self.cat.relation_features[f"{entity}.{name}"], self.cat.typed
        )

    def _body_windowed(self, node: A.Aggregate, typed: Typed) -> bool:
        rel = self.cat.relation(node.relation)
        for part in A.member_parts(node):
            for n in A.walk(part):
                b = typed.bindings.get(id(n))
                if isinstance(b, FeatureRef) and self.windowed(rel.to, b.name):
                    return True
        return self.cat.dated(node.relation)

    def window_of(self, entity: str, name: str, window: Window) -> Window:
        """The months a feature reads for a policy assessing `window`: its own look-back
        (`window:` in the catalogue), else the window itself."""
        own = self.cat.features_of(entity)[name].window
        return window if own is None else look_back(window, own.years_before, own.months)

    def feature(self, entity: str, name: str, window: Window) -> str:
        """A feature's column for a policy assessing `window`."""
        if not self.windowed(entity, name):
            return name
        return f"{name}@{self.window_of(entity, name, window).label}"

    def aggregate(self, policy_id: str, node: A.Aggregate, window: Window) -> str:
        return f"agg:{node.relation}:{node.func}:{body_digest(policy_id, node)}@{window.label}"

    @staticmethod
    def listed(name: str) -> str:
        """Whether the entity is on a credit list on the run's date."""
        return f"listed:{name}"

    @staticmethod
    def list_of(column: str) -> str | None:
        """The list a `listed` column is of (None for any other column)."""
        return column.removeprefix("listed:") if column.startswith("listed:") else None

    @staticmethod
    def payee(policy_id: str) -> str:
        return f"payee:{policy_id}"

    @staticmethod
    def condition(policy_id: str, i: int) -> str:
        """The result of a policy's condition i (0-based)."""
        return f"__cond{i}:{policy_id}"

    @staticmethod
    def amount(policy_id: str) -> str:
        """A policy's amount, where the entity met every condition."""
        return f"__amount:{policy_id}"

    @staticmethod
    def rank(policy_id: str) -> str:
        """A policy's budget rank (rank_by)."""
        return f"__rank:{policy_id}"

    @staticmethod
    def sk(entity: str) -> str:
        """An entity kind's integer surrogate key."""
        return f"{entity}_sk"

    @staticmethod
    def counted_elsewhere(column: str) -> str:
        """Beside each link of a `once_per` aggregate: its member was counted already, for
        another entitlement (in the ledger, or by a claim that comes first in this run)."""
        return f"{column}:elsewhere"

    @staticmethod
    def counted_again(column: str) -> str:
        """Beside each link of a `once_per` aggregate: another link of the same owner counts
        its member already (a person taken on twice counts once)."""
        return f"{column}:again"

    @staticmethod
    def counted(column: str) -> str:
        """The identifiers of the members a `once_per` aggregate counted, per owner."""
        return f"{column}:counted"

    @staticmethod
    def passed_over(column: str) -> str:
        """The identifiers of the members a `once_per` aggregate would have counted had
        another entitlement not counted them already, per owner."""
        return f"{column}:passed_over"

    @staticmethod
    def link(attribute: str) -> str:
        """An attribute of a relation's link row, beside the related entity's features."""
        return f"link:{attribute}"


@dataclass(frozen=True)
class OnceNeed:
    """An aggregate whose related members count once (`once_per`): for which policy and
    benefit period, in which scope (the policies sharing the rule, `once_scope`)."""

    scope: str
    policy_id: str
    period: str


def once_scope(policy: CheckedPolicy) -> str | None:
    """The scope in which the members of a `once_per` policy count once: the ids of the
    policies it names and its own, sorted, joined by commas (None without once_per)."""
    rule = policy.spec.once_per
    if rule is None:
        return None
    return ",".join(sorted({policy.id, *rule.across}))


def once_aggregate(policy: CheckedPolicy) -> A.Aggregate | None:
    """The one aggregate over the `once_per` relation whose members count once."""
    rule = policy.spec.once_per
    if rule is None:
        return None
    found = [a for a in top_level_aggregates(policy) if a.relation == rule.relation]
    return found[0] if found else None


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
    lets: dict[str, A.Node] = field(default_factory=dict)  # the policy's, for owner-level lets
    once: OnceNeed | None = None  # its members count once (`once_per`)

    def owner_reads(self) -> set[str]:
        """The owner's features the body reads: `owner.x`, and those of the lets it reads."""
        found: set[str] = set()
        lets: list[A.Node] = []
        for n in [n for part in A.member_parts(self.node) for n in A.walk(part)]:
            b = self.typed.bindings.get(id(n))
            if isinstance(b, OwnerRef):
                if b.feature is not None:
                    found.add(b.feature)
                elif b.let is not None:
                    lets.append(b.let)
        done: set[int] = set()
        while lets:  # a let is read on the owner: its features are the owner's
            let = lets.pop()
            if id(let) in done:
                continue
            done.add(id(let))
            for n in A.walk(let):
                b = self.typed.bindings.get(id(n))
                if isinstance(b, FeatureRef):
                    found.add(b.name)
                elif isinstance(b, LetRef) and b.name in self.lets:
                    lets.append(self.lets[b.name])
        return found


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
    out: dict[str, EntityNeeds] = {e: EntityNeeds() for e in cat.entities()}
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
        scope, counted_once = once_scope(p), once_aggregate(p)
        for agg in top_level_aggregates(p):
            col = naming.aggregate(p.id, agg, window)
            once = (
                OnceNeed(scope, p.id, rd.period.key)
                if scope is not None and agg is counted_once
                else None
            )
            top.aggregates[col] = AggregateNeed(
                col, agg, p.typed, window, "aggregate", dates, params, p.lets, once
            )
            _member_needs(out, cat, naming, agg, p.typed, window)
        if p.spec.payee != "self":
            rel = p.spec.payee.relation
            body = p.payee_where
            node = A.Aggregate("any", rel, body, body.span if body else A.Span(p.file, 1, 1))
            col = naming.payee(p.id)
            top.aggregates[col] = AggregateNeed(
                col, node, p.typed, window, "payee", dates, params, p.lets
            )
            if body is not None:
                _member_needs(out, cat, naming, node, p.typed, window)
        for call in _top_level_calls(p):
            for name in FUNCTIONS[call.func].reads:
                add_feature(out, cat, naming, p.target, name, window)
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
    features, lists = body_reads(agg, typed)
    out[member].lists |= lists
    for name in features:
        add_feature(out, cat, naming, member, name, window)


def body_reads(agg: A.Aggregate, typed: Typed) -> tuple[list[str], set[str]]:
    """The features of the related entity and the lists an aggregate's body reads."""
    features: list[str] = []
    lists: set[str] = set()
    for n in [n for part in A.member_parts(agg) for n in A.walk(part)]:
        b = typed.bindings.get(id(n))
        if isinstance(b, FeatureRef):
            features.append(b.name)
        if isinstance(n, A.Call):
            fn = FUNCTIONS[n.func]
            if fn.names_list:
                lists.add(listed_name(n))
            features += fn.reads
    return features, lists


def body_needs(
    cat: CheckedCatalogue, member: str, items: list[AggregateNeed]
) -> dict[str, EntityNeeds]:
    """What the frame of the related entities of `items` must hold: the features and lists
    their bodies read (not what those features read in turn: their own frames do)."""
    naming = Naming(cat)
    need = EntityNeeds()
    for an in items:
        features, lists = body_reads(an.node, an.typed)
        need.lists |= lists
        for name in features:
            need.features.add((name, an.window if naming.windowed(member, name) else None))
    return {e: need if e == member else EntityNeeds() for e in cat.entities()}


def _top_level_nodes(p: CheckedPolicy) -> list[A.Node]:
    """Every node of the policy's expressions outside aggregate bodies."""
    out: list[A.Node] = []

    def visit(n: A.Node) -> None:
        out.append(n)
        if not isinstance(n, A.Aggregate):
            for c in A.children(n):
                visit(c)

    for r in p.expressions():
        visit(r)
    return out


def _top_level_calls(p: CheckedPolicy) -> list[A.Call]:
    return [n for n in _top_level_nodes(p) if isinstance(n, A.Call)]


def _top_level_names(p: CheckedPolicy) -> list[A.Name]:
    return [n for n in _top_level_nodes(p) if isinstance(n, A.Name)]


def top_level_aggregates(p: CheckedPolicy) -> list[A.Aggregate]:
    return [n for n in _top_level_nodes(p) if isinstance(n, A.Aggregate)]
