"""Public notices and objections (issue 19): what was published, who objected, what was decided.

A nightly run's new entitlements are published (`notices`: one row per run, the day,
the working days open to objection and the deadline, the files' sha256).  During the
notice anyone may object (`objections`: the key objected to, what was said, the
evidence's sha256, and whether the entity held the entitlement or was refused); each
objection is decided once (`objection_decisions`): upheld or dismissed, with a note.

What they mean for money (`jobs.pay`, `jobs.allocate`): a key with an undecided
objection is not instructed; an upheld objection against an entitlement reverses it,
and the nightly run keeps it at zero from then on; a dismissed one releases it.  An
objection from someone refused is recorded and listed for review: the engine never
re-decides it by itself.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import Connection, insert, select

from ledgers.db import LedgerError
from ledgers.frames import read_frame
from ledgers.schema import Notice, Objection, ObjectionDecision, Waiver

NOTICE_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "run_id": pl.Int64,
    "published_on": pl.String,  # dates and times as text: both databases give the same
    "working_days": pl.Int64,
    "deadline": pl.String,
    "entitlements": pl.Int64,
    "amount_fen": pl.Int64,
    "csv_sha256": pl.String,
    "html_sha256": pl.String,
}
OBJECTION_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "objection_id": pl.Int64,
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "standing": pl.String,
    "reason": pl.String,
    "evidence_name": pl.String,
    "evidence_sha256": pl.String,
    "filed_at": pl.String,
    "decision": pl.String,
    "note": pl.String,
    "decided_at": pl.String,
    "decision_run_id": pl.Int64,
}


def notices(conn: Connection) -> pl.DataFrame:
    """Every notice published, by run."""
    t = Notice.__table__
    stmt = select(*[t.c[c] for c in NOTICE_COLUMNS]).order_by(t.c.run_id)
    return read_frame(conn, stmt, NOTICE_COLUMNS).with_columns(
        pl.col("published_on").str.to_date(), pl.col("deadline").str.to_date()
    )


def record_notice(conn: Connection, row: dict[str, object]) -> None:
    """Record a run's notice (once: a run is published on one day for one window)."""
    with conn.begin():
        conn.execute(insert(Notice), [row])


def objections(conn: Connection) -> pl.DataFrame:
    """Every objection with its decision (null while open), in filing order."""
    o, d = Objection.__table__, ObjectionDecision.__table__
    stmt = (
        select(
            *[o.c[c] for c in list(OBJECTION_COLUMNS)[:9]],
            d.c.decision,
            d.c.note,
            d.c.decided_at,
            d.c.run_id.label("decision_run_id"),
        )
        .select_from(o.outerjoin(d, d.c.objection_id == o.c.objection_id))
        .order_by(o.c.objection_id)
    )
    return read_frame(conn, stmt, OBJECTION_COLUMNS)


def file_objection(
    conn: Connection,
    *,
    policy_id: str,
    benefit_period: str,
    entity: str,
    standing: str,
    reason: str,
    evidence_name: str | None,
    evidence_sha256: str | None,
    filed_at: dt.datetime,
) -> int:
    """Record an objection; its id."""
    if not reason.strip():
        raise LedgerError(
            "an objection needs its reason", fix="give --reason with what the objector says"
        )
    with conn.begin():
        result = conn.execute(
            insert(Objection).values(
                policy_id=policy_id,
                benefit_period=benefit_period,
                entity=entity,
                standing=standing,
                reason=reason,
                evidence_name=evidence_name,
                evidence_sha256=evidence_sha256,
                filed_at=filed_at,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def decide_objection(
    conn: Connection,
    objection_id: int,
    *,
    decision: str,
    note: str,
    decided_at: dt.datetime,
    run_id: int | None,
) -> None:
    """Record the decision on an objection (once: a second is refused by the table)."""
    with conn.begin():
        conn.execute(
            insert(ObjectionDecision).values(
                objection_id=objection_id,
                decision=decision,
                note=note,
                decided_at=decided_at,
                run_id=run_id,
            )
        )


def upheld_keys(conn: Connection) -> pl.DataFrame:
    """(policy_id, benefit_period, entity) of every entitlement an upheld objection took
    away: the nightly run keeps them at zero."""
    return (
        objections(conn)
        .filter((pl.col("decision") == "upheld") & (pl.col("standing") == "granted"))
        .select("policy_id", "benefit_period", "entity", "objection_id")
        .unique(["policy_id", "benefit_period", "entity"], keep="first", maintain_order=True)
    )


WAIVER_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "granted_on": pl.String,
    "waived_on": pl.String,
    "reason": pl.String,
    "run_id": pl.Int64,
}


def waivers(conn: Connection) -> pl.DataFrame:
    """Every entitlement deemed waived, by key."""
    t = Waiver.__table__
    stmt = select(*[t.c[c] for c in WAIVER_COLUMNS]).order_by(
        t.c.policy_id, t.c.benefit_period, t.c.entity
    )
    return read_frame(conn, stmt, WAIVER_COLUMNS).with_columns(
        pl.col("granted_on").str.to_date(), pl.col("waived_on").str.to_date()
    )


def record_waivers(conn: Connection, rows: pl.DataFrame) -> None:
    """Record keys deemed waived (`WAIVER_COLUMNS`), in one transaction."""
    if rows.height == 0:
        return
    with conn.begin():
        conn.execute(insert(Waiver), rows.select(list(WAIVER_COLUMNS)).to_dicts())


def closed_keys(conn: Connection) -> pl.DataFrame:
    """(policy_id, benefit_period, entity, why) of every entitlement the nightly run keeps at
    zero: taken away by an upheld objection (`objection:<id>`) or deemed waived (`waived`)."""
    upheld = upheld_keys(conn).select(
        "policy_id",
        "benefit_period",
        "entity",
        pl.format("objection:{}", "objection_id").alias("why"),
    )
    waived = waivers(conn).select(
        "policy_id", "benefit_period", "entity", pl.lit("waived").alias("why")
    )
    return pl.concat([upheld, waived]).unique(
        ["policy_id", "benefit_period", "entity"], keep="first", maintain_order=True
    )


def open_keys(conn: Connection) -> pl.DataFrame:
    """(policy_id, benefit_period, entity) with an undecided objection: not instructed."""
    return (
        objections(conn)
        .filter(pl.col("decision").is_null())
        .select("policy_id", "benefit_period", "entity", "objection_id")
        .unique(["policy_id", "benefit_period", "entity"], keep="first", maintain_order=True)
    )


__all__ = [
    "NOTICE_COLUMNS",
    "OBJECTION_COLUMNS",
    "closed_keys",
    "decide_objection",
    "file_objection",
    "notices",
    "objections",
    "open_keys",
    "record_notice",
    "record_waivers",
    "upheld_keys",
    "waivers",
]
