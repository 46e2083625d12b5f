"""What the ledger holds per entitlement key: read once per run, kept between runs.

The holdings of a set of policies are the net amount of every (policy_id,
benefit_period, entity, payee) over the entitlement transfers: + what came out
of a budget, - what went back to it.  Allocation reads them to count what
earlier runs granted, and posting computes its difference against them.

Reading them is one scan of every entitlement transfer of those policies: at a
million keys that is most of a run with nothing to post.  So a post that
started from holdings read at the chain head keeps the holdings after it (that
read plus the transfers it just wrote) as a snapshot: a Parquet file under the
store, recorded in `holdings_snapshots` with the head it is valid at (transfer
id and hash), the policies it covers and the file's sha256.

A later read starts from the newest snapshot that

* covers every policy asked for,
* is still in the chain: the transfer at its head id has its head hash (the
  ledger is append-only and hash-chained, so the transfers up to that id are
  the ones the snapshot summed), and
* whose file is unchanged (its sha256 is the recorded one),

and reads only the entitlement transfers after its head.  Anything else (no
snapshot, a moved or edited file, another database restored under the store)
falls back to the full scan, which is what a snapshot must equal: `audit
verify` recomputes the newest one from the ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, case, delete, func, insert, select

from ledgers.chain import GENESIS
from ledgers.frames import read_frame
from ledgers.schema import ENTITLEMENT_KINDS, HoldingsSnapshot, Transfer

HOLDINGS_SCHEMA: dict[str, type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "net_fen": pl.Int64,
}
HOLDING_KEY = ("policy_id", "benefit_period", "entity", "payee")
KEEP_SNAPSHOTS = 2  # the newest ones; older rows and files are removed


def chain_head(conn: Connection) -> tuple[int, str]:
    """The last transfer's id and hash (0 and the genesis hash for an empty ledger)."""
    t = Transfer.__table__
    row = conn.execute(
        select(t.c.transfer_id, t.c.hash).order_by(t.c.transfer_id.desc()).limit(1)
    ).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def signed_amount() -> Any:
    """SQL: an entitlement transfer's effect on its key (+ from the budget, - back to it)."""
    t = Transfer.__table__
    return case(
        (func.substr(t.c.debit_account, 1, 7) == "budget:", t.c.amount_fen),
        else_=-t.c.amount_fen,
    )


def _summed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by(HOLDING_KEY).agg(pl.col("net_fen").sum())


def read_held(conn: Connection, policy_ids: list[str], after: int = 0) -> pl.DataFrame:
    """Net amount per (policy, period, entity, payee) of these policies, in one scan of the
    entitlement transfers with an id above `after`.

    The scan returns the key, the payee (NULL when it is the entity itself: a
    third fewer bytes) and the signed amount; Polars sums them.  At a million
    keys that is twice as fast as PostgreSQL's own GROUP BY, and one scan
    instead of one per policy.
    """
    if not policy_ids:
        return pl.DataFrame(schema=HOLDINGS_SCHEMA)
    t = Transfer.__table__
    stmt = select(
        t.c.policy_id,
        t.c.benefit_period,
        t.c.entity,
        func.nullif(t.c.payee, t.c.entity),
        signed_amount(),
    ).where(t.c.policy_id.in_(policy_ids), t.c.kind.in_(ENTITLEMENT_KINDS))
    if after:
        stmt = stmt.where(t.c.transfer_id > after)
    frame = read_frame(conn, stmt, HOLDINGS_SCHEMA)
    return _summed(frame.with_columns(pl.col("payee").fill_null(pl.col("entity"))))


def posted_by_run(conn: Connection, run_id: int) -> pl.DataFrame:
    """The entitlement transfers one run posted, in chain order, each with its effect on its
    key: kind, policy_id, benefit_period, entity, payee, net_fen (+ from the budget, - back)."""
    t = Transfer.__table__
    stmt = (
        select(t.c.kind, *[t.c[c] for c in HOLDING_KEY], signed_amount())
        .where(t.c.run_id == run_id, t.c.kind.in_(ENTITLEMENT_KINDS))
        .order_by(t.c.transfer_id)
    )
    return read_frame(conn, stmt, {"kind": pl.String, **HOLDINGS_SCHEMA})


# Polars: `signed_amount` over a frame of transfers.
SIGNED_FEN = (
    pl.when(pl.col("debit_account").str.starts_with("budget:"))
    .then(pl.col("amount_fen"))
    .otherwise(-pl.col("amount_fen"))
)


def _effects(transfers: pl.DataFrame) -> pl.DataFrame:
    """What each entitlement transfer (chain columns) does to its key and payee (not summed)."""
    return transfers.filter(pl.col("kind").is_in(ENTITLEMENT_KINDS)).select(
        *HOLDING_KEY, SIGNED_FEN.alias("net_fen")
    )


@dataclass(frozen=True)
class Holdings:
    """What the ledger held for some policies, and the chain head it was read at."""

    head: tuple[int, str]
    policy_ids: frozenset[str]
    frame: pl.DataFrame  # HOLDINGS_SCHEMA, every (key, payee) ever posted, net 0 included
    from_snapshot: int | None = None  # the head id of the snapshot it started from

    def nonzero(self) -> pl.DataFrame:
        """One row per (policy_id, benefit_period, entity, payee) holding a net amount, unordered."""
        return self.frame.filter(pl.col("net_fen") != 0)

    def after(self, transfers: pl.DataFrame, head: tuple[int, str]) -> Holdings:
        """The holdings once `transfers` (the next ones in the chain) are written up to `head`."""
        if transfers.height == 0:
            return Holdings(head, self.policy_ids, self.frame)
        # Only the keys the transfers touch are summed again: a post of a few keys (an
        # event's) into a large ledger grouped every key (0.6 s at 1M enterprises).
        effects = _summed(_effects(transfers))
        key = list(HOLDING_KEY)
        touched = effects.select(key)
        before = self.frame.join(touched, on=key, how="semi", nulls_equal=True)
        rest = self.frame.join(touched, on=key, how="anti", nulls_equal=True)
        now = _summed(pl.concat([before, effects], how="vertical_relaxed"))
        return Holdings(
            head,
            self.policy_ids,
            pl.concat([rest, now.select(rest.columns)], how="vertical_relaxed"),
        )


def holdings(engine: Engine, policy_ids: list[str], folder: Path | None = None) -> Holdings:
    """What the ledger holds for every key of these policies, all periods.

    With `folder` (where snapshots are kept), the newest usable snapshot plus the
    transfers after it; else, or if none is usable, one scan of the ledger.  The
    head is read first: if anything is posted between it and the scan, the head a
    later post sees differs from this one, and the post reads again.
    """
    ids = sorted(set(policy_ids))
    with engine.connect() as conn:
        head = chain_head(conn)
        snap = usable_snapshot(conn, ids, head[0]) if folder is not None else None
        if snap is None:
            return Holdings(head, frozenset(ids), read_held(conn, ids))
        base, start = snap
        later = read_held(conn, ids, after=start)
    frame = base.filter(pl.col("policy_id").is_in(ids))
    if later.height:
        frame = _summed(pl.concat([frame, later]))
    return Holdings(head, frozenset(ids), frame, from_snapshot=start)


def usable_snapshot(
    conn: Connection, policy_ids: list[str], head_id: int
) -> tuple[pl.DataFrame, int] | None:
    """The frame and head id of the newest recorded snapshot usable for these policies
    at chain head `head_id` (see the module docstring), or None."""
    t = Transfer.__table__
    for record in _records(conn, up_to=head_id, limit=KEEP_SNAPSHOTS):
        if not set(policy_ids) <= record.policy_ids:
            continue
        in_chain = conn.execute(
            select(t.c.hash).where(t.c.transfer_id == record.head_id)
        ).scalar_one_or_none()
        if in_chain != record.head_hash:
            continue
        frame = record.read()
        if frame is not None:
            return frame, record.head_id
    return None


@dataclass(frozen=True)
class SnapshotRecord:
    """A row of `holdings_snapshots`."""

    head_id: int
    head_hash: str
    policy_ids: frozenset[str]
    file: Path
    sha256: str

    def read(self) -> pl.DataFrame | None:
        """The recorded frame, or None if the file is missing or not the one recorded."""
        try:
            data = self.file.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            return None
        return pl.read_parquet(data)


def _records(conn: Connection, *, up_to: int | None, limit: int) -> list[SnapshotRecord]:
    """The recorded snapshots, newest head first, at most `limit`, heads <= `up_to`."""
    s = HoldingsSnapshot.__table__
    stmt = select(s.c.head_id, s.c.head_hash, s.c.policy_ids, s.c.file, s.c.sha256)
    if up_to is not None:
        stmt = stmt.where(s.c.head_id <= up_to)
    rows = conn.execute(stmt.order_by(s.c.head_id.desc()).limit(limit)).all()
    return [
        SnapshotRecord(
            int(r.head_id),
            str(r.head_hash),
            frozenset(json.loads(r.policy_ids)),
            Path(r.file),
            str(r.sha256),
        )
        for r in rows
    ]


def newest_snapshot(conn: Connection) -> SnapshotRecord | None:
    """The snapshot with the highest head, whatever its state (`audit verify` checks it)."""
    found = _records(conn, up_to=None, limit=1)
    return found[0] if found else None


def keep_snapshot(
    conn: Connection, after: Holdings, folder: Path, run_id: int | None
) -> Path | None:
    """Record `after` (holdings valid at its head) as the newest snapshot, in the caller's
    transaction, and drop all but the newest `KEEP_SNAPSHOTS`; the file written, or None
    when there is nothing to keep (an empty ledger) or the head already has one."""
    s = HoldingsSnapshot.__table__
    head_id, head_hash = after.head
    if head_id == 0:
        return None
    if conn.execute(select(s.c.head_id).where(s.c.head_id == head_id)).first() is not None:
        return None
    path = folder / f"holdings-{head_id}-{head_hash[:16]}.parquet"
    scratch = path.with_suffix(".part")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # lz4: a third faster to write and twice as fast to read as zstd at 1M keys.
        after.frame.write_parquet(scratch, statistics=False, compression="lz4")
        digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
        os.replace(scratch, path)
    except OSError:
        # A cache: without it the next run reads the ledger whole, as it always could.
        scratch.unlink(missing_ok=True)
        return None
    conn.execute(
        insert(HoldingsSnapshot).values(
            head_id=head_id,
            head_hash=head_hash,
            policy_ids=json.dumps(sorted(after.policy_ids), separators=(",", ":")),
            file=str(path.resolve()),
            sha256=digest,
            rows=after.frame.height,
            run_id=run_id,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    old = conn.execute(
        select(s.c.head_id, s.c.file).order_by(s.c.head_id.desc()).offset(KEEP_SNAPSHOTS)
    ).all()
    if old:
        conn.execute(delete(HoldingsSnapshot).where(s.c.head_id.in_([r.head_id for r in old])))
        for r in old:
            Path(r.file).unlink(missing_ok=True)
    return path
