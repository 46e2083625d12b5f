"""Writing planned transfers to the ledger: chunked, chained, checked before each commit.

Writes go in chunks, each its own transaction, checked before commit: the chain
continues from the head this poster read (no fork), every entitlement key is
new (`entitlement_keys` primary key: the last line of defence), and every payable
debited stays >= 0 (every receivable credited stays <= 0).  Balances sum to zero
by construction: a transfer is one amount between two different accounts.  A
crash between chunks loses nothing: posting the same frame again writes what is
missing, because the difference is computed against what was committed.

What a row stores (migration 0013): the digests as their 32 bytes and the policy
file's version by number (`ledgers.versions`, numbered before the first chunk).
How a chunk is written: on PostgreSQL, binary COPY straight into `transfers` (the
digests go as bytes, the integers as integers: nothing for the server to parse)
and COPY of CSV into `entitlement_keys`, inside the chunk's transaction; with
`pg_staging=True`, COPY into a temporary staging table and INSERT ... SELECT ...
ON CONFLICT DO NOTHING with a count check.  Both refuse a conflicting chunk
whole (a skipped row would break the chain), so they guarantee the same; the
direct COPY is the faster (docs/benchmarks.md, "Posting").  On PostgreSQL the
chunks take turns on two connections: chunk k+1 is written while chunk k is, and
commits only after chunk k has, once its checks see it (`_write_in_turns`), so
what is committed is always a prefix of the chain.  On SQLite, one executemany
per table (INSERT OR IGNORE, counted) in the chunk's transaction, one chunk after
the other.  The hash chain and CSV of the next chunk are computed in a thread
while the database writes.

The caller holds the ledger's write lock (`ledgers.post.ledger_connection`) for
the whole write; on SQLite each chunk also re-checks the chain head it expects.
"""

from __future__ import annotations

import io
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl
from psycopg import IntegrityError as DatabaseIntegrityError
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from ledgers import accounts, versions
from ledgers.chain import CHAIN_FIELDS, DIGEST_BYTES, DIGESTS, GENESIS, with_hashes
from ledgers.checks import key_name
from ledgers.db import LedgerError
from ledgers.frames import executemany, prefetch, read_frame, write_frame
from ledgers.holdings import chain_head
from ledgers.keys import LedgerKey
from ledgers.masking import mask_account_address
from ledgers.schema import Transfer
from ledgers.validate import KEY

# The stored columns of `transfers`, in the order they are written, with the PostgreSQL
# type binary COPY sends each as (it must be the column's own type).
TRANSFER_TYPES = {
    "transfer_id": "int8",
    "kind": "varchar",
    "debit_account": "varchar",
    "credit_account": "varchar",
    "amount_fen": "int8",
    "run_id": "int4",
    "policy_id": "varchar",
    "benefit_period": "varchar",
    "entity": "varchar",
    "payee": "varchar",
    "policy_version_id": "int4",
    "decision": "text",
    "personal_mac": "bytea",
    "prev_hash": "bytea",
    "hash": "bytea",
}
TRANSFER_COLUMNS = tuple(TRANSFER_TYPES)
KEY_COLUMNS = (*KEY, "transfer_id", "run_id")
DEFAULT_CHUNK = 100_000


@dataclass(frozen=True)
class Written:
    """What `append` wrote: transfers, chunks, the first and last id, the new head hash."""

    transfers: int
    chunks: int
    first_id: int | None
    last_id: int | None
    head_hash: str


def append(
    conn: Connection,
    frame: pl.DataFrame,
    run_id: int,
    head: tuple[int, str],
    chunk_size: int,
    key: LedgerKey,
    pg_staging: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Written:
    """Write `frame` (transfers in chain order, no ids yet) after `head`, chunk by chunk,
    chained under `key` (chain version 2, `ledgers.chain`)."""
    if chunk_size < 1:
        raise LedgerError("chunk_size must be at least 1\n  fix: pass a positive chunk size")
    head_id, head_hash = head
    if frame.height == 0:
        return Written(0, 0, None, None, head_hash)
    frame = frame.with_columns(
        transfer_id=pl.int_range(head_id + 1, head_id + 1 + frame.height, dtype=pl.Int64),
        run_id=pl.lit(run_id, pl.Int64),
    ).select(CHAIN_FIELDS)
    known = versions.ensure(conn, frame)
    # Hash and serialise chunk k+1 in a thread while chunk k is in the database:
    # the chain needs only the previous hash, not the previous commit.
    prepared = prefetch(
        _prepared_chunks(frame, head_hash, chunk_size, conn.dialect.name, key, known)
    )
    if conn.dialect.name == "postgresql":
        chunks, expected = _write_in_turns(conn, prepared, head, pg_staging, on_chunk)
    else:
        chunks, expected = 0, head
        for chunk in prepared:
            _write_chunk(conn, chunk, expected, pg_staging)
            expected = (chunk.last_id, chunk.last_hash)
            chunks += 1
            if on_chunk is not None:
                on_chunk(chunks, chunk.frame.height)
    return Written(frame.height, chunks, head_id + 1, expected[0], expected[1])


def _write_in_turns(
    conn: Connection,
    prepared: Iterator[_Chunk],
    head: tuple[int, str],
    pg_staging: bool,
    on_chunk: Callable[[int, int], None] | None,
) -> tuple[int, tuple[int, str]]:
    """PostgreSQL: the chunks in turns on two connections, committed in chain order.

    One backend writing a chunk (parsing the CSV, heap, indexes, WAL) is the whole cost of
    posting, and it uses one core.  So chunk k+1 is COPYed on a second connection
    while chunk k is still being written; before it commits, it waits for chunk k to
    commit, then checks the chain and the guarded balances as the lone writer would
    (its statements now see chunk k).  What is committed is always a prefix of the
    chain; a chunk that fails rolls back the one after it.  Two connections post
    faster than one (measured in docs/benchmarks.md, "Posting").  The second connection
    needs no lock of its own: the first holds the ledger lock for both.

    A chunk waits for the one before it in Python while its transaction is open, which
    PostgreSQL cannot see; that is safe only because the two never wait for each other
    in the database: their transfer ids are disjoint, and their entitlement keys too
    (a key appears once in a posted frame, `validate_entitlements`, and only its grant
    writes it).
    """
    committed = 0
    expected = head
    with conn.engine.connect() as other, ThreadPoolExecutor(2, thread_name_prefix="post") as pool:
        lanes = (conn, other)
        in_flight: deque[tuple[_Chunk, Future[None]]] = deque()
        previous: Future[None] | None = None

        def settle() -> None:
            nonlocal committed
            chunk, done = in_flight.popleft()
            done.result()
            committed += 1
            if on_chunk is not None:
                on_chunk(committed, chunk.frame.height)

        for chunk in prepared:
            if len(in_flight) == len(lanes):
                settle()  # frees the lane of the chunk two back
            lane = lanes[(committed + len(in_flight)) % len(lanes)]
            previous = pool.submit(_write_after, lane, chunk, expected, previous, pg_staging)
            in_flight.append((chunk, previous))
            expected = (chunk.last_id, chunk.last_hash)
        while in_flight:
            settle()
    return committed, expected


@dataclass(frozen=True)
class _Chunk:
    frame: pl.DataFrame  # the transfers as chained: digests in hex, the policy's sha256
    stored: pl.DataFrame  # as stored (TRANSFER_COLUMNS): digests as bytes, the version's number
    grants: pl.DataFrame
    grants_csv: bytes | None  # PostgreSQL: their new entitlement keys as CSV for COPY
    guarded: list[str]
    first_id: int
    last_id: int
    last_hash: str


def _csv(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    return buf.getvalue()


def stored_rows(chunk: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """Chained transfers (`with_hashes`) as `transfers` stores them: TRANSFER_COLUMNS, the
    digests as bytes, the policy's sha256 as its number in `known` (`ledgers.versions`)."""
    stored = chunk.with_columns(
        versions.numbered(known),
        *[pl.col(b).alias(c) for c, b in zip(DIGESTS, DIGEST_BYTES, strict=True)],
    )
    unnumbered = stored.filter(
        pl.col("policy_sha256").is_not_null() & pl.col("policy_version_id").is_null()
    )
    if unnumbered.height:
        raise LedgerError(
            f"policy {unnumbered.item(0, 'policy_id')} version {unnumbered.item(0, 'policy_sha256')} "
            "has no number in policy_versions (nothing was written)\n"
            "  fix: post again; if it recurs, run `disburse audit verify`"
        )
    return stored.select(TRANSFER_COLUMNS)


def _prepared_chunks(
    frame: pl.DataFrame,
    prev_hash: str,
    chunk_size: int,
    dialect: str,
    key: LedgerKey,
    known: pl.DataFrame,
) -> Iterator[_Chunk]:
    for start in range(0, frame.height, chunk_size):
        chunk = with_hashes(frame.slice(start, chunk_size), prev_hash, key)
        prev_hash = str(chunk.get_column("hash")[-1])
        grants = chunk.filter(pl.col("kind") == "grant").select(KEY_COLUMNS)
        # The accounts that must not cross zero and that this chunk moves towards it.
        guarded = (
            pl.concat(
                [
                    chunk.select(pl.col("debit_account").alias("account")).filter(
                        pl.col("account").str.starts_with(f"{accounts.PAYABLE}{accounts.SEP}")
                    ),
                    chunk.select(pl.col("credit_account").alias("account")).filter(
                        pl.col("account").str.starts_with(f"{accounts.RECEIVABLE}{accounts.SEP}")
                    ),
                ]
            )
            .unique()
            .sort("account")
            .get_column("account")
            .to_list()
        )
        pg = dialect == "postgresql"
        yield _Chunk(
            frame=chunk,
            stored=stored_rows(chunk, known),
            grants=grants,
            grants_csv=_csv(grants) if pg else None,
            guarded=guarded,
            first_id=int(chunk.get_column("transfer_id")[0]),
            last_id=int(chunk.get_column("transfer_id")[-1]),
            last_hash=prev_hash,
        )


def _write_chunk(
    conn: Connection, chunk: _Chunk, expected: tuple[int, str], pg_staging: bool = False
) -> None:
    """One transaction: check the head, write the transfers and new keys, check, commit."""
    with _refusals(conn, chunk), conn.begin():
        if chain_head(conn) != expected:
            raise LedgerError(ANOTHER_POSTER)
        _write(conn, chunk, pg_staging)
        _check_guarded(conn, chunk)


def _write_after(
    conn: Connection,
    chunk: _Chunk,
    expected: tuple[int, str],
    before: Future[None] | None,
    pg_staging: bool,
) -> None:
    """One transaction: write the chunk, wait for the chunk `before` it to commit, check
    that the chain now ends where this chunk continues it and the guarded balances, commit.
    If the chunk before fails, this one rolls back with its error."""
    with _refusals(conn, chunk), conn.begin():
        _write(conn, chunk, pg_staging)
        if before is not None:
            before.result()
        if _chain_before(conn, chunk.first_id) != expected:
            raise LedgerError(ANOTHER_POSTER)
        _check_guarded(conn, chunk)


ANOTHER_POSTER = (
    "another poster wrote to the ledger while this one was posting; nothing of "
    "this chunk was written\n  fix: post again: posting is idempotent and writes only what is missing"
)


def _chain_before(conn: Connection, first_id: int) -> tuple[int, str]:
    """The id and hash of the last transfer before `first_id` (the chain a chunk continues)."""
    t = Transfer.__table__
    row = conn.execute(
        select(t.c.transfer_id, t.c.hash)
        .where(t.c.transfer_id < first_id)
        .order_by(t.c.transfer_id.desc())
        .limit(1)
    ).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def _write(conn: Connection, chunk: _Chunk, pg_staging: bool) -> None:
    if conn.dialect.name != "postgresql":
        _write_sqlite(conn, chunk)
    elif pg_staging:
        _write_postgresql_staged(conn, chunk)
    else:
        _write_postgresql(conn, chunk)


@contextmanager
def _refusals(conn: Connection, chunk: _Chunk) -> Iterator[None]:
    """A chunk the database refused (a key or id already taken), as a LedgerError."""
    try:
        yield
    except (IntegrityError, DatabaseIntegrityError, sqlite3.IntegrityError) as exc:
        # Rolled back.  Name the key in our words if that is what the database refused.
        if conn.in_transaction():
            conn.rollback()
        orig = getattr(exc, "orig", None) or exc
        reason = str(orig).strip().splitlines()[0]
        if "entitlement_keys" in reason or "Key (policy_id" in str(orig):
            reason = _first_taken(conn, chunk)()
            conn.rollback()
        raise LedgerError(
            f"refused to post: {reason} (the chunk was rolled back)\n"
            "  fix: run `disburse audit verify`; if it passes, post again: posting is idempotent"
        ) from None


def _copy(cur: Any, table: str, columns: tuple[str, ...], data: bytes | None) -> None:
    assert data is not None
    view = memoryview(data)
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(view), 1 << 20):
            copy.write(view[start : start + (1 << 20)])


def copy_transfers(cur: Any, table: str, stored: pl.DataFrame) -> None:
    """Binary COPY of the stored rows: psycopg encodes each row (in C) as the column types
    of TRANSFER_TYPES; the server parses nothing."""
    with cur.copy(
        f"COPY {table} ({', '.join(TRANSFER_COLUMNS)}) FROM STDIN (FORMAT binary)"
    ) as copy:
        copy.set_types(list(TRANSFER_TYPES.values()))
        write = copy.write_row
        for row in stored.iter_rows():
            write(row)


def _write_postgresql(conn: Connection, chunk: _Chunk) -> None:
    """COPY straight into the ledger tables, inside the chunk's transaction.

    The primary keys of `transfers` (the chain position) and `entitlement_keys`
    (the idempotency key) refuse a duplicate and the whole chunk rolls back:
    the same defence as staging with ON CONFLICT DO NOTHING and a count check
    (a skipped row would break the chain, so a conflict must refuse the chunk
    either way), without the staging table's extra copy of every row (faster:
    docs/benchmarks.md, "Posting").  See `pg_staging`.
    """
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        copy_transfers(cur, "transfers", chunk.stored)
        if chunk.grants.height:
            _copy(cur, "entitlement_keys", KEY_COLUMNS, chunk.grants_csv)


def _write_postgresql_staged(conn: Connection, chunk: _Chunk) -> None:
    """COPY into a temporary staging table, then INSERT ... ON CONFLICT DO NOTHING, counted."""
    raw: Any = conn.connection.driver_connection
    cols = ", ".join(TRANSFER_COLUMNS)
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ledger_staging "
            "(LIKE transfers INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        copy_transfers(cur, "ledger_staging", chunk.stored)
        cur.execute(
            f"INSERT INTO transfers ({cols}) SELECT {cols} FROM ledger_staging "
            "ORDER BY transfer_id ON CONFLICT DO NOTHING"
        )
        _expect(cur.rowcount, chunk.frame.height, "transfers", "a transfer id is already taken")
        keys = ", ".join(KEY_COLUMNS)
        cur.execute(
            f"INSERT INTO entitlement_keys ({keys}) SELECT {keys} FROM ledger_staging "
            "WHERE kind = 'grant' ON CONFLICT DO NOTHING"
        )
        _expect(cur.rowcount, chunk.grants.height, "entitlement keys", _first_taken(conn, chunk))


def _write_sqlite(conn: Connection, chunk: _Chunk) -> None:
    cols = TRANSFER_COLUMNS
    n = executemany(
        conn,
        f"INSERT OR IGNORE INTO transfers ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        chunk.stored.iter_rows(),
    )
    _expect(n, chunk.frame.height, "transfers", _why_ignored(conn, chunk))
    if chunk.grants.height:
        n = executemany(
            conn,
            f"INSERT OR IGNORE INTO entitlement_keys ({', '.join(KEY_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
            chunk.grants.iter_rows(),
        )
        _expect(n, chunk.grants.height, "entitlement keys", _first_taken(conn, chunk))


def _why_ignored(conn: Connection, chunk: _Chunk) -> Callable[[], str]:
    """SQLite's INSERT OR IGNORE skips a row that breaks a CHECK as well as one whose id is
    taken: say which (a ledger created by an older engine may lack a newer kind)."""

    def find() -> str:
        t = Transfer.__table__
        there = read_frame(
            conn,
            select(t.c.transfer_id, t.c.hash).where(
                t.c.transfer_id.between(chunk.first_id, chunk.last_id)
            ),
            {"transfer_id": pl.Int64, "hash": pl.String},
        )
        ours = chunk.frame.select("transfer_id", pl.col("hash").alias("ours"))
        if there.join(ours, on="transfer_id").filter(pl.col("hash") != pl.col("ours")).height:
            return "a transfer id is already taken"
        kinds = ", ".join(sorted(set(chunk.frame["kind"].to_list())))
        return (
            f"a transfer breaks a rule of the ledger's table (kinds {kinds}; amount above zero, "
            "two accounts): is the schema up to date? run `disburse db init`"
        )

    return find


def _first_taken(conn: Connection, chunk: _Chunk) -> Callable[[], str]:
    def find() -> str:
        existing = read_frame(
            conn,
            "SELECT policy_id, benefit_period, entity FROM entitlement_keys",
            dict.fromkeys(KEY, pl.String),
        )
        taken = chunk.grants.join(existing, on=list(KEY), how="semi").sort(list(KEY))
        if taken.height == 0:
            return "an entitlement key is already taken"
        row = taken.row(0, named=True)
        return f"entitlement {key_name(row)} is already granted"

    return find


def _expect(got: int, wanted: int, what: str, why: str | Callable[[], str]) -> None:
    # ON CONFLICT DO NOTHING / INSERT OR IGNORE skip a row that would break a
    # constraint; skipping a transfer would break the chain, so a short count
    # refuses the whole chunk instead (the transaction rolls back).
    if got != wanted:
        reason = why() if callable(why) else why
        raise LedgerError(
            f"refused to post: {reason} ({got} of {wanted} {what} written; the chunk was rolled back)\n"
            "  fix: run `disburse audit verify`; if it passes, post again: posting is idempotent"
        )


def _check_guarded(conn: Connection, chunk: _Chunk) -> None:
    """Before commit: every payable this chunk debits is >= 0, every receivable it credits <= 0."""
    if not chunk.guarded:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS ledger_guarded "
            '(account VARCHAR(200) COLLATE "C" PRIMARY KEY) ON COMMIT DELETE ROWS'
        )
    else:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS ledger_guarded (account VARCHAR(200) PRIMARY KEY)"
        )
        conn.exec_driver_sql("DELETE FROM ledger_guarded")
    write_frame(
        conn,
        "ledger_guarded",
        pl.DataFrame({"account": chunk.guarded}, schema={"account": pl.String}),
    )
    sql = (
        "SELECT account, CAST(SUM(amount_fen) AS BIGINT) AS balance_fen FROM ("
        "SELECT t.credit_account AS account, t.amount_fen FROM transfers AS t "
        "JOIN ledger_guarded AS g ON g.account = t.credit_account UNION ALL "
        "SELECT t.debit_account, -t.amount_fen FROM transfers AS t "
        "JOIN ledger_guarded AS g ON g.account = t.debit_account) AS legs "
        "GROUP BY account HAVING "
        "(substr(account, 1, 8) = 'payable:' AND SUM(amount_fen) < 0) "
        "OR (substr(account, 1, 11) = 'receivable:' AND SUM(amount_fen) > 0) "
        "ORDER BY account"
    )
    bad = read_frame(conn, sql, {"account": pl.String, "balance_fen": pl.Int64})
    if bad.height:
        row = bad.row(0, named=True)
        raise LedgerError(
            f"refused to post: account {mask_account_address(row['account'])} would end at {row['balance_fen']} fen "
            f"({bad.height} account(s) would cross zero; the chunk was rolled back)\n"
            "  fix: a payment cannot exceed what is payable; check the payment file against "
            "`disburse ledger balances`"
        )
