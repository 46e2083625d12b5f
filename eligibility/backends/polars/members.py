"""An owner's aggregates member by member, for `disburse explain` and the officers' cases.

The member rows come from the same plan the batch aggregates (`relation_members`: the
links, the members' features, the owner's, each pick's column), and every value the
words read (`eligibility.members.member_nodes`) is the compiled expression of that
node over them: nothing is evaluated a third way.  The aggregate is computed again
from these rows with the batch's own expressions, so that a breakdown that does not
give the value the run recorded says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import polars as pl

from common.periods import Window
from eligibility import ast as A
from eligibility.backends.polars.expr import compile_expr
from eligibility.backends.polars.features import Scan, relation_members
from eligibility.backends.polars.policy import (
    aggregate_expressions,
    member_context,
    pick_count,
    pick_order,
    picked_column,
)
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.explain import show_value
from eligibility.members import (
    LIMIT,
    MemberBreakdown,
    MemberRow,
    breakdown,
    decisive_aggregates,
    member_nodes,
)
from eligibility.plan import AggregateNeed, Naming, needs, run_dates


def member_rows(links: pl.LazyFrame, cat: CheckedCatalogue, need: AggregateNeed) -> list[MemberRow]:
    """The members of one owner's aggregate, from its links (`relation_members`, with the
    pick's column): each with the value of every node of `member_nodes`, for a pick whether
    it was picked and its place in the pick's order; a pick's members in that order (those
    that cannot be picked after, by identifier), the others by identifier."""
    agg = need.node
    ctx = member_context(cat, Naming(cat), need)
    nodes = member_nodes(agg)
    columns = [compile_expr(n, ctx).alias(f"_v{i}") for i, n in enumerate(nodes)]
    pick = agg.pick
    if pick is None:
        frame = links.select(pl.col("entity_id"), *columns).sort("entity_id").collect()
    else:
        meets, order = pick_order(cat, need, pick)
        frame = (
            links.select(
                pl.col("entity_id"),
                meets.alias("_meets"),
                order.alias("_order"),
                pl.col(picked_column(need)).alias("_picked"),
                *columns,
            )
            .sort(["_meets", "_order", "entity_id"], descending=[True, False, False])
            .with_columns(
                pl.when(pl.col("_meets"))
                .then(pl.col("_meets").cast(pl.Int64).cum_sum())
                .alias("_rank")
            )
            .collect()
        )
    out = []
    for r in frame.iter_rows(named=True):  # one owner's members: a few, never the city
        values = {id(n): r[f"_v{i}"] for i, n in enumerate(nodes)}
        out.append(
            MemberRow(
                entity_id=str(r["entity_id"]),
                values=values,
                picked=None if pick is None else bool(r["_picked"]),
                rank=None if pick is None else r["_rank"],
            )
        )
    return out


def recompute(links: pl.LazyFrame, cat: CheckedCatalogue, need: AggregateNeed) -> Any:
    """The aggregate over one owner's links, by the batch's own expression (None for an
    owner without links: the caller knows what the batch fills in)."""
    rows = links.group_by("_owner").agg(aggregate_expressions(cat, [need])).collect()
    return rows[need.column][0] if rows.height else None


def node_types(need: AggregateNeed) -> dict[int, str]:
    """The type of each node the words of an aggregate read, by `id()`."""
    return {id(n): need.typed.types.get(id(n), "") for n in member_nodes(need.node)}


def member_breakdown(
    links: pl.LazyFrame | None,
    cat: CheckedCatalogue,
    need: AggregateNeed,
    *,
    value: Any,
    read_by: list[str],
    show_id: Callable[[str], str] = str,
    limit: int = LIMIT,
    feature: str | None = None,
) -> MemberBreakdown:
    """One aggregate of one owner member by member, from its links; `value` the value the
    run recorded for it; `feature` the catalogue feature it is, if it is one.  No `links`:
    none were given (a worked example that leaves the relation out), so none are listed."""
    agg = need.node
    t = need.typed.types.get(id(agg))
    rows = [] if links is None else member_rows(links, cat, need)
    again = recompute(links, cat, need) if rows and links is not None else _without_links(agg)
    differs = again is not None and value is not None and again != value
    return breakdown(
        agg,
        node_types(need),
        rows,
        value=show_value(value, t),
        read_by=read_by,
        pick_n=None if agg.pick is None else pick_count(agg.pick, need.params),
        recomputed=show_value(again, t) if differs else None,
        show_id=show_id,
        limit=limit,
        feature=feature,
    )


def _without_links(agg: A.Aggregate) -> Any:
    """An aggregate's value over no member (as the batch fills an owner without links)."""
    if agg.func in ("count", "sum"):
        return 0
    return agg.func == "all"


def explain_members(
    scan_source: Scan,
    policy: CheckedPolicy,
    cat: CheckedCatalogue,
    as_of: dt.date,
    row: dict[str, Any],
    passed: list[bool],
    *,
    show_id: Callable[[str], str] = str,
    limit: int = LIMIT,
) -> list[MemberBreakdown]:
    """The decisive aggregates of one entity (`decisive_aggregates`, from its conditions'
    results `passed`) member by member, over the sources of the run that decided it;
    `row` the entity's archived row (its surrogate key, the aggregates' recorded values)."""
    entity = policy.target
    sk = Naming.sk(entity)
    by_node = {
        id(an.node): an
        for an in needs([policy], cat, as_of)[entity].aggregates.values()
        if an.kind != "payee"
    }
    dtype = scan_source(cat.entity_source(entity)).collect_schema()[sk]
    owner = pl.LazyFrame({sk: [row[sk]]}).with_columns(pl.col(sk).cast(dtype))
    naming = Naming(cat)
    window = run_dates(policy, as_of).window
    out = []
    for read, readers in decisive_aggregates(policy, passed):
        feature = None
        if isinstance(read, str):  # a feature: one over a relation is an aggregate too
            relation_feature = cat.relation_features.get(f"{entity}.{read}")
            if relation_feature is None:
                continue
            feature = read
            w = window if naming.windowed(entity, read) else Window(dt.date.min, dt.date.min)
            column = naming.feature(entity, read, w)
            need = AggregateNeed(column, relation_feature, cat.typed, w)
        else:
            need = by_node[id(read)]
        links = relation_members(
            scan_source, cat, need.node.relation, need.window, [need], as_of, owners=owner
        )
        out.append(
            member_breakdown(
                links,
                cat,
                need,
                value=row.get(need.column),
                read_by=readers,
                show_id=show_id,
                limit=limit,
                feature=feature,
            )
        )
    return out
