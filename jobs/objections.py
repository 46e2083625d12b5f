"""Objections to a public notice: filed, decided, and what a decision does to the ledger.

`object_to` records an objection to a policy's entitlement of one entity (the
benefit period: the newest the ledger holds for it, or the one given).  If the entity
holds the entitlement, its payment waits until the objection is decided; if it was
refused (the ledger holds nothing), the objection is recorded and listed for review:
the engine does not re-decide a refusal by itself.

`decide` records the decision once.  Upheld against a held entitlement: the key is
reversed at once (a run of kind "objection" posts the reversal through the same
posting as the night's) and every later night keeps it at zero
(`upheld_claims`).  Dismissed: payment goes ahead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, select

from jobs.errors import JobError
from ledgers.holdings import read_held
from ledgers.keys import LedgerKey
from ledgers.masking import mask_entity
from ledgers.objections import closed_keys, decide_objection, file_objection, objections
from ledgers.post import post_entitlements
from ledgers.runs import complete, start_run
from ledgers.schema import ENTITLEMENT_KINDS, Transfer
from ledgers.versions import sha256_of

OBJECTION_RUN = "objection"  # the kind of run an upheld objection's reversal is posted under


@dataclass(frozen=True)
class Filed:
    """An objection recorded: its id, the key, and whether payment now waits for it."""

    objection_id: int
    policy_id: str
    benefit_period: str
    entity: str
    standing: str  # granted | refused

    def to_text(self, show: bool = False) -> str:
        who = self.entity if show else mask_entity(self.entity)
        if self.standing == "granted":
            effect = "its payment waits until the objection is decided"
        else:
            effect = "the entity holds nothing under it: listed for review, nothing is re-decided"
        return (
            f"objection {self.objection_id} recorded against {self.policy_id} "
            f"{self.benefit_period} for {who}: {effect}\n"
            f"  decide it with: disburse objection decide --id {self.objection_id} "
            "--uphold|--dismiss --note TEXT"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def object_to(
    engine: Engine,
    *,
    policy_id: str,
    entity: str,
    reason: str,
    benefit_period: str | None = None,
    evidence: Path | None = None,
) -> Filed:
    """Record an objection (module docstring)."""
    evidence_sha = None
    if evidence is not None:
        if not evidence.is_file():
            raise JobError(
                f"the evidence file {evidence} does not exist",
                fix="give the path of the file the objector handed in",
            )
        evidence_sha = hashlib.sha256(evidence.read_bytes()).hexdigest()
    with engine.connect() as conn:
        held = read_held(conn, [policy_id]).filter(pl.col("entity") == entity)
        periods = sorted(held["benefit_period"].unique().to_list())
        if benefit_period is None:
            if not periods:
                raise JobError(
                    f"the ledger holds nothing for {mask_entity(entity)} under {policy_id}",
                    fix="an objection from someone refused names the benefit period (--period)",
                )
            benefit_period = periods[-1]
        mine = held.filter(pl.col("benefit_period") == benefit_period)
        standing = "granted" if int(mine["net_fen"].sum()) > 0 else "refused"
    with engine.connect() as conn:
        objection_id = file_objection(
            conn,
            policy_id=policy_id,
            benefit_period=benefit_period,
            entity=entity,
            standing=standing,
            reason=reason,
            evidence_name=evidence.name if evidence is not None else None,
            evidence_sha256=evidence_sha,
            filed_at=_now(),
        )
    return Filed(objection_id, policy_id, benefit_period, entity, standing)


def decide(engine: Engine, objection_id: int, *, uphold: bool, note: str, key: LedgerKey) -> str:
    """Record the decision on an objection and, upheld against a held entitlement, post its
    reversal; a line saying what was done."""
    if not note.strip():
        raise JobError("a decision needs its note", fix="give --note with the reasons")
    with engine.connect() as conn:
        found = objections(conn).filter(pl.col("objection_id") == objection_id)
    if found.height == 0:
        raise JobError(
            f"there is no objection {objection_id}",
            fix="`disburse objection list` shows the objections and their ids",
        )
    row = found.row(0, named=True)
    if row["decision"] is not None:
        raise JobError(
            f"objection {objection_id} was already {row['decision']} on "
            f"{str(row['decided_at'])[:10]}: a decision is recorded once",
            fix="file a new objection if there is new evidence",
        )
    run_id = None
    reversed_fen = 0
    if uphold and row["standing"] == "granted":
        run_id, reversed_fen = _reverse(engine, row, objection_id, key)
    with engine.connect() as conn:
        decide_objection(
            conn,
            objection_id,
            decision="upheld" if uphold else "dismissed",
            note=note,
            decided_at=_now(),
            run_id=run_id,
        )
    who = mask_entity(row["entity"])
    if not uphold:
        return (
            f"objection {objection_id} dismissed: payment of {row['policy_id']} to {who} goes ahead"
        )
    if row["standing"] != "granted":
        return f"objection {objection_id} upheld (for review: {who} holds nothing to reverse)"
    return (
        f"objection {objection_id} upheld: {row['policy_id']} {row['benefit_period']} for {who} "
        f"reversed ({reversed_fen / 100:,.2f} yuan) in run {run_id}; later nights keep it at zero"
    )


def _reverse(
    engine: Engine, row: dict[str, object], objection_id: int, key: LedgerKey
) -> tuple[int, int]:
    """Post the key's reversal under a run of its own; (run id, fen reversed)."""
    policy_id, period, entity = (
        str(row["policy_id"]),
        str(row["benefit_period"]),
        str(row["entity"]),
    )
    t = Transfer.__table__
    with engine.connect() as conn:
        held = read_held(conn, [policy_id]).filter(
            (pl.col("entity") == entity) & (pl.col("benefit_period") == period)
        )
        sha = conn.execute(
            select(sha256_of(t))
            .where(
                t.c.policy_id == policy_id,
                t.c.benefit_period == period,
                t.c.entity == entity,
                t.c.kind.in_(ENTITLEMENT_KINDS),  # a payment's transfer names no policy file
            )
            .order_by(t.c.transfer_id.desc())
            .limit(1)
        ).scalar_one()
    with engine.begin() as conn:
        run_id = start_run(conn, kind=OBJECTION_RUN, as_of=dt.date.today())
    decision = json.dumps(
        {"objection": objection_id, "upheld": True}, separators=(",", ":"), sort_keys=True
    )
    frame = held.select(
        "policy_id",
        "benefit_period",
        "entity",
        pl.coalesce("payee", "entity").alias("payee"),
        pl.lit(0, pl.Int64).alias("amount_fen"),
        pl.lit(sha).alias("policy_sha256"),
        pl.lit(decision).alias("decision"),
    )
    post_entitlements(engine, frame, run_id, key=key)
    reversed_fen = int(held["net_fen"].sum())
    complete(
        engine,
        run_id,
        summary={"objection": objection_id, "reversed_fen": reversed_fen},
        timings={},
    )
    return run_id, reversed_fen


def upheld_claims(engine: Engine, claims: pl.DataFrame) -> pl.DataFrame:
    """The night's claims with every key the ledger closed (taken away by an upheld
    objection, or deemed waived: `ledgers.objections.closed_keys`) set to refused and zero
    (reason `objection:<id>` or `waived`): the night reverses what it still holds, never
    re-grants."""
    with engine.connect() as conn:
        closed = closed_keys(conn)
    if closed.height == 0:
        return claims
    hit = claims.join(
        closed.rename({"benefit_period": "period", "entity": "entity_id"}),
        on=["policy_id", "period", "entity_id"],
        how="left",
    )
    taken = pl.col("why").is_not_null()
    return hit.with_columns(
        pl.when(taken).then(False).otherwise(pl.col("eligible")).alias("eligible"),
        pl.when(taken).then(0).otherwise(pl.col("amount_fen")).alias("amount_fen"),
        pl.when(taken).then(pl.col("why")).otherwise(pl.col("reason")).alias("reason"),
    ).drop("why")


__all__ = ["Filed", "decide", "object_to", "upheld_claims"]
