"""The demo's finance day after a night: publish, pay, take the bank's reply, pay the rest.

`disburse demo` runs it after its nightly run, with the commands finance runs (each
idempotent, so the demo can be run again on its folder):

1. publish the night's notice on the next day (`jobs.publish`);
2. export the payment file of what is due that day (`jobs.pay`): policies that
   publish first wait for their notice;
3. a simulated bank reply settles most payments and returns a few, imported;
4. once the notice has closed, export again: the published policies are paid (the
   returned payments wait for a corrected account), and the bank settles them all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from common.money import format_yuan
from eligibility import PolicySet
from jobs.pay import Debtor, export_payments, import_reply, simulate_reply
from jobs.publish import publish
from jobs.runlist import list_runs
from ledgers.keys import LedgerKey

DEBTOR = Debtor("Municipal Finance Bureau (demo)", "310066000000000001", "011")


@dataclass
class FinanceDay:
    """What the demo's finance day did, in numbers."""

    notice_deadline: dt.date
    first_file: Path | None
    first_instructions: int
    settled: int
    settled_fen: int
    returned: int
    returned_fen: int
    second_file: Path | None
    second_instructions: int
    paid_fen: int
    owed_fen: int

    def to_json(self) -> dict[str, object]:
        return {
            "notice_deadline": self.notice_deadline.isoformat(),
            "first_file": str(self.first_file) if self.first_file else None,
            "first_instructions": self.first_instructions,
            "settled": self.settled,
            "settled_fen": self.settled_fen,
            "returned": self.returned,
            "returned_fen": self.returned_fen,
            "second_file": str(self.second_file) if self.second_file else None,
            "second_instructions": self.second_instructions,
            "paid_fen": self.paid_fen,
            "owed_fen": self.owed_fen,
        }

    def to_text(self) -> str:
        return "\n".join(
            [
                "finance day:",
                f"  notice published, objections until {self.notice_deadline}",
                f"  payment file {self.first_file}: {self.first_instructions:,} instructions",
                f"  the bank settled {self.settled:,} ({format_yuan(self.settled_fen)} yuan) and "
                f"returned {self.returned:,} ({format_yuan(self.returned_fen)} yuan)",
                f"  after the notice: {self.second_file}: {self.second_instructions:,} instructions",
                f"  paid {format_yuan(self.paid_fen)} yuan; still owed {format_yuan(self.owed_fen)} "
                "(returned payments wait for a corrected account)",
            ]
        )


def finance_day(
    engine: Engine, pset: PolicySet, run_id: int, as_of: dt.date, folder: Path, key: LedgerKey
) -> FinanceDay:
    """The steps of the module docstring, files written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    day = as_of + dt.timedelta(days=1)
    notice = publish(engine, run_id, folder / "notice.html", published_on=day)
    first = export_payments(
        engine, pset, day, folder / "pay-1.xml", fmt="pain.001", debtor=DEBTOR, key=key
    )
    settled = settled_fen = returned = returned_fen = 0
    if first.msg_id is not None:
        reply = folder / "reply-1.xml"
        simulate_reply(
            engine, pset, reply, debtor=DEBTOR, key=key, seed=1, return_rate=0.02,
            msg_id=first.msg_id,
        )  # fmt: skip
        answered = import_reply(engine, reply, key).applied
        settled, settled_fen = answered.settled, answered.settled_fen
        returned, returned_fen = answered.rejected, answered.rejected_fen
    later = notice.deadline + dt.timedelta(days=1)
    second = export_payments(
        engine, pset, later, folder / "pay-2.xml", fmt="pain.001", debtor=DEBTOR, key=key
    )
    if second.msg_id is not None:
        reply2 = folder / "reply-2.xml"
        simulate_reply(
            engine, pset, reply2, debtor=DEBTOR, key=key, seed=2, return_rate=0.0,
            msg_id=second.msg_id,
        )  # fmt: skip
        import_reply(engine, reply2, key)
    money = list_runs(engine).money
    return FinanceDay(
        notice_deadline=notice.deadline,
        first_file=first.file,
        first_instructions=first.instructions,
        settled=settled,
        settled_fen=settled_fen,
        returned=returned,
        returned_fen=returned_fen,
        second_file=second.file,
        second_instructions=second.instructions,
        paid_fen=money["paid"],
        owed_fen=money["payable"],
    )


__all__ = ["FinanceDay", "finance_day"]
