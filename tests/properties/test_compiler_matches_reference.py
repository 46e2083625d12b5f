"""Compiled Polars results and the durable-rules rulesets' equal the reference
interpreter's, row by row, on random populations.

Random feature values include nulls, zeros (zero denominators), and the
boundary values the policies themselves mention (a date a day either side of
a cut-off, an amount at a bracket's edge).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.periods import add_months
from eligibility import ast as A
from eligibility.backends import durable as durable_backend
from eligibility.backends.durable import Decider, compile_policy, decide_frame, decide_rows
from eligibility.backends.polars import DEC, evaluate_frame
from eligibility.backends.polars.expr import _compile as polars_compile
from eligibility.backends.polars.policy import wide_frame
from eligibility.checked import CheckedPolicy
from eligibility.plan import Naming, needs, run_dates
from eligibility.reference import decide, env_for
from eligibility.reference import evaluate as reference_evaluate
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

ROOT = Path(__file__).resolve().parents[2]
# The shipped policies, and one with every kind of comparison at its threshold.
PSET = load_policies(
    load_source_catalogue(), [ROOT / "policies", ROOT / "tests/policies/threshold_probe.yaml"]
)
CAT = PSET.catalogue
POLICIES = PSET.policies
PROBE = PSET.get("threshold-probe")
DURABLE = Decider({p.id: compile_policy(p) for p in POLICIES})


def _literals(policy: CheckedPolicy) -> list[A.Literal]:
    return [n for r in policy.expressions() for n in A.walk(r) if isinstance(n, A.Literal)]


def _as_of(policy: CheckedPolicy) -> dt.date:
    for case in policy.spec.tests:
        if case.as_of:
            return case.as_of
    return policy.spec.valid.from_


def _strategy(policy: CheckedPolicy, ftype: str, as_of: dt.date) -> st.SearchStrategy[Any]:
    lits = _literals(policy)
    if ftype == "money":
        edges = [
            int(x.value * (100 if x.unit == "yuan" else 1))
            for x in lits
            if x.unit in ("yuan", "fen")
        ]
        edges = [e + d for e in edges for d in (-1, 0, 1)]
        return st.one_of(
            st.none(),
            st.just(0),
            st.sampled_from(edges or [0]),
            st.sampled_from(edges or [0]),
            st.integers(0, 10**11),
        )
    if ftype == "count":
        edges = [
            int(x.value)
            for x in lits
            if isinstance(x.value, Decimal)
            and x.unit == ""
            and x.value == x.value.to_integral_value()
        ]
        at_edge = st.sampled_from([e + d for e in edges or [0] for d in (-1, 0, 1)])
        return st.one_of(st.none(), st.just(0), at_edge, at_edge, st.integers(0, 3000))
    if ftype == "number":
        return st.one_of(
            st.none(),
            st.just(Decimal(0)),
            st.decimals(0, 5000, places=4, allow_nan=False, allow_infinity=False),
        )
    if ftype == "text":
        words = sorted({str(x.value) for x in lits if isinstance(x.value, str)} | {"other"})
        return st.one_of(st.none(), st.sampled_from(words))
    if ftype == "date":
        pivots = [x.value for x in lits if isinstance(x.value, dt.date)]
        dates = run_dates(policy, as_of).names()
        pivots += [*dates.values(), add_months(as_of, -36), add_months(dates["period_start"], -36)]
        pivots += [dt.date(dates["period_start"].year - age, 1, 1) for age in (3, 80, 90, 100)]
        anchors = st.sampled_from([p for p in pivots if p.year < 9999])
        at_edge = st.builds(
            lambda d, k: d + dt.timedelta(days=k), anchors, st.sampled_from([-1, 0, 1])
        )
        near = st.builds(lambda d, k: d + dt.timedelta(days=k), anchors, st.integers(-400, 400))
        # Edges are drawn as often as everything else together: that is where the bugs live.
        return st.one_of(
            st.none(), at_edge, at_edge, near, st.dates(dt.date(1915, 1, 1), dt.date(2030, 12, 31))
        )
    return st.one_of(st.none(), st.booleans())


POLARS_TYPE = {
    "money": pl.Int64,
    "count": pl.Int64,
    "number": DEC,
    "date": pl.Date,
    "bool": pl.Boolean,
    "text": pl.String,
}


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.id)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_policy_equals_reference(policy: CheckedPolicy, data: st.DataObject) -> None:
    agree(policy, data, DURABLE)


def agree(policy: CheckedPolicy, data: st.DataObject, durable: Decider) -> None:
    """Draw a population for `policy`; the three backends decide every row alike."""
    as_of = _as_of(policy)
    entity = policy.target
    window = run_dates(policy, as_of).window
    naming = Naming(CAT)
    need = needs([policy], CAT, as_of)[entity]
    features = CAT.features_of(entity)
    used = sorted({name for name, _w in need.features})
    n = data.draw(st.integers(1, 12), label="rows")
    rows = [
        {
            name: data.draw(_strategy(policy, features[name].type, as_of), label=name)
            for name in used
        }
        for _ in range(n)
    ]
    lists = sorted(need.lists)
    on_lists = [
        data.draw(st.sets(st.sampled_from(lists)) if lists else st.just(set()), label="lists")
        for _ in range(n)
    ]
    payees = [
        data.draw(st.one_of(st.none(), st.just(f"P{i:03d}")), label="payee") for i in range(n)
    ]
    columns: dict[str, pl.Series] = {
        naming.feature(entity, name, window): pl.Series(
            [r[name] for r in rows], dtype=POLARS_TYPE[features[name].type]
        )
        for name in used
    }
    for name in lists:
        columns[Naming.listed(name)] = pl.Series([name in s for s in on_lists], dtype=pl.Boolean)
    # The policy's own aggregates over relations, as the batch hands them to the plan: a
    # value per row (the relation's members are another test's: test_pick, test_owner).
    aggregates = {c: an for c, an in need.aggregates.items() if an.kind == "aggregate"}
    drawn: dict[str, list[Any]] = {}
    for col, an in sorted(aggregates.items()):
        kind = policy.typed.type_of(an.node)
        strategy = st.booleans() if kind == "bool" else _strategy(policy, kind, as_of)
        drawn[col] = [data.draw(strategy, label=col) for _ in range(n)]
        columns[col] = pl.Series(drawn[col], dtype=POLARS_TYPE[kind])
    if policy.spec.payee != "self":
        columns[Naming.payee(policy.id)] = pl.Series(payees, dtype=pl.String)
    columns["sk"] = pl.Series(range(n), dtype=pl.Int32)
    columns["entity_id"] = pl.Series([f"E{i:03d}" for i in range(n)], dtype=pl.String)
    out = (
        evaluate_frame(pl.DataFrame(columns).lazy(), [policy], CAT, as_of, "sk", "entity_id")
        .collect()
        .sort("sk")
    )
    envs = []
    for i in range(n):
        values = {
            name: (
                Decimal(v) if features[name].type in ("money", "number") and v is not None else v
            )
            for name, v in rows[i].items()
        }
        env = env_for(policy, as_of, values, on_lists[i])
        for col, an in aggregates.items():
            v = drawn[col][i]
            kind = policy.typed.type_of(an.node)
            env.aggregates[id(an.node)] = (
                Decimal(v) if kind in ("money", "number") and v is not None else v
            )
        envs.append((env, f"E{i:03d}", payees[i]))
    by_durable = decide_rows(durable, policy, envs)
    # The event path's way: the facts' atoms computed over the batch's wide frame at once.
    wide = wide_frame(pl.DataFrame(columns).lazy(), [policy], CAT, as_of, "sk").collect()
    by_frame = decide_frame(durable, policy, CAT, as_of, wide, ["sk"], "entity_id").sort("sk")
    result = ["eligible", "amount_fen", "reason", "mask", "payee"]
    compiled = out.select(result)
    framed = by_frame.select(result).iter_rows(named=True)
    for i, (got, by_facts) in enumerate(zip(compiled.iter_rows(named=True), framed, strict=True)):
        want = decide(policy, *envs[i])
        assert got == want, f"polars, row {i}: {rows[i]} lists={on_lists[i]}"
        assert by_durable[i] == want, f"durable-rules, row {i}: {rows[i]} lists={on_lists[i]}"
        assert by_facts == want, f"durable-rules on a frame, row {i}: {rows[i]} {on_lists[i]}"


# --- the test notices a backend that is wrong at a threshold ----------------------------


def _at_most_as_less(node: A.Compare) -> A.Compare:
    return A.Compare("<" if node.op == "<=" else node.op, node.left, node.right, node.span)


@contextmanager
def _mutated(table: Any) -> Iterator[None]:
    """A singledispatch backend whose rule for comparisons reads `<=` as `<`."""
    original = table.registry[A.Compare]
    table.register(A.Compare, lambda node, ctx: original(_at_most_as_less(node), ctx))
    try:
        yield
    finally:
        table.register(A.Compare, original)


def _finds_disagreement(durable: Decider) -> bool:
    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        agree(PROBE, data, durable)

    try:
        probe()
    except AssertionError:
        return True
    return False


def test_a_mutated_reference_is_caught() -> None:
    with _mutated(reference_evaluate):
        assert _finds_disagreement(DURABLE)


def test_a_mutated_polars_compiler_is_caught() -> None:
    with _mutated(polars_compile):
        assert _finds_disagreement(DURABLE)


def test_a_mutated_durable_ruleset_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(durable_backend.OPS, "<=", "$lt")
    assert _finds_disagreement(Decider({PROBE.id: compile_policy(PROBE)}))


def test_a_mutated_frame_side_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame path's own part (a value's side of its literal) is held to the
    reference too: a value at the literal taken as past it is found."""

    def side(a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return pl.when(a >= b).then(1).when(a < b).then(-1).cast(pl.Int8)

    monkeypatch.setattr(durable_backend, "_side", side)
    assert _finds_disagreement(DURABLE)
