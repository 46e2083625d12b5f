"""What payees owe back (issue 19.4): money paid back, and later grants set against it.

`recover`: `disburse pay recover --entity --amount --reference` records money a payee
paid back after a clawback, settling what it owes oldest first (`ledgers.recoveries`).
The bank's reference of the money received names it: the same reference again with
the same payee and amount changes nothing; with another payee or amount it is refused.
The check and the posting rest on one reading of the ledger: if anything is posted in
between (another recovery, say), the transfers are refused, nothing written, and the
same command run again decides afresh.

`set_off`: before a payment file is written, the keys about to be paid under a policy
that declares `offset: {against: ...}` are set against what their payee owes back;
only the rest is instructed (`jobs.pay.export_payments` calls it).  Posting them
leaves nothing to set off again, so an export killed after it and run again does not
set anything off twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from common.money import format_yuan
from eligibility import PolicySet
from jobs.errors import JobError
from jobs.faults import checkpoint
from ledgers import recoveries, runs
from ledgers.holdings import chain_head
from ledgers.keys import LedgerKey
from ledgers.masking import mask_entity
from ledgers.payments import post_payments
from ledgers.post import ledger_connection

KEY = ["policy_id", "benefit_period", "entity"]
RECOVERY = "recovery"  # the kind of run a recovery posts under
MAX_REFERENCE = 64


@dataclass
class Recovered:
    """What `pay recover` did."""

    payee: str  # masked unless asked
    reference: str
    amount_fen: int
    received_on: dt.date
    run_id: int | None  # None: the reference was recorded before, nothing posted
    settled: pl.DataFrame  # KEY, amount_fen: the keys it settled
    still_owed_fen: int

    def to_text(self) -> str:
        head = (
            f"recovery {self.reference}: {format_yuan(self.amount_fen)} yuan paid back by "
            f"{self.payee} on {self.received_on}"
        )
        if self.run_id is None:
            lines = [head, "  recorded before: nothing changed"]
        else:
            lines = [head, f"  posted in run {self.run_id}:"]
            for r in self.settled.iter_rows(named=True):
                lines.append(
                    f"    {r['policy_id']} {r['benefit_period']}: {format_yuan(r['amount_fen'])}"
                    " yuan"
                )
        lines.append(f"  still owed back by this payee: {format_yuan(self.still_owed_fen)} yuan")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "payee": self.payee,
            "reference": self.reference,
            "amount_fen": self.amount_fen,
            "received_on": self.received_on.isoformat(),
            "run_id": self.run_id,
            "settled": self.settled.select("policy_id", "benefit_period", "amount_fen").to_dicts(),
            "still_owed_fen": self.still_owed_fen,
        }


def recover(
    engine: Engine,
    payee: str,
    amount_fen: int,
    reference: str,
    received_on: dt.date,
    key: LedgerKey,
    *,
    policy_id: str | None = None,
    unmask: bool = False,
) -> Recovered:
    """Record `amount_fen` paid back by `payee` (module docstring)."""
    reference = reference.strip()
    if not reference or len(reference) > MAX_REFERENCE:
        raise JobError(
            f"the reference must be 1 to {MAX_REFERENCE} characters",
            fix="give the bank's reference of the money received (its transaction number)",
        )
    if amount_fen <= 0:
        raise JobError(
            "the amount must be more than zero", fix="give the yuan paid back, e.g. 1200.00"
        )
    shown = payee if unmask else str(mask_entity(payee))
    with ledger_connection(engine) as conn:
        with conn.begin():
            head = chain_head(conn)
            owed = recoveries.owed_back(conn)
            done = recoveries.recoveries(conn)
        same = done.filter(pl.col("reference") == reference)
        mine = owed.filter(pl.col("payee") == payee)
        if same.height:
            if (
                set(same["payee"].to_list()) != {payee}
                or int(same["amount_fen"].sum()) != amount_fen
            ):
                raise JobError(
                    f"reference {reference} is already recorded, for "
                    f"{format_yuan(int(same['amount_fen'].sum()))} yuan"
                    + ("" if set(same["payee"].to_list()) == {payee} else " from another payee"),
                    fix="a reference names one payment received: check it against the bank's "
                    "statement; nothing was posted",
                )
            _close_posted(engine, same)
            return Recovered(
                shown,
                reference,
                amount_fen,
                dt.date.fromisoformat(str(same["received_on"][0])),
                None,
                same.select(*KEY, "amount_fen"),
                int(mine["owed_fen"].sum()),
            )
        if policy_id is not None:
            mine = mine.filter(pl.col("policy_id") == policy_id)
        owes = int(mine["owed_fen"].sum())
        where = "" if policy_id is None else f" under {policy_id}"
        if owes == 0:
            raise JobError(
                f"{shown} owes nothing back{where}",
                fix="check the payee's identifier (`disburse explain` shows what a key owes back)"
                "; nothing was posted",
            )
        if amount_fen > owes:
            raise JobError(
                f"{shown} owes {format_yuan(owes)} yuan back{where}; "
                f"{format_yuan(amount_fen)} is more",
                fix="record what settles the debt, and refund the rest to the payee outside "
                "the ledger; nothing was posted",
            )
        transfers = recoveries.recovery_transfers(mine, payee, amount_fen, reference, received_on)
        run_id = _open_run(engine, received_on)
        post_payments(conn, transfers, run_id, key, head=head)
    checkpoint("recover:posted")
    settled = transfers.select(*KEY, "amount_fen")
    result = Recovered(
        shown, reference, amount_fen, received_on, run_id, settled, owes_total(engine, payee)
    )
    runs.complete(engine, run_id, summary=result.to_json(), timings={})
    return result


def owes_total(engine: Engine, payee: str) -> int:
    """What `payee` still owes back, in fen."""
    with engine.connect() as conn:
        owed = recoveries.owed_back(conn)
    return int(owed.filter(pl.col("payee") == payee)["owed_fen"].sum())


def _close_posted(engine: Engine, same: pl.DataFrame) -> None:
    """Complete the run of a recovery whose transfers were posted before the command was
    interrupted (the same command again finds its reference recorded)."""
    ids = set(same["run_id"].to_list())
    for run in runs.open_runs(engine, RECOVERY):
        if run.run_id in ids:
            runs.complete(
                engine, run.run_id, summary={"reference": same["reference"][0]}, timings={}
            )


def _open_run(engine: Engine, on: dt.date) -> int:
    for run in runs.open_runs(engine, RECOVERY):
        if run.as_of == on:
            return run.run_id
    with engine.begin() as conn:
        return runs.start_run(conn, kind=RECOVERY, as_of=on)


def offset_scope(pset: PolicySet) -> dict[str, str]:
    """Policy id -> what its grants may be set against (this_policy or any_policy)."""
    return {p.id: p.spec.offset.against for p in pset.policies if p.spec.offset is not None}


def set_off(
    engine: Engine,
    pset: PolicySet,
    payable: pl.DataFrame,
    run_of: Callable[[], int],
    key: LedgerKey,
) -> pl.DataFrame:
    """Set the keys of `payable` (KEY, payee, amount_fen: about to be paid, in the order to
    use them) against what their payees owe back, as their policies allow; the offset
    transfers posted (none if nobody owes or no policy allows it), under the run
    `run_of` gives (asked only when there is something to post)."""
    scope = offset_scope(pset)
    candidates = payable.filter(pl.col("policy_id").is_in(list(scope)))
    if candidates.height == 0:
        return pl.DataFrame(schema=recoveries.TRANSFER_SCHEMA)
    with ledger_connection(engine) as conn:
        with conn.begin():
            head = chain_head(conn)
            owed = recoveries.owed_back(conn)
        transfers = recoveries.offset_transfers(candidates, owed, scope)
        if transfers.height:
            post_payments(conn, transfers, run_of(), key, head=head)
    if transfers.height:
        checkpoint("pay:offsets-posted")
    return transfers


__all__ = ["RECOVERY", "Recovered", "offset_scope", "owes_total", "recover", "set_off"]
