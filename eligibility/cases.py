"""Running the officers' own test cases through the real compiled policy.

A case gives feature values (money in yuan unless written with a unit), the
lists an entity is on, and for relations the related people's features; it
expects eligibility, an amount, the reason for a refusal, or the payee.  The
case is evaluated by the same Polars plan that pays, on a one-row frame.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from common.errors import Code, Problem, ProblemsError
from common.money import FEN_PER_YUAN, format_yuan, parse_money
from eligibility import ast as A
from eligibility.backends.polars.expr import compile_expr
from eligibility.backends.polars.policy import (
    aggregate_expressions,
    evaluate_frame,
    policy_context,
)
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.explain import condition_text
from eligibility.plan import Naming, needs, run_dates
from eligibility.schema import Case


@dataclass
class CaseResult:
    """The outcome of one case: passed, and what was expected and found."""

    policy: str
    name: str
    passed: bool
    expected: dict[str, Any]
    actual: dict[str, Any]
    given: dict[str, Any]
    decided_by: str
    line: int

    def render(self, file: str) -> str:
        """A failing case: the given values, expected and actual, and the deciding condition."""
        mark = "ok  " if self.passed else "FAIL"
        head = f"{mark} {self.policy}: {self.name}"
        if self.passed:
            return head
        given = ", ".join(f"{k}={v}" for k, v in self.given.items())
        return (
            f"{head}\n  {file}:{self.line}\n  given:    {given}\n"
            f"  expected: {_show(self.expected)}\n  actual:   {_show(self.actual)}\n"
            f"  decided by: {self.decided_by}"
        )


def _show(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _convert(ftype: str, unit: str | None, value: Any) -> Any:
    if value is None:
        return None
    if ftype == "money":
        fen = parse_money(value)
        return fen if unit != "yuan" else Decimal(fen) / FEN_PER_YUAN
    if ftype == "count":
        whole = isinstance(value, int) or (
            isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value)
        )
        if isinstance(value, bool) or not whole:
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    if ftype == "number":
        if isinstance(value, str) and value.strip().endswith("%"):
            return Decimal(value.strip()[:-1]) / 100
        return Decimal(str(value))
    if ftype == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if ftype == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    return str(value)


_DTYPES: dict[str, Any] = {
    "money": pl.Int64,
    "count": pl.Int64,
    "number": pl.Decimal(38, 10),
    "date": pl.Date,
    "bool": pl.Boolean,
    "text": pl.String,
}


def _frame(
    entity: str,
    rows: list[dict[str, Any]],
    cat: CheckedCatalogue,
    naming: Naming,
    window: Any,
    lists: set[str],
) -> pl.DataFrame:
    features = cat.features_of(entity)
    columns: dict[str, pl.Series] = {}
    for name, f in features.items():
        dtype = _DTYPES[f.type]
        if f.type == "money" and f.unit == "yuan":
            dtype = pl.Decimal(38, 10)
        values = [_convert(f.type, f.unit, r.get(name)) for r in rows]
        columns[naming.feature(entity, name, window)] = pl.Series(values, dtype=dtype)
    for name in lists:
        columns[Naming.listed(name)] = pl.Series(
            [name in r.get("lists", []) for r in rows], dtype=pl.Boolean
        )
    columns[Naming.sk(entity)] = pl.Series(range(1, len(rows) + 1), dtype=pl.Int32)
    columns["entity_id"] = pl.Series(
        [str(r.get("id", f"{entity}-{i + 1}")) for i, r in enumerate(rows)], dtype=pl.String
    )
    return pl.DataFrame(columns)


def run_case(
    policy: CheckedPolicy, case: Case, index: int, cat: CheckedCatalogue, default_as_of: dt.date
) -> CaseResult:
    """Evaluate one case with the compiled policy and compare with what it expects."""
    as_of = case.as_of or default_as_of
    naming = Naming(cat)
    window = run_dates(policy, as_of).window
    all_needs = needs([policy], cat, as_of)
    need = all_needs[policy.target]
    line = policy.located.at(("tests", index))[0]
    given = dict(case.given)
    lists = set(need.lists) | set(given.get("lists", []))
    frame = _frame(policy.target, [given], cat, naming, window, lists)
    for col, an in need.aggregates.items():
        rel = cat.relation(an.node.relation)
        members = given.get(an.node.relation, [])
        member_need = all_needs[rel.to]
        mlists = set(member_need.lists) | {x for m in members for x in m.get("lists", [])}
        mframe = _frame(rel.to, members, cat, naming, window, mlists) if members else None
        if mframe is None:
            value = pl.DataFrame({col: [None]}).with_columns(
                pl.col(col).cast(pl.String if an.kind == "payee" else pl.Int64)
            )
        else:
            links = mframe.with_columns(
                pl.lit(1, dtype=pl.Int32).alias("_owner"),
                *[pl.Series(Naming.link(a), [m.get(a) for m in members]) for a in rel.attributes],
            )
            value = links.group_by("_owner").agg(aggregate_expressions(cat, [an])).drop("_owner")
            if an.kind != "payee" and an.node.func in ("count", "sum"):
                value = value.with_columns(pl.col(col).fill_null(0))
        frame = frame.hstack(value)
    sk = Naming.sk(policy.target)
    out = evaluate_frame(frame.lazy(), [policy], cat, as_of, sk, "entity_id").collect(
        engine="streaming"
    )
    row = out.row(0, named=True)
    actual: dict[str, Any] = {"eligible": row["eligible"]}
    expected: dict[str, Any] = {"eligible": case.expect.eligible}
    exp = case.expect
    if exp.amount is not None or exp.amount_yuan is not None:
        want = parse_money(exp.amount if exp.amount is not None else exp.amount_yuan)
        expected["amount"] = _yuan(want)
        actual["amount"] = _yuan(row["amount_fen"])
    if exp.reason is not None:
        expected["reason"] = exp.reason
        actual["reason"] = row["reason"]
    if exp.payee is not None:
        expected["payee"] = exp.payee
        actual["payee"] = row["payee"]
    decided = f"condition {row['reason']!r}" if row["reason"] else "every condition held"
    failing = next((c for c in policy.conditions if c.id == row["reason"]), None)
    if failing is not None:
        decided += ": " + _condition_with_values(policy, failing.node, frame, cat, as_of)
    if row["reason"] is None:
        passed_ids = [c.id for i, c in enumerate(policy.conditions) if row["mask"] >> i & 1]
        decided = f"every condition held ({', '.join(passed_ids)})" if passed_ids else decided
    return CaseResult(
        policy.id, case.name, expected == actual, expected, actual, given, decided, line
    )


def _condition_with_values(
    policy: CheckedPolicy, node: A.Node, frame: pl.DataFrame, cat: CheckedCatalogue, as_of: dt.date
) -> str:
    """The failing condition in plain words, with the values its names had in this case."""
    ctx = policy_context(policy, cat, Naming(cat), as_of)
    names = {n.name: n for n in A.walk(node) if isinstance(n, A.Name)}
    if not names:
        return condition_text(node)
    row = frame.select([compile_expr(n, ctx).alias(k) for k, n in names.items()]).row(0, named=True)
    types: dict[str, str] = {k: policy.typed.types[id(n)] for k, n in names.items()}
    return condition_text(node, row, types)


def _yuan(fen: int | None) -> str:
    return "none" if fen is None else f"{format_yuan(fen)} yuan"


def run_cases(policy: CheckedPolicy, cat: CheckedCatalogue) -> list[CaseResult]:
    """Every case of a policy, in file order; a value that cannot be read is a positioned problem."""
    results = []
    problems = []
    default_as_of = policy.spec.valid.from_
    for i, case in enumerate(policy.spec.tests):
        try:
            results.append(run_case(policy, case, i, cat, default_as_of))
        except (ValueError, TypeError) as exc:
            line, col = policy.located.at(("tests", i))
            problems.append(
                Problem(
                    policy.file,
                    line,
                    col,
                    Code.CASE_BAD_VALUE,
                    f"test {case.name!r}: {exc}",
                    "give values of the feature's kind",
                )
            )
    if problems:
        raise ProblemsError(problems)
    return results
