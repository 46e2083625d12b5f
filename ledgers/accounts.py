"""Account addresses: parts joined by ':' (Formance-style), created implicitly by use.

| address                          | holds                                     | balance must be |
| -------------------------------- | ----------------------------------------- | --------------- |
| `budget:<policy>:<period>`       | a policy's budget for one benefit period  | anything (it goes negative as it pays) |
| `payable:<payee>`                | what the engine owes a payee              | >= 0            |
| `receivable:<payee>`             | what a payee owes back after a clawback   | <= 0            |
| `clearing:bank`                  | money instructed to the bank, not yet settled | >= 0        |
| `paid:bank`                      | money the bank paid out (settled)         | >= 0            |
| `recovered:bank`                 | money payees paid back on what they owed  | <= 0            |

A balance is credits minus debits.  A grant debits the budget and credits the
payable; a payment instruction debits the payable and credits clearing; the bank's
reply settles it (clearing to paid) or returns it (clearing back to the payable);
a decrease that the payable can no longer cover (the money is instructed or paid)
debits the receivable instead.  What a payee owes back is settled by money paid back
(recovered:bank to the receivable) or by setting a later grant against it (its
payable to the receivable, an offset).
The parts never contain ':' (posting refuses such ids), so an address parses back.
"""

from __future__ import annotations

import polars as pl

SEP = ":"
BUDGET = "budget"
PAYABLE = "payable"
RECEIVABLE = "receivable"
CLEARING = "clearing"
CLEARING_BANK = f"{CLEARING}{SEP}bank"
PAID = "paid"
PAID_BANK = f"{PAID}{SEP}bank"
RECOVERED = "recovered"
RECOVERED_BANK = f"{RECOVERED}{SEP}bank"
ACCOUNT_KINDS = (BUDGET, PAYABLE, RECEIVABLE, CLEARING, PAID, RECOVERED)


def budget(policy_id: str, benefit_period: str) -> str:
    """The budget account of a policy for one benefit period."""
    return f"{BUDGET}{SEP}{policy_id}{SEP}{benefit_period}"


def payable(payee: str) -> str:
    """The account of what is owed to a payee."""
    return f"{PAYABLE}{SEP}{payee}"


def receivable(payee: str) -> str:
    """The account of what a payee owes back."""
    return f"{RECEIVABLE}{SEP}{payee}"


def kind_of(account: str) -> str:
    """The kind of an account address: budget, payable, receivable or clearing."""
    return account.split(SEP, 1)[0]


def holder_of(account: str) -> str | None:
    """The payee of a payable or receivable account, else None."""
    kind, _, rest = account.partition(SEP)
    return rest if kind in (PAYABLE, RECEIVABLE) else None


def budget_expr(policy_id: str = "policy_id", benefit_period: str = "benefit_period") -> pl.Expr:
    """Polars: the budget account of each row."""
    return pl.concat_str([pl.lit(BUDGET), pl.col(policy_id), pl.col(benefit_period)], separator=SEP)


def payable_expr(payee: str = "payee") -> pl.Expr:
    """Polars: the payable account of each row's payee."""
    return pl.concat_str([pl.lit(PAYABLE), pl.col(payee)], separator=SEP)


def receivable_expr(payee: str = "payee") -> pl.Expr:
    """Polars: the receivable account of each row's payee."""
    return pl.concat_str([pl.lit(RECEIVABLE), pl.col(payee)], separator=SEP)


def kind_expr(account: str) -> pl.Expr:
    """Polars: the kind part of an account address."""
    return pl.col(account).str.split_exact(SEP, 1).struct.field("field_0")
