"""From a policy file to a checked policy: every expression parsed, every name resolved,
every type checked, the amount built as its typed variant (`eligibility.amounts`).

All problems of a file are collected before anything is reported, each with its
file, line, column, code (`common.errors.Code`) and a fix.  What comes out
(`CheckedPolicy`) is what every backend compiles: it names the features, relations
and lists the policy reads, so only those are computed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.errors import Code, ProblemsError, article, did_you_mean
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
from eligibility.catalogue import file_problems, sha256_text
from eligibility.check_examples import check_cases, check_scenarios
from eligibility.check_money import amounts_written, careful, payment_accounts
from eligibility.check_params import check_params, name_taken
from eligibility.checked import (
    RUN_DATES,
    CheckedCatalogue,
    CheckedCondition,
    CheckedPolicy,
    LetRef,
    RunDate,
    Scope,
)
from eligibility.functions import FUNCTIONS
from eligibility.readings import Reading, variant_reading
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker, entity_scope, owner_level
from eligibility.types import NUMERIC, comparable


def load_policy(path: Path, cat: CheckedCatalogue) -> CheckedPolicy:
    """Load, parse and type-check one policy file; every problem in it at once."""
    located = load_yaml_file(path)
    try:
        spec = PolicyFile.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(file_problems(located, exc)) from None
    return check_policy(spec, located, cat)


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
    params = check_params(c, spec, scope, reading)
    _defines(c, spec, scope)
    lets = _lets(c, spec, scope, reading, cat)
    conditions = _conditions(c, spec, scope)
    amount = _amount(c, spec, scope)
    payee_where = _payee(c, spec, scope, cat)
    accounts = payment_accounts(c, spec, cat)
    rank_by = None
    if spec.budget is not None and spec.budget.rank_by is not None:
        rank_by = c.parse(("budget", "rank_by"), spec.budget.rank_by)
        if rank_by is not None:
            c.expect(rank_by, scope, set(NUMERIC) | {"date"}, "rank_by orders claims")
    _once_per(c, spec, cat, [*lets.values(), *(x.node for x in conditions), rank_by, amount])
    _back_pay(c, spec)
    _events(c, spec)
    if cases:
        check_cases(c, spec, cat)
        check_scenarios(c, spec, cat)
    if amount is not None:
        careful(c, spec, cat, [*lets.values(), *(x.node for x in conditions), *amount.nodes()])
        amounts_written(c, amount)
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


def _defines(c: Checker, spec: PolicyFile, scope: Scope) -> None:
    """The policy's own functions: named apart from everything else, each parsed once here
    (a syntax error is reported even if nothing calls it); applied where they are called."""
    for name, d in spec.define.items():
        taken = (
            "a function"
            if name in FUNCTIONS or name in A.AGGREGATES
            else "a let"
            if name in spec.let
            else name_taken(c, name, scope)
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
        taken = name_taken(c, lname, scope)
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


def _events(c: Checker, spec: PolicyFile) -> None:
    """`events: true`: the event path decides an entity alone, first come first served
    within what remains of a budget; what needs every claim of a night at once cannot."""
    if not spec.events:
        return
    if spec.budget is not None and spec.budget.over_budget == "pro_rata":
        c.problem_at(
            ("events",),
            Code.EVENTS_NOT_ONE_AT_A_TIME,
            "events: true with a budget shared pro rata: an entity decided as its data "
            "arrives cannot know what share of the budget the night's other claims leave it",
            "use over_budget: refuse (first come, first served within what remains) or rank; "
            "or leave events out and let the nightly run pay",
        )
    if spec.once_per is not None:
        c.problem_at(
            ("events",),
            Code.EVENTS_NOT_ONE_AT_A_TIME,
            "events: true with once_per: members are counted once in the order of a night's "
            "claims, which an entity decided alone would jump",
            "leave events out and let the nightly run pay, or drop once_per",
        )


def _back_pay(c: Checker, spec: PolicyFile) -> None:
    """`back_pay` pays past periods: a policy paid once has none, and a member counted once
    (`once_per`) is counted in the order of the night's claims, which a past period's
    back-pay would reopen."""
    if spec.back_pay is None:
        return
    if spec.benefit_period == "once":
        c.problem_at(
            ("back_pay",),
            Code.BACK_PAY_ONCE,
            "back_pay: the policy is paid once (benefit_period: once), so there is no past "
            "benefit period to pay",
            "remove back_pay: a once-only policy pays whoever qualifies on any night of its "
            "validity; or give the benefit period (year, quarter, month) the text pays by",
        )
    if spec.once_per is not None:
        c.problem_at(
            ("back_pay",),
            Code.BACK_PAY_ONCE_PER,
            "back_pay with once_per: a member counted once would be counted again for a past "
            "period, after the claims of the nights since",
            "keep one of them: once_per for a grant per person, back_pay for a periodic benefit",
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
