"""Features: one row per entity with every value the active policies read.

One lazy plan per entity kind: the entity's own record, left-joined with one
group-by per (source, window) and per (relation, window), all on integer
surrogate keys.  Only the features, aggregates and lists in `needs` are built.
The sources are read through `scan`, a function from a source's name to its
LazyFrame (the batch gives its staged files, a test a frame of its own).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import polars as pl

from common.periods import Window
from eligibility import ast as A
from eligibility.backends.polars.base import DEC, Context
from eligibility.backends.polars.expr import compile_expr
from eligibility.backends.polars.policy import (
    OWNER_COLUMN,
    aggregate_expressions,
    once_candidate,
    once_lists,
    pick_columns,
)
from eligibility.checked import CheckedCatalogue, ColumnRef, Typed
from eligibility.plan import AggregateNeed, EntityNeeds, Naming, body_needs

Scan = Callable[[str], pl.LazyFrame]

ZERO_WHEN_ABSENT = ("sum", "count", "count_distinct", "months")


def _source_ctx(typed: Typed) -> Context:
    def column(b: object) -> pl.Expr:
        assert isinstance(b, ColumnRef)
        return pl.col(b.column)

    return Context(
        typed=typed, column=column, aggregate=lambda n: pl.lit(None), listed=lambda n: pl.lit(None)
    )


def _in_window(cat: CheckedCatalogue, source: str, window: Window) -> pl.Expr:
    timed = cat.spec.timed[source]
    col = pl.col(timed.column)
    if timed.unit == "year":
        return col.is_between(window.first.year, window.last.year)
    return col.is_between(pl.lit(window.first), pl.lit(window.last))


def _one_row_per_month(cat: CheckedCatalogue, source: str, month_column: str) -> bool:
    """Whether a source holds at most one row per entity and month: its key is (entity, month)."""
    key = cat.source_keys.get(source, ())
    return len(key) == 2 and month_column in key


def _agg_expr(cat: CheckedCatalogue, entity: str, name: str, window: Window | None) -> pl.Expr:
    f = cat.features_of(entity)[name]
    assert f.source is not None
    where = cat.where.get(f"{entity}.{name}")
    cond = (
        compile_expr(where, _source_ctx(cat.typed)).fill_null(False) if where is not None else None
    )
    timed = cat.spec.timed.get(f.source)
    if f.agg == "count":
        n = cond.sum() if cond is not None else pl.len()
        return (n > 0) if f.type == "bool" else n.cast(pl.Int64)
    if f.agg == "months":
        assert timed is not None
        t = pl.col(timed.column)
        if _one_row_per_month(cat, f.source, timed.column):
            # Keyed by (entity, month): counting rows is counting months, cheaper than n_unique.
            return (cond.sum() if cond is not None else pl.len()).cast(pl.Int64)
        return (t.filter(cond) if cond is not None else t).n_unique().cast(pl.Int64)
    col = pl.col(f.column or "")
    order = pl.col(timed.column) if timed else None
    if cond is not None:
        col = col.filter(cond)
        order = order.filter(cond) if order is not None else None
    match f.agg:
        case "sum":
            return col.sum().cast(pl.Int64)
        case "mean":
            return (
                col.sum().cast(DEC) / pl.when(col.count() > 0).then(col.count().cast(DEC))
            ).cast(DEC)
        case "min":
            return col.min()
        case "max":
            return col.max()
        case "count_distinct":
            return col.drop_nulls().n_unique().cast(pl.Int64)
        case "first" | "last":
            ordered = col.sort_by(order) if order is not None else col
            return ordered.first() if f.agg == "first" else ordered.last()
        case "at_start" | "at_end":
            assert timed is not None
            assert window is not None
            at = window.first if f.agg == "at_start" else window.last
            return pl.col(f.column or "").filter(pl.col(timed.column) == pl.lit(at)).first()
    raise ValueError(f"aggregation {f.agg} of {name}")


def entity_frame(
    scan_source: Scan,
    cat: CheckedCatalogue,
    entity: str,
    needs: dict[str, EntityNeeds],
    as_of: dt.date,
    depth: int = 0,
    *,
    only: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """The feature frame of one entity kind: sk, identifier, and every needed column.

    `only` (a frame of surrogate keys) restricts the frame, and every aggregate in it,
    to those entities."""
    naming = Naming(cat)
    need = needs[entity]
    source = cat.entity_source(entity)
    sk = Naming.sk(entity)
    id_col = cat.id_column(entity)

    def scan(src: str) -> pl.LazyFrame:
        lf = scan_source(src)
        return lf if only is None else lf.join(only.select(sk), on=sk, how="semi")

    own = {n for n, w in need.features if cat.features_of(entity)[n].source == source}
    frame = scan(source).select(
        pl.col(sk),
        pl.col(id_col).alias("entity_id"),
        *[pl.col(cat.features_of(entity)[n].column or "").alias(n) for n in sorted(own)],
    )
    # Grouped by (source, the months read): a feature's own look-back reads other months.
    groups: dict[tuple[str, Window | None], dict[str, str]] = defaultdict(dict)
    relation_feats: list[tuple[str, Window | None]] = []
    for name, window in sorted(
        need.features - {(n, None) for n in own}, key=lambda x: (x[0], str(x[1]))
    ):
        f = cat.features_of(entity)[name]
        if f.source is not None:
            reads = naming.window_of(entity, name, window) if window is not None else None
            column = naming.feature(entity, name, window or Window(dt.date.min, dt.date.min))
            groups[(f.source, reads)][column] = name
        else:
            relation_feats.append((name, window))
    anchored: dict[tuple[str, str, int], dict[str, str]] = defaultdict(dict)
    for key in [k for k in groups if k[1] is None]:
        for column, name in list(groups[key].items()):
            look = cat.features_of(entity)[name].window
            if look is not None and look.anchor is not None and look.months is not None:
                anchored[(key[0], look.anchor, look.months)][column] = name
                del groups[key][column]
    for (src, anchor, months), by_column in sorted(anchored.items()):
        frame = _join_anchored(frame, scan, cat, entity, src, anchor, months, by_column)
    for (src, window), by_column in sorted(groups.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        if not by_column:
            continue
        lf = scan(src).filter(pl.col(sk).is_not_null())
        if window is not None and src in cat.spec.timed:
            lf = lf.filter(_in_window(cat, src, window))
        names = list(by_column.values())
        cols = {n: c for c, n in by_column.items()}
        agg = lf.group_by(sk).agg([_agg_expr(cat, entity, n, window).alias(cols[n]) for n in names])
        frame = frame.join(agg, on=sk, how="left")
        fills = []
        for n in names:
            f = cat.features_of(entity)[n]
            if f.agg in ZERO_WHEN_ABSENT:
                fills.append(pl.col(cols[n]).fill_null(False if f.type == "bool" else 0))
        if fills:
            frame = frame.with_columns(fills)
    # Relation features and aggregates, grouped by (relation, window) so each link table is read once.
    by_rel: dict[tuple[str, Window], list[AggregateNeed]] = defaultdict(list)
    for name, window in relation_feats:
        rel_agg = cat.relation_features[f"{entity}.{name}"]
        w = window or Window(dt.date.min, dt.date.min)
        by_rel[(rel_agg.relation, w)].append(
            AggregateNeed(naming.feature(entity, name, w), rel_agg, cat.typed, w)
        )
    for an in need.aggregates.values():
        by_rel[(an.node.relation, an.window)].append(an)
    if by_rel and depth > 1:
        raise ValueError("relation aggregates nest too deeply")
    for (relation, window), items in sorted(by_rel.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        frame = frame.join(
            _relation_aggregates(scan_source, cat, relation, window, items, as_of, depth, only),
            on=sk,
            how="left",
        )
        fills = [
            pl.col(an.column).fill_null(without_links(an)) for an in items if an.kind != "payee"
        ]
        if fills:
            frame = frame.with_columns(fills)
    if need.lists:
        frame = frame.join(
            _listed(scan_source, entity, need.lists, as_of), on=sk, how="left"
        ).with_columns([pl.col(Naming.listed(n)).fill_null(False) for n in sorted(need.lists)])
    return frame


def _join_anchored(
    frame: pl.LazyFrame,
    scan: Scan,
    cat: CheckedCatalogue,
    entity: str,
    src: str,
    anchor: str,
    months: int,
    by_column: dict[str, str],
) -> pl.LazyFrame:
    """Features over the `months` months before each entity's own anchor date's month."""
    sk = Naming.sk(entity)
    column = cat.features_of(entity)[anchor].column or anchor
    anchors = scan(cat.entity_source(entity)).select(
        pl.col(sk), pl.col(column).dt.month_start().alias("_anchor")
    )
    month = pl.col(cat.spec.timed[src].column)
    rows = (
        scan(src)
        .filter(pl.col(sk).is_not_null())
        .join(anchors, on=sk, how="inner")
        .filter(
            (month >= pl.col("_anchor").dt.offset_by(f"-{months}mo")) & (month < pl.col("_anchor"))
        )
    )
    names = list(by_column.values())
    cols = {n: c for c, n in by_column.items()}
    agg = rows.group_by(sk).agg([_agg_expr(cat, entity, n, None).alias(cols[n]) for n in names])
    frame = frame.join(agg, on=sk, how="left")
    fills = [
        pl.col(cols[n]).fill_null(False if cat.features_of(entity)[n].type == "bool" else 0)
        for n in names
        if cat.features_of(entity)[n].agg in ZERO_WHEN_ABSENT
    ]
    return frame.with_columns(fills) if fills else frame


def split_payees(
    scan_source: Scan,
    cat: CheckedCatalogue,
    entity: str,
    needs: dict[str, EntityNeeds],
    as_of: dt.date,
) -> tuple[dict[str, EntityNeeds], Callable[[pl.LazyFrame], pl.LazyFrame] | None]:
    """`needs` without `entity`'s payee columns, and the payee columns of the entities in a
    frame of surrogate keys, as a function of that frame (None if no policy of `entity`
    pays anyone but the entity itself).

    Only an entity that meets a policy's conditions needs its payee: computed for every
    person of a city, the childcare subsidy's guardian was half of the person policies'
    evaluation (docs/benchmarks.md); for the few children under three, only their links
    and their guardians' features are read."""
    need = needs[entity]
    payees = {c: an for c, an in need.aggregates.items() if an.kind == "payee"}
    if not payees:
        return needs, None
    rest = {c: an for c, an in need.aggregates.items() if an.kind != "payee"}
    without = {**needs, entity: replace(need, aggregates=rest)}
    only_payees = {**needs, entity: EntityNeeds(aggregates=payees)}
    sk = Naming.sk(entity)

    def frame(owners: pl.LazyFrame) -> pl.LazyFrame:
        return entity_frame(scan_source, cat, entity, only_payees, as_of, only=owners).select(
            sk, *sorted(payees)
        )

    return without, frame


def without_links(an: AggregateNeed) -> pl.Expr:
    """An aggregate's value for an owner with no related entity: a count or sum of none
    is 0, `any` false, `all` true (there is none it fails for)."""
    if an.node.func == "sum" and _sum_is_decimal(an.node, an.typed):
        return pl.lit(0, dtype=DEC)
    if an.node.func in ("count", "sum"):
        return pl.lit(0, dtype=pl.Int64)
    return pl.lit(an.node.func == "all")


def _sum_is_decimal(agg: A.Aggregate, typed: Typed) -> bool:
    return agg.body is not None and typed.types.get(id(agg.body)) in ("number", "money")


def relation_links(
    scan_source: Scan,
    cat: CheckedCatalogue,
    relation: str,
    window: Window,
    owners: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """A relation's links in `window`: `_owner` and `_member` (their surrogate keys) and
    the link attributes; a relation followed `via` others joins its steps' links, member
    to owner, in turn (a person's household, then its members).  `owners` (a frame of
    `_owner` keys) keeps the links of those owners only."""
    out: pl.LazyFrame | None = None
    for name in cat.steps(relation):
        rel = cat.relation(name)
        assert rel.source is not None
        assert rel.from_key is not None
        assert rel.to_key is not None
        links = scan_source(rel.source).filter(
            pl.col(rel.from_key).is_not_null() & pl.col(rel.to_key).is_not_null()
        )
        where = cat.where.get(f"relation:{name}")
        if where is not None:
            links = links.filter(compile_expr(where, _source_ctx(cat.typed)).fill_null(False))
        if rel.during is not None:
            links = links.filter(
                pl.col(rel.during).is_between(pl.lit(window.first), pl.lit(window.last))
            )
        links = links.select(
            pl.col(rel.from_key).alias("_owner"),
            pl.col(rel.to_key).alias("_member"),
            *[pl.col(c).alias(Naming.link(a)) for a, c in rel.attributes.items()],
        )
        if out is None:
            out = links if owners is None else links.join(owners, on="_owner", how="semi")
        else:  # the step before's members own this step's links
            out = (
                out.join(
                    links.rename({"_owner": "_step"}),
                    left_on="_member",
                    right_on="_step",
                    how="inner",
                )
                .drop("_member")
                .rename({"_member_right": "_member"})
            )
    assert out is not None
    return out


def _relation_aggregates(
    scan_source: Scan,
    cat: CheckedCatalogue,
    relation: str,
    window: Window,
    items: list[AggregateNeed],
    as_of: dt.date,
    depth: int,
    owners: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per owner with links: the aggregates of `items` over its related members
    (with `owners`, a frame of the owners' surrogate keys, only for those)."""
    rel = cat.relation(relation)
    joined = relation_members(scan_source, cat, relation, window, items, as_of, depth, owners)
    once = [an for an in items if an.once is not None]
    aggs = aggregate_expressions(cat, items) + [e for an in once for e in once_lists(cat, an)]
    return joined.group_by("_owner").agg(aggs).rename({"_owner": Naming.sk(rel.from_)})


def relation_members(
    scan_source: Scan,
    cat: CheckedCatalogue,
    relation: str,
    window: Window,
    items: list[AggregateNeed],
    as_of: dt.date,
    depth: int = 0,
    owners: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per link of the relation: `_owner` (the owner's surrogate key), the
    member's `entity_id` and the features the bodies of `items` read, the link's
    attributes, the owner's features they read (`owner.x`) and each pick's column
    (`picked_column`); what the aggregates of `items` group by owner, and what
    `disburse explain` lists member by member (with `owners`, a frame of the owners'
    surrogate keys, only for those)."""
    rel = cat.relation(relation)
    owner_sk, member_sk = Naming.sk(rel.from_), Naming.sk(rel.to)
    links = relation_links(
        scan_source,
        cat,
        relation,
        window,
        None if owners is None else owners.select(pl.col(owner_sk).alias("_owner")),
    ).rename({"_member": member_sk})
    only = None
    if owners is not None:
        only = links.select(member_sk).unique()
    members = entity_frame(
        scan_source, cat, rel.to, body_needs(cat, rel.to, items), as_of, depth + 1, only=only
    )
    joined = links.join(members, on=member_sk, how="left")
    owned = sorted({f for an in items for f in an.owner_reads()})
    if owned:  # owner.x and lets read on the owner: the owner's features beside each link
        naming = Naming(cat)
        need = EntityNeeds(
            features={(f, window if naming.windowed(rel.from_, f) else None) for f in owned}
        )
        frame = entity_frame(
            scan_source,
            cat,
            rel.from_,
            {e: need if e == rel.from_ else EntityNeeds() for e in cat.entities()},
            as_of,
            depth + 1,
            only=owners,
        )
        keep = [c for c in frame.collect_schema().names() if c not in (owner_sk, "entity_id")]
        joined = joined.join(
            frame.select(
                pl.col(owner_sk).alias("_owner"), *[pl.col(c).alias(OWNER_COLUMN + c) for c in keep]
            ),
            on="_owner",
            how="left",
        )
    once = [an for an in items if an.once is not None]
    if once:
        joined = _counted_elsewhere(scan_source, cat, rel.from_, joined, once)
    picks = pick_columns(cat, items)
    return joined.with_columns(picks) if picks else joined


# The members counted for earlier entitlements (`once_per`), read from the ledger by the
# batch and given to the plan as this source (`COUNTED_SCHEMA`; none if not given).
COUNTED_SOURCE = "ledger:counted_members"
COUNTED_SCHEMA = {
    "scope": pl.String,
    "member": pl.String,
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
}


def with_counted(scan_source: Scan, counted: pl.LazyFrame | None) -> Scan:
    """`scan_source` that also gives the ledger's counted members (none if not given)."""
    frame = counted if counted is not None else pl.LazyFrame(schema=COUNTED_SCHEMA)

    def scan(source: str) -> pl.LazyFrame:
        return frame if source == COUNTED_SOURCE else scan_source(source)

    return scan


def _counted_elsewhere(
    scan_source: Scan,
    cat: CheckedCatalogue,
    owner: str,
    joined: pl.LazyFrame,
    once: list[AggregateNeed],
) -> pl.LazyFrame:
    """Beside each link, for each `once_per` aggregate, whether its member is counted for
    another entitlement: in the ledger, under a key other than this owner's for this
    policy and period; or in this run, by another claim that comes first. Of the claims on
    a member in one run (the links where it would count, `once_candidate`, of every
    aggregate of the scope), the first counts it: smallest pick key (the earliest hire),
    then the smaller owner identifier, then the smaller policy id. Whether that owner is
    then paid is not considered (docs/policies.md, "Counted once")."""
    owner_ids = scan_source(cat.entity_source(owner)).select(
        pl.col(Naming.sk(owner)).alias("_owner"), pl.col(cat.id_column(owner)).alias("_owner_id")
    )
    joined = joined.join(owner_ids, on="_owner", how="left")
    counted = scan_source(COUNTED_SOURCE)
    ledger: dict[str, pl.Expr] = {}
    for i, an in enumerate(once):
        assert an.once is not None
        taken = counted.filter(pl.col("scope") == an.once.scope).select(
            pl.col("member").alias("entity_id"),
            pl.lit(True).alias(f"_taken{i}"),
            (
                (pl.col("policy_id") == an.once.policy_id)
                & (pl.col("benefit_period") == an.once.period)
            ).alias(f"_same{i}"),
            pl.col("entity").alias(f"_by{i}"),
        )
        joined = joined.join(taken, on="entity_id", how="left")
        ledger[an.column] = pl.col(f"_taken{i}").fill_null(False) & ~(
            pl.col(f"_same{i}").fill_null(False) & (pl.col(f"_by{i}") == pl.col("_owner_id"))
        ).fill_null(False)
    joined = joined.with_columns([e.alias(f"_ledger:{c}") for c, e in ledger.items()]).cache()
    claims = []
    for an in once:
        assert an.once is not None
        meets, key = once_candidate(cat, an)
        claims.append(
            joined.filter(meets & ~pl.col(f"_ledger:{an.column}")).select(
                pl.lit(an.once.scope).alias("_scope"),
                pl.col("entity_id"),
                key.alias("_key"),
                pl.col("_owner_id").alias("_win_owner"),
                pl.lit(an.once.policy_id).alias("_win_policy"),
            )
        )
    first = (
        pl.concat(claims)
        .sort(["_scope", "entity_id", "_key", "_win_owner", "_win_policy"], nulls_last=True)
        .group_by(["_scope", "entity_id"], maintain_order=True)
        .first()
        .drop("_key")
    )
    flags: list[pl.Expr] = []
    for an in once:
        assert an.once is not None
        w = first.filter(pl.col("_scope") == an.once.scope).drop("_scope")
        suffix = f"_{len(flags)}"
        joined = joined.join(
            w.rename({c: c + suffix for c in ("_win_owner", "_win_policy")}),
            on="entity_id",
            how="left",
        )
        lost = pl.col("_win_owner" + suffix).is_not_null() & ~(
            (pl.col("_win_owner" + suffix) == pl.col("_owner_id"))
            & (pl.col("_win_policy" + suffix) == an.once.policy_id)
        )
        # A member linked to one owner twice (taken on, left, taken on again) counts once:
        # by the first of its links that would count it.
        meets, key = once_candidate(cat, an)
        order = key if an.node.pick is not None else pl.col("entity_id")  # no key: any
        again = meets & (
            meets.cast(pl.Int64).cum_sum().over(["_owner", "entity_id"], order_by=order) > 1
        )
        flags += [
            again.alias(Naming.counted_again(an.column)),
            (pl.col(f"_ledger:{an.column}") | lost | again).alias(
                Naming.counted_elsewhere(an.column)
            ),
        ]
    return joined.with_columns(flags)


def _listed(scan_source: Scan, entity: str, lists: set[str], as_of: dt.date) -> pl.LazyFrame:
    sk = Naming.sk(entity)
    on_list = (pl.col("listed_on") <= pl.lit(as_of)) & (
        pl.col("removed_on").is_null() | (pl.col("removed_on") > pl.lit(as_of))
    )
    return (
        scan_source("credit_lists")
        .filter(pl.col(sk).is_not_null() & on_list & pl.col("list").is_in(sorted(lists)))
        .group_by(sk)
        .agg([pl.col("list").eq(n).any().alias(Naming.listed(n)) for n in sorted(lists)])
    )
