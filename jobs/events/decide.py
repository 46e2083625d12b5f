"""Decide the entities events affect: their features recomputed with the batch's own
feature plan over the rows they read, their conditions decided by durable-rules.

The result has the decision table's columns (`eligibility.RESULT_SCHEMA`'s policy_id,
period, entity_id, eligible, amount_fen, reason, mask, payee), for the policies that
take events, and the entities the events affect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from eligibility import (
    ID_COLUMN,
    RESULT_SCHEMA,
    CheckedPolicy,
    Naming,
    PolicySet,
    run_dates,
    wide_plans,
)
from eligibility.backends.durable import Decider, compile_policy, decide_frame
from jobs.events.overlay import Overlay
from jobs.events.scope import affected_by, reach, relations_read, scoped, touched
from jobs.events.stage import EVENT

DECISION_SCHEMA = RESULT_SCHEMA  # the batch's decision table, row for row


@dataclass(frozen=True)
class EventDecisions:
    """What the events decided: one row per (policy, affected entity), and which entities
    they affected, per kind."""

    decisions: pl.DataFrame
    targets: dict[str, set[int]]
    by: pl.DataFrame  # target, entity_id, events: the ids of the events that affected it


def deciders(policies: list[CheckedPolicy]) -> Decider:
    """A durable-rules host with the rulesets of `policies`."""
    return Decider({p.id: compile_policy(p) for p in policies})


def decide_events(
    overlay: Overlay,
    pset: PolicySet,
    policies: list[CheckedPolicy],
    as_of: dt.date,
    new: dict[str, pl.DataFrame],
    replaced: dict[str, pl.DataFrame],
    decider: Decider,
    counted: pl.LazyFrame | None = None,
) -> EventDecisions:
    """Decide `policies` on `as_of` for the entities the `new` events affect, over the
    overlay with them laid on (`replaced`: the rows they replaced, `Overlay.lay`).
    `counted`: the ledger's counted members, for `once_per` policies
    (`jobs.once.counted_before`)."""
    cat, catalogue = pset.catalogue, overlay.catalogue
    kinds = {p.target for p in policies}
    follow = relations_read(cat, policies, as_of)
    hit = affected_by(cat, overlay, touched(catalogue, new, replaced), follow)
    targets = {k: set(v["sk"].to_list()) for k, v in hit.items() if k in kinds and v.height}
    parts: list[pl.DataFrame] = []
    # Each kind over the rows its own targets' features read: an enterprise's reach its
    # employees' rows, which the persons decided need not be computed over.
    for kind in sorted(targets):
        mine = [p for p in policies if p.target == kind]
        mine_follow = relations_read(cat, mine, as_of)  # what this kind's policies read
        scan = scoped(catalogue, overlay, reach(cat, overlay, {kind: targets[kind]}, mine_follow))
        sk = Naming.sk(kind)
        for plan in wide_plans(scan, mine, cat, as_of, counted).values():
            wide = plan.filter(pl.col(sk).is_in(sorted(targets[kind]))).collect()
            for policy in mine:
                got = decide_frame(decider, policy, cat, as_of, wide, [sk, ID_COLUMN], ID_COLUMN)
                parts.append(
                    got.select(
                        pl.lit(policy.id).alias("policy_id"),
                        pl.lit(run_dates(policy, as_of).period.key).alias("period"),
                        pl.lit(kind).alias("target"),
                        pl.col(sk).alias("entity_sk"),
                        *list(DECISION_SCHEMA)[4:],
                    ).cast(DECISION_SCHEMA)  # type: ignore[arg-type]
                )
    frame = pl.concat(parts or [pl.DataFrame(schema=DECISION_SCHEMA)])
    ids = frame.select("target", "entity_sk", "entity_id").unique()
    by = pl.concat(
        [
            v.select(
                pl.lit(k).alias("target"), pl.col("sk").cast(pl.Int32).alias("entity_sk"), EVENT
            )
            for k, v in hit.items()
            if k in targets
        ]
        or [pl.DataFrame(schema={"target": pl.String, "entity_sk": pl.Int32, EVENT: pl.Int64})]
    )
    events_of = (
        by.join(ids, on=["target", "entity_sk"])
        .group_by("target", "entity_id")
        .agg(pl.col(EVENT).unique().sort().alias("events"))
    )
    return EventDecisions(frame.sort("policy_id", "entity_sk"), targets, events_of)
