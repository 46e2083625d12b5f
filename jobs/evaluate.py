"""Evaluate: every active policy over the staged sources, as long (policy, entity) rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from eligibility import (
    ID_COLUMN,
    RESULT_SCHEMA,
    CheckedPolicy,
    Naming,
    PolicySet,
    Scan,
    decisions_of_wide,
    paid_to,
    result_inputs,
    with_counted,
)
from eligibility import wide_plans as wide_plans_of
from jobs.staged import scan_staged, staged_file

if TYPE_CHECKING:
    from jobs.engines import Evaluator


def staged_scan(staged_dir: Path) -> Scan:
    """The staged sources of one ingest, read lazily by name."""

    def scan(source: str) -> pl.LazyFrame:
        return scan_staged(staged_file(staged_dir, source))

    # The ledger's counted members (`once_per`) are no staged file: none unless given.
    return with_counted(scan, None)


def wide_plans(
    staged_dir: Path,
    policies: list[CheckedPolicy],
    pset: PolicySet,
    as_of: dt.date,
    counted: pl.LazyFrame | None = None,
) -> dict[str, pl.LazyFrame]:
    """Per entity kind, the wide frame of the policies over the staged sources of one
    ingest (`eligibility.wide_plans`): the run archives it.  `counted`: the members the
    ledger counted for `once_per` policies (`jobs.once.counted_before`)."""
    return wide_plans_of(staged_scan(staged_dir), policies, pset.catalogue, as_of, counted)


def accounts_paid(
    staged_dir: Path, pset: PolicySet, policies: list[CheckedPolicy], payees: pl.LazyFrame
) -> pl.LazyFrame:
    """Per (policy_id, payee) of `payees`: the account it is paid to, null if none on file."""
    return paid_to(staged_scan(staged_dir), pset.catalogue, policies, payees)


def evaluated_counts(wide_files: dict[str, Path], policies: list[CheckedPolicy]) -> dict[str, int]:
    """Rows of the decision table per policy: one per entity of its kind in the wide archive
    (read from the Parquet footers, not the rows)."""
    rows = {
        target: int(pl.scan_parquet(path).select(pl.len()).collect().item())
        for target, path in wide_files.items()
    }
    return {p.id: rows[p.target] for p in policies if p.target in rows}


def evaluate(
    staged_dir: Path,
    pset: PolicySet,
    as_of: dt.date,
    only: str | None = None,
    on: Evaluator | None = None,
) -> pl.DataFrame:
    """The decision table of the policies active on `as_of`, in policy then entity order;
    the wide frames computed by `on` (an open evaluator of `jobs.engines`), else in this
    process.

    Each wide frame is collected once (without its features: only what the results read),
    then every policy's rows are selected from it, as the nightly run does through its
    archive: a policy's part read straight from the wide plan would have Polars recompute
    that plan once per policy."""
    policies = pset.active(as_of, only)
    wide = {
        target: plan.select(
            result_inputs([p for p in policies if p.target == target], Naming.sk(target), ID_COLUMN)
        )
        .collect(engine="streaming")
        .lazy()
        for target, plan in (
            wide_plans(staged_dir, policies, pset, as_of)
            if on is None
            else on.wide(staged_dir, pset, policies, as_of, None, "evaluate")
        ).items()
    }
    return decisions_of_wide(wide, policies, as_of).collect(engine="streaming")


__all__ = ["RESULT_SCHEMA", "decisions_of_wide", "evaluate", "evaluated_counts", "wide_plans"]
