"""Posting to the ledger: entitlements become grants, adjustments, reversals and clawbacks.

The key of an entitlement is (policy_id, benefit_period, entity); its amount is
not part of it.  `post_entitlements` reads what the ledger already holds for the
posted keys once, computes the difference with Polars and writes only that:

| ledger holds for the key | posted amount | transfer written                                   |
| ------------------------ | ------------- | -------------------------------------------------- |
| nothing                  | > 0           | grant: budget -> payable                           |
| nothing                  | 0             | nothing (not entitled)                             |
| the same amount          | same          | nothing: re-posting changes nothing                |
| less                     | more          | adjustment of the difference: budget -> payable    |
| more                     | less, > 0     | adjustment of the difference back: payable -> budget |
| more                     | 0             | reversal of all of it: payable -> budget           |

A decrease comes out of the payee's payable as far as it still holds the money;
what was already paid becomes a clawback: receivable -> budget (the payee owes
it back).  A key whose payee changed is reversed for the old payee and adjusted
for the new one.  Keys not in the posted frame are left alone: only an explicit
amount of 0 takes an entitlement away.

Writes go in chunks, each its own transaction, checked before commit: the chain
continues from the head this poster read (no fork), every entitlement key is
new (`entitlement_keys` primary key: the last line of defence), and every payable
debited stays >= 0 (every receivable credited stays <= 0).  Balances sum to zero
by construction: a transfer is one amount between two different accounts.  A
crash between chunks loses nothing: posting the same frame again writes what is
missing, because the difference is computed against what was committed.

How a chunk is written: on PostgreSQL, COPY (CSV made by Polars) straight into
`transfers` and `entitlement_keys` inside the chunk's transaction; with
`pg_staging=True`, COPY into a temporary staging table and INSERT ... SELECT ...
ON CONFLICT DO NOTHING with a count check.  Both refuse a conflicting chunk
whole (a skipped row would break the chain), so they guarantee the same; the
direct COPY is about 1.6 times faster at a million rows.  On PostgreSQL the
chunks take turns on two connections: chunk k+1 is written while chunk k is, and
commits only after chunk k has, once its checks see it (`_write_in_turns`), so
what is committed is always a prefix of the chain.  On SQLite, one executemany
per table (INSERT OR IGNORE, counted) in the chunk's transaction, one chunk after
the other.  The hash chain and CSV of the next chunk are computed in a thread
while the database writes.

Only one poster writes at a time: on PostgreSQL a session advisory lock held for
the whole post (a second poster waits); on SQLite each chunk is BEGIN IMMEDIATE
and refuses to write if another writer moved the chain head meanwhile.
"""

from __future__ import annotations

import io
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from psycopg import IntegrityError as DatabaseIntegrityError
from sqlalchemy import BigInteger, Connection, Engine, cast, func, select
from sqlalchemy.exc import IntegrityError

from ledgers import accounts
from ledgers.chain import CHAIN_FIELDS, GENESIS, with_hashes
from ledgers.db import LedgerError
from ledgers.frames import executemany, prefetch, read_frame, write_frame
from ledgers.holdings import Holdings, chain_head, keep_snapshot, read_held
from ledgers.locks import LEDGER_LOCK, hold
from ledgers.schema import PAYMENT_KINDS, Run, Transfer

KEY = ("policy_id", "benefit_period", "entity")
ENTITLEMENT_COLUMNS: dict[str, type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "policy_sha256": pl.String,
    "decision": pl.String,
}
TRANSFER_COLUMNS = (*CHAIN_FIELDS, "prev_hash", "hash")
KEY_COLUMNS = (*KEY, "transfer_id", "run_id")
DEFAULT_CHUNK = 100_000
MAX_PROBLEMS = 10

POLICY_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
PARTY_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
BENEFIT_PERIOD = r"once|[0-9]{4}(-H[12]|-Q[1-4]|-(0[1-9]|1[0-2]))?"
SHA256 = r"[0-9a-f]{64}"
ACCOUNT = (
    rf"(budget:{POLICY_ID}:(?:{BENEFIT_PERIOD})|payable:{PARTY_ID}|receivable:{PARTY_ID}"
    r"|clearing:[a-z0-9_-]{1,32})"
)


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


@dataclass(frozen=True)
class _Written:
    transfers: int
    chunks: int
    first_id: int | None
    last_id: int | None
    head_hash: str


# --- public API ---------------------------------------------------------------------


def post_entitlements(
    engine: Engine,
    entitlements: pl.DataFrame,
    run_id: int,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    pg_staging: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    known: Holdings | None = None,
    keep: Path | None = None,
) -> PostResult:
    """Post the difference between `entitlements` and the ledger, for `run_id`.

    `entitlements` has one row per key with columns policy_id, benefit_period,
    entity, payee, amount_fen (Int64, >= 0), policy_sha256 and decision (compact
    JSON, may be null); other columns are ignored.  Refused whole, with every
    problem named, if any row is malformed.

    On PostgreSQL each chunk is COPYed straight into the ledger tables, whose
    primary keys refuse a duplicate; `pg_staging=True` COPYs into a temporary
    table and INSERTs ... ON CONFLICT DO NOTHING with a count check instead (the
    same guarantee, about 1.6 times slower at a million rows).  `on_chunk(k, rows)`
    is called after chunk k (1-based) of `rows` transfers has committed.

    `known`: what `holdings` read earlier; used instead of reading the ledger
    again if, under the ledger lock, the chain head is still the one it saw
    (nothing was posted since) and it covers every policy posted.  Then, with
    `keep` (a folder), the holdings after the post (`known` plus what was
    written) are recorded as a snapshot there for the next reader
    (`ledgers.holdings`).
    """
    frame = validate_entitlements(entitlements)
    with ledger_connection(engine) as conn:
        _require_run(conn, run_id)
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
            existing = _state_by_period(current.frame, periods)
        else:
            existing = _entitlement_state(conn, periods)
        conn.commit()
        plan = _plan(frame, existing, lambda payees: _payable_balances(conn, payees))
        conn.commit()
        written = _append(conn, plan.transfers, run_id, head, chunk_size, pg_staging, on_chunk)
        if current is not None and keep is not None:
            end = (written.last_id, written.head_hash) if written.last_id is not None else head
            keep_snapshot(conn, current.after(plan.transfers, end), keep, run_id)
            conn.commit()
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
    engine: Engine, transfers: pl.DataFrame, run_id: int, *, chunk_size: int = DEFAULT_CHUNK
) -> int:
    """Append payment transfers (instructed, settled, rejected) in the given order; the count.

    Columns: kind, debit_account, credit_account, amount_fen, and optionally
    policy_id, benefit_period, entity, payee, policy_sha256, decision.  The same
    chain, chunks and checks as entitlements: a payable may not go below zero.
    Entitlement kinds are refused here: they go through `post_entitlements`.
    """
    frame = _validate_transfers(transfers)
    with ledger_connection(engine) as conn:
        _require_run(conn, run_id)
        head = chain_head(conn)
        conn.commit()
        return _append(conn, frame, run_id, head, chunk_size).transfers


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


# --- validation ---------------------------------------------------------------------


def validate_entitlements(frame: pl.DataFrame) -> pl.DataFrame:
    """The entitlement columns, typed, or a LedgerError naming every problem found."""
    missing = [c for c in ENTITLEMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise LedgerError(
            f"entitlements refused: missing column(s) {', '.join(missing)}\n"
            f"  fix: give one row per key with columns {', '.join(ENTITLEMENT_COLUMNS)}"
        )
    problems: list[str] = []
    amount = frame.schema["amount_fen"]
    if not amount.is_integer():
        raise LedgerError(
            f"entitlements refused: amount_fen is {amount}, not an integer type\n"
            "  fix: money is integer fen; round per the policy before posting (no float reaches the ledger)"
        )
    for name, dtype in ENTITLEMENT_COLUMNS.items():
        if dtype is pl.String and frame.schema[name] not in (pl.String, pl.Categorical, pl.Null):
            problems.append(f"column {name} is {frame.schema[name]}, not text")
    if problems:
        raise _refused(problems, "cast the columns to the types listed")
    typed = frame.select(
        [pl.col(c).cast(t) for c, t in ENTITLEMENT_COLUMNS.items()]
    ).with_row_index("row")
    rules: list[tuple[str, pl.Expr]] = [
        (f"{c} is missing", pl.col(c).is_null())
        for c in (*KEY, "payee", "amount_fen", "policy_sha256")
    ]
    rules += [
        ("amount_fen is negative", pl.col("amount_fen") < 0),
        (
            "policy_id is not a plain id (letters, digits, '.', '_', '-')",
            ~_matches("policy_id", POLICY_ID),
        ),
        (
            "benefit_period is not a year, half, quarter, month or 'once' (2026, 2026-H1, 2026-Q1, 2026-03)",
            ~_matches("benefit_period", BENEFIT_PERIOD),
        ),
        (
            "entity is not a plain id (letters, digits, '.', '_', '-')",
            ~_matches("entity", PARTY_ID),
        ),
        ("payee is not a plain id (letters, digits, '.', '_', '-')", ~_matches("payee", PARTY_ID)),
        ("policy_sha256 is not a lower-case sha256", ~_matches("policy_sha256", SHA256)),
        ("decision is an empty string", pl.col("decision") == ""),
        ("the key appears more than once", pl.struct(*KEY).is_duplicated()),
    ]
    problems = _collect(typed, rules)
    if problems:
        raise _refused(
            problems,
            "give exactly one row per (policy_id, benefit_period, entity), amounts in whole fen >= 0",
        )
    return typed.drop("row")


def _matches(column: str, pattern: str) -> pl.Expr:
    return pl.col(column).str.contains(f"^(?:{pattern})$").fill_null(True)


def _collect(frame: pl.DataFrame, rules: list[tuple[str, pl.Expr]]) -> list[str]:
    """Every rule broken, each with its first offending rows (pandera-style: all at once)."""
    flags = frame.select(
        pl.col("row"), *[e.fill_null(False).alias(f"r{i}") for i, (_, e) in enumerate(rules)]
    )
    problems = []
    for i, (message, _) in enumerate(rules):
        bad = flags.filter(pl.col(f"r{i}"))
        if bad.height:
            rows = ", ".join(str(r) for r in bad.get_column("row").head(3).to_list())
            more = f" and {bad.height - 3} more" if bad.height > 3 else ""
            key = frame.row(bad.get_column("row")[0], named=True)
            where = "/".join(str(key.get(k)) for k in KEY)
            problems.append(f"{message}: row {rows}{more} (first: {where})")
    return problems


def _refused(problems: list[str], fix: str) -> LedgerError:
    shown = problems[:MAX_PROBLEMS]
    lines = "\n".join(f"  {p}" for p in shown)
    more = (
        f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    )
    noun = "problem" if len(problems) == 1 else "problems"
    return LedgerError(
        f"entitlements refused, nothing posted: {len(problems)} {noun}\n{lines}{more}\n  fix: {fix}"
    )


def _validate_transfers(frame: pl.DataFrame) -> pl.DataFrame:
    required = ("kind", "debit_account", "credit_account", "amount_fen")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise LedgerError(
            f"transfers refused: missing column(s) {', '.join(missing)}\n"
            "  fix: give kind, debit_account, credit_account and amount_fen"
        )
    if not frame.schema["amount_fen"].is_integer():
        raise LedgerError(
            "transfers refused: amount_fen is not an integer type\n  fix: money is integer fen"
        )
    optional = ("policy_id", "benefit_period", "entity", "payee", "policy_sha256", "decision")
    typed = frame.select(
        pl.col("kind").cast(pl.String),
        pl.col("debit_account").cast(pl.String),
        pl.col("credit_account").cast(pl.String),
        pl.col("amount_fen").cast(pl.Int64),
        *[
            pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c)
            for c in optional
        ],
    ).with_row_index("row")
    rules = [
        (
            f"kind is not one of {', '.join(PAYMENT_KINDS)}",
            ~pl.col("kind").is_in(list(PAYMENT_KINDS)).fill_null(False),
        ),
        ("amount_fen is not greater than zero", ~(pl.col("amount_fen") > 0).fill_null(False)),
        (
            "debit_account is not an account address",
            ~_matches("debit_account", ACCOUNT) | pl.col("debit_account").is_null(),
        ),
        (
            "credit_account is not an account address",
            ~_matches("credit_account", ACCOUNT) | pl.col("credit_account").is_null(),
        ),
        (
            "debit and credit are the same account",
            pl.col("debit_account") == pl.col("credit_account"),
        ),
    ]
    problems = _collect(typed, rules)
    if problems:
        raise _refused(
            problems, "post entitlements with post_entitlements; payments move payable -> clearing"
        )
    return typed.drop("row")


# --- reading the ledger -------------------------------------------------------------


def _require_run(conn: Connection, run_id: int) -> None:
    found = conn.execute(select(Run.run_id).where(Run.run_id == run_id)).scalar_one_or_none()
    if found is None:
        raise LedgerError(
            f"run {run_id} is not recorded in this database\n"
            "  fix: post under the run that computed the entitlements (see the runs table)"
        )


def _entitlement_state(
    conn: Connection, periods: list[tuple[str, str]]
) -> dict[tuple[str, str], pl.DataFrame]:
    """Per posted (policy, period) pair: the net amount each (entity, payee) holds."""
    return _state_by_period(read_held(conn, sorted({p for p, _ in periods})), periods)


def _state_by_period(
    held: pl.DataFrame, periods: list[tuple[str, str]]
) -> dict[tuple[str, str], pl.DataFrame]:
    wanted = set(periods)
    state = {
        pair: pl.DataFrame(schema={"entity": pl.String, "payee": pl.String, "net_fen": pl.Int64})
        for pair in periods
    }
    for (policy_id, benefit_period), part in held.partition_by(
        ["policy_id", "benefit_period"], as_dict=True
    ).items():
        pair = (str(policy_id), str(benefit_period))
        if pair in wanted:
            state[pair] = part.select("entity", "payee", "net_fen")
    return state


def account_balances(conn: Connection, kind: str | None = None) -> pl.DataFrame:
    """Every account's debits, credits and balance (credits - debits), optionally of one kind."""
    t = Transfer.__table__
    debit = select(
        t.c.debit_account.label("account"),
        t.c.amount_fen.label("debit"),
        cast(0, BigInteger).label("credit"),
    )
    credit = select(
        t.c.credit_account.label("account"),
        cast(0, BigInteger).label("debit"),
        t.c.amount_fen.label("credit"),
    )
    if kind is not None:
        debit = debit.where(func.substr(t.c.debit_account, 1, len(kind) + 1) == f"{kind}:")
        credit = credit.where(func.substr(t.c.credit_account, 1, len(kind) + 1) == f"{kind}:")
    legs = debit.union_all(credit).subquery()
    stmt = (
        select(
            legs.c.account,
            cast(func.sum(legs.c.debit), BigInteger).label("debits_fen"),
            cast(func.sum(legs.c.credit), BigInteger).label("credits_fen"),
        )
        .group_by(legs.c.account)
        .order_by(legs.c.account)
    )
    frame = read_frame(
        conn, stmt, {"account": pl.String, "debits_fen": pl.Int64, "credits_fen": pl.Int64}
    )
    return frame.with_columns(balance_fen=pl.col("credits_fen") - pl.col("debits_fen"))


def _payable_balances(conn: Connection, payees: list[str]) -> pl.DataFrame:
    balances = account_balances(conn, accounts.PAYABLE)
    return balances.select(
        pl.col("account").str.strip_prefix(f"{accounts.PAYABLE}{accounts.SEP}").alias("payee"),
        pl.col("balance_fen").alias("payable_fen"),
    ).filter(pl.col("payee").is_in(payees))


# --- the difference -----------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    transfers: pl.DataFrame
    granted: int
    adjusted: int
    reversed: int
    unchanged: int
    granted_fen: int
    increased_fen: int
    decreased_fen: int
    clawback_fen: int


def _plan(
    incoming: pl.DataFrame,
    existing: dict[tuple[str, str], pl.DataFrame],
    payable_balances: Callable[[list[str]], pl.DataFrame],
) -> _Plan:
    """The transfers that bring the ledger to `incoming`, in chain order, and the counts.

    `existing` holds, per posted (policy, benefit period), what each (entity,
    payee) holds.  Per pair, one join on (entity, payee) covers the common cases;
    rows held under a payee no longer posted (the payee changed) are looked for
    only if some held row found no posted match.
    """
    keys = list(KEY)
    kp = [*keys, "payee"]
    parts, moved_parts = [], []
    for (policy_id, benefit_period), target in incoming.partition_by(
        "policy_id", "benefit_period", as_dict=True, maintain_order=True
    ).items():
        held = existing.get((str(policy_id), str(benefit_period)))
        part, moved = _plan_pair(target, held)
        pair = (
            pl.lit(policy_id, pl.String).alias("policy_id"),
            pl.lit(benefit_period, pl.String).alias("benefit_period"),
        )
        parts.append(part.with_columns(*pair))
        moved_parts.append(moved.with_columns(*pair))
    if not parts:  # nothing posted
        rows, moved = _plan_pair(incoming, None)
        rows = rows.with_columns(incoming.select(keys[:2]).clear())
        moved = moved.with_columns(incoming.select(keys[:2]).clear())
        parts, moved_parts = [rows], [moved]
    rows = pl.concat(parts, how="vertical_relaxed")
    moved = pl.concat(moved_parts, how="vertical_relaxed").select(
        *kp, "net_fen", "policy_sha256", "decision"
    )
    if moved.height:
        moved_keys = moved.group_by(keys).agg(moved_fen=pl.col("net_fen").abs().sum())
        rows = rows.join(moved_keys, on=keys, how="left").with_columns(
            existed=pl.col("existed") | pl.col("moved_fen").is_not_null(),
            moved_fen=pl.col("moved_fen").fill_null(0),
        )
    else:
        rows = rows.with_columns(moved_fen=pl.lit(0, pl.Int64))
    rows = rows.with_columns(pl.col("net_fen").fill_null(0)).with_columns(
        delta_fen=pl.col("target_fen") - pl.col("net_fen")
    )

    # Counts per posted key (each has exactly one row in `rows`).
    changed = (pl.col("delta_fen") != 0) | (pl.col("moved_fen") != 0)
    counts = rows.select(
        granted=(~pl.col("existed") & (pl.col("target_fen") > 0)).sum(),
        adjusted=(pl.col("existed") & changed & (pl.col("target_fen") > 0)).sum(),
        reversed=(pl.col("existed") & changed & (pl.col("target_fen") == 0)).sum(),
    ).row(0, named=True)
    granted, adjusted, reversed_ = (int(counts[k]) for k in ("granted", "adjusted", "reversed"))

    all_rows = pl.concat(
        [
            rows.select(
                *kp, "target_fen", "net_fen", "existed", "policy_sha256", "decision", "delta_fen"
            ),
            moved.select(
                *kp,
                pl.lit(0, pl.Int64).alias("target_fen"),
                "net_fen",
                pl.lit(True).alias("existed"),
                "policy_sha256",
                "decision",
                (-pl.col("net_fen")).alias("delta_fen"),
            ),
        ]
    )
    budget = accounts.budget_expr()
    columns = (
        *kp,
        "kind",
        "debit_account",
        "credit_account",
        "amount_fen",
        "policy_sha256",
        "decision",
        "phase",
    )
    up = all_rows.filter(pl.col("delta_fen") > 0).select(
        *kp,
        pl.when(pl.col("existed"))
        .then(pl.lit("adjustment"))
        .otherwise(pl.lit("grant"))
        .alias("kind"),
        budget.alias("debit_account"),
        accounts.payable_expr().alias("credit_account"),
        pl.col("delta_fen").alias("amount_fen"),
        "policy_sha256",
        "decision",
        pl.lit(0).alias("phase"),
    )
    parts = [up]
    down = all_rows.filter(pl.col("delta_fen") < 0).with_columns(decrease_fen=-pl.col("delta_fen"))
    if down.height:
        down = _split_clawbacks(
            down, up, payable_balances(down.get_column("payee").unique().to_list())
        )
        kind = (
            pl.when(pl.col("target_fen") == 0)
            .then(pl.lit("reversal"))
            .otherwise(pl.lit("adjustment"))
        )
        parts.append(
            down.filter(pl.col("from_payable_fen") > 0).select(
                *kp,
                kind.alias("kind"),
                accounts.payable_expr().alias("debit_account"),
                budget.alias("credit_account"),
                pl.col("from_payable_fen").alias("amount_fen"),
                "policy_sha256",
                "decision",
                pl.lit(1).alias("phase"),
            )
        )
        parts.append(
            down.filter(pl.col("clawback_fen") > 0).select(
                *kp,
                pl.lit("clawback").alias("kind"),
                accounts.receivable_expr().alias("debit_account"),
                budget.alias("credit_account"),
                pl.col("clawback_fen").alias("amount_fen"),
                "policy_sha256",
                "decision",
                pl.lit(2).alias("phase"),
            )
        )
    # Increases first: a decrease may be covered by an increase to the same payee in
    # this post, and chunks commit in order, so a payable never dips below zero.
    transfers = pl.concat([p.select(columns) for p in parts]).sort("phase", *kp).drop("phase")
    label = (
        pl.when(pl.col("kind").is_in(["grant", "clawback"]))
        .then(pl.col("kind"))
        .when(pl.col("credit_account").str.starts_with(f"{accounts.PAYABLE}{accounts.SEP}"))
        .then(pl.lit("adjustment_up"))
        .otherwise(pl.lit("decrease"))
    )
    sums = dict(
        transfers.group_by(label.alias("label")).agg(pl.col("amount_fen").sum()).iter_rows()
    )
    return _Plan(
        transfers=transfers,
        granted=granted,
        adjusted=adjusted,
        reversed=reversed_,
        unchanged=incoming.height - granted - adjusted - reversed_,
        granted_fen=int(sums.get("grant", 0)),
        increased_fen=int(sums.get("adjustment_up", 0)),
        decreased_fen=int(sums.get("decrease", 0)),
        clawback_fen=int(sums.get("clawback", 0)),
    )


def _plan_pair(
    target: pl.DataFrame, held: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For one (policy, period): posted rows with what they hold, and rows held by old payees."""
    ep = ["entity", "payee"]
    info = ["policy_sha256", "decision"]
    rows = target.select(*ep, pl.col("amount_fen").alias("target_fen"), *info)
    empty = pl.DataFrame(
        schema={"entity": pl.String, "payee": pl.String, "net_fen": pl.Int64}
    ).join(rows.select("entity", *info), on="entity")
    if held is None or held.height == 0:
        return rows.with_columns(net_fen=pl.lit(None, pl.Int64), existed=pl.lit(False)), empty
    rows = rows.join(held, on=ep, how="left").with_columns(existed=pl.col("net_fen").is_not_null())
    if int(rows.get_column("existed").sum()) == held.height:
        return rows, empty
    moved = held.join(rows.select(ep), on=ep, how="anti").join(
        rows.select("entity", *info), on="entity", how="inner"
    )
    return rows, moved


def _split_clawbacks(down: pl.DataFrame, up: pl.DataFrame, payable: pl.DataFrame) -> pl.DataFrame:
    """Split each decrease into what the payee's payable still covers and a clawback.

    Available to a payee = its payable balance + this post's increases to it;
    decreases take from it in key order.
    """
    increases = up.group_by("payee").agg(pl.col("amount_fen").sum().alias("incoming_fen"))
    return (
        down.join(payable, on="payee", how="left")
        .join(increases, on="payee", how="left")
        .with_columns(
            available_fen=pl.col("payable_fen").fill_null(0) + pl.col("incoming_fen").fill_null(0)
        )
        .sort("payee", *KEY)
        .with_columns(
            before_fen=pl.col("decrease_fen").cum_sum().over("payee") - pl.col("decrease_fen")
        )
        .with_columns(
            from_payable_fen=(pl.col("available_fen") - pl.col("before_fen"))
            .clip(0, None)
            .clip(None, pl.col("decrease_fen"))
        )
        .with_columns(clawback_fen=pl.col("decrease_fen") - pl.col("from_payable_fen"))
    )


# --- writing ------------------------------------------------------------------------


def _append(
    conn: Connection,
    frame: pl.DataFrame,
    run_id: int,
    head: tuple[int, str],
    chunk_size: int,
    pg_staging: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> _Written:
    """Write `frame` (transfers in chain order, no ids yet) after `head`, chunk by chunk."""
    if chunk_size < 1:
        raise LedgerError("chunk_size must be at least 1\n  fix: pass a positive chunk size")
    head_id, head_hash = head
    if frame.height == 0:
        return _Written(0, 0, None, None, head_hash)
    frame = frame.with_columns(
        transfer_id=pl.int_range(head_id + 1, head_id + 1 + frame.height, dtype=pl.Int64),
        run_id=pl.lit(run_id, pl.Int64),
    ).select(CHAIN_FIELDS)
    # Hash and serialise chunk k+1 in a thread while chunk k is in the database:
    # the chain needs only the previous hash, not the previous commit.
    prepared = prefetch(_prepared_chunks(frame, head_hash, chunk_size, conn.dialect.name))
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
    return _Written(frame.height, chunks, head_id + 1, expected[0], expected[1])


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
    chain; a chunk that fails rolls back the one after it.  Posting 1.18M transfers took
    11.8 s on one connection and 9.9 s on two (means of three).  The second connection
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
    frame: pl.DataFrame
    grants: pl.DataFrame
    csv: bytes | None  # PostgreSQL: the transfers as CSV for COPY
    grants_csv: bytes | None  # PostgreSQL: their new entitlement keys as CSV for COPY
    guarded: list[str]
    first_id: int
    last_id: int
    last_hash: str


def _csv(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    return buf.getvalue()


def _prepared_chunks(
    frame: pl.DataFrame, prev_hash: str, chunk_size: int, dialect: str
) -> Iterator[_Chunk]:
    for start in range(0, frame.height, chunk_size):
        chunk = with_hashes(frame.slice(start, chunk_size), prev_hash)
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
            grants=grants,
            csv=_csv(chunk.select(TRANSFER_COLUMNS)) if pg else None,
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
    row = conn.exec_driver_sql(
        "SELECT transfer_id, hash FROM transfers WHERE transfer_id < %(first)s "
        "ORDER BY transfer_id DESC LIMIT 1",
        {"first": first_id},
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


def _write_postgresql(conn: Connection, chunk: _Chunk) -> None:
    """COPY straight into the ledger tables, inside the chunk's transaction.

    The primary keys of `transfers` (the chain position) and `entitlement_keys`
    (the idempotency key) refuse a duplicate and the whole chunk rolls back:
    the same defence as staging with ON CONFLICT DO NOTHING and a count check
    (a skipped row would break the chain, so a conflict must refuse the chunk
    either way), at 1.6 times the speed.  See `pg_staging`.
    """
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        _copy(cur, "transfers", TRANSFER_COLUMNS, chunk.csv)
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
        _copy(cur, "ledger_staging", TRANSFER_COLUMNS, chunk.csv)
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
        chunk.frame.select(cols).iter_rows(),
    )
    _expect(n, chunk.frame.height, "transfers", "a transfer id is already taken")
    if chunk.grants.height:
        n = executemany(
            conn,
            f"INSERT OR IGNORE INTO entitlement_keys ({', '.join(KEY_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
            chunk.grants.iter_rows(),
        )
        _expect(n, chunk.grants.height, "entitlement keys", _first_taken(conn, chunk))


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
        return f"entitlement key {row['policy_id']}/{row['benefit_period']}/{row['entity']} is already granted"

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
            f"refused to post: account {row['account']} would end at {row['balance_fen']} fen "
            f"({bad.height} account(s) would cross zero; the chunk was rolled back)\n"
            "  fix: a payment cannot exceed what is payable; check the payment file against "
            "`disburse ledger balances`"
        )
