"""Evaluate: every active policy over the staged sources, as long (policy, entity) rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from eligibility.backends.polars_policy import evaluate_frame
from eligibility.check import CheckedPolicy
from eligibility.plan import needs, run_dates
from eligibility.policyset import PolicySet
from jobs.features import Staged, entity_frame

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
}


def evaluation_plan(
    staged_dir: Path, policies: list[CheckedPolicy], pset: PolicySet, as_of: dt.date
) -> pl.LazyFrame:
    """One lazy plan: features per entity kind, all policies in one wide select each, unpivoted."""
    cat = pset.catalogue
    staged = Staged(staged_dir, cat)
    need = needs(policies, cat, as_of)
    parts = []
    for entity in ("enterprise", "person"):
        mine = [p for p in policies if p.target == entity]
        if not mine:
            continue
        frame = entity_frame(staged, entity, need, as_of)
        sk = staged.sk(entity)
        long = evaluate_frame(frame, mine, cat, as_of, sk, "entity_id")
        periods = pl.DataFrame(
            {
                "policy_id": [p.id for p in mine],
                "period": [run_dates(p, as_of).period.key for p in mine],
            }
        ).lazy()
        parts.append(
            long.join(periods, on="policy_id", how="left")
            .with_columns(pl.lit(entity).alias("target"), pl.col(sk).alias("entity_sk"))
            .select(list(RESULT_SCHEMA))
        )
    if not parts:
        return pl.LazyFrame(schema=RESULT_SCHEMA)
    return pl.concat(parts)


def evaluate(
    staged_dir: Path, pset: PolicySet, as_of: dt.date, only: str | None = None
) -> pl.DataFrame:
    """The decision table of the policies active on `as_of`, sorted by policy and entity."""
    policies = pset.active(as_of, only)
    plan = evaluation_plan(staged_dir, policies, pset, as_of)
    return plan.collect(engine="streaming").sort("policy_id", "entity_sk")
