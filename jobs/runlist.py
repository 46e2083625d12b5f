"""`disburse runs`: every run of the ledger, one line each, with what it did and where its
money stands.

A nightly run shows its state, date, entitlements and amount, the transfers it posted,
and its notice (published on, open until); a payment export its file (MsgId,
instructions, amount); a bank reply what it settled and returned; a recovery the bank
reference of the money paid back; an objection run the reversal it posted.  Below, the
money of the whole ledger by state: owed and not yet instructed (payable), instructed
and awaiting the bank (clearing), paid by the bank, owed back after a clawback
(receivable), paid back (recovered).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from common.money import format_yuan
from ledgers import accounts
from ledgers.balances import account_balances
from ledgers.objections import notices
from ledgers.schema import Run, Transfer


@dataclass
class RunLine:
    """One run, as listed."""

    run_id: int
    kind: str
    as_of: dt.date
    state: str
    transfers: int
    amount_fen: int  # what its transfers moved
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "as_of": self.as_of.isoformat(),
            "state": self.state,
            "transfers": self.transfers,
            "amount_fen": self.amount_fen,
            **self.detail,
        }

    def to_text(self) -> str:
        head = (
            f"{self.run_id:>5}  {self.kind:<10} {self.as_of.isoformat()}  {self.state:<9} "
            f"{self.transfers:>9,} transfers {format_yuan(self.amount_fen):>18} yuan"
        )
        d = self.detail
        extra = []
        if "entitled" in d:
            extra.append(f"{d['entitled']:,} entitled, {format_yuan(d['entitled_fen'])} yuan")
        if "notice" in d:
            n = d["notice"]
            extra.append(
                "notice: not published"
                if n is None
                else f"notice published {n['published_on']}, objections until {n['deadline']}"
            )
        if "msg_id" in d:
            extra.append(f"file {d['msg_id']}: {d['instructions']:,} instructions")
        if "reference" in d:
            extra.append(f"money paid back, bank reference {d['reference']}")
        if "settled" in d:
            extra.append(f"settled {d['settled']:,}, returned {d['rejected']:,}")
        return head + ("\n       " + "; ".join(extra) if extra else "")


@dataclass
class RunList:
    """Every run and the ledger's money by state."""

    runs: list[RunLine]
    money: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"runs": [r.to_json() for r in self.runs], "money_fen": self.money}

    def to_text(self) -> str:
        if not self.runs:
            return "no run is recorded in this database"
        lines = [r.to_text() for r in self.runs]
        m = self.money
        lines.append("")
        lines.append(
            f"money: owed, not yet instructed {format_yuan(m['payable'])} yuan; at the bank "
            f"{format_yuan(m['clearing'])}; paid {format_yuan(m['paid'])}; owed back "
            f"{format_yuan(m['receivable'])}; paid back {format_yuan(m['recovered'])}"
        )
        return "\n".join(lines)


def list_runs(engine: Engine) -> RunList:
    """Every run, oldest first, and the money of the ledger by state (module docstring)."""
    t, r = Transfer.__table__, Run.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(r.c.run_id, r.c.kind, r.c.as_of, r.c.state, r.c.summary_json).order_by(
                r.c.run_id
            )
        ).all()
        moved = {
            int(k): (int(n), int(fen or 0))
            for k, n, fen in conn.execute(
                select(t.c.run_id, func.count(), func.sum(t.c.amount_fen)).group_by(t.c.run_id)
            )
        }
        published = {int(row["run_id"]): row for row in notices(conn).iter_rows(named=True)}
        balances = account_balances(conn)
    lines = []
    for run_id, kind, as_of, state, summary_json in rows:
        n, fen = moved.get(int(run_id), (0, 0))
        summary = json.loads(summary_json) if summary_json else {}
        detail: dict[str, Any] = {}
        if kind == "nightly":
            totals = summary.get("totals", {})
            detail["entitled"] = int(totals.get("entitled", 0))
            detail["entitled_fen"] = int(totals.get("entitled_fen", 0))
            notice = published.get(int(run_id))
            detail["notice"] = (
                None
                if notice is None
                else {
                    "published_on": notice["published_on"].isoformat(),
                    "deadline": notice["deadline"].isoformat(),
                    "working_days": notice["working_days"],
                }
            )
        elif kind == "payment" and summary.get("msg_id"):
            detail.update(msg_id=summary["msg_id"], instructions=summary.get("instructions", 0))
        elif kind == "recovery" and summary.get("reference"):
            detail.update(reference=summary["reference"])
        elif kind == "bank-reply" and summary:
            detail.update(
                settled=summary.get("settled", {}).get("instructions", 0),
                rejected=summary.get("rejected", {}).get("instructions", 0),
            )
        day = as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of))
        lines.append(RunLine(int(run_id), str(kind), day, str(state), n, fen, detail))
    kind = accounts.kind_expr("account")
    money = {
        k: int(balances.filter(kind == k)["balance_fen"].sum())
        for k in (accounts.PAYABLE, accounts.CLEARING, accounts.PAID)
    }
    # A receivable's balance is below zero: what is owed back, shown as a positive amount.
    # So is recovered:bank's (money paid back comes in): shown as a positive amount too.
    for k in (accounts.RECEIVABLE, accounts.RECOVERED):
        money[k] = -int(balances.filter(kind == k)["balance_fen"].sum())
    return RunList(lines, money)


__all__ = ["RunLine", "RunList", "list_runs"]
