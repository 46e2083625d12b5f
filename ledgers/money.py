"""The ledger's money by state, per policy and benefit period (issue 19.4): what finance
signs off and auditors reconcile with the bank.

| column           | what it is                                                   | from                     |
| ---------------- | ------------------------------------------------------------ | ------------------------ |
| entitled_fen     | what the keys hold now (grants and adjustments, net)         | entitlement transfers    |
| payable_fen      | owed to payees, not at the bank                              | the payable accounts     |
| returned_fen     | of it, returned by the bank and waiting for a corrected account | last attempt rejected |
| clearing_fen     | instructed, the bank's answer not yet in                     | the clearing account     |
| paid_fen         | settled by the bank                                          | settled transfers        |
| offset_fen       | set against what the payee owed back instead of paid         | offset transfers         |
| waived_fen       | deemed waived (no usable account in time) and reversed       | the waivers table        |
| clawed_back_fen  | taken back after it was paid (the payee owed it)             | clawback transfers       |
| recovered_fen    | paid back by payees                                          | recovered transfers      |
| owed_back_fen    | still owed back: clawed back less recovered and set off      | receivables, by the key they settle |

Each is a sum of transfers grouped in the database by policy, period, kind and the
kinds of the two accounts, so it costs one pass over the ledger whatever its size;
the offsets' settled keys and the returned list are read from their own few rows.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Connection, case, cast, func, select

from common.money import format_yuan
from ledgers import accounts
from ledgers.frames import read_frame
from ledgers.holdings import signed_amount
from ledgers.schema import (
    ENTITLEMENT_KINDS,
    PaymentInstruction,
    PaymentStatus,
    Transfer,
    Waiver,
)

PERIOD = ["policy_id", "benefit_period"]
KEY = [*PERIOD, "entity"]
COLUMNS = (
    "entitled_fen",
    "payable_fen",
    "returned_fen",
    "clearing_fen",
    "paid_fen",
    "offset_fen",
    "waived_fen",
    "clawed_back_fen",
    "recovered_fen",
    "owed_back_fen",
)


def _account_kind(column: Any) -> Any:
    """SQL: the kind part of an account address (the same on SQLite and PostgreSQL)."""
    return case(
        *[(column.like(f"{k}{accounts.SEP}%"), k) for k in accounts.ACCOUNT_KINDS], else_=None
    )


def _legs(conn: Connection, up_to_run: int | None) -> pl.DataFrame:
    t = Transfer.__table__
    entitled = cast(func.sum(signed_amount()), BigInteger)
    stmt = (
        select(
            t.c.policy_id,
            t.c.benefit_period,
            t.c.kind,
            _account_kind(t.c.debit_account).label("debit"),
            _account_kind(t.c.credit_account).label("credit"),
            cast(func.sum(t.c.amount_fen), BigInteger).label("amount_fen"),
            entitled.label("signed_fen"),
        )
        .where(t.c.policy_id.is_not(None))
        .group_by(
            t.c.policy_id,
            t.c.benefit_period,
            t.c.kind,
            _account_kind(t.c.debit_account),
            _account_kind(t.c.credit_account),
        )
    )
    if up_to_run is not None:
        stmt = stmt.where(t.c.run_id <= up_to_run)
    return read_frame(
        conn,
        stmt,
        {
            "policy_id": pl.String,
            "benefit_period": pl.String,
            "kind": pl.String,
            "debit": pl.String,
            "credit": pl.String,
            "amount_fen": pl.Int64,
            "signed_fen": pl.Int64,
        },
    )


def _settled_by_offsets(conn: Connection, up_to_run: int | None) -> pl.DataFrame:
    t = Transfer.__table__
    stmt = select(t.c.amount_fen, t.c.decision).where(t.c.kind == "offset")
    if up_to_run is not None:
        stmt = stmt.where(t.c.run_id <= up_to_run)
    rows = read_frame(conn, stmt, {"amount_fen": pl.Int64, "decision": pl.String})
    field = pl.col("decision").str.json_path_match
    return (
        rows.select(
            field("$.settles.policy_id").alias("policy_id"),
            field("$.settles.benefit_period").alias("benefit_period"),
            "amount_fen",
        )
        .group_by(PERIOD)
        .agg(pl.col("amount_fen").sum().alias("set_off_fen"))
    )


def _returned(conn: Connection) -> pl.DataFrame:
    """Per policy and period: the amounts of keys whose last instruction the bank returned."""
    i, st = PaymentInstruction.__table__, PaymentStatus.__table__
    stmt = select(
        i.c.policy_id, i.c.benefit_period, i.c.entity, i.c.attempt, i.c.amount_fen, st.c.status
    ).select_from(i.outerjoin(st, st.c.end_to_end_id == i.c.end_to_end_id))
    done = read_frame(
        conn,
        stmt,
        {
            **dict.fromkeys(KEY, pl.String),
            "attempt": pl.Int64,
            "amount_fen": pl.Int64,
            "status": pl.String,
        },
    )
    last = done.sort("attempt").group_by(KEY).agg(pl.all().last())
    return (
        last.filter(pl.col("status") == "rejected")
        .group_by(PERIOD)
        .agg(pl.col("amount_fen").sum().alias("returned_fen"))
    )


def _waived(conn: Connection) -> pl.DataFrame:
    w = Waiver.__table__
    stmt = select(w.c.policy_id, w.c.benefit_period, w.c.amount_fen)
    rows = read_frame(
        conn, stmt, {"policy_id": pl.String, "benefit_period": pl.String, "amount_fen": pl.Int64}
    )
    return rows.group_by(PERIOD).agg(pl.col("amount_fen").sum().alias("waived_fen"))


def money_by_period(conn: Connection, *, up_to_run: int | None = None) -> pl.DataFrame:
    """Per policy and benefit period, the money in each state (module docstring), ordered.
    With `up_to_run`, the transfers up to that run (the returned list and waivers as now)."""
    legs = _legs(conn, up_to_run)
    amount = pl.col("amount_fen")

    def total(cond: pl.Expr) -> pl.Expr:
        return amount.filter(cond).sum()

    sums = legs.group_by(PERIOD).agg(
        pl.col("signed_fen").filter(pl.col("kind").is_in(ENTITLEMENT_KINDS)).sum()
        .alias("entitled_fen"),
        (total(pl.col("credit") == accounts.PAYABLE) - total(pl.col("debit") == accounts.PAYABLE))
        .alias("payable_fen"),
        (total(pl.col("credit") == accounts.CLEARING) - total(pl.col("debit") == accounts.CLEARING))
        .alias("clearing_fen"),
        total(pl.col("credit") == accounts.PAID).alias("paid_fen"),
        total(pl.col("kind") == "offset").alias("offset_fen"),
        total(pl.col("kind") == "clawback").alias("clawed_back_fen"),
        total(pl.col("kind") == "recovered").alias("recovered_fen"),
    )  # fmt: skip
    frame = (
        sums.join(_settled_by_offsets(conn, up_to_run), on=PERIOD, how="full", coalesce=True)
        .join(_returned(conn), on=PERIOD, how="left")
        .join(_waived(conn), on=PERIOD, how="left")
        .with_columns(pl.exclude(PERIOD).fill_null(0))
        .with_columns(
            owed_back_fen=pl.col("clawed_back_fen")
            - pl.col("recovered_fen")
            - pl.col("set_off_fen")
        )
    )
    return frame.select(*PERIOD, *COLUMNS).cast(dict.fromkeys(COLUMNS, pl.Int64)).sort(PERIOD)


def money_by_policy(by_period: pl.DataFrame) -> pl.DataFrame:
    """`money_by_period` summed over each policy's benefit periods."""
    return by_period.group_by("policy_id").agg(pl.col(c).sum() for c in COLUMNS).sort("policy_id")


def money_rows(
    frame: pl.DataFrame, label: list[str]
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """A header and text rows of a money frame in yuan, the `label` columns first, a total last."""
    names = [c.removesuffix("_fen").replace("_", " ") for c in COLUMNS]
    header = (*label, *names)
    body = [
        (*[str(r[c]) for c in label], *[format_yuan(r[c]) for c in COLUMNS])
        for r in frame.iter_rows(named=True)
    ]
    totals = [format_yuan(int(frame[c].sum())) for c in COLUMNS]
    body.append(("total", *[""] * (len(label) - 1), *totals))
    return header, body


__all__ = ["COLUMNS", "money_by_period", "money_by_policy", "money_rows"]
