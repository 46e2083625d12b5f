"""The event inbox: events delivered one at a time, and the outcome of each, once.

An event is a row of a catalogue source as JSON text with an operation (upsert or
remove), in `event_inbox`; upstream systems insert into it, or `disburse events add`
does.  The event path records what became of each in `event_outcomes` (migration
0012): decided, by an events run over a staged night, or quarantined with the rule
and its reason.  An event without an outcome is pending.  The outcome's primary key
is the event's id: an event is decided at most once, whoever serves at once or again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl
from sqlalchemy import Connection, func, insert, select

from ledgers.frames import read_frame, write_frame
from ledgers.schema import EventOutcome, InboxEvent

OPS = ("upsert", "remove")
EVENT_SCHEMA = {"event_id": pl.Int64, "source": pl.String, "op": pl.String, "row_json": pl.String}
OUTCOME_SCHEMA = {
    "event_id": pl.Int64,
    "outcome": pl.String,
    "run_id": pl.Int64,
    "base_run_id": pl.Int64,
    "column_name": pl.String,
    "rule": pl.String,
    "reason": pl.String,
}
CHANNEL = "disburse_events"  # PostgreSQL: an insert into the inbox notifies it (0012)


def add_events(conn: Connection, events: Iterable[tuple[str, str, str]]) -> list[int]:
    """Insert (source, op, row_json) events, in order; their ids.  The caller commits."""
    now = dt.datetime.now(dt.UTC)
    rows = [{"source": s, "op": o, "row_json": r, "received_at": now} for s, o, r in events]
    if not rows:
        return []
    ids = conn.execute(
        insert(InboxEvent).returning(InboxEvent.event_id, sort_by_parameter_order=True), rows
    ).scalars()
    return list(ids)


def pending(conn: Connection, limit: int, after: int | None = None) -> pl.DataFrame:
    """The oldest `limit` events without an outcome, in the order they arrived; with
    `after`, only those of a larger id (the index is read from there, not from the
    inbox's first event)."""
    i, o = InboxEvent.__table__, EventOutcome.__table__
    outcome = select(o.c.event_id).where(o.c.event_id == i.c.event_id)
    stmt = select(i.c.event_id, i.c.source, i.c.op, i.c.row_json)
    if after is not None:
        # On both sides: PostgreSQL's merge anti join does not carry it across.
        stmt = stmt.where(i.c.event_id > after)
        outcome = outcome.where(o.c.event_id > after)
    stmt = stmt.where(~outcome.exists()).order_by(i.c.event_id).limit(limit)
    return read_frame(conn, stmt, EVENT_SCHEMA)


def decided_over(conn: Connection, base_run_id: int) -> pl.DataFrame:
    """The events decided over the staged night `base_run_id`, in the order they arrived:
    what the event path lays over that night's data before deciding more."""
    i, o = InboxEvent.__table__, EventOutcome.__table__
    stmt = (
        select(i.c.event_id, i.c.source, i.c.op, i.c.row_json)
        .join(o, o.c.event_id == i.c.event_id)
        .where(o.c.outcome == "decided", o.c.base_run_id == base_run_id)
        .order_by(i.c.event_id)
    )
    return read_frame(conn, stmt, EVENT_SCHEMA)


def decided_count(conn: Connection, base_run_id: int) -> int:
    """How many events were decided over the staged night `base_run_id`."""
    o = EventOutcome.__table__
    stmt = select(func.count()).where(o.c.outcome == "decided", o.c.base_run_id == base_run_id)
    return int(conn.execute(stmt).scalar_one())


def record_outcomes(conn: Connection, outcomes: pl.DataFrame) -> int:
    """Record what became of events (`OUTCOME_SCHEMA`); the caller commits.  An event that
    already has an outcome is refused by the primary key."""
    if outcomes.height == 0:
        return 0
    now = dt.datetime.now(dt.UTC)
    frame = outcomes.select(list(OUTCOME_SCHEMA))
    if conn.dialect.name == "postgresql":  # COPY: a batch's outcomes in one statement
        stamped = frame.with_columns(
            pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("decided_at")
        )
        return write_frame(conn, EventOutcome.__tablename__, stamped)
    rows = frame.to_dicts()
    conn.execute(insert(EventOutcome), [{**r, "decided_at": now} for r in rows])
    return len(rows)


def outcomes(conn: Connection, event_ids: list[int]) -> pl.DataFrame:
    """The outcomes of these events (those that have one), with the source row."""
    i, o = InboxEvent.__table__, EventOutcome.__table__
    stmt = (
        select(
            o.c.event_id,
            o.c.outcome,
            o.c.run_id,
            o.c.base_run_id,
            o.c.column_name,
            o.c.rule,
            o.c.reason,
            i.c.source,
            i.c.op,
            i.c.row_json,
        )
        .join(i, i.c.event_id == o.c.event_id)
        .where(o.c.event_id.in_(event_ids))
        .order_by(o.c.event_id)
    )
    return read_frame(
        conn,
        stmt,
        {**OUTCOME_SCHEMA, "source": pl.String, "op": pl.String, "row_json": pl.String},
    )


def counts(conn: Connection) -> dict[str, int]:
    """Events in the inbox by outcome (pending: none yet)."""
    total = conn.execute(select(func.count()).select_from(InboxEvent)).scalar_one()
    by = dict(
        conn.execute(
            select(EventOutcome.outcome, func.count()).group_by(EventOutcome.outcome)
        ).all()
    )
    done = sum(by.values())
    return {"pending": int(total) - done, **{k: int(v) for k, v in sorted(by.items())}}
