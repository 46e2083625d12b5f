"""Payment states on the ledger (issue 19): instructions to the bank and the bank's answers.

An entitlement reaches the payee in three transfers, each a row of the chain:

    grant        budget:<policy>:<period> -> payable:<payee>   (the nightly run)
    instructed   payable:<payee>  -> clearing:bank             (a payment file)
    settled      clearing:bank    -> paid:bank                 (the bank paid it)
    rejected     clearing:bank    -> payable:<payee>           (returned: it is owed again)

Each instruction is a row of `payment_instructions` (its EndToEndId, the payment
file's MsgId, the key, the amount, which attempt it is, the account masked and as a
keyed digest) and at most one row of `payment_statuses` (settled or rejected, with
the reason code and the file that said so).  The transfers carry the EndToEndId in
their `decision` ({"end_to_end_id": ...}), so that a step killed between recording
an instruction or a status and posting its transfer is finished by the same command
again: what is recorded but not posted is posted (`unposted`), never twice.

Per entitlement key (`key_payments`): what is instructed and not returned, whether an
instruction is open (sent, no answer yet: the key is not instructed again meanwhile),
how many attempts were made, and the account digest of the last returned one (a retry
waits until the delivered account differs from the one the bank returned).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

import polars as pl
from sqlalchemy import Connection, insert, select

from ledgers import accounts
from ledgers.db import LedgerError
from ledgers.frames import read_frame, write_frame
from ledgers.holdings import chain_head
from ledgers.keys import LedgerKey
from ledgers.post import _require_run, require_same_key
from ledgers.schema import PaymentFile, PaymentInstruction, PaymentStatus, Transfer
from ledgers.validate import validate_transfers
from ledgers.write import DEFAULT_CHUNK, append

INSTRUCTION_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "end_to_end_id": pl.String,
    "msg_id": pl.String,
    "run_id": pl.Int64,
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "attempt": pl.Int64,
    "account_kind": pl.String,
    "account_masked": pl.String,
    "account_digest": pl.String,
}
STATUS_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "end_to_end_id": pl.String,
    "status": pl.String,
    "reason_code": pl.String,
    "file_sha256": pl.String,
    "run_id": pl.Int64,
}
KEY = ["policy_id", "benefit_period", "entity"]
E2E_PREFIX = "D"


def end_to_end_id(policy_id: str, benefit_period: str, entity: str, attempt: int) -> str:
    """The EndToEndId of a key's n-th instruction: deterministic (an export repeated after
    a crash writes the same ids), 33 characters (ISO 20022 Max35Text), upper-case
    letters and digits only: D, the attempt in two digits, 30 hex digits of a sha256."""
    digest = hashlib.sha256(f"{policy_id}|{benefit_period}|{entity}|{attempt}".encode())
    return f"{E2E_PREFIX}{attempt:02d}{digest.hexdigest()[:30].upper()}"


def account_digest(key: LedgerKey, bank_code: str, account_no: str) -> str:
    """A keyed digest of an account (HMAC under the ledger's personal key): tells whether a
    delivered account is the one an instruction used, without keeping the number."""
    return hmac.new(key.personal, f"{bank_code or ''}|{account_no}".encode(), "sha256").hexdigest()


def account_digests(key: LedgerKey, frame: pl.DataFrame) -> pl.Series:
    """`account_digest` of every row of `frame` (bank_code, account_no), in one loop over the
    HMAC's precomputed states (`LedgerKey.personal_macs`); "" where there is no number."""
    text = frame.select(
        pl.concat_str([pl.col("bank_code").fill_null(""), pl.col("account_no")], separator="|")
    ).to_series()
    present = text.is_not_null()
    macs = iter(key.personal_macs(text.drop_nulls().to_list()))
    return pl.Series(
        "account_digest", [next(macs) if p else "" for p in present.to_list()], pl.String
    )


def instructions(conn: Connection, msg_id: str | None = None) -> pl.DataFrame:
    """Every instruction (or those of one payment file) with its status, if any: the
    instruction's columns and status, reason_code (null: open)."""
    i, s = PaymentInstruction.__table__, PaymentStatus.__table__
    stmt = select(*[i.c[c] for c in INSTRUCTION_COLUMNS], s.c.status, s.c.reason_code).select_from(
        i.outerjoin(s, s.c.end_to_end_id == i.c.end_to_end_id)
    )
    if msg_id is not None:
        stmt = stmt.where(i.c.msg_id == msg_id)
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        **INSTRUCTION_COLUMNS,
        "status": pl.String,
        "reason_code": pl.String,
    }
    return read_frame(conn, stmt.order_by(i.c.end_to_end_id), schema)


def key_payments(done: pl.DataFrame) -> pl.DataFrame:
    """Per key of `instructions`: instructed_fen (instructed and not returned), open (an
    instruction awaits the bank's answer), attempts (the last attempt's number), and
    returned_digest (the account of the last attempt, if the bank returned it)."""
    last = (
        done.sort("attempt")
        .group_by(KEY)
        .agg(
            pl.col("attempt").last().alias("attempts"),
            pl.col("status").last().alias("_last_status"),
            pl.col("account_digest").last().alias("_last_digest"),
        )
    )
    sums = done.group_by(KEY).agg(
        pl.col("amount_fen")
        .filter(pl.col("status").is_null() | (pl.col("status") != "rejected"))
        .sum()
        .alias("instructed_fen"),
        pl.col("status").is_null().any().alias("open"),
    )
    return sums.join(last, on=KEY).select(
        *KEY,
        "instructed_fen",
        "open",
        "attempts",
        pl.when(pl.col("_last_status") == "rejected")
        .then(pl.col("_last_digest"))
        .alias("returned_digest"),
    )


def files(conn: Connection) -> pl.DataFrame:
    """The payment files written, in MsgId order."""
    t = PaymentFile.__table__
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "msg_id": pl.String,
        "format": pl.String,
        "as_of": pl.String,
        "run_id": pl.Int64,
        "file_name": pl.String,
        "sha256": pl.String,
        "instructions": pl.Int64,
        "amount_fen": pl.Int64,
    }
    stmt = select(*[t.c[c] for c in schema]).order_by(t.c.msg_id)
    return read_frame(conn, stmt, schema).with_columns(pl.col("as_of").str.to_date())


def record_instructions(conn: Connection, rows: pl.DataFrame) -> None:
    """Insert instruction rows (`INSTRUCTION_COLUMNS`) in one transaction."""
    if rows.height == 0:
        return
    with conn.begin():
        write_frame(conn, "payment_instructions", rows.select(list(INSTRUCTION_COLUMNS)))


def record_statuses(conn: Connection, rows: pl.DataFrame) -> None:
    """Insert status rows (`STATUS_COLUMNS`) in one transaction."""
    if rows.height == 0:
        return
    with conn.begin():
        write_frame(conn, "payment_statuses", rows.select(list(STATUS_COLUMNS)))


def record_file(conn: Connection, row: dict[str, object]) -> None:
    """Insert the row of a payment file written."""
    with conn.begin():
        conn.execute(insert(PaymentFile), [row])


def _posted_ids(conn: Connection, kinds: Iterable[str]) -> pl.DataFrame:
    """(kind, end_to_end_id) of every payment transfer of these kinds posted."""
    t = Transfer.__table__
    raw = read_frame(
        conn,
        select(t.c.kind, t.c.decision).where(t.c.kind.in_(list(kinds))),
        {"kind": pl.String, "decision": pl.String},
    )
    return raw.select(
        "kind", pl.col("decision").str.json_path_match("$.end_to_end_id").alias("end_to_end_id")
    )


def unposted(conn: Connection, done: pl.DataFrame) -> pl.DataFrame:
    """The payment transfers that `done` (instructions with their status) calls for and the
    ledger does not hold yet, in EndToEndId order: the instructed transfer of every
    instruction, and the settled or rejected transfer of every status."""
    posted = _posted_ids(conn, ("instructed", "settled", "rejected"))
    wanted = pl.concat(
        [
            done.with_columns(pl.lit("instructed").alias("kind")),
            done.filter(pl.col("status").is_not_null()).with_columns(
                pl.col("status").alias("kind")
            ),
        ]
    )
    todo = wanted.join(posted, on=["kind", "end_to_end_id"], how="anti")
    order = pl.col("kind").replace_strict(
        {"instructed": 0, "settled": 1, "rejected": 1}, return_dtype=pl.Int8
    )
    payable = accounts.payable_expr("payee")
    debit = (
        pl.when(pl.col("kind") == "instructed")
        .then(payable)
        .otherwise(pl.lit(accounts.CLEARING_BANK))
    )
    credit = (
        pl.when(pl.col("kind") == "instructed")
        .then(pl.lit(accounts.CLEARING_BANK))
        .when(pl.col("kind") == "settled")
        .then(pl.lit(accounts.PAID_BANK))
        .otherwise(payable)
    )
    decision = pl.struct(
        "end_to_end_id",
        pl.when(pl.col("kind") != "instructed").then(pl.col("status")).alias("status"),
        pl.when(pl.col("kind") == "rejected").then(pl.col("reason_code")).alias("reason_code"),
    ).struct.json_encode()
    return (
        todo.sort(order, "end_to_end_id")
        .select(
            "kind",
            debit.alias("debit_account"),
            credit.alias("credit_account"),
            "amount_fen",
            *KEY,
            "payee",
            decision.alias("decision"),
        )
        .with_columns(pl.col("decision").str.replace_all(r',"(status|reason_code)":null', ""))
    )


def post_payments(
    conn: Connection,
    transfers: pl.DataFrame,
    run_id: int,
    key: LedgerKey,
    head: tuple[int, str] | None = None,
) -> int:
    """Append payment transfers (`unposted`'s frame) on `conn`, which holds the ledger lock
    (`ledgers.post.ledger_connection`); the count.  A payable never goes below zero: the
    chain's guarded balances refuse it (`ledgers.write`).  `head`: the chain head the
    transfers were worked out at (read in the same transaction as what they rest on);
    if anything was posted since, they are refused, nothing written."""
    frame = validate_transfers(transfers)
    if frame.height == 0:
        return 0
    _require_run(conn, run_id)
    require_same_key(conn, key)
    if head is None:
        head = chain_head(conn)
    conn.commit()
    return append(conn, frame, run_id, head, DEFAULT_CHUNK, key).transfers


def decision_of(text: str | None) -> dict[str, object]:
    """A payment transfer's decision JSON as a dict ({} if none)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise LedgerError(
            f"a payment transfer's decision is not JSON: {text[:40]!r}",
            fix="run `disburse audit verify`",
        ) from None
    return data if isinstance(data, dict) else {}


__all__ = [
    "INSTRUCTION_COLUMNS",
    "STATUS_COLUMNS",
    "account_digest",
    "account_digests",
    "end_to_end_id",
    "files",
    "instructions",
    "key_payments",
    "post_payments",
    "record_file",
    "record_instructions",
    "record_statuses",
    "unposted",
]
