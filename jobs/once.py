"""Members counted once (`once_per`, issue 18.6): what a run reads of the ledger before
it evaluates, and what it records with its grants.

Before evaluating, the run reads the members the ledger counted in the scopes of its
`once_per` policies (`ledgers.counted.counted_frame`), and the plan leaves each out
for every entitlement but the one that counted it.  Before posting, it records the
members each entitlement it holds counted, from the archive's lists
(`eligibility.plan.Naming.counted`), so that the next run reads them back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from eligibility import CheckedPolicy, Naming, PolicySet, once_aggregate, once_scope, run_dates
from ledgers.counted import COUNTED_COLUMNS, Recorded, counted_frame, record_counted


def scopes(policies: list[CheckedPolicy]) -> list[str]:
    """The scopes of the `once_per` policies among `policies`."""
    return sorted({s for p in policies if (s := once_scope(p)) is not None})


def counted_before(engine: Engine, policies: list[CheckedPolicy]) -> pl.DataFrame | None:
    """The members the ledger counted in the scopes of `policies` (None if none of them
    counts once: then the plan reads nothing of the ledger)."""
    wanted = scopes(policies)
    return counted_frame(engine, wanted) if wanted else None


def digest(counted: pl.DataFrame | None, excluding_run: int | None = None) -> str | None:
    """sha256 of the counted members a run evaluates with, but those that run
    `excluding_run` recorded itself (they are its own entitlements': they leave its
    decisions as they were, so its decisions may be reused)."""
    if counted is None:
        return None
    rows = counted if excluding_run is None else counted.filter(pl.col("run_id") != excluding_run)
    text = rows.select(list(COUNTED_COLUMNS)).sort(list(COUNTED_COLUMNS)).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()


def counted_rows(
    pset: PolicySet, as_of: dt.date, allocation: pl.DataFrame, wide_files: dict[str, Path]
) -> pl.DataFrame:
    """The members each entitlement of `allocation` with an amount counted, per scope
    (`COUNTED_COLUMNS`), from the run's wide archive."""
    naming = Naming(pset.catalogue)
    parts = []
    for p in pset.policies:
        agg, scope = once_aggregate(p), once_scope(p)
        if agg is None or scope is None or p.target not in wide_files:
            continue
        held = allocation.filter((pl.col("policy_id") == p.id) & (pl.col("amount_fen") > 0))
        if not held.height:
            continue
        column = Naming.counted(naming.aggregate(p.id, agg, run_dates(p, as_of).window))
        lists = pl.scan_parquet(wide_files[p.target]).select(
            pl.col("entity_id").alias("entity"), pl.col(column).alias("member")
        )
        parts.append(
            held.lazy()
            .select("policy_id", "benefit_period", "entity")
            .join(lists, on="entity", how="inner")
            .explode("member")
            .filter(pl.col("member").is_not_null())
            .select(pl.lit(scope).alias("scope"), "member", "policy_id", "benefit_period", "entity")
            .collect()
        )
    if not parts:
        return pl.DataFrame(schema=COUNTED_COLUMNS)
    return pl.concat(parts).sort(["scope", "member"])


def record(
    engine: Engine,
    pset: PolicySet,
    as_of: dt.date,
    allocation: pl.DataFrame,
    wide_files: dict[str, Path],
    run_id: int,
) -> Recorded:
    """Record the members the run's entitlements counted (see `counted_rows`)."""
    rows = counted_rows(pset, as_of, allocation, wide_files)
    if not rows.height:
        return Recorded(0, 0)
    return record_counted(engine, rows, run_id)
