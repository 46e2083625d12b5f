"""Running the officers' own test cases through the real compiled policy.

A case gives feature values (money in yuan unless written with a unit), the
lists an entity is on, and for relations the related people's features; it
expects eligibility, an amount, the reason for a refusal, or the payee.  The
case is evaluated by the same Polars plan that pays, on a one-row frame.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import polars as pl

from common.errors import Code, Problem, ProblemsError
from common.money import FEN_PER_YUAN, format_yuan, parse_money
from common.periods import written_date
from common.yamlsrc import Loc
from eligibility import ast as A
from eligibility.backends.polars.decisions import decisions_of_wide
from eligibility.backends.polars.expr import compile_expr
from eligibility.backends.polars.features import without_links
from eligibility.backends.polars.members import member_breakdown
from eligibility.backends.polars.policy import (
    OWNER_COLUMN,
    aggregate_expressions,
    evaluate_frame,
    pick_columns,
    policy_context,
    wide_frame,
)
from eligibility.check import reading_policy
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.explain import condition_text
from eligibility.members import aggregates_read
from eligibility.plan import AggregateNeed, Naming, needs, run_dates
from eligibility.readings import case_reading
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
    col: int = 1
    # For a condition that failed on an aggregate: its members in words, as explain lists them.
    members: list[str] = field(default_factory=list)

    def problem(self, file: str) -> Problem:
        """A failing case as a problem of its file (what `run` refuses a policy for)."""
        return Problem(
            file,
            self.line,
            self.col,
            Code.CASE_FAILED,
            f"worked example {self.name!r} does not hold: expected {_show(self.expected)}, "
            f"got {_show(self.actual)} (decided by {self.decided_by})",
            f"correct the policy or its example; `disburse policy check {file}` shows the values",
        )

    def render(self, file: str) -> str:
        """A passing case in one line; a failing one positioned, with the given values,
        expected and actual, the deciding condition and a fix."""
        if self.passed:
            return f"ok   {self.policy}: {self.name}"
        given = ", ".join(f"{k}={v}" for k, v in self.given.items())
        return (
            f"{file}:{self.line}:{self.col}: {Code.CASE_FAILED} FAIL {self.policy}: {self.name}\n"
            f"  given:    {given}\n"
            f"  expected: {_show(self.expected)}\n  actual:   {_show(self.actual)}\n"
            f"  decided by: {self.decided_by}\n"
            + "".join(f"    {line}\n" for line in self.members)
            + "  fix: correct the policy, or the example if the policy text says otherwise"
        )


def _show(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


# A related member's key in a worked example: it was counted for another entitlement
# already (`once_per`), so this one does not count it.
ONCE_ATTRIBUTE = "counted_elsewhere"

# Bounds on the values an example may give: past them no real entity lies, and the
# compiled plan's types (Int64 fen, Decimal(38, 10)) would overflow.
MAX_MAGNITUDE = Decimal(10) ** 15


class BadValue(Exception):
    """A value of a worked example that cannot be read, and where it is."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc, self.message = loc, message


def example_value(ftype: str, unit: str | None, value: Any) -> Any:
    """A value a worked example gives for a feature, in the representation of a feature
    frame (money in fen, or in yuan as a Decimal for a yuan feature); ValueError if it is
    not of the feature's kind or lies past any real entity."""
    if value is None:
        return None
    if isinstance(value, list | dict):
        raise ValueError(f"a {ftype} feature takes one value, not a {type(value).__name__}")
    if ftype == "money":
        fen = parse_money(value)
        if abs(fen) > MAX_MAGNITUDE * FEN_PER_YUAN:
            raise ValueError(f"{value!r} is more money than any entity holds")
        return fen if unit != "yuan" else Decimal(fen) / FEN_PER_YUAN
    if ftype == "count":
        whole = isinstance(value, int) or (
            isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value)
        )
        if isinstance(value, bool) or not whole:
            raise ValueError(f"{value!r} is not a whole number")
        if abs(int(value)) > MAX_MAGNITUDE:
            raise ValueError(f"{value!r} is larger than any count of a real entity")
        return int(value)
    if ftype == "number":
        return _number(value)
    if ftype == "date":
        return written_date(value)
    if ftype == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    if isinstance(value, bool | float):
        raise ValueError(f"{value!r} is not text: quote it")
    return str(value)


def _number(value: Any) -> Decimal:
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = Decimal(text.removesuffix("%").strip())
    except ArithmeticError:
        number = Decimal("NaN")
    if isinstance(value, bool) or not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    number = number / 100 if percent else number
    if abs(number) > MAX_MAGNITUDE:
        raise ValueError(f"{value!r} is larger than any rate or ratio of a real entity")
    if number != number.quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN):
        raise ValueError(f"{value!r} has more than 10 decimal places")
    return number


def _typed_rows(
    entity: str, rows: Any, cat: CheckedCatalogue, loc: Loc, extra: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The given rows of one entity kind with every feature value read (`example_value`),
    and every link attribute in `extra` (name -> its column's type) read the same way;
    `id` and `lists` as given."""
    extra = extra or {}
    features = cat.features_of(entity)
    out = []
    for k, row in enumerate(rows):
        where = (*loc, k) if loc[-1] != "given" else loc
        if not isinstance(row, dict):
            raise BadValue(where, "a related entity is given as its features: {name: value, ...}")
        typed: dict[str, Any] = {}
        for name, value in row.items():
            if name in features:
                f = features[name]
                try:
                    typed[name] = example_value(f.type, f.unit, value)
                except ValueError as exc:
                    raise BadValue((*where, name), str(exc)) from None
            elif name == "lists":
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    raise BadValue(
                        (*where, name), "lists is a list of list names: [serious_dishonesty]"
                    )
                typed[name] = value
            elif name == "accounts":
                declared = cat.spec.entities[entity].accounts
                if not isinstance(value, list) or not all(
                    isinstance(x, str) and x in declared for x in value
                ):
                    raise BadValue(
                        (*where, name),
                        f"accounts lists the {entity}'s accounts on file, of "
                        f"{', '.join(declared) or 'none declared'}: [{next(iter(declared), '')}]",
                    )
                typed[name] = value
            elif name == "id":
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise BadValue((*where, name), "an id is an identifier, in quotes")
                typed[name] = str(value)
            elif name in extra:
                try:
                    typed[name] = example_value(extra[name], None, value)
                except ValueError as exc:
                    raise BadValue((*where, name), str(exc)) from None
        out.append(typed)
    return out


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
        values = [r.get(name) for r in rows]
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


@dataclass(frozen=True)
class GivenEntity:
    """What a worked example gives, read as the batch reads it: the one-row feature frame,
    the links of each aggregate (by the aggregate node's id; None without any) for naming
    members, and the accounts on file of the entity and its related entities, by id."""

    frame: pl.DataFrame
    links: dict[int, tuple[AggregateNeed, pl.DataFrame | None]]
    accounts: dict[str, list[str]]


def case_frame(
    policy: CheckedPolicy, given: dict[str, Any], cat: CheckedCatalogue, as_of: dt.date, loc: Loc
) -> GivenEntity:
    """The one-row feature frame of an entity a worked example (or a scenario's run) gives,
    as the batch builds it for `policy` on `as_of`: its features, the lists it is on, and
    the aggregates over its related entities; `BadValue` (at `loc`, where `given` was
    written) for a value that cannot be read."""
    naming = Naming(cat)
    window = run_dates(policy, as_of).window
    all_needs = needs([policy], cat, as_of)
    need = all_needs[policy.target]
    (row_given,) = _typed_rows(policy.target, [given], cat, loc)
    lists = set(need.lists) | set(row_given.get("lists", []))
    frame = _frame(policy.target, [row_given], cat, naming, window, lists)
    # Each given entity's accounts on file, by id: the target's, and a related payee's.
    on_file: dict[str, list[str]] = {}
    member_links: dict[int, tuple[AggregateNeed, pl.DataFrame | None]] = {}
    for col, an in need.aggregates.items():
        rel = cat.relation(an.node.relation)
        raw = given.get(an.node.relation, [])
        if not isinstance(raw, list):
            raise BadValue(
                (*loc, an.node.relation), "a relation is a list of related entities: [{...}, ...]"
            )
        attributes: dict[str, str] = {
            a: cat.source_columns[source][column]
            for a, (source, column) in cat.link_columns(an.node.relation).items()
        }
        once = {ONCE_ATTRIBUTE: "bool"} if an.once is not None else {}
        for k, m in enumerate(raw):
            if not once and isinstance(m, dict) and ONCE_ATTRIBUTE in m:
                raise BadValue(
                    (*loc, an.node.relation, k, ONCE_ATTRIBUTE),
                    f"{ONCE_ATTRIBUTE} says a member was counted for another entitlement: "
                    f"the policy counts {an.node.relation} once only with once_per",
                )
        members = _typed_rows(rel.to, raw, cat, (*loc, an.node.relation), {**attributes, **once})
        on_file.update({str(m["id"]): m.get("accounts", []) for m in members if "id" in m})
        member_need = all_needs[rel.to]
        mlists = set(member_need.lists) | {x for m in members for x in m.get("lists", [])}
        mframe = _frame(rel.to, members, cat, naming, window, mlists) if members else None
        if mframe is None:  # as the batch fills an owner without links
            member_links[id(an.node)] = (an, None)
            empty = pl.lit(None, dtype=pl.String) if an.kind == "payee" else without_links(an)
            value = pl.select(empty.alias(col))
        else:
            links = mframe.with_columns(
                pl.lit(1, dtype=pl.Int32).alias("_owner"),
                *[
                    pl.Series(Naming.link(a), [m.get(a) for m in members], dtype=_DTYPES[t])
                    for a, t in attributes.items()
                ],
                *(
                    [
                        pl.Series(
                            Naming.counted_elsewhere(col),
                            [bool(m.get(ONCE_ATTRIBUTE)) for m in members],
                            dtype=pl.Boolean,
                        )
                    ]
                    if an.once is not None
                    else []
                ),
            )
            # The owner's features beside each link, for owner.x and lets read on the owner.
            links = links.join(frame.select(pl.all().name.prefix(OWNER_COLUMN)), how="cross")
            links = links.with_columns(pick_columns(cat, [an]))
            member_links[id(an.node)] = (an, links)
            value = links.group_by("_owner").agg(aggregate_expressions(cat, [an])).drop("_owner")
            if an.kind != "payee":
                value = value.with_columns(pl.col(col).fill_null(without_links(an)))
        frame = frame.hstack(value)
    on_file[str(frame["entity_id"][0])] = row_given.get("accounts", [])
    return GivenEntity(frame, member_links, on_file)


def entity_decision(
    policy: CheckedPolicy, given: dict[str, Any], cat: CheckedCatalogue, as_of: dt.date, loc: Loc
) -> pl.DataFrame:
    """The decision table's row (`RESULT_SCHEMA`: period, eligible, amount, reason, payee, ...)
    of the one entity `given` describes, on `as_of`: its feature frame (`case_frame`) through
    the wide frame and the decisions the nightly run archives and allocates from."""
    frame = case_frame(policy, given, cat, as_of, loc).frame
    wide = wide_frame(frame.lazy(), [policy], cat, as_of, Naming.sk(policy.target))
    decisions = decisions_of_wide({policy.target: wide}, [policy], as_of)
    return decisions.collect(engine="streaming")


def run_case(
    policy: CheckedPolicy, case: Case, index: int, cat: CheckedCatalogue, default_as_of: dt.date
) -> CaseResult:
    """Evaluate one case with the compiled policy (under the case's variant and parameters)
    and compare with what it expects."""
    reading = case_reading(policy.spec, index)
    if reading is not None:
        policy = reading_policy(policy, cat, reading)
    as_of = case.as_of or default_as_of
    case_line, case_col = policy.located.at(("tests", index))
    given = dict(case.given)
    read = case_frame(policy, given, cat, as_of, ("tests", index, "given"))
    frame, member_links = read.frame, read.links
    sk = Naming.sk(policy.target)
    out = evaluate_frame(frame.lazy(), [policy], cat, as_of, sk, "entity_id").collect(
        engine="streaming"
    )
    row = out.row(0, named=True)
    actual: dict[str, Any] = {"eligible": row["eligible"]}
    expected: dict[str, Any] = {"eligible": case.expect.eligible}
    exp = case.expect
    if exp.amount is not None or exp.amount_yuan is not None:
        key = "amount" if exp.amount is not None else "amount_yuan"
        try:
            want = parse_money(getattr(exp, key))
        except ValueError as exc:
            raise BadValue(("tests", index, "expect", key), str(exc)) from None
        expected["amount"] = _yuan(want)
        actual["amount"] = _yuan(row["amount_fen"])
    if exp.reason is not None:
        expected["reason"] = exp.reason
        actual["reason"] = row["reason"]
    if exp.account is not None:
        payee = row["payee"] if row["payee"] is not None else row["entity_id"]
        mine = read.accounts.get(payee, [])
        expected["account"] = exp.account
        actual["account"] = next((a for a in policy.accounts if a in mine), "none")
    if exp.payee is not None:
        expected["payee"] = exp.payee
        actual["payee"] = row["payee"]
    decided = f"condition {row['reason']!r}" if row["reason"] else "every condition held"
    failing = next((c for c in policy.conditions if c.id == row["reason"]), None)
    if failing is not None:
        decided += ": " + _condition_with_values(policy, failing.node, frame, cat, as_of)
    member_words: list[str] = []
    if failing is not None:
        for agg in aggregates_read(policy, failing.node):
            if id(agg) not in member_links:
                continue
            an, given_frame = member_links[id(agg)]
            links = None if given_frame is None else given_frame.lazy()  # None: none given
            member_words += member_breakdown(
                links, cat, an, value=frame[an.column][0], read_by=[failing.id]
            ).lines()
    if row["reason"] is None:
        passed_ids = [c.id for i, c in enumerate(policy.conditions) if row["mask"] >> i & 1]
        decided = f"every condition held ({', '.join(passed_ids)})" if passed_ids else decided
    return CaseResult(
        policy.id,
        case.name,
        expected == actual,
        expected,
        actual,
        given,
        decided,
        case_line,
        case_col,
        member_words,
    )


def _condition_with_values(
    policy: CheckedPolicy, node: A.Node, frame: pl.DataFrame, cat: CheckedCatalogue, as_of: dt.date
) -> str:
    """The failing condition in plain words, with the values its names had in this case."""
    ctx = policy_context(policy, cat, Naming(cat), as_of)
    # The entity's own names, not those inside an aggregate (a related person's features).
    names = {n.name: n for n in A.walk_outside_aggregates(node) if isinstance(n, A.Name)}
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
        where: Loc
        try:
            results.append(run_case(policy, case, i, cat, default_as_of))
            continue
        except BadValue as exc:
            where, message = exc.loc, exc.message
        except (ValueError, TypeError) as exc:  # a value no check above foresaw: the test
            where, message = ("tests", i), str(exc)
        line, col = policy.located.value_at(where)
        problems.append(
            Problem(
                policy.file,
                line,
                col,
                Code.CASE_BAD_VALUE,
                f"test {case.name!r}: {message}",
                "give values of the feature's kind (docs/policies.md, worked examples)",
            )
        )
    if problems:
        raise ProblemsError(problems)
    return results
