"""Posting to the ledger: entitlements become grants, adjustments, reversals and clawbacks.

The entry points.  `post_entitlements` checks the posted frame whole
(`ledgers.validate`), reads what the ledger already holds for the posted keys
once and computes the difference with Polars (`ledgers.plan`: which key gets a
grant, an adjustment, a reversal or a clawback), and writes only that, in
chunks each checked before commit (`ledgers.write`).  `post_transfers` appends
payments through the same writer.  `PostResult` says what one post did.

Every transfer is chained under the ledger key (`ledgers.keys`, chain version 2):
the caller passes it, and posting first checks that the ledger's last keyed
transfer was written under the same key, so that a chain is never continued
under another one.

Only one poster writes at a time: on PostgreSQL a session advisory lock held for
the whole post (a second poster waits); on SQLite each chunk is BEGIN IMMEDIATE
and refuses to write if another writer moved the chain head meanwhile
(`ledger_connection`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select

from ledgers.chain import PERSONAL_FIELDS, personal_content_expr
from ledgers.db import LedgerError, privileged
from ledgers.frames import read_frame
from ledgers.holdings import Holdings, chain_head, keep_snapshot
from ledgers.keys import LedgerKey
from ledgers.locks import LEDGER_LOCK, hold
from ledgers.plan import entitlement_state, payable_balances, plan_transfers, state_by_period
from ledgers.schema import Run, Transfer
from ledgers.validate import ENTITLEMENT_COLUMNS, validate_entitlements, validate_transfers
from ledgers.write import DEFAULT_CHUNK, append

__all__ = [
    "DEFAULT_CHUNK",
    "ENTITLEMENT_COLUMNS",
    "PostResult",
    "ledger_connection",
    "post_entitlements",
    "post_transfers",
    "require_same_key",
    "validate_entitlements",
]


@dataclass(frozen=True)
class PostResult:
    """What one post did, per key and in fen."""

    run_id: int
    keys: int
    granted: int
    adjusted: int
    reversed: int
    unchanged: int
    transfers: int
    granted_fen: int
    increased_fen: int
    decreased_fen: int
    clawback_fen: int
    chunks: int
    first_transfer_id: int | None
    last_transfer_id: int | None
    head_hash: str

    def to_json(self) -> dict[str, Any]:
        """The result as plain data."""
        return asdict(self)


WRITE_FIX = (
    'post as a login holding the batch role, disburse_batch (see ledgers/README.md, "Roles")'
)


# --- public API ---------------------------------------------------------------------


def post_entitlements(
    engine: Engine,
    entitlements: pl.DataFrame,
    run_id: int,
    *,
    key: LedgerKey,
    chunk_size: int = DEFAULT_CHUNK,
    pg_staging: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    known: Holdings | None = None,
    keep: Path | None = None,
    then: Callable[[Holdings], None] | None = None,
) -> PostResult:
    """Post the difference between `entitlements` and the ledger, for `run_id`, chained
    under `key`.

    `entitlements` has one row per key with columns policy_id, benefit_period,
    entity, payee, amount_fen (Int64, >= 0), policy_sha256 and decision (compact
    JSON, may be null); other columns are ignored.  Refused whole, with every
    problem named, if any row is malformed.

    On PostgreSQL each chunk is COPYed straight into the ledger tables, whose
    primary keys refuse a duplicate; `pg_staging=True` COPYs into a temporary
    table and INSERTs ... ON CONFLICT DO NOTHING with a count check instead (the
    same guarantee, slower: see `ledgers.write`).  `on_chunk(k, rows)`
    is called after chunk k (1-based) of `rows` transfers has committed.

    `known`: what `holdings` read earlier; used instead of reading the ledger
    again if, under the ledger lock, the chain head is still the one it saw
    (nothing was posted since) and it covers every policy posted.  Then, with
    `keep` (a folder), the holdings after the post (`known` plus what was
    written) are recorded as a snapshot there for the next reader
    (`ledgers.holdings`).  With `then`, it is handed them too (for a caller that
    posts again and keeps what the ledger holds between posts, `jobs.events.serve`).
    """
    frame = validate_entitlements(entitlements)
    with privileged("post to the ledger", WRITE_FIX, engine), ledger_connection(engine) as conn:
        _require_run(conn, run_id)
        require_same_key(conn, key)
        head = chain_head(conn)
        periods = list(
            frame.select("policy_id", "benefit_period")
            .unique()
            .sort(["policy_id", "benefit_period"])
            .iter_rows()
        )
        posted_ids = {p for p, _ in periods}
        current = (
            known
            if known is not None and known.head == head and posted_ids <= known.policy_ids
            else None
        )
        if current is not None:
            held = current.frame
            if frame.height * 8 < held.height:  # a few keys (events): their entities' alone
                entities = frame.get_column("entity").unique().implode()
                held = held.filter(pl.col("entity").is_in(entities))
            existing = state_by_period(held, periods)
        else:
            existing = entitlement_state(conn, periods)
        conn.commit()
        plan = plan_transfers(frame, existing, lambda payees: payable_balances(conn, payees))
        conn.commit()
        written = append(conn, plan.transfers, run_id, head, chunk_size, key, pg_staging, on_chunk)
        if current is not None and (keep is not None or then is not None):
            end = (written.last_id, written.head_hash) if written.last_id is not None else head
            held_after = current.after(plan.transfers, end)
            if keep is not None:
                keep_snapshot(conn, held_after, keep, run_id)
                conn.commit()
            if then is not None:
                then(held_after)
    return PostResult(
        run_id=run_id,
        keys=frame.height,
        granted=plan.granted,
        adjusted=plan.adjusted,
        reversed=plan.reversed,
        unchanged=plan.unchanged,
        transfers=written.transfers,
        granted_fen=plan.granted_fen,
        increased_fen=plan.increased_fen,
        decreased_fen=plan.decreased_fen,
        clawback_fen=plan.clawback_fen,
        chunks=written.chunks,
        first_transfer_id=written.first_id,
        last_transfer_id=written.last_id,
        head_hash=written.head_hash,
    )


def post_transfers(
    engine: Engine,
    transfers: pl.DataFrame,
    run_id: int,
    *,
    key: LedgerKey,
    chunk_size: int = DEFAULT_CHUNK,
) -> int:
    """Append payment transfers (instructed, settled, rejected) in the given order; the count.

    Columns: kind, debit_account, credit_account, amount_fen, and optionally
    policy_id, benefit_period, entity, payee, policy_sha256, decision.  The same
    chain, chunks and checks as entitlements: a payable may not go below zero.
    Entitlement kinds are refused here: they go through `post_entitlements`.
    """
    frame = validate_transfers(transfers)
    with privileged("post to the ledger", WRITE_FIX, engine), ledger_connection(engine) as conn:
        _require_run(conn, run_id)
        require_same_key(conn, key)
        head = chain_head(conn)
        conn.commit()
        return append(conn, frame, run_id, head, chunk_size, key).transfers


def require_same_key(conn: Connection, key: LedgerKey) -> None:
    """Raise a LedgerError unless the last transfer's digest is `key`'s (or it has none).

    Continuing a chain under another key would leave a ledger that no single key
    verifies; a lost key must be restored, not replaced.  The last transfer is
    enough: a chain never goes back from keyed to unkeyed transfers.
    """
    t = Transfer.__table__
    stmt = (
        select(t.c.transfer_id, *[t.c[f] for f in PERSONAL_FIELDS], t.c.personal_mac)
        .order_by(t.c.transfer_id.desc())
        .limit(1)
    )
    schema = {
        "transfer_id": pl.Int64,
        **dict.fromkeys((*PERSONAL_FIELDS, "personal_mac"), pl.String),
    }
    last = read_frame(conn, stmt, schema)
    if last.height == 0 or last.item(0, "personal_mac") is None:
        return
    content = last.select(personal_content_expr()).item()
    if key.personal_macs([content])[0] != last.item(0, "personal_mac"):
        raise LedgerError(
            f"{key.source} is not the key this ledger was written with: the personal fields "
            f"of transfer {last.item(0, 'transfer_id')} do not match their digest under it "
            "(nothing was posted)",
            fix="use the ledger's own key file (set DISBURSE_LEDGER_KEY_FILE); if it is "
            "the right one, run `disburse audit verify`: that transfer may have been changed",
        )


@contextmanager
def ledger_connection(engine: Engine) -> Iterator[Connection]:
    """A connection that alone may write the ledger while it is open.

    PostgreSQL: a session advisory lock, so a second poster waits for the first
    to finish.  SQLite: every transaction on it is BEGIN IMMEDIATE (the write
    lock), and each chunk re-checks the chain head it expects.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            conn.execution_options(sqlite_begin="IMMEDIATE")
            yield conn
            return
        with hold(conn, LEDGER_LOCK, wait=True):
            yield conn


def _require_run(conn: Connection, run_id: int) -> None:
    found = conn.execute(select(Run.run_id).where(Run.run_id == run_id)).scalar_one_or_none()
    if found is None:
        raise LedgerError(
            f"run {run_id} is not recorded in this database",
            fix="post under the run that computed the entitlements (see the runs table)",
        )
