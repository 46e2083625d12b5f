"""Checking an officer's worked examples and scenarios before they are run: the features
they give, the reasons, accounts and transfers they expect, their dates and totals."""

from __future__ import annotations

import re
from typing import Any

from common.errors import Code, article, did_you_mean
from common.money import parse_money
from common.yamlsrc import Loc
from eligibility.catalogue import CASE_KEYS
from eligibility.checked import (
    CheckedCatalogue,
    payee_kind,
)
from eligibility.readings import variant_reading
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker


def check_cases(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> None:
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


def check_scenarios(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> None:
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
