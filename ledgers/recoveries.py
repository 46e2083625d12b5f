"""What payees owe back, and how it is settled (issue 19.4): recovered money and offsets.

A decrease that a payee's payable can no longer cover (the money was instructed or
paid) is a clawback: receivable:<payee> is debited under the entitlement's key, and
the payee owes it back.  It is settled in two ways, each a transfer that credits the
receivable and never takes it above zero (posting guards it, `ledgers.write`):

    recovered   recovered:bank -> receivable:<payee>   money the payee paid back
    offset      payable:<payee> -> receivable:<payee>  a later grant set against it

A `recovered` transfer carries the key it settles and, in its decision, the bank's
reference of the money received ({"reference": ..., "received_on": ...}): a reference
is posted once, all its transfers in one transaction.  An `offset` transfer carries
the key whose payable paid it (so that key's payments read like an instruction's) and,
in its decision, the key it settles ({"settles": {policy_id, benefit_period, entity}}).

`owed_back` gives, per key that was clawed back, what is still owed: clawbacks less
recoveries and offsets that settle it.  Settlements are allocated to the oldest
clawback first (by the transfer that made it).
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
from sqlalchemy import Connection, select

from ledgers import accounts
from ledgers.frames import read_frame
from ledgers.schema import Transfer

KEY = ["policy_id", "benefit_period", "entity"]
OWED_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **dict.fromkeys(KEY, pl.String),
    "payee": pl.String,
    "owed_fen": pl.Int64,
    "since": pl.Int64,  # the transfer id of the key's first clawback: the oldest first
}
RECOVERY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **dict.fromkeys(KEY, pl.String),
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "reference": pl.String,
    "received_on": pl.String,
    "run_id": pl.Int64,
}


def _settling(conn: Connection) -> pl.DataFrame:
    """Every transfer of kind clawback, recovered or offset: its key, payee, amount,
    transfer id, run and decision."""
    t = Transfer.__table__
    stmt = select(
        t.c.transfer_id,
        t.c.kind,
        t.c.run_id,
        t.c.policy_id,
        t.c.benefit_period,
        t.c.entity,
        t.c.payee,
        t.c.amount_fen,
        t.c.decision,
    ).where(t.c.kind.in_(("clawback", "recovered", "offset")))
    return read_frame(
        conn,
        stmt.order_by(t.c.transfer_id),
        {
            "transfer_id": pl.Int64,
            "kind": pl.String,
            "run_id": pl.Int64,
            **dict.fromkeys(KEY, pl.String),
            "payee": pl.String,
            "amount_fen": pl.Int64,
            "decision": pl.String,
        },
    )


def owed_back(conn: Connection) -> pl.DataFrame:
    """Per key clawed back and not yet settled in full (`OWED_SCHEMA`): what its payee still
    owes (> 0), oldest clawback first."""
    rows = _settling(conn)
    claws = rows.filter(pl.col("kind") == "clawback").select(
        *KEY, pl.coalesce("payee", "entity").alias("payee"), "amount_fen", "transfer_id"
    )
    recovered = rows.filter(pl.col("kind") == "recovered").select(
        *KEY, pl.coalesce("payee", "entity").alias("payee"), (-pl.col("amount_fen")), "transfer_id"
    )
    settles = pl.col("decision").str.json_path_match
    offsets = rows.filter(pl.col("kind") == "offset").select(
        settles("$.settles.policy_id").alias("policy_id"),
        settles("$.settles.benefit_period").alias("benefit_period"),
        settles("$.settles.entity").alias("entity"),
        pl.coalesce("payee", "entity").alias("payee"),
        -pl.col("amount_fen"),
        "transfer_id",
    )
    both = pl.concat([claws, recovered, offsets])
    owed = both.group_by(*KEY, "payee").agg(
        pl.col("amount_fen").sum().alias("owed_fen"),
        pl.col("transfer_id").min().alias("since"),
    )
    return (
        owed.filter(pl.col("owed_fen") > 0)
        .select(list(OWED_SCHEMA))
        .cast(OWED_SCHEMA)  # type: ignore[arg-type]
        .sort("since", *KEY)
    )


def owed_by_key(
    conn: Connection, policy_id: str, benefit_period: str, entity: str
) -> dict[str, int]:
    """What one key was clawed back, how much of it was recovered and set off, and what is
    still owed (all zero for a key never clawed back)."""
    rows = _settling(conn)
    mine = (
        (pl.col("policy_id") == policy_id)
        & (pl.col("benefit_period") == benefit_period)
        & (pl.col("entity") == entity)
    )
    settles = pl.col("decision").str.json_path_match
    theirs = (
        (settles("$.settles.policy_id") == policy_id)
        & (settles("$.settles.benefit_period") == benefit_period)
        & (settles("$.settles.entity") == entity)
    )

    def total(frame: pl.DataFrame) -> int:
        return int(frame["amount_fen"].sum())

    claws = total(rows.filter(mine & (pl.col("kind") == "clawback")))
    back = total(rows.filter(mine & (pl.col("kind") == "recovered")))
    off = total(rows.filter((pl.col("kind") == "offset") & theirs.fill_null(False)))
    return {
        "clawed_back_fen": claws,
        "recovered_fen": back,
        "set_off_fen": off,
        "owed_fen": claws - back - off,
    }


def offsets_by_key(conn: Connection) -> pl.DataFrame:
    """Per key whose payable paid an offset: offset_fen, what it set against a receivable."""
    rows = _settling(conn).filter(pl.col("kind") == "offset")
    return rows.group_by(KEY).agg(pl.col("amount_fen").sum().alias("offset_fen"))


def recoveries(conn: Connection) -> pl.DataFrame:
    """Every recovered transfer (`RECOVERY_SCHEMA`), in the order posted."""
    rows = _settling(conn).filter(pl.col("kind") == "recovered")
    field = pl.col("decision").str.json_path_match
    return rows.select(
        *KEY,
        pl.coalesce("payee", "entity").alias("payee"),
        "amount_fen",
        field("$.reference").alias("reference"),
        field("$.received_on").alias("received_on"),
        "run_id",
    )


def _transfer(kind: str, debit: str, credit: str, fen: int, key: dict[str, str], payee: str,
              decision: dict[str, object]) -> dict[str, object]:  # fmt: skip
    return {
        "kind": kind,
        "debit_account": debit,
        "credit_account": credit,
        "amount_fen": fen,
        **{k: key[k] for k in KEY},
        "payee": payee,
        "decision": json.dumps(decision, sort_keys=True, separators=(",", ":")),
    }


TRANSFER_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "kind": pl.String,
    "debit_account": pl.String,
    "credit_account": pl.String,
    "amount_fen": pl.Int64,
    **dict.fromkeys(KEY, pl.String),
    "payee": pl.String,
    "decision": pl.String,
}


def recovery_transfers(
    owed: pl.DataFrame, payee: str, amount_fen: int, reference: str, received_on: dt.date
) -> pl.DataFrame:
    """The `recovered` transfers of `amount_fen` paid back by `payee`, settling the keys of
    `owed` (`owed_back`, this payee's rows, oldest first) in turn.  The caller checks the
    amount is not more than they owe."""
    out = []
    left = amount_fen
    for row in owed.sort("since", *KEY).iter_rows(named=True):
        if left <= 0:
            break
        take = min(left, int(row["owed_fen"]))
        out.append(
            _transfer(
                "recovered",
                accounts.RECOVERED_BANK,
                accounts.receivable(payee),
                take,
                row,
                payee,
                {"reference": reference, "received_on": received_on.isoformat()},
            )
        )
        left -= take
    return pl.DataFrame(out, schema=TRANSFER_SCHEMA, orient="row")


def offset_transfers(
    payable: pl.DataFrame, owed: pl.DataFrame, scope: dict[str, str]
) -> pl.DataFrame:
    """The `offset` transfers that set the amounts of `payable` (KEY, payee, amount_fen: what
    each key is about to be paid, in the order to use them) against what their payees
    owe (`owed_back`): a key of a policy whose `scope` is "this_policy" settles only that
    policy's receivables, "any_policy" any of its payee's.  Oldest receivable first."""
    out: list[dict[str, object]] = []
    debts: dict[str, list[dict[str, object]]] = {}
    for row in owed.sort("since", *KEY).iter_rows(named=True):
        debts.setdefault(str(row["payee"]), []).append(dict(row))
    for row in payable.filter(pl.col("payee").is_in(list(debts))).iter_rows(named=True):
        against = scope.get(str(row["policy_id"]))
        if against is None:
            continue
        left = int(row["amount_fen"])
        for debt in debts[str(row["payee"])]:
            if left <= 0:
                break
            owed_fen = int(debt["owed_fen"])  # type: ignore[call-overload]
            if owed_fen <= 0 or (
                against == "this_policy" and debt["policy_id"] != row["policy_id"]
            ):
                continue
            take = min(left, owed_fen)
            out.append(
                _transfer(
                    "offset",
                    accounts.payable(str(row["payee"])),
                    accounts.receivable(str(row["payee"])),
                    take,
                    row,
                    str(row["payee"]),
                    {"settles": {k: debt[k] for k in KEY}},
                )
            )
            debt["owed_fen"] = owed_fen - take
            left -= take
    return pl.DataFrame(out, schema=TRANSFER_SCHEMA, orient="row")


__all__ = [
    "OWED_SCHEMA",
    "RECOVERY_SCHEMA",
    "TRANSFER_SCHEMA",
    "offset_transfers",
    "offsets_by_key",
    "owed_back",
    "owed_by_key",
    "recoveries",
    "recovery_transfers",
]
