"""The ledger summed per policy and benefit period: keys entitled now, amount, adjustments,
and the money by state (payable, returned, at the bank, paid, set off, waived, clawed
back, recovered, owed back: `ledgers.money`).

Printed the same for the same ledger (ordered by policy and period, no
timestamps), so two summaries can be compared byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Engine, case, cast, func, select

from common.money import format_yuan
from ledgers.db import READ_FIX, privileged, require_ledger
from ledgers.frames import read_frame
from ledgers.holdings import signed_amount
from ledgers.money import money_by_period, money_rows
from ledgers.render import text_table
from ledgers.schema import ENTITLEMENT_KINDS, Transfer


@dataclass(frozen=True)
class Summary:
    """Per policy and benefit period: keys entitled now, net amount, adjustments, reversals."""

    rows: pl.DataFrame
    totals: dict[str, int] = field(default_factory=dict)
    # The money by state per policy and period (`ledgers.money`).
    money: pl.DataFrame = field(default_factory=pl.DataFrame)

    def to_json(self) -> dict[str, Any]:
        """The summary as plain data (rows ordered by policy and period)."""
        return {
            "policies": self.rows.to_dicts(),
            "total": self.totals,
            "money": self.money.to_dicts(),
        }

    def to_text(self) -> str:
        """A fixed-width table for people, ending with the totals."""
        header = ("policy", "period", "count", "amount_fen", "yuan", "adjustments", "reversed")
        body = [
            (
                r["policy_id"],
                r["benefit_period"],
                f"{r['count']:,}",
                str(r["amount_fen"]),
                format_yuan(r["amount_fen"]),
                f"{r['adjustments']:,}",
                f"{r['reversed']:,}",
            )
            for r in self.rows.iter_rows(named=True)
        ]
        t = self.totals
        body.append(
            (
                "total",
                "",
                f"{t['count']:,}",
                str(t["amount_fen"]),
                format_yuan(t["amount_fen"]),
                f"{t['adjustments']:,}",
                f"{t['reversed']:,}",
            )
        )
        table = text_table(header, body, right=(2, 3, 4, 5, 6))
        if self.money.height == 0:
            return table
        head, rows = money_rows(self.money, ["policy_id", "benefit_period"])
        money = text_table(head, rows, right=tuple(range(2, len(head))))
        return f"{table}\nmoney by state (yuan):\n{money}"


def summary(engine: Engine, *, up_to_run: int | None = None) -> Summary:
    """Per policy and benefit period: keys entitled now (count), net amount_fen, adjustments.

    `adjustments` counts every transfer after a key's grant (adjustments,
    reversals, clawbacks); `reversed` counts keys taken back to zero.  With
    `up_to_run`, the ledger as it stood after that run (its transfers and earlier ones).
    """
    t = Transfer.__table__
    per_key = (
        select(
            t.c.policy_id,
            t.c.benefit_period,
            t.c.entity,
            func.sum(signed_amount()).label("net_fen"),
            func.sum(case((t.c.kind != "grant", 1), else_=0)).label("later"),
        )
        .where(
            t.c.kind.in_(ENTITLEMENT_KINDS),
            *([t.c.run_id <= up_to_run] if up_to_run is not None else []),
        )
        .group_by(t.c.policy_id, t.c.benefit_period, t.c.entity)
        .subquery()
    )
    stmt = (
        select(
            per_key.c.policy_id,
            per_key.c.benefit_period,
            cast(func.sum(case((per_key.c.net_fen > 0, 1), else_=0)), BigInteger).label("count"),
            cast(func.sum(per_key.c.net_fen), BigInteger).label("amount_fen"),
            cast(func.sum(per_key.c.later), BigInteger).label("adjustments"),
            cast(func.sum(case((per_key.c.net_fen == 0, 1), else_=0)), BigInteger).label(
                "reversed"
            ),
        )
        .group_by(per_key.c.policy_id, per_key.c.benefit_period)
        .order_by(per_key.c.policy_id, per_key.c.benefit_period)
    )
    schema = {
        "policy_id": pl.String,
        "benefit_period": pl.String,
        "count": pl.Int64,
        "amount_fen": pl.Int64,
        "adjustments": pl.Int64,
        "reversed": pl.Int64,
    }
    with privileged("read the ledger's tables", READ_FIX, engine), engine.connect() as conn:
        require_ledger(conn)
        rows = read_frame(conn, stmt, schema)
        money = money_by_period(conn, up_to_run=up_to_run)
    totals = {
        c: int(rows.get_column(c).sum()) for c in ("count", "amount_fen", "adjustments", "reversed")
    }
    return Summary(rows, totals, money)
