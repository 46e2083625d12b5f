"""What `verify` concludes: one `Check` per property, naming the first bad entry if it fails.

Each check judges totals the scan gathered (`ledgers.scan`) against what the
ledger records beside the transfers (`entitlement_keys`, `runs`, the newest
holdings snapshot), in Polars.  A finding names an entitlement key with a
resident identity number masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from ledgers import accounts
from ledgers.holdings import HOLDING_KEY, SnapshotRecord
from ledgers.masking import mask_account_address, mask_entity
from ledgers.validate import KEY

if TYPE_CHECKING:
    from ledgers.scan import Scan


@dataclass(frozen=True)
class Check:
    """One verified property: ok, what was checked, and the first bad entry if not ok.

    `unchecked`: the property could not be checked (what it needs, the ledger key,
    was not given); not ok, but nothing was found wrong either."""

    name: str
    ok: bool
    detail: str
    entry: str | None = None
    problem: str | None = None
    unchecked: bool = False

    @property
    def status(self) -> str:
        """ok, failed, or not checked."""
        return "ok" if self.ok else "not checked" if self.unchecked else "failed"

    def to_json(self) -> dict[str, Any]:
        """The check as plain data."""
        return {
            "name": self.name,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "entry": self.entry,
            "problem": self.problem,
        }


def key_name(row: dict[str, Any]) -> str:
    """An entitlement key as printed: a resident identity number as entity is masked."""
    return f"key {row['policy_id']}/{row['benefit_period']}/{mask_entity(row['entity'])}"


def check_balances(account_totals: pl.DataFrame, per_key: pl.DataFrame) -> Check:
    """All balances sum to 0; no payable below 0, no receivable above 0; no key below 0."""
    balances = account_totals.with_columns(
        balance_fen=pl.col("credits_fen") - pl.col("debits_fen")
    ).sort("account")
    total = int(balances.get_column("balance_fen").sum())
    n = balances.height
    if total != 0:
        return Check(
            "balances",
            False,
            f"{n:,} accounts sum to {total} fen, not 0",
            "the ledger as a whole",
            "debits and credits differ: a transfer was changed or removed",
        )
    kind = accounts.kind_expr("account")
    bad = balances.filter(
        ((kind == accounts.PAYABLE) & (pl.col("balance_fen") < 0))
        | ((kind == accounts.RECEIVABLE) & (pl.col("balance_fen") > 0))
        | ~kind.is_in(list(accounts.ACCOUNT_KINDS)).fill_null(False)
    )
    if bad.height:
        row = bad.row(0, named=True)
        return Check(
            "balances",
            False,
            f"{bad.height} account(s) break their rule",
            f"account {mask_account_address(row['account'])}",
            f"balance {row['balance_fen']} fen: payables must be >= 0, receivables <= 0, "
            "and every account one of " + ", ".join(accounts.ACCOUNT_KINDS),
        )
    below = per_key.filter(pl.col("net_fen") < 0).sort(KEY)
    if below.height:
        row = below.row(0, named=True)
        return Check(
            "balances",
            False,
            "an entitlement was taken back more than it was granted",
            key_name(row),
            f"net {row['net_fen']} fen is below zero",
        )
    return Check(
        "balances",
        True,
        f"{n:,} accounts sum to 0 fen; no payable below 0, no receivable above 0, no key below 0",
    )


def check_snapshot(snap: SnapshotRecord, scan: Scan) -> Check:
    """The newest holdings snapshot equals what the ledger held at its head.

    Runs start from it instead of reading every entitlement transfer, so a
    snapshot that is wrong but still looks usable (its head in the chain, its
    file matching its recorded sha256) would misstate what earlier runs granted.
    One that is not usable is ignored by runs, and said so here.
    """
    name = f"holdings snapshot at transfer {snap.head_id}"
    if scan.snapshot_hash != snap.head_hash:
        return Check("holdings", True, f"{name}: its head is not in this chain; runs ignore it")
    kept = snap.read()
    if kept is None:
        return Check(
            "holdings",
            True,
            f"{name}: its file {snap.file} is missing or changed since it was recorded; "
            "runs ignore it and read the ledger",
        )
    ledger = scan.held_at_snapshot()
    both = kept.join(ledger, on=list(HOLDING_KEY), how="full", coalesce=True, suffix="_ledger")
    wrong = both.filter(
        pl.col("net_fen").fill_null(0) != pl.col("net_fen_ledger").fill_null(0)
    ).sort(HOLDING_KEY)
    if wrong.height:
        row = wrong.row(0, named=True)
        return Check(
            "holdings",
            False,
            f"{name} differs from the ledger for {wrong.height:,} key(s)",
            f"{key_name(row)} payee {mask_entity(row['payee'])}",
            f"the snapshot holds {row['net_fen'] or 0} fen, the ledger "
            f"{row['net_fen_ledger'] or 0} fen; delete the snapshot's row from "
            "holdings_snapshots so that runs read the ledger itself",
        )
    return Check(
        "holdings",
        True,
        f"{name} equals the ledger's holdings there ({kept.height:,} keys and payees)",
    )


def check_keys(per_key: pl.DataFrame, recorded: pl.DataFrame) -> Check:
    """Each entitlement key recorded once, granted once, and pointing at its grant."""
    n = recorded.height
    dup = recorded.filter(pl.struct(KEY).is_duplicated()).sort(KEY)
    if dup.height:
        row = dup.row(0, named=True)
        return Check(
            "keys",
            False,
            "an entitlement key is recorded more than once",
            key_name(row),
            f"{dup.height} rows in entitlement_keys share keys (their primary key was removed)",
        )
    twice = per_key.filter(pl.col("grants") > 1).sort(KEY)
    if twice.height:
        row = twice.row(0, named=True)
        return Check(
            "keys",
            False,
            "an entity was granted twice for one policy and benefit period",
            key_name(row),
            f"{row['grants']} grants, transfers {row['first_grant']} and {row['last_grant']}",
        )
    orphans = per_key.join(recorded, on=KEY, how="anti").sort("first_transfer")
    if orphans.height:
        row = orphans.row(0, named=True)
        return Check(
            "keys",
            False,
            "a transfer belongs to no recorded entitlement key",
            f"transfer {row['first_transfer']} ({key_name(row)})",
            "its key is missing from entitlement_keys",
        )
    pointed = recorded.join(per_key, on=KEY, how="left").filter(
        pl.col("transfer_id").ne_missing(pl.col("first_grant"))
    )
    if pointed.height:
        row = pointed.sort(KEY).row(0, named=True)
        return Check(
            "keys",
            False,
            "an entitlement key does not point at its grant",
            key_name(row),
            f"transfer {row['transfer_id']} is not the grant of this key",
        )
    return Check("keys", True, f"{n:,} keys, each granted exactly once")


def check_runs(used: pl.DataFrame, recorded: pl.DataFrame) -> Check:
    """Every run a transfer refers to is recorded."""
    missing = used.join(recorded, on="run_id", how="anti").sort("transfer_id")
    if missing.height:
        row = missing.row(0, named=True)
        return Check(
            "runs",
            False,
            "a transfer refers to a run that is not recorded",
            f"transfer {row['transfer_id']}",
            f"run {row['run_id']} is missing from runs",
        )
    return Check("runs", True, "every transfer's run is recorded")
