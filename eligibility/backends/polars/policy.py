"""A whole policy as one Polars struct expression over its entity's feature frame.

Per entity the struct holds: eligible, amount_fen (Int64), reason (the id of
the first failing condition, or payee / amount_unknown / amount_zero), mask
(bit i set when condition i held) and payee (the identifier paid).  All
policies of one entity kind become one wide select, unpivoted to long
(policy, entity) rows, not one filter per policy (docs/benchmarks.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl

from common.money import to_fen
from eligibility import ast as A
from eligibility.backends.polars.amounts import amount
from eligibility.backends.polars.base import DEC, Context, as_decimal
from eligibility.backends.polars.expr import compile_expr
from eligibility.checked import (
    Binding,
    CheckedCatalogue,
    CheckedPolicy,
    ColumnRef,
    FeatureRef,
    OwnerRef,
)
from eligibility.plan import AggregateNeed, Naming, param_values, run_dates

RESULT_FIELDS = ("eligible", "amount_fen", "reason", "mask", "payee", "rank")


def feature_column(
    cat: CheckedCatalogue, naming: Naming, entity: str, name: str, window: object
) -> pl.Expr:
    """A feature's column in its representation (money as Decimal fen)."""
    f = cat.features_of(entity)[name]
    col = pl.col(naming.feature(entity, name, window))  # type: ignore[arg-type]
    if f.type == "money":
        return col.cast(DEC) * int(to_fen(1, f.unit or "fen"))
    if f.type == "number":
        return col.cast(DEC)
    return col


def policy_context(
    policy: CheckedPolicy, cat: CheckedCatalogue, naming: Naming, as_of: dt.date
) -> Context:
    """How the names of one policy resolve to columns of its entity's feature frame."""
    dates = run_dates(policy, as_of)
    entity = policy.target

    def column(b: Binding) -> pl.Expr:
        if isinstance(b, FeatureRef):
            return feature_column(cat, naming, entity, b.name, dates.window)
        raise TypeError(f"{b} is not a column of a {entity}")

    return Context(
        typed=policy.typed,
        column=column,
        aggregate=lambda node: pl.col(naming.aggregate(policy.id, node, dates.window)),
        listed=lambda name: pl.col(naming.listed(name)),
        params=param_values(policy, as_of),
        dates=dates.names(),
        lets=policy.lets,
        feature=lambda name: feature_column(cat, naming, entity, name, dates.window),
    )


OWNER_COLUMN = "owner:"  # the owner's feature columns beside each link (`owner.x`)


def owner_column(
    cat: CheckedCatalogue, naming: Naming, owner: str, name: str, window: object
) -> pl.Expr:
    """An owner's feature in the frame of its links, in its representation."""
    f = cat.features_of(owner)[name]
    col = pl.col(OWNER_COLUMN + naming.feature(owner, name, window))  # type: ignore[arg-type]
    if f.type == "money":
        return col.cast(DEC) * int(to_fen(1, f.unit or "fen"))
    return col.cast(DEC) if f.type == "number" else col


def member_context(cat: CheckedCatalogue, naming: Naming, need: AggregateNeed) -> Context:
    """How names inside an aggregate body resolve: member features and link attributes;
    the owner's features (`owner.x`) and lets read on the owner, from the owner columns
    beside each link."""
    rel = cat.relation(need.node.relation)
    member, owner = rel.to, rel.from_
    window = need.window

    def owner_side(b: Binding) -> pl.Expr:
        if isinstance(b, FeatureRef):
            return owner_column(cat, naming, owner, b.name, window)
        raise TypeError(f"{b} is not a feature of the owner {owner}")

    on_owner = Context(
        typed=need.typed,
        column=owner_side,
        aggregate=lambda node: pl.lit(None),
        listed=lambda name: pl.lit(None),
        params=need.params,
        dates=need.dates,
        lets=need.lets,
        feature=lambda name: owner_column(cat, naming, owner, name, window),
    )

    def column(b: Binding) -> pl.Expr:
        if isinstance(b, FeatureRef):
            return feature_column(cat, naming, member, b.name, window)
        if isinstance(b, ColumnRef):
            return pl.col(Naming.link(b.name))
        if isinstance(b, OwnerRef) and b.feature is not None:
            return owner_column(cat, naming, owner, b.feature, window)
        if isinstance(b, OwnerRef) and b.let is not None:
            return compile_expr(b.let, on_owner)
        raise TypeError(f"{b} is not a column of a related {member}")

    return Context(
        typed=need.typed,
        column=column,
        aggregate=lambda node: pl.lit(None),
        listed=lambda name: pl.col(naming.listed(name)),
        params=need.params,
        dates=need.dates,
        feature=lambda name: feature_column(cat, naming, member, name, window),
    )


def picked_column(need: AggregateNeed) -> str:
    """The column that marks the related entities an aggregate's pick chose."""
    return f"{need.column}:picked"


def pick_columns(cat: CheckedCatalogue, items: list[AggregateNeed]) -> list[pl.Expr]:
    """For each aggregate that picks its related entities (`earliest(certificates, 3,
    issued_on)`), a column over the links marking those it picks: of the links of each
    owner (`_owner`) that meet its condition and have a key, the first n by key (the
    latest: the last n), ties in order of the member's identifier.  Added to the links
    before they are grouped by owner (a running count in key order is a window, which a
    group-by's aggregation cannot hold)."""
    out = []
    for need in items:
        pick = need.node.pick
        if pick is None:
            continue
        meets, order = pick_order(cat, need, pick)
        running = (
            meets.cast(pl.Int64).cum_sum().over("_owner", order_by=[order, pl.col("entity_id")])
        )
        n = pick_count(pick, need.params)
        out.append((meets & (running <= n)).alias(picked_column(need)))
    return out


def pick_key(cat: CheckedCatalogue, need: AggregateNeed, pick: A.Pick) -> tuple[pl.Expr, pl.Expr]:
    """Over the links of a pick's aggregate: whether each has the pick's key and meets its
    condition, and the order it is picked in (days for a date; negated for latest)."""
    ctx = member_context(cat, Naming(cat), need)
    key = compile_expr(pick.key, ctx)
    if need.typed.types[id(pick.key)] == "date":
        key = key.cast(pl.Int64)  # days: a number, which the latest order negates
    meets = key.is_not_null()
    if pick.where is not None:
        meets = meets & compile_expr(pick.where, ctx).fill_null(False)
    return meets, (-key if pick.order == "latest" else key)


def pick_order(cat: CheckedCatalogue, need: AggregateNeed, pick: A.Pick) -> tuple[pl.Expr, pl.Expr]:
    """Over the links of a pick's aggregate: whether each may be picked (it has a key, meets
    the pick's condition and is not counted elsewhere), and the order it is picked in (then
    by identifier)."""
    meets, order = pick_key(cat, need, pick)
    if need.once is not None:  # a member counted for another entitlement is not picked
        meets = meets & ~pl.col(Naming.counted_elsewhere(need.column))
    return meets, order


def pick_count(pick: A.Pick, params: dict[str, Any]) -> int:
    """How many a pick takes: written out, or the value in force of a parameter."""
    if isinstance(pick.n, A.Name):
        return int(params[pick.n.name])
    assert isinstance(pick.n, A.Literal)
    assert isinstance(pick.n.value, Decimal)
    return int(pick.n.value)


def aggregate_expressions(cat: CheckedCatalogue, items: list[AggregateNeed]) -> list[pl.Expr]:
    """Group-by expressions over links joined with member features, one per aggregate.

    The frame has one row per link: `entity_id` (the member's identifier), the
    member's feature columns and `link:<attribute>` columns.  A payee item
    picks the smallest identifier among members for which the body holds, so
    the choice never depends on row order.
    """
    naming = Naming(cat)
    out = []
    for need in items:
        col, agg, typed, kind = need.column, need.node, need.typed, need.kind
        ctx = member_context(cat, naming, need)
        if kind == "payee":
            cond = (
                compile_expr(agg.body, ctx).fill_null(False)
                if agg.body is not None
                else pl.lit(True)
            )
            out.append(pl.col("entity_id").filter(cond).min().alias(col))
            continue
        picked = pl.col(picked_column(need)) if agg.pick is not None else None
        if need.once is not None and picked is None:  # the members not counted elsewhere
            picked = ~pl.col(Naming.counted_elsewhere(need.column))
        if agg.func == "count" and agg.body is None:
            n = pl.len() if picked is None else picked.sum()
            out.append(n.cast(pl.Int64).alias(col))
            continue
        assert agg.body is not None
        body = compile_expr(agg.body, ctx)
        holds = body.fill_null(False)
        if agg.func == "count":
            out.append(
                (holds if picked is None else holds & picked).sum().cast(pl.Int64).alias(col)
            )
        elif agg.func == "any":
            out.append((holds if picked is None else holds & picked).any().alias(col))
        elif agg.func == "all":  # of those picked: the others do not object
            out.append((holds if picked is None else holds | ~picked).all().alias(col))
        else:
            t = typed.types[id(agg.body)]
            value = as_decimal(body, t) if t != "count" else body
            out.append((value if picked is None else pl.when(picked).then(value)).sum().alias(col))
    return out


def once_candidate(cat: CheckedCatalogue, need: AggregateNeed) -> tuple[pl.Expr, pl.Expr]:
    """Over the links of a `once_per` aggregate: whether the member would count, were it
    not counted elsewhere and within any pick's number (it has the pick's key and meets
    its condition, and the count's condition or has the sum's value); and the pick's key
    (days for a date; null without a pick), the first order of who counts it in a run."""
    ctx = member_context(cat, Naming(cat), need)
    agg = need.node
    meets: pl.Expr = pl.col("_owner").is_not_null()  # true on every link, as a column
    key: pl.Expr = pl.lit(None, dtype=pl.Int64)
    if agg.pick is not None:
        meets, key = pick_key(cat, need, agg.pick)
    if agg.body is not None:
        body = compile_expr(agg.body, ctx)
        meets = meets & (body.fill_null(False) if agg.func == "count" else body.is_not_null())
    return meets, key.cast(pl.Float64)


def once_lists(cat: CheckedCatalogue, need: AggregateNeed) -> list[pl.Expr]:
    """Per owner, the identifiers (sorted) of the members a `once_per` aggregate counted,
    and of those it would have counted had another entitlement not counted them first.

    Bookkeeping for the ledger and explanations, not the policy's logic: lists sorted
    in a group-by, which narwhals does not offer (the decision itself stays within it,
    tests/unit/test_polars_backend.py)."""
    meets, _key = once_candidate(cat, need)
    elsewhere = pl.col(Naming.counted_elsewhere(need.column))
    counts = meets & ~elsewhere
    if need.node.pick is not None:
        counts = counts & pl.col(picked_column(need))
    member = pl.col("entity_id")
    return [
        member.filter(counts).sort().alias(Naming.counted(need.column)),
        member.filter(meets & elsewhere & ~pl.col(Naming.counted_again(need.column)))
        .sort()
        .alias(Naming.passed_over(need.column)),
    ]


def policy_columns(
    policy: CheckedPolicy, cat: CheckedCatalogue, naming: Naming, as_of: dt.date
) -> tuple[list[pl.Expr], pl.Expr]:
    """Each condition's result (and the rank), and the amount, as hidden columns of the
    feature frame: (the condition and rank columns, the amount column).

    Each is computed once: Polars does not share a subexpression that appears inside
    several when/then branches, so an amount used by eligible, amount_fen and reason
    would be computed again for each (docs/benchmarks.md).
    """
    ctx = policy_context(policy, cat, naming, as_of)
    cols = [
        compile_expr(c.node, ctx).fill_null(False).alias(_cond_col(policy, i))
        for i, c in enumerate(policy.conditions)
    ]
    if policy.rank_by is not None:
        cols.append(_rank(policy.rank_by, ctx).alias(_rank_col(policy)))
    return cols, amount(policy.amount, ctx).alias(_amount_col(policy))


def _rank(node: A.Node, ctx: Context) -> pl.Expr:
    """A budget's rank_by as Float64 (dates as days since 1970), for ordering claims."""
    expr = compile_expr(node, ctx)
    t = ctx.type_of(node)
    if t == "date":
        return expr.cast(pl.Int32).cast(pl.Float64)
    return as_decimal(expr, t).cast(pl.Float64)


def _rank_col(policy: CheckedPolicy) -> str:
    return Naming.rank(policy.id)


def _cond_col(policy: CheckedPolicy, i: int) -> str:
    return Naming.condition(policy.id, i)


def _amount_col(policy: CheckedPolicy) -> str:
    return Naming.amount(policy.id)


def policy_result(policy: CheckedPolicy, id_column: str) -> list[pl.Expr]:
    """eligible, amount_fen, reason, mask and payee, from the columns of `policy_columns`."""
    passed = [pl.col(_cond_col(policy, i)) for i in range(len(policy.conditions))]
    all_passed = pl.all_horizontal(passed) if passed else pl.lit(True)
    mask = (
        pl.sum_horizontal([p.cast(pl.Int64) * (1 << i) for i, p in enumerate(passed)])
        if passed
        else pl.lit(0, dtype=pl.Int64)
    )
    payee = pl.col(id_column) if policy.spec.payee == "self" else pl.col(Naming.payee(policy.id))
    amount = pl.col(_amount_col(policy))
    reason: Any = None
    for c, p in zip(policy.conditions, passed, strict=True):
        reason = (
            pl.when(~p).then(pl.lit(c.id)) if reason is None else reason.when(~p).then(pl.lit(c.id))
        )
    for cond, label in (
        (payee.is_null(), "payee"),
        (amount.is_null(), "amount_unknown"),
        (amount <= 0, "amount_zero"),
    ):
        reason = (
            pl.when(cond).then(pl.lit(label))
            if reason is None
            else reason.when(cond).then(pl.lit(label))
        )
    eligible = (all_passed & payee.is_not_null() & amount.is_not_null() & (amount > 0)).fill_null(
        False
    )
    return [
        eligible.alias("eligible"),
        pl.when(eligible).then(amount).otherwise(0).cast(pl.Int64).alias("amount_fen"),
        reason.otherwise(pl.lit(None, dtype=pl.String)).alias("reason"),
        mask.cast(pl.Int64).alias("mask"),
        pl.when(eligible).then(payee).cast(pl.String).alias("payee"),
        (
            pl.col(_rank_col(policy))
            if policy.rank_by is not None
            else pl.lit(None, dtype=pl.Float64)
        ).alias("rank"),
    ]


def wide_frame(
    frame: pl.LazyFrame,
    policies: list[CheckedPolicy],
    cat: CheckedCatalogue,
    as_of: dt.date,
    sk: str,
    payees: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
) -> pl.LazyFrame:
    """The feature frame with every policy's condition, amount and rank columns, by entity.

    A policy's amount is computed only for the entities that meet some policy's
    conditions (one filtered frame joined back), and is null for those that do not
    meet its own: nothing reads it there (such an entity is refused for its first
    failing condition, with amount 0), and the amount's exact Decimal arithmetic over
    every row was most of the evaluation's time for policies that few entities meet,
    such as the childcare subsidy over a city's persons (docs/benchmarks.md).

    `payees`, if given, computes the payee columns (missing from `frame`) of a frame of
    surrogate keys; it is given those of the entities that meet some policy's
    conditions, and the others' payees are null, as is their amount.

    Collect it on the streaming engine, as the batch does: Polars 2.1's in-memory
    engine fails on this plan from about 50,000 rows (a ShapeError from its
    common-subexpression elimination), where the streaming engine is right
    (tests/unit/test_wide_frame.py).
    """
    naming = Naming(cat)
    columns = [(p, *policy_columns(p, cat, naming, as_of)) for p in policies]
    # Read three times (the result, the meeting entities' amounts, their payees): cached,
    # or the streaming engine computes the features again for each.
    base = frame.with_columns([e for _p, conditions, _a in columns for e in conditions]).cache()
    met = {p.id: met_every_condition(p) for p in policies}
    # One join for all: the entities that meet some policy, with the amount of each policy
    # they meet (the others' computed there too, then dropped).
    meeting = base.filter(pl.any_horizontal(list(met.values())))
    amounts = meeting.select(
        pl.col(sk),
        *[
            pl.when(met[p.id]).then(amount).alias(_amount_col(p))
            for p, _conditions, amount in columns
        ],
    )
    if payees is not None:
        amounts = amounts.join(payees(meeting.select(sk)), on=sk, how="left")
    return base.join(amounts, on=sk, how="left").sort(sk)


def result_inputs(policies: list[CheckedPolicy], sk: str, id_column: str) -> list[str]:
    """The columns of a `wide_frame` that `parts_of_wide` reads (keys, condition, amount,
    rank and payee columns, not the features): the roots of `policy_result`'s expressions."""
    roots = [
        name
        for p in policies
        for expr in policy_result(p, id_column)
        for name in expr.meta.root_names()
    ]
    return list(dict.fromkeys([sk, id_column, *roots]))


def met_every_condition(policy: CheckedPolicy) -> pl.Expr:
    """Whether an entity met every condition of `policy`, from a wide frame's columns."""
    passed = [pl.col(_cond_col(policy, i)) for i in range(len(policy.conditions))]
    return pl.all_horizontal(passed) if passed else pl.lit(True)


def parts_of_wide(
    wide: pl.LazyFrame,
    policies: list[CheckedPolicy],
    sk: str,
    id_column: str,
    *,
    claims_only: bool = False,
) -> dict[str, pl.LazyFrame]:
    """Per policy, its (entity, result) rows from a frame made by `wide_frame`.

    `claims_only`: only the eligible rows, whose results are worked out only for the
    entities that met every condition, not filtered from all the results."""
    out = {}
    for p in policies:
        rows = wide.filter(met_every_condition(p)) if claims_only else wide
        part = rows.select(pl.col(sk), pl.col(id_column), *policy_result(p, id_column))
        out[p.id] = part.filter(pl.col("eligible")) if claims_only else part
    return out


def evaluate_parts(
    frame: pl.LazyFrame,
    policies: list[CheckedPolicy],
    cat: CheckedCatalogue,
    as_of: dt.date,
    sk: str,
    id_column: str,
) -> dict[str, pl.LazyFrame]:
    """Per policy, its (entity, result) rows, sorted by entity, from one shared wide frame.

    The conditions and amounts of all policies are computed in one wide
    with_columns over the frame, sorted once by entity (1M rows, not the 6M
    of the long table); each policy then selects its result columns from it,
    so concatenating the parts in policy order needs no further sort.
    """
    return parts_of_wide(wide_frame(frame, policies, cat, as_of, sk), policies, sk, id_column)


def evaluate_frame(
    frame: pl.LazyFrame,
    policies: list[CheckedPolicy],
    cat: CheckedCatalogue,
    as_of: dt.date,
    sk: str,
    id_column: str,
) -> pl.LazyFrame:
    """All policies of one entity kind as long (policy_id, entity, result) rows, in policy order."""
    parts = evaluate_parts(frame, policies, cat, as_of, sk, id_column)
    if not parts:
        return pl.LazyFrame(schema={"policy_id": pl.String, sk: pl.Int32, id_column: pl.String})
    return pl.concat(
        [
            part.select(pl.lit(pid).alias("policy_id"), pl.all())
            for pid, part in sorted(parts.items())
        ]
    )
