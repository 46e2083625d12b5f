"""The members each entitlement counted (`once_per`, issue 18.6): `counted_members`.

A policy that counts related members once (a young person hired counts for one
enterprise's grant, once) records, with its grants, which members each counted;
the next evaluation reads them back (`counted_frame`) and leaves them out for every
other entitlement.  One row per (scope, member), ever: the table's primary key
refuses a second, so that two runs, a re-run or a retry can never count a person
twice in a scope.  Knows nothing of rules: a scope is a name, a member an identifier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine, select

from ledgers.db import LedgerError
from ledgers.frames import read_frame, write_frame
from ledgers.masking import mask_entity, mask_entity_expr
from ledgers.schema import CountedMember

# The rows given to `record_counted` and read back by `counted_frame`.
COUNTED_COLUMNS = {
    "scope": pl.String,
    "member": pl.String,
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
}
KEY = ("policy_id", "benefit_period", "entity")


def counted_frame(engine: Engine, scopes: Iterable[str]) -> pl.DataFrame:
    """The members counted so far in `scopes`, with the entitlement key that counted each
    (`COUNTED_COLUMNS` and run_id), in (scope, member) order."""
    wanted = sorted(set(scopes))
    schema = {**COUNTED_COLUMNS, "run_id": pl.Int64}
    if not wanted:
        return pl.DataFrame(schema=schema)
    t = CountedMember.__table__
    stmt = (
        select(*[t.c[c] for c in schema])
        .where(t.c.scope.in_(wanted))
        .order_by(t.c.scope, t.c.member)
    )
    with engine.connect() as conn:
        return read_frame(conn, stmt, schema)


@dataclass(frozen=True)
class Recorded:
    """What `record_counted` did: rows written, and rows the table held already."""

    written: int
    already: int


def record_counted(engine: Engine, rows: pl.DataFrame, run_id: int) -> Recorded:
    """Record the members the run's entitlements counted (`COUNTED_COLUMNS`), in one
    transaction: a (scope, member) already recorded for the same key is left as it is
    (a re-run, a resumed run); one recorded for another key is refused, naming the
    member masked, before anything is written.  The primary key refuses what a
    concurrent writer slipped in between."""
    frame = rows.select(list(COUNTED_COLUMNS)).unique(maintain_order=True)
    twice = frame.group_by(["scope", "member"]).agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    if twice.height:
        member = twice.row(0, named=True)
        raise LedgerError(
            f"member {mask_entity(member['member'])} would be counted by {member['n']} "
            f"entitlements of {member['scope']} at once",
            fix="this is a fault of the evaluation: report it with the run id",
        )
    t = CountedMember.__table__
    # A login refused here is a fault from outside, as on the transfers
    # (`ledgers.db.database_fault`: "cannot write the ledger"), leaving the run to finish.
    with engine.begin() as conn:
        # What the scopes hold already, read once (one pass, whatever the size: a lookup
        # per chunk of pairs made the run quadratic in the members counted).
        scopes = sorted(set(frame["scope"].to_list()))
        held = read_frame(
            conn,
            select(*[t.c[c] for c in COUNTED_COLUMNS]).where(t.c.scope.in_(scopes)),
            COUNTED_COLUMNS,
        )
        mine = frame.join(held, on=["scope", "member"], how="inner", suffix="_held")
        other = mine.filter(pl.any_horizontal([pl.col(c) != pl.col(f"{c}_held") for c in KEY]))
        if other.height:
            r = other.sort("scope", "member").row(0, named=True)
            raise LedgerError(
                f"member {mask_entity(r['member'])} is already counted for "
                f"{r['policy_id_held']} {r['benefit_period_held']} "
                f"{mask_entity(r['entity_held'])}, not for {r['policy_id']} "
                f"{r['benefit_period']} {mask_entity(r['entity'])} ({r['scope']})",
                fix="another run counted it since this one was evaluated: run again, "
                "and the evaluation leaves it out",
            )
        new = frame.join(held, on=["scope", "member"], how="anti", maintain_order="left")
        write_frame(conn, "counted_members", new.with_columns(pl.lit(run_id).alias("run_id")))
    return Recorded(new.height, mine.height)


def counted_members(
    engine: Engine,
    *,
    policy: str | None = None,
    member: str | None = None,
    entity: str | None = None,
    unmask: bool = False,
) -> pl.DataFrame:
    """The auditor's view of `counted_members`: which entitlement (policy, benefit period,
    entity) counted which member, in which run and scope, filtered by any of them given
    in full; in (scope, member) order, identity numbers masked unless `unmask`."""
    t = CountedMember.__table__
    schema = {**COUNTED_COLUMNS, "run_id": pl.Int64}
    stmt = select(*[t.c[c] for c in schema]).order_by(t.c.scope, t.c.member)
    if policy is not None:
        stmt = stmt.where(t.c.policy_id == policy)
    if member is not None:
        stmt = stmt.where(t.c.member == member)
    if entity is not None:
        stmt = stmt.where(t.c.entity == entity)
    with engine.connect() as conn:
        frame = read_frame(conn, stmt, schema)
    if unmask:
        return frame
    return frame.with_columns(
        mask_entity_expr(pl.col("member")).alias("member"),
        mask_entity_expr(pl.col("entity")).alias("entity"),
    )


def counted_text(frame: pl.DataFrame) -> str:
    """`counted_members` as lines: the member, the entitlement that counted it, the run."""
    if frame.height == 0:
        return "no member is counted (no once_per policy has granted, or none matches)\n"
    lines = [f"{'member':<20} {'counted for':<44} {'run':>5}  scope"]
    for r in frame.iter_rows(named=True):
        key = f"{r['policy_id']} {r['benefit_period']} {r['entity']}"
        lines.append(f"{r['member']:<20} {key:<44} {r['run_id']:>5}  {r['scope']}")
    lines.append(f"{frame.height:,} member(s) counted")
    return "\n".join(lines) + "\n"
