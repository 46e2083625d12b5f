"""Account balances: every account's debits, credits and balance (credits - debits).

`account_balances` is the one query of them, on a connection: posting reads the
payables from it and the audit prints it (`balances`, with the totals).  A
balance is credits minus debits; all balances sum to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Connection, Engine, cast, func, select

from common.money import format_yuan
from ledgers import accounts
from ledgers.db import READ_FIX, LedgerError, privileged, require_ledger
from ledgers.frames import read_frame
from ledgers.masking import mask_account_address_expr
from ledgers.money import money_by_period, money_by_policy, money_rows
from ledgers.render import text_table
from ledgers.schema import Transfer


def account_balances(
    conn: Connection, kind: str | None = None, only: list[str] | None = None
) -> pl.DataFrame:
    """Every account's debits, credits and balance (credits - debits), optionally of one kind,
    or of the accounts `only` names (those that have a transfer)."""
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
    if only is not None:
        debit = debit.where(t.c.debit_account.in_(only))
        credit = credit.where(t.c.credit_account.in_(only))
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


@dataclass(frozen=True)
class Balances:
    """Every account's debits, credits and balance (credits - debits), and the totals."""

    accounts: pl.DataFrame
    totals: dict[str, int]
    # The money by state per policy (`ledgers.money`): the balances split by policy.
    by_policy: pl.DataFrame = field(default_factory=pl.DataFrame)

    def to_json(self) -> dict[str, Any]:
        """The balances as plain data (accounts ordered by address)."""
        return {
            "accounts": self.accounts.to_dicts(),
            "total": self.totals,
            "by_policy": self.by_policy.to_dicts(),
        }

    def to_text(self) -> str:
        """A fixed-width table for people, ending with the totals (the balance is always 0)."""
        header = ("account", "kind", "debits_fen", "credits_fen", "balance_fen", "yuan")
        body = [
            (
                r["account"],
                r["kind"],
                str(r["debits_fen"]),
                str(r["credits_fen"]),
                str(r["balance_fen"]),
                format_yuan(r["balance_fen"]),
            )
            for r in self.accounts.iter_rows(named=True)
        ]
        t = self.totals
        body.append(
            (
                f"total ({t['accounts']:,} accounts)",
                "",
                str(t["debits_fen"]),
                str(t["credits_fen"]),
                str(t["balance_fen"]),
                format_yuan(t["balance_fen"]),
            )
        )
        table = text_table(header, body, right=(2, 3, 4, 5))
        if self.by_policy.height == 0:
            return table
        head, rows = money_rows(self.by_policy, ["policy_id"])
        money = text_table(head, rows, right=tuple(range(1, len(head))))
        return f"{table}\nper policy (yuan):\n{money}"


def balances(engine: Engine, *, kind: str | None = None, unmask: bool = False) -> Balances:
    """Account balances, optionally of one kind (`accounts.ACCOUNT_KINDS`), and the money
    by state per policy."""
    if kind is not None and kind not in accounts.ACCOUNT_KINDS:
        raise LedgerError(
            f"unknown account kind {kind!r}\n  fix: use one of {', '.join(accounts.ACCOUNT_KINDS)}"
        )
    with privileged("read the ledger's tables", READ_FIX, engine), engine.connect() as conn:
        require_ledger(conn)
        frame = account_balances(conn, kind)
        by_policy = money_by_policy(money_by_period(conn))
    frame = frame.select(
        "account",
        accounts.kind_expr("account").alias("kind"),
        "debits_fen",
        "credits_fen",
        "balance_fen",
    )
    totals = {
        "accounts": frame.height,
        "debits_fen": int(frame.get_column("debits_fen").sum()),
        "credits_fen": int(frame.get_column("credits_fen").sum()),
        "balance_fen": int(frame.get_column("balance_fen").sum()),
    }
    if not unmask:
        frame = frame.with_columns(mask_account_address_expr(pl.col("account")).alias("account"))
    return Balances(frame, totals, by_policy)
