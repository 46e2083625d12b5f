"""From sources to decisions: the wide frame of each entity kind, and the long table.

`wide_plans` builds, per entity kind with an active policy, one row per entity with
the features the policies read and every policy's condition, amount and rank columns
(the run archives it: `explain` reads it).  `decisions_of_wide` turns such frames
into the long decision table, one row per (policy, entity).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from eligibility.backends.polars.features import Scan, entity_frame, split_payees, with_counted
from eligibility.backends.polars.policy import parts_of_wide, wide_frame
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.plan import Naming, needs, run_dates

ID_COLUMN = "entity_id"  # the entity's identifier in a feature frame
RESULT_SCHEMA = {
    "policy_id": pl.String,
    "period": pl.String,
    "target": pl.String,
    "entity_sk": pl.Int32,
    "entity_id": pl.String,
    "eligible": pl.Boolean,
    "amount_fen": pl.Int64,
    "reason": pl.String,
    "mask": pl.Int64,
    "payee": pl.String,
    "rank": pl.Float64,
}


def wide_plans(
    scan: Scan,
    policies: list[CheckedPolicy],
    cat: CheckedCatalogue,
    as_of: dt.date,
    counted: pl.LazyFrame | None = None,
) -> dict[str, pl.LazyFrame]:
    """Per entity kind with an active policy: one row per entity with the features the
    policies read and every policy's condition, amount and rank columns.

    `counted`: the members the ledger counted for `once_per` policies (`COUNTED_SCHEMA`),
    which they do not count again; none if not given."""
    scan = with_counted(scan, counted)
    out = {}
    for entity in cat.entities():
        mine = [p for p in policies if p.target == entity]
        if mine:
            # The needs of this kind's policies only: `needs` of every policy would add
            # what enterprise policies read of related persons (the hired graduates'
            # graduated_on) to the person frame, computed there for every person though
            # no person policy reads it (a relation aggregate builds its members' frame
            # itself, `features._relation_aggregates`).
            rest, payees = split_payees(scan, cat, entity, needs(mine, cat, as_of), as_of)
            frame = entity_frame(scan, cat, entity, rest, as_of)
            out[entity] = wide_frame(frame, mine, cat, as_of, Naming.sk(entity), payees)
    return out


def decisions_of_wide(
    wide: dict[str, pl.LazyFrame],
    policies: list[CheckedPolicy],
    as_of: dt.date,
    *,
    claims_only: bool = False,
) -> pl.LazyFrame:
    """The long decision table (RESULT_SCHEMA, policy then entity order) from `wide_plans`'
    frames, typically scans of the files they were written to (`claims_only`: only its
    eligible rows)."""
    parts: dict[str, pl.LazyFrame] = {}
    for entity, frame in wide.items():
        mine = [p for p in policies if p.target == entity]
        sk = Naming.sk(entity)
        built = parts_of_wide(frame, mine, sk, ID_COLUMN, claims_only=claims_only)
        for p in mine:
            parts[p.id] = _long(built[p.id], p, entity, sk, as_of)
    if not parts:
        return pl.LazyFrame(schema=RESULT_SCHEMA)
    return pl.concat([parts[pid] for pid in sorted(parts)])


def _long(
    part: pl.LazyFrame, p: CheckedPolicy, entity: str, sk: str, as_of: dt.date
) -> pl.LazyFrame:
    return part.select(
        pl.lit(p.id).alias("policy_id"),
        pl.lit(run_dates(p, as_of).period.key).alias("period"),
        pl.lit(entity).alias("target"),
        pl.col(sk).alias("entity_sk"),
        pl.all().exclude(sk),
    ).select(list(RESULT_SCHEMA))
