"""From a policy file to a checked policy: every expression parsed, every name resolved,
every type checked, the amount built as its typed variant (`eligibility.amounts`).

All problems of a file are collected before anything is reported, each with its
file, line, column, code (`common.errors.Code`) and a fix.  What comes out
(`CheckedPolicy`) is what every backend compiles: it names the features, relations
and lists the policy reads, so only those are computed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.errors import Code, ProblemsError, article, did_you_mean
from common.money import parse_money, to_fen
from common.yamlsrc import Loc, Located, load_yaml_file
from eligibility import ast as A
from eligibility.amounts import (
    MONTH,
    Amount,
    Base,
    Bracket,
    Formula,
    MarginalTiers,
    Monthly,
    Rounding,
    StepTiers,
    Table,
)
from eligibility.catalogue import CASE_KEYS, file_problems, sha256_text
from eligibility.checked import (
    RUN_DATES,
    CheckedCatalogue,
    CheckedCondition,
    CheckedPolicy,
    DatedValue,
    KeyedValues,
    LetRef,
    ParamRef,
    RunDate,
    Scope,
    payee_kind,
)
from eligibility.functions import FUNCTIONS
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker, entity_scope, owner_level
from eligibility.types import NUMERIC, Type, comparable, unify


def load_policy(path: Path, cat: CheckedCatalogue) -> CheckedPolicy:
    """Load, parse and type-check one policy file; every problem in it at once."""
    located = load_yaml_file(path)
    try:
        spec = PolicyFile.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(file_problems(located, exc)) from None
    return check_policy(spec, located, cat)


@dataclass(frozen=True)
class Reading:
    """Parameters and lets set otherwise than the file sets them: a variant's, or a worked
    example's; each with where it was written."""

    label: str  # "variant province_a", "test 'a small firm'": cited as the values' reference
    params: dict[str, tuple[Loc, Any]] = field(default_factory=dict)
    lets: dict[str, tuple[Loc, str]] = field(default_factory=dict)

    def then(self, other: Reading) -> Reading:
        """This reading with `other`'s settings on top."""
        return Reading(other.label, {**self.params, **other.params}, {**self.lets, **other.lets})


def check_policy(spec: PolicyFile, located: Located, cat: CheckedCatalogue) -> CheckedPolicy:
    """Type-check a validated policy file against the feature catalogue: the reading in
    force (the file as written, or its `variant:`), and each declared variant."""
    c = Checker(located, cat)
    in_force = variant_reading(c, spec, spec.variant, ("variant",)) if spec.variant else None
    policy = _check(c, spec, cat, in_force, cases=True)
    problems, warnings = list(c.problems), list(c.warnings)
    variants = {}
    for name in spec.variants:
        vc = Checker(located, cat)
        variants[name] = _check(vc, spec, cat, variant_reading(vc, spec, name, ()), cases=False)
        base = list(c.problems)
        problems += [  # a variant's own problem says whose it is; the file's, once
            p
            if f"variant {name}" in p.message
            else replace(p, message=f"{p.message} (in variant {name})")
            for p in vc.problems
            if p not in base
        ]
        warnings += [w for w in vc.warnings if w not in warnings]
    if problems or policy is None:
        raise ProblemsError(problems)
    policy.warnings = sorted(warnings)
    policy.variants = {k: v for k, v in variants.items() if v is not None}
    return policy


def variant_reading(
    c: Checker | None, spec: PolicyFile, name: str | None, loc: Loc
) -> Reading | None:
    """The settings of a declared variant (None, with a problem at `loc`, if undeclared)."""
    variant = spec.variants.get(name or "")
    if variant is None:
        if c is None:
            return None
        c.problem_at(
            loc,
            Code.UNKNOWN_VARIANT,
            f"no variant {name!r} is declared",
            did_you_mean(str(name), sorted(spec.variants), "the variants")
            if spec.variants
            else "declare it under variants:",
        )
        return None
    at: Loc = ("variants", str(name))
    return Reading(
        f"variant {name}",
        {p: ((*at, "params", p), v) for p, v in variant.params.items()},
        {n: ((*at, "let", n), text) for n, text in variant.let.items()},
    )


def case_reading(spec: PolicyFile, index: int) -> Reading | None:
    """The reading of worked example `index`: its variant, then its own parameters."""
    case = spec.tests[index]
    if case.variant is None and not case.params:
        return None
    own = Reading(
        f"test {case.name!r}",
        {p: (("tests", index, "params", p), v) for p, v in case.params.items()},
    )
    variant = variant_reading(None, spec, case.variant, ()) if case.variant else None
    return variant.then(own) if variant else own


def scenario_reading(spec: PolicyFile, index: int) -> Reading | None:
    """The reading of scenario `index`: its variant, then its own parameters."""
    scenario = spec.scenarios[index]
    if scenario.variant is None and not scenario.params:
        return None
    own = Reading(
        f"scenario {scenario.name!r}",
        {p: (("scenarios", index, "params", p), v) for p, v in scenario.params.items()},
    )
    variant = variant_reading(None, spec, scenario.variant, ()) if scenario.variant else None
    return variant.then(own) if variant else own


def reading_policy(policy: CheckedPolicy, cat: CheckedCatalogue, reading: Reading) -> CheckedPolicy:
    """The policy under another reading (a worked example's variant and parameters), checked;
    ProblemsError if the reading does not fit the policy."""
    c = Checker(policy.located, cat)
    read = _check(c, policy.spec, cat, reading, cases=False)
    c.raise_problems()
    assert read is not None
    return read


def _check(
    c: Checker, spec: PolicyFile, cat: CheckedCatalogue, reading: Reading | None, *, cases: bool
) -> CheckedPolicy | None:
    """The policy under one reading; None (with problems recorded in `c`) if it has any."""
    if spec.target not in cat.spec.entities:
        c.problem_at(
            ("target",),
            Code.UNKNOWN_ENTITY,
            f"unknown target {spec.target!r}",
            did_you_mean(spec.target, cat.entities(), "the entities of the feature catalogue"),
        )
        return None
    base = entity_scope(cat, spec.target)
    names = dict(base.names)
    for d in RUN_DATES:
        names[d] = RunDate(d)
    scope = Scope(
        spec.target, names, base.what + ", lets, params and run dates", relations_from=spec.target
    )
    params = _params(c, spec, scope, reading)
    _defines(c, spec, scope)
    lets = _lets(c, spec, scope, reading, cat)
    conditions = _conditions(c, spec, scope)
    amount = _amount(c, spec, scope)
    payee_where = _payee(c, spec, scope, cat)
    accounts = _payment(c, spec, cat)
    rank_by = None
    if spec.budget is not None and spec.budget.rank_by is not None:
        rank_by = c.parse(("budget", "rank_by"), spec.budget.rank_by)
        if rank_by is not None:
            c.expect(rank_by, scope, set(NUMERIC) | {"date"}, "rank_by orders claims")
    _once_per(c, spec, cat, [*lets.values(), *(x.node for x in conditions), rank_by, amount])
    if cases:
        _check_cases(c, spec, cat)
        _check_scenarios(c, spec, cat)
    if amount is not None:
        _careful(c, spec, cat, [*lets.values(), *(x.node for x in conditions), *amount.nodes()])
        _amounts_written(c, amount)
    if c.problems or amount is None:
        return None
    return CheckedPolicy(
        spec,
        c.located.file,
        sha256_text(c.located.text),
        lets,
        params,
        conditions,
        amount,
        payee_where,
        rank_by,
        c.typed,
        c.located,
        c.warnings,
        reading=reading.label if reading else "",
        accounts=accounts,
    )


def _params(
    c: Checker, spec: PolicyFile, scope: Scope, reading: Reading | None
) -> dict[str, list[DatedValue]]:
    """Each parameter's dated values (literals, lists of literals or tables of them), of
    one kind and shape per parameter, dates increasing; a reading's value instead, for the
    whole validity, where it sets one."""
    params: dict[str, list[DatedValue]] = {}
    settings = dict(reading.params) if reading else {}
    for name, (at, _value) in settings.items():
        if name not in spec.params:
            c.problem_at(
                at,
                Code.UNKNOWN_SETTING,
                f"{reading.label if reading else ''} sets {name!r}, which is no parameter",
                did_you_mean(name, sorted(spec.params), "the parameters")
                if spec.params
                else "declare the parameter under params:",
            )
    for pname, values in spec.params.items():
        ptype: Type | None = None
        shape: str | None = None
        dated = []
        for i, pv in enumerate(values):
            loc: Loc = ("params", pname, i, "value")
            got = _param_value(c, loc, pv.value)
            if got is None:
                continue
            node, t, this_shape = got
            if shape is not None and this_shape != shape:
                c.problem_at(
                    loc,
                    Code.TYPE_MISMATCH,
                    f"parameter {pname!r} changes shape: a {shape}, then a {this_shape}",
                    "give every dated value of a parameter the same shape",
                )
            shape = shape or this_shape
            if ptype is not None and unify(ptype, t) is None:
                c.problem_at(
                    loc,
                    Code.TYPE_MISMATCH,
                    f"parameter {pname!r} changes kind: {ptype} then {t}",
                    "every value of a parameter is of one kind: all rates, or all amounts",
                )
            ptype = t if ptype is None else (unify(ptype, t) or ptype)
            if i and pv.from_ <= values[i - 1].from_:
                c.problem_at(
                    ("params", pname, i, "from"),
                    Code.PARAM_DATES,
                    f"parameter {pname!r}: dates must increase",
                    "list values from oldest to newest",
                )
            dated.append(DatedValue(pv.from_, node, pv.ref))
        first = min(range(len(values)), key=lambda k: values[k].from_, default=None)
        if first is not None and values[first].from_ > spec.valid.from_:
            c.problem_at(
                ("params", pname, first, "from"),
                Code.PARAM_NO_VALUE,
                f"parameter {pname!r} has no value from the policy's first day "
                f"({spec.valid.from_}) until {values[first].from_}",
                f"give its first value from {spec.valid.from_}, or start the policy "
                f"(valid.from) on {values[first].from_}",
            )
        taken = _taken(c, pname, scope)
        if taken is not None:
            c.problem_at(
                ("params", pname),
                Code.NAME_CLASH,
                f"parameter {pname!r} hides {taken} of the same name",
                "rename the parameter",
            )
        if pname in settings and ptype is not None:
            at, value = settings[pname]
            got = _param_value(c, at, value)
            if got is not None and (got[2] != shape or unify(ptype, got[1]) is None):
                c.problem_at(
                    at,
                    Code.TYPE_MISMATCH,
                    f"{pname!r} is set to a {got[1]} {got[2]}, where the file gives a {ptype} {shape}",
                    "set a value of the kind and shape the file gives",
                )
            elif got is not None and reading is not None:
                dated = [DatedValue(spec.valid.from_, got[0], reading.label)]
        if ptype is not None and shape is not None:
            scope.names[pname] = ParamRef(pname, ptype, shape)  # type: ignore[arg-type]
            params[pname] = dated
            c.param_nodes[pname] = [d.node for d in dated if isinstance(d.node, A.Node)]
    return params


def _param_literal(c: Checker, loc: Loc, value: Any) -> tuple[A.Node, Type] | None:
    """One value of a parameter: a literal as written (60%, 1500 yuan, 2026-01-01, true), or
    text (a code such as H or 3301, quoted or not)."""
    if isinstance(value, list | dict):
        c.problem_at(
            loc,
            Code.TYPE_MISMATCH,
            "a parameter's list or table holds plain values",
            "write values: [H, O, R]",
        )
        return None
    node = c.parse(loc, value)
    if node is not None and not isinstance(node, A.Literal) and isinstance(value, str):
        line, col = c.located.value_at(loc)
        node = A.Literal(value, "", A.Span(c.located.file, line, col, value))
    if node is None:
        return None
    t = c.check(node, Scope(None, {}, "literals only"))
    return (node, t) if t is not None else None


def _param_value(c: Checker, loc: Loc, value: Any) -> tuple[A.Node | KeyedValues, Type, str] | None:
    """A dated value of a parameter, its type and its shape (value, list or table)."""
    if isinstance(value, list):
        items = [_param_literal(c, (*loc, k), v) for k, v in enumerate(value)]
        if not items or any(x is None for x in items):
            if not items:
                c.problem_at(loc, Code.TYPE_MISMATCH, "an empty list", "give at least one value")
            return None
        nodes = [x[0] for x in items if x is not None]
        types = {x[1] for x in items if x is not None}
        if len(types) > 1 and unify(*sorted(types)[:2]) is None:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                f"a list mixes {', '.join(sorted(types))}",
                "give values of one kind",
            )
            return None
        first = nodes[0].span
        return A.ListLit(tuple(nodes), first), sorted(types)[0], "list"
    if isinstance(value, dict):
        if not value:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                "an empty table",
                'give a value per key, as in {"3301": 100 yuan, default: 80 yuan}',
            )
            return None
        entries: list[tuple[str, A.Node]] = []
        default: A.Node | None = None
        types = set()
        for key, v in value.items():
            got = _param_literal(c, (*loc, key), v)
            if got is None:
                return None
            types.add(got[1])
            if key == "default":
                default = got[0]
            else:
                entries.append((str(key), got[0]))
        if len(types) > 1:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                f"a table mixes {', '.join(sorted(types))}",
                "give values of one kind",
            )
            return None
        return KeyedValues(tuple(entries), default), types.pop(), "table"
    got = _param_literal(c, loc, value)
    return None if got is None else (got[0], got[1], "value")


def _defines(c: Checker, spec: PolicyFile, scope: Scope) -> None:
    """The policy's own functions: named apart from everything else, each parsed once here
    (a syntax error is reported even if nothing calls it); applied where they are called."""
    for name, d in spec.define.items():
        taken = (
            "a function"
            if name in FUNCTIONS or name in A.AGGREGATES
            else "a let"
            if name in spec.let
            else _taken(c, name, scope)
        )
        if taken is not None:
            c.problem_at(
                ("define", name),
                Code.NAME_CLASH,
                f"{name!r} is already the name of {taken}",
                "choose another name",
            )
            continue
        c.defines[name] = d
    for name in c.defines:
        d = c.defines[name]
        if d.expr is not None:
            earlier = list(c.defines)[: list(c.defines).index(name)]
            c.parse(("define", name, "expr"), d.expr, earlier)


def _taken(c: Checker, name: str, scope: Scope) -> str | None:
    """What `name` already names where a policy's expressions read it: a feature of the
    target, a run date, a parameter, a let, or a relation of the catalogue; None if free."""
    binding = scope.names.get(name)
    if isinstance(binding, RunDate):
        return "a run date"
    if isinstance(binding, ParamRef):
        return "a parameter"
    if isinstance(binding, LetRef):
        return "a let"
    if binding is not None:
        return "a feature"
    if c.catalogue is not None and name in c.catalogue.spec.relations:
        return "a relation"
    return None


def _lets(
    c: Checker, spec: PolicyFile, scope: Scope, reading: Reading | None, cat: CheckedCatalogue
) -> dict[str, A.Node]:
    """Each `let`, typed in the scope of the ones before it; a reading's expression instead
    where it sets one."""
    lets: dict[str, A.Node] = {}
    settings = dict(reading.lets) if reading else {}
    for name, (at, _text) in settings.items():
        if name not in spec.let:
            c.problem_at(
                at,
                Code.UNKNOWN_SETTING,
                f"{reading.label if reading else ''} sets {name!r}, which is no let of the policy",
                did_you_mean(name, sorted(spec.let), "the lets")
                if spec.let
                else "declare it under let:",
            )
    for lname, text in spec.let.items():
        loc, text = settings.get(lname, (("let", lname), text))
        node = c.parse(loc, text)
        taken = _taken(c, lname, scope)
        if taken is not None:
            c.problem_at(
                ("let", lname),
                Code.NAME_CLASH,
                f"{lname!r} is already the name of {taken}",
                "choose another name",
            )
        if node is None:
            continue
        t = c.check(node, scope)
        if t is not None:
            scope.names[lname] = LetRef(lname, t)
            lets[lname] = node
            if owner_level(node, c.typed, cat, spec.target, c.owner_lets):
                c.owner_lets[lname] = node
    return lets


# A policy's condition results are kept as the bits of one Int64 (the mask), and a
# first-hit table or tiers compile to one when/then chain: limits no real policy nears.
MAX_CONDITIONS = 63
MAX_ROWS = 200


def _conditions(c: Checker, spec: PolicyFile, scope: Scope) -> list[CheckedCondition]:
    """The eligibility conditions, each a condition, their ids unique."""
    if len(spec.eligible) > MAX_CONDITIONS:
        c.problem_at(
            ("eligible", MAX_CONDITIONS),
            Code.TOO_COMPLEX,
            f"a policy has at most {MAX_CONDITIONS} conditions, this one {len(spec.eligible)}",
            "join related conditions with `and` into one, or split the policy",
        )
    conditions = []
    seen: dict[str, int] = {}
    for i, cond in enumerate(spec.eligible):
        if cond.id in seen:
            c.problem_at(
                ("eligible", i, "id"),
                Code.DUPLICATE_ID,
                f"condition id {cond.id!r} is used twice (first at condition {seen[cond.id] + 1})",
                "give each condition its own id",
            )
        seen.setdefault(cond.id, i)
        node = c.parse(("eligible", i, "when"), cond.when)
        if node is not None and c.expect(
            node, scope, {"bool"}, "a condition must be true or false"
        ):
            conditions.append(CheckedCondition(cond.id, node, cond.ref, cond.text))
    return conditions


def _payee(c: Checker, spec: PolicyFile, scope: Scope, cat: CheckedCatalogue) -> A.Node | None:
    """The payee's `where`, over a relation from the target to a person (None: the entity)."""
    if spec.payee == "self":
        if not cat.payable(spec.target):
            payees = [
                n
                for n, r in cat.spec.relations.items()
                if r.from_ == spec.target and cat.payable(r.to)
            ]
            c.problem_at(
                ("target",),
                Code.NOT_PAYABLE,
                f"money cannot be paid to {article(spec.target)}: features.yaml does not "
                "declare its kind payable",
                "name who is paid: payee: {relation: "
                + (payees[0] if payees else "<a relation to a person or an enterprise>")
                + ", where: <condition>}",
            )
        return None
    rel = cat.spec.relations.get(spec.payee.relation)
    if rel is None or rel.from_ != spec.target or not cat.payable(rel.to):
        known = [
            n for n, r in cat.spec.relations.items() if r.from_ == spec.target and cat.payable(r.to)
        ]
        c.problem_at(
            ("payee", "relation"),
            Code.UNKNOWN_RELATION,
            f"{spec.payee.relation!r} is no relation from {article(spec.target)} to someone "
            "who can be paid",
            did_you_mean(spec.payee.relation, known, "relations to a payable entity")
            if known
            else f"declare one in features.yaml, from {article(spec.target)} to a payable entity",
        )
        return None
    if spec.payee.where is None:
        return None
    payee_where = c.parse(("payee", "where"), spec.payee.where)
    if payee_where is not None:
        c.check(A.Aggregate("any", spec.payee.relation, payee_where, payee_where.span), scope)
    return payee_where


def _once_per(
    c: Checker, spec: PolicyFile, cat: CheckedCatalogue, roots: list[A.Node | Amount | None]
) -> None:
    """`once_per` names a relation from the target that the policy counts exactly once, with
    count() or sum(): the members that aggregate counts are those the ledger records."""
    rule = spec.once_per
    if rule is None:
        return
    rel = cat.spec.relations.get(rule.relation)
    if rel is None or rel.from_ != spec.target:
        known = sorted(n for n, r in cat.spec.relations.items() if r.from_ == spec.target)
        c.problem_at(
            ("once_per", "relation"),
            Code.UNKNOWN_RELATION,
            f"{rule.relation!r} is no relation from {article(spec.target)}",
            did_you_mean(rule.relation, known, "relations from " + article(spec.target)),
        )
        return
    nodes: list[A.Node] = []
    for root in roots:
        if isinstance(root, Amount):
            nodes += root.nodes()
        elif root is not None:
            nodes.append(root)
    found: list[A.Aggregate] = []

    def visit(n: A.Node) -> None:
        if isinstance(n, A.Aggregate):
            if n.relation == rule.relation and all(n is not f for f in found):
                found.append(n)
            return
        for child in A.children(n):
            visit(child)

    for n in nodes:
        visit(n)
    if len(found) == 1 and found[0].func in ("count", "sum"):
        return
    if not found:
        what = f"the policy does not read {rule.relation!r}"
    elif len(found) > 1:
        what = f"the policy reads {rule.relation!r} in {len(found)} places"
    else:
        what = f"the policy reads {rule.relation!r} with {found[0].func}(), which counts no one"
    c.problem_at(
        ("once_per", "relation"),
        Code.ONCE_PER_RELATION,
        f"once_per {rule.relation!r}: {what}; the members that count once are those one "
        "count() or sum() over it counts",
        f"count them once in a let, e.g. counted: count({rule.relation}, <condition>), "
        "and use the let wherever it is needed",
    )


def _amount(c: Checker, spec: PolicyFile, scope: Scope) -> Amount | None:
    """The amount as its typed variant; None (with problems recorded) if it has none."""
    am = spec.amount

    def money(loc: Loc, value: Any, what: str) -> A.Node | None:
        node = c.parse(loc, value)
        if node is None:
            return None
        t = c.check(node, scope)
        if t is not None and t not in ("money", "null"):
            c.problem(
                node,
                Code.AMOUNT_NOT_MONEY,
                f"{what} must be money, found {t}",
                "write the unit: 1500 yuan, or multiply a money feature",
            )
            return None
        return node

    base: Base | None = None
    if am.formula is not None:
        formula = money(("amount", "formula"), am.formula, "the amount")
        base = Formula(formula) if formula is not None else None
    elif am.tiers is not None:
        base = _tiers(c, spec, scope, money)
    elif am.monthly is not None:
        if spec.benefit_period == "once":
            c.problem_at(
                ("amount", "monthly"),
                Code.PRORATE_PERIOD,
                "a monthly amount sums the months of the benefit period, which `once` has not",
                "set benefit_period: year, quarter or month",
            )
        with_month = Scope(
            scope.entity,
            {**scope.names, MONTH: RunDate(MONTH)},
            scope.what + ", month (each month's first day)",
            relations_from=scope.relations_from,
        )
        node = c.parse(("amount", "monthly"), am.monthly)
        t = c.check(node, with_month) if node is not None else None
        if node is not None and t is not None and t not in ("money", "null"):
            c.problem(
                node,
                Code.AMOUNT_NOT_MONEY,
                f"a month's amount must be money, found {t}",
                "write the unit: 300 yuan if age_on(month) >= 90 else 100 yuan",
            )
        base = Monthly(node) if node is not None and t in ("money", "null") else None
    else:
        _at_most(c, ("amount", "table"), len(am.table or []), "table rows")
        rows = []
        for i, row in enumerate(am.table or []):
            when = c.parse(("amount", "table", i, "when"), row.when)
            if when is not None:
                c.expect(when, scope, {"bool"}, "a table row's when")
            value = money(("amount", "table", i, "amount"), row.amount, "a table row's amount")
            if when is not None and value is not None:
                rows.append((when, value))
        otherwise = None
        if am.otherwise is not None:
            otherwise = money(("amount", "otherwise"), am.otherwise, "otherwise")
        base = Table(tuple(rows), otherwise)
    bounds: dict[str, A.Node | None] = {"from": None, "until": None}
    if am.prorate is not None:
        for key, raw in (("from", am.prorate.from_), ("until", am.prorate.until)):
            if raw is not None:
                node = c.parse(("amount", "prorate", key), raw)
                if node is not None:
                    c.expect(node, scope, {"date"}, "a proration bound")
                bounds[key] = node
        if spec.benefit_period in ("once", "month"):
            c.problem_at(
                ("amount", "prorate"),
                Code.PRORATE_PERIOD,
                f"proration by month needs a benefit period of year or quarter, not {spec.benefit_period}",
                "set benefit_period: year or quarter, or leave out prorate",
            )
    cap = money(("amount", "cap"), am.cap, "the cap") if am.cap is not None else None
    if base is None:
        return None
    rounding = (
        Rounding(am.round) if isinstance(am.round, str) else Rounding(am.round.to, am.round.mode)
    )
    return Amount(base, bounds["from"], bounds["until"], cap, rounding)


def _careful(c: Checker, spec: PolicyFile, cat: CheckedCatalogue, roots: list[A.Node]) -> None:
    """What a careful officer wants pointed out: a money literal below a fen (an error), a
    rate over 100% and money times a bare number that reads like a percentage (warnings),
    and a payee who may have no bank account when the policy does not say what then."""
    nodes = [n for root in roots for n in A.walk(root)]
    for n in nodes:
        if isinstance(n, A.Literal):
            _literal_written(c, n)
        elif isinstance(n, A.Binary) and n.op == "*":
            for money, bare in ((n.left, n.right), (n.right, n.left)):
                computed = c.typed.types.get(id(money)) == "money" and not isinstance(
                    money, A.Literal
                )
                if computed and _bare_percentish(bare):
                    c.warn(
                        bare,
                        Code.BARE_MULTIPLIER,
                        f"money times the bare number {bare.span.text}: {bare.span.text} times the amount",
                        f"if a rate is meant, write {bare.span.text}%",
                    )
    _unbanked(c, spec, cat, nodes)


def _literal_written(c: Checker, n: A.Literal) -> None:
    """Money below a fen (an error) and a rate over 100% (a warning), as written."""
    if not isinstance(n.value, Decimal):
        return
    if n.unit in ("yuan", "fen"):
        fen = to_fen(n.value, n.unit)
        if fen != fen.to_integral_value():
            c.problem(
                n,
                Code.AMOUNT_WRITTEN_WRONG,
                f"{n.span.text} is not a whole number of fen",
                "money is paid in whole fen: write at most two decimals of yuan",
            )
    elif "%" in n.span.text and n.value > 1:
        c.warn(
            n,
            Code.RATE_OVER_100,
            f"{n.span.text} is a rate over 100%",
            "check the rate against the policy text; write it as the text says",
        )


def _bare_percentish(node: A.Node) -> bool:
    """A number written without % or unit that reads like a percentage: 5 to 100 in steps
    of 5 (`premium * 50`); a count of months or quarters (12, 3) does not."""
    return (
        isinstance(node, A.Literal)
        and node.unit == ""
        and isinstance(node.value, Decimal)
        and "%" not in node.span.text
        and 5 <= node.value <= 100
        and node.value % 5 == 0
    )


BANK_FEATURE = "has_bank_account"


def _payment(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> tuple[str, ...]:
    """The payee's accounts the policy pays to, in order of preference: `payment: {account:
    a}` or `coalesce(a, b, ...)`; the catalogue's first account of the payee if not said."""
    kind = payee_kind(spec, cat)
    if kind is None or kind not in cat.spec.entities:
        return ()  # refused as such
    declared = list(cat.spec.entities[kind].accounts)
    if spec.payment is None:
        return tuple(declared[:1])
    loc: Loc = ("payment", "account")
    node = c.parse(loc, spec.payment.account)
    if node is None:
        return ()
    if isinstance(node, A.Name):
        names: tuple[A.Node, ...] = (node,)
    elif isinstance(node, A.Call) and node.func == "coalesce" and node.args:
        names = node.args
    else:
        names = ()
    if not names or not all(isinstance(n, A.Name) for n in names):
        c.problem(
            node,
            Code.UNKNOWN_ACCOUNT,
            "payment: account is one account's name, or coalesce() of several",
            f"write, as in account: coalesce({', '.join(declared) or 'basic, other'}): the "
            "first of them on file is paid",
        )
        return ()
    chosen = []
    for n in names:
        assert isinstance(n, A.Name)
        if n.name not in declared:
            c.problem(
                n,
                Code.UNKNOWN_ACCOUNT,
                f"{article(kind)} has no account {n.name!r}",
                did_you_mean(n.name, declared, f"the {kind}'s accounts")
                if declared
                else f"declare the {kind}s' accounts under entities: {kind}: accounts: in "
                "features.yaml",
            )
        elif n.name not in chosen:
            chosen.append(n.name)
    return tuple(chosen)


def _unbanked(c: Checker, spec: PolicyFile, cat: CheckedCatalogue, nodes: list[A.Node]) -> None:
    payee = payee_kind(spec, cat)
    if payee is None:
        return  # refused as such
    if spec.unbanked is not None or BANK_FEATURE not in cat.features_of(payee):
        return
    if any(isinstance(n, A.Name) and n.name == BANK_FEATURE for n in nodes):
        return
    payee_where = spec.payee.where if spec.payee != "self" else None
    if payee_where is not None and BANK_FEATURE in payee_where:
        return
    c.warn_at(
        ("payee",) if spec.payee != "self" else ("eligible",),
        Code.UNBANKED_PAYEE,
        "a payee may have no bank account on record, and the policy does not say what then",
        f"add the condition {BANK_FEATURE}, or `unbanked: hold` (the entitlement stays "
        "payable until an account is on record)",
    )


def _amounts_written(c: Checker, amount: Amount) -> None:
    """An amount written out as a negative number is an error; so are tier brackets whose
    bounds, written out, are reversed or overlap."""
    base = amount.base
    written: list[A.Node] = []
    if isinstance(base, Formula):
        written = [base.expr]
    elif isinstance(base, Table):
        written = [v for _w, v in base.rows] + ([base.otherwise] if base.otherwise else [])
    elif isinstance(base, StepTiers):
        written = [b.value for b in base.brackets]
    for node in written:
        if isinstance(node, A.Literal) and isinstance(node.value, Decimal) and node.value < 0:
            c.problem(
                node,
                Code.AMOUNT_WRITTEN_WRONG,
                f"the amount {node.span.text} is negative: nothing would be paid",
                "write the amount paid, 0 yuan or more; take money back with a correction",
            )
    if isinstance(base, StepTiers | MarginalTiers):
        _brackets_in_order(c, base.brackets)


def _bound(node: A.Node | None) -> Decimal | None:
    if isinstance(node, A.Literal) and isinstance(node.value, Decimal):
        return to_fen(node.value, node.unit) if node.unit else node.value
    return None


def _brackets_in_order(c: Checker, brackets: tuple[Bracket, ...]) -> None:
    low = Decimal("-Infinity")
    spans: list[tuple[Decimal, Decimal, Bracket]] = []
    for b in brackets:
        lo, hi = _bound(b.low), _bound(b.high)
        if (b.low is not None and lo is None) or (b.high is not None and hi is None):
            return  # bounds computed per entity: nothing to compare in the file
        start = lo if lo is not None else low
        end = hi if hi is not None else Decimal("Infinity")
        if start >= end:
            c.problem(
                b.low or b.value,
                Code.BRACKETS_OVERLAP,
                "a bracket's `from` is not below its `to`: no value falls in it",
                "write each bracket as from (included) below to (excluded)",
            )
            continue
        for other_start, other_end, other in spans:
            if start < other_end and other_start < end:
                c.problem(
                    b.low or b.value,
                    Code.BRACKETS_OVERLAP,
                    f"this bracket overlaps the one on line {(other.low or other.value).span.line}",
                    "brackets do not overlap: each value falls in one bracket at most",
                )
                break
        spans.append((start, end, b))


def _at_most(c: Checker, loc: Loc, n: int, what: str) -> None:
    if n > MAX_ROWS:
        c.problem_at(
            (*loc, MAX_ROWS),
            Code.TOO_COMPLEX,
            f"an amount has at most {MAX_ROWS} {what}, this one {n}",
            "a schedule that long belongs in a source table the catalogue delivers",
        )


def _tiers(c: Checker, spec: PolicyFile, scope: Scope, money: Any) -> Base | None:
    """Step or marginal tiers: bounds of the `by` value's kind, an amount or a rate each."""
    tiers = spec.amount.tiers
    assert tiers is not None
    _at_most(c, ("amount", "tiers", "brackets"), len(tiers.brackets), "brackets")
    by = c.parse(("amount", "tiers", "by"), tiers.by)
    by_t = c.check(by, scope) if by is not None else None
    brackets = []
    for i, br in enumerate(tiers.brackets):
        loc: Loc = ("amount", "tiers", "brackets", i)
        bounds: list[A.Node | None] = []
        for key, raw in (("from", br.from_), ("to", br.to)):
            if raw is None:
                bounds.append(None)
                continue
            node = c.parse((*loc, key), raw)
            t = c.check(node, scope) if node is not None else None
            if node is not None and t is not None and by_t is not None and not comparable(t, by_t):
                c.problem(
                    node,
                    Code.TYPE_MISMATCH,
                    f"a bracket bound is {t} but tiers are by {by_t}",
                    f"write the bounds as {by_t} values, as `by` gives",
                )
            bounds.append(node)
        if tiers.mode == "step":
            if br.amount is None:
                c.problem_at(
                    loc,
                    Code.BRACKET_INCOMPLETE,
                    "a step bracket needs amount",
                    "add amount: 100 yuan",
                )
                continue
            value = money((*loc, "amount"), br.amount, "a bracket's amount")
        else:
            if br.rate is None:
                c.problem_at(
                    loc, Code.BRACKET_INCOMPLETE, "a marginal bracket needs rate", "add rate: 5%"
                )
                continue
            value = c.parse((*loc, "rate"), br.rate)
            if value is not None:
                c.expect(value, scope, {"number", "count"}, "a rate")
            if by_t not in ("money", None):
                c.problem_at(
                    ("amount", "tiers", "by"),
                    Code.MARGINAL_NOT_MONEY,
                    "marginal tiers apply rates to money",
                    "tier by a money feature",
                )
        if value is not None:
            brackets.append(Bracket(bounds[0], bounds[1], value))
    if by is None:
        return None
    kind = StepTiers if tiers.mode == "step" else MarginalTiers
    return kind(by, tuple(brackets))


def _check_cases(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> None:
    """Worked examples give known features and expect known reasons (run by `cases`)."""
    features = cat.features_of(spec.target)
    relations = {n for n, r in cat.spec.relations.items() if r.from_ == spec.target}
    cond_ids = [x.id for x in spec.eligible] + ["payee", "amount_unknown", "amount_zero"]
    for i, case in enumerate(spec.tests):
        if case.variant is not None:
            variant_reading(c, spec, case.variant, ("tests", i, "variant"))
        for key in case.given:
            if key not in features and key not in relations and key not in CASE_KEYS:
                c.problem_at(
                    ("tests", i, "given", key),
                    Code.CASE_UNKNOWN_FEATURE,
                    f"test {case.name!r} gives {key!r}, which is no feature of {article(spec.target)}",
                    did_you_mean(key, sorted({*features, *relations, "lists"}), "features"),
                )
        paid_to = case.expect.account
        kind = payee_kind(spec, cat)
        declared = list(cat.spec.entities[kind].accounts) if kind in cat.spec.entities else []
        if paid_to is not None and paid_to != "none" and paid_to not in declared:
            c.problem_at(
                ("tests", i, "expect", "account"),
                Code.UNKNOWN_ACCOUNT,
                f"test {case.name!r} expects account {paid_to!r}, which {article(str(kind))} "
                "does not have",
                did_you_mean(paid_to, [*declared, "none"], "the accounts"),
            )
        if case.expect.reason is not None and case.expect.reason not in cond_ids:
            c.problem_at(
                ("tests", i, "expect", "reason"),
                Code.CASE_UNKNOWN_REASON,
                f"test {case.name!r} expects reason {case.expect.reason!r}, which is no condition id",
                did_you_mean(case.expect.reason, cond_ids, "condition ids"),
            )
        if case.expect.eligible and case.expect.amount is None and case.expect.amount_yuan is None:
            c.problem_at(
                ("tests", i, "expect"),
                Code.CASE_NO_AMOUNT,
                f"test {case.name!r} expects eligibility but no amount",
                "add amount: 9000 yuan",
            )


# A transfer's effect on what its key holds: a grant adds, a reversal or clawback takes
# away, an adjustment does either (the ledger posts each with a positive amount between
# the budget and the payee's accounts; a scenario writes the effect, signed).
_TRANSFER_SIGN = {"grant": 1, "reversal": -1, "clawback": -1, "adjustment": 0}


def _check_scenarios(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> None:
    """Scenarios give known features, expect known reasons, run in date order within the
    policy's validity, each expecting something, and total over benefit periods the policy
    has; the amounts they expect are money, transfers signed as their kind moves money."""
    features = cat.features_of(spec.target)
    relations = {n for n, r in cat.spec.relations.items() if r.from_ == spec.target}
    known = sorted({*features, *relations, "lists"})
    cond_ids = [x.id for x in spec.eligible] + ["payee", "amount_unknown", "amount_zero"]
    valid = spec.valid
    for i, sc in enumerate(spec.scenarios):
        at: Loc = ("scenarios", i)
        label = f"scenario {sc.name!r}"
        if sc.variant is not None:
            variant_reading(c, spec, sc.variant, (*at, "variant"))
        givens: list[tuple[Loc, dict[str, Any]]] = [((*at, "given"), sc.given)]
        givens += [((*at, "runs", k, "given"), r.given) for k, r in enumerate(sc.runs)]
        for loc, given in givens:
            for key in given:
                if key not in features and key not in relations and key != "lists":
                    c.problem_at(
                        (*loc, key),
                        Code.CASE_UNKNOWN_FEATURE,
                        f"{label} gives {key!r}, which is no feature of {article(spec.target)}",
                        did_you_mean(key, known, "features"),
                    )
        before = None
        for k, run in enumerate(sc.runs):
            rat: Loc = (*at, "runs", k)
            what = f"{label}, run {k + 1} ({run.as_of})"
            if before is not None and run.as_of < before:
                c.problem_at(
                    (*rat, "as_of"),
                    Code.SCENARIO_WRONG,
                    f"{what} comes before the run above it ({before})",
                    "give the runs in the order of their dates, as the nights follow each other",
                )
            before = run.as_of
            if run.as_of < valid.from_ or (valid.until is not None and run.as_of > valid.until):
                until = f" until {valid.until}" if valid.until else ""
                c.problem_at(
                    (*rat, "as_of"),
                    Code.SCENARIO_WRONG,
                    f"{what} is outside the policy's validity (from {valid.from_}{until}): "
                    "no night would decide it",
                    "give a date on which the policy is valid",
                )
            exp = run.expect
            if (
                exp.eligible is None
                and exp.reason is None
                and exp.payee is None
                and exp.amount is None
                and exp.transfers is None
            ):
                c.problem_at(
                    (*rat, "expect"),
                    Code.SCENARIO_WRONG,
                    f"{what} expects nothing",
                    "say what the run should leave: amount: 1000 yuan, and transfers: "
                    "[{kind: grant, amount: 1000 yuan}]",
                )
            if exp.reason is not None and exp.reason not in cond_ids:
                c.problem_at(
                    (*rat, "expect", "reason"),
                    Code.CASE_UNKNOWN_REASON,
                    f"{what} expects reason {exp.reason!r}, which is no condition id",
                    did_you_mean(exp.reason, cond_ids, "condition ids"),
                )
            if exp.amount is not None:
                fen = _scenario_money(c, (*rat, "expect", "amount"), exp.amount, what)
                if fen is not None and fen < 0:
                    c.problem_at(
                        (*rat, "expect", "amount"),
                        Code.SCENARIO_WRONG,
                        f"{what} expects the ledger to hold {exp.amount}, less than nothing",
                        "amount is what the key holds after the run; a decrease is a "
                        "transfer: transfers: [{kind: adjustment, amount: -400 yuan}]",
                    )
            for t, tr in enumerate(exp.transfers or []):
                tat: Loc = (*rat, "expect", "transfers", t, "amount")
                fen = _scenario_money(c, tat, tr.amount, what)
                sign = _TRANSFER_SIGN[tr.kind]
                if fen is None:
                    continue
                if fen == 0 or fen * sign < 0:
                    c.problem_at(
                        tat,
                        Code.SCENARIO_WRONG,
                        f"{what} expects a {tr.kind} of {tr.amount}: "
                        + (
                            "a transfer moves some money"
                            if fen == 0
                            else f"a {tr.kind} {'adds to' if sign > 0 else 'takes from'} "
                            "what the key holds"
                        ),
                        "write the transfer's effect on what the entity holds: a grant or an "
                        "increase positive, a decrease, reversal or clawback negative",
                    )
        for t, total in enumerate(sc.totals):
            tloc: Loc = (*at, "expect_total") + ((t,) if isinstance(sc.expect_total, list) else ())
            _scenario_money(c, (*tloc, "amount"), total.amount, label)
            period = str(total.period)
            if not _total_period(spec.benefit_period, period):
                c.problem_at(
                    (*tloc, "period"),
                    Code.SCENARIO_WRONG,
                    f"{label} totals over {period!r}, which is no benefit period of a policy "
                    f"paid per {spec.benefit_period}",
                    _TOTAL_FIX[spec.benefit_period],
                )


def _scenario_money(c: Checker, loc: Loc, value: Any, what: str) -> int | None:
    """An amount a scenario expects, in fen; None, with a problem at `loc`, if not money."""
    try:
        return parse_money(value)
    except ValueError as exc:
        c.problem_at(
            loc,
            Code.SCENARIO_WRONG,
            f"{what}: {exc}",
            "write money with its unit: 1000 yuan, or 12.50 yuan",
        )
        return None


_TOTAL_FIX = {
    "once": "a policy paid once totals over once: period: once",
    "year": "give the year: period: 2026",
    "quarter": "give a year (2026, its quarters summed) or a quarter (2026-Q2)",
    "month": "give a year (2026, its months summed) or a month (2026-03)",
}
_PERIOD_OF_KIND = {
    "year": re.compile(r"^[0-9]{4}$"),
    "quarter": re.compile(r"^[0-9]{4}(-Q[1-4])?$"),
    "month": re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$"),
}


def _total_period(kind: str, period: str) -> bool:
    """Whether a scenario may total over `period` for a policy paid per `kind`: `once` for a
    policy paid once, else a year or one of the policy's own benefit periods."""
    if kind == "once":
        return period == "once"
    return bool(_PERIOD_OF_KIND[kind].match(period))
