"""Verify's one pass over the transfers, in id order: the chain recomputed, totals gathered.

The transfers are read in batches by id range (memory stays flat in the
ledger's length); each batch's hashes and links are recomputed (`ledgers.chain`)
and its totals per account, per entitlement key and per run are gathered, with
what each key held at the newest holdings snapshot's head.  `ledgers.checks`
judges the totals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, func, select

from ledgers import versions
from ledgers.chain import GENESIS, personal_content_expr, stored_content_expr
from ledgers.checkpoints import Anchor
from ledgers.checks import Check, key_name
from ledgers.frames import read_frame
from ledgers.holdings import HOLDING_KEY, HOLDINGS_SCHEMA, SIGNED_FEN, SnapshotRecord
from ledgers.keys import LedgerKey
from ledgers.schema import ENTITLEMENT_KINDS, Transfer
from ledgers.validate import KEY

TRANSFER_SCHEMA: dict[str, type[pl.DataType]] = {
    "transfer_id": pl.Int64,
    "kind": pl.String,
    "debit_account": pl.String,
    "credit_account": pl.String,
    "amount_fen": pl.Int64,
    "run_id": pl.Int64,
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "policy_sha256": pl.String,
    "decision": pl.String,
    "personal_mac": pl.String,
    "prev_hash": pl.String,
    "hash": pl.String,
}


def batches(conn: Connection, batch: int) -> Iterator[pl.DataFrame]:
    """All transfers in id order, `batch` ids at a time.

    By id range rather than LIMIT: right after a bulk post the table may have no
    statistics yet, and a range on the primary key is an index scan whatever
    the planner knows.  Ids are dense; a gap (a deleted row) just thins a batch.
    """
    t = Transfer.__table__
    # The policy's sha256 by its version's number (`ledgers.versions`): a transfer naming a
    # version that is not there reads a null sha256, and its hash no longer matches.
    sha256 = versions.sha256_expr(versions.known(conn))
    stored: dict[str, type[pl.DataType]] = {**TRANSFER_SCHEMA, "policy_version_id": pl.Int32}
    del stored["policy_sha256"]
    columns = [t.c[name] for name in stored]
    first = select(func.min(t.c.transfer_id))
    following: int | None = conn.execute(first).scalar_one_or_none()
    while following is not None:
        start = following - 1
        stmt = (
            select(*columns)
            .where(t.c.transfer_id > start, t.c.transfer_id <= start + batch)
            .order_by(t.c.transfer_id)
        )
        yield (read_frame(conn, stmt, stored).with_columns(sha256).select(list(TRANSFER_SCHEMA)))
        # The next id present (normally start + batch + 1): a run of missing ids is jumped.
        following = conn.execute(first.where(t.c.transfer_id > start + batch)).scalar_one_or_none()


class Scan:
    """What verify gathers in its one pass over the transfers."""

    def __init__(
        self,
        expect_head: str | None,
        snapshot: SnapshotRecord | None = None,
        key: LedgerKey | None = None,
        anchors: Sequence[Anchor] = (),
    ) -> None:
        self.prev_id, self.prev_hash = 0, GENESIS
        self.anchors = anchors
        self.broken_at: int | None = None  # the first transfer whose chain check failed
        self.key = key
        self.keyed = 0  # transfers of chain version 2 (with a personal_mac)
        self.personal_bad = 0  # of which with a digest that does not match under `key`
        self.personal_broken: Check | None = None
        self.snapshot = snapshot
        self.snapshot_hash: str | None = None  # the stored hash of the snapshot's head transfer
        self._held: list[pl.DataFrame] = []
        self._keyed_seen = False
        self.count = 0
        self.seen_head = expect_head is None
        self.expect_head = expect_head
        self.broken: Check | None = None
        self._accounts: list[pl.DataFrame] = []
        self._keys: list[pl.DataFrame] = []
        self._runs: list[pl.DataFrame] = []

    def add(self, frame: pl.DataFrame) -> None:
        """Check the next batch's chain and gather its totals."""
        if self.broken is None:
            self.broken = self._chain(frame)
        self._personal(frame)
        for anchor in self.anchors:
            anchor.add(frame)
        if not self.seen_head:
            self.seen_head = bool(frame.get_column("hash").eq(self.expect_head).any())
        self.count += frame.height
        self.prev_id = int(frame.get_column("transfer_id")[-1])
        self.prev_hash = str(frame.get_column("hash")[-1])
        legs = pl.concat(
            [
                frame.select(
                    pl.col("debit_account").alias("account"),
                    pl.col("amount_fen").alias("debits_fen"),
                    pl.lit(0, pl.Int64).alias("credits_fen"),
                ),
                frame.select(
                    pl.col("credit_account").alias("account"),
                    pl.lit(0, pl.Int64).alias("debits_fen"),
                    pl.col("amount_fen").alias("credits_fen"),
                ),
            ]
        )
        self._accounts.append(_sum_accounts(legs))
        grant = pl.col("kind") == "grant"
        per_key = (
            frame.filter(pl.col("kind").is_in(list(ENTITLEMENT_KINDS)))
            .group_by(KEY)
            .agg(
                grants=grant.sum(),
                first_grant=pl.col("transfer_id").filter(grant).min(),
                last_grant=pl.col("transfer_id").filter(grant).max(),
                first_transfer=pl.col("transfer_id").min(),
                net_fen=SIGNED_FEN.sum(),
            )
        )
        self._keys.append(per_key)
        if self.snapshot is not None:
            self._gather_held(frame, self.snapshot)
        self._runs.append(
            frame.select(pl.col("run_id"), pl.col("transfer_id"))
            .group_by("run_id")
            .agg(pl.col("transfer_id").min())
        )

    def _gather_held(self, frame: pl.DataFrame, snap: SnapshotRecord) -> None:
        """What each (key, payee) of the snapshot's policies holds up to the snapshot's head."""
        upto = frame.filter(pl.col("transfer_id") <= snap.head_id)
        at_head = upto.filter(pl.col("transfer_id") == snap.head_id)
        if at_head.height:
            self.snapshot_hash = str(at_head.get_column("hash")[0])
        self._held.append(
            upto.filter(
                pl.col("kind").is_in(list(ENTITLEMENT_KINDS)),
                pl.col("policy_id").is_in(sorted(snap.policy_ids)),
            )
            .group_by(HOLDING_KEY)
            .agg(SIGNED_FEN.sum().alias("net_fen"))
        )

    def held_at_snapshot(self) -> pl.DataFrame:
        """Net amount per (key, payee) of the snapshot's policies at its head, from the scan."""
        if not self._held:
            return pl.DataFrame(schema=HOLDINGS_SCHEMA)
        return pl.concat(self._held).group_by(HOLDING_KEY).agg(pl.col("net_fen").sum())

    def _personal(self, frame: pl.DataFrame) -> None:
        """Count the keyed transfers; with the key, check their personal fields' digests."""
        keyed = frame.filter(pl.col("personal_mac").is_not_null())
        self.keyed += keyed.height
        if self.key is None or keyed.height == 0:
            return
        personal = keyed.select(personal_content_expr()).to_series().to_list()
        wrong = keyed.filter(
            pl.Series(self.key.personal_macs(personal), dtype=pl.String) != pl.col("personal_mac")
        )
        self.personal_bad += wrong.height
        if wrong.height and self.personal_broken is None:
            row = wrong.row(0, named=True)
            tid = row["transfer_id"]
            self.personal_broken = Check(
                "personal",
                False,
                f"broken at transfer {tid}",
                f"transfer {tid} ({_describe(row)})",
                "its accounts, entity or payee do not match their keyed digest: "
                "changed after posting",
            )

    def personal_check(self) -> Check:
        """The personal fields' verdict: the first transfer whose digest does not match,
        not checked (no key), or ok."""
        if self.keyed == 0:
            return Check(
                "personal",
                True,
                "no transfer commits to its personal fields through the ledger key "
                "(all were posted before chain version 2: the chain hashes them in the clear)",
            )
        if self.key is None:
            return Check(
                "personal",
                False,
                f"{self.keyed:,} transfers commit to their accounts, entity and "
                "payee through the ledger key, and no key was given",
                problem="give the ledger key (--key-file, or $DISBURSE_LEDGER_KEY_FILE) to "
                "check them; every other field is checked without it",
                unchecked=True,
            )
        if self.personal_broken is not None:
            if self.personal_bad == self.keyed and self.keyed > 1:
                return Check(
                    "personal",
                    False,
                    f"none of the {self.keyed:,} keyed transfers matches its digest",
                    f"{self.key.source} (key id {self.key.key_id})",
                    "this is not the key the ledger was written with: give the ledger's own key",
                )
            return self.personal_broken
        return Check(
            "personal",
            True,
            f"{self.keyed:,} transfers' accounts, entity and payee match their digests "
            f"under the ledger key (key id {self.key.key_id})",
        )

    def _chain(self, frame: pl.DataFrame) -> Check | None:
        contents = frame.select(stored_content_expr()).to_series().to_list()
        stored_prev = frame.get_column("prev_hash").to_list()
        sha256 = hashlib.sha256
        # Each row on its own: does its hash match its own prev_hash and content?
        # Then the links: does its prev_hash match the hash stored before it?
        recomputed = [
            sha256(((p or "") + c).encode()).hexdigest()
            for p, c in zip(stored_prev, contents, strict=True)
        ]
        keyed = pl.col("personal_mac").is_not_null()
        checked = frame.with_columns(
            recomputed=pl.Series(recomputed, dtype=pl.String),
            # A version 1 transfer after a version 2 one: the chain never goes back.
            keyed_before=keyed.cast(pl.Int64).cum_sum().shift(1).fill_null(0) > 0,
            expected_id=pl.int_range(
                self.prev_id + 1, self.prev_id + 1 + frame.height, dtype=pl.Int64
            ),
            expected_prev=pl.col("hash").shift(1).fill_null(self.prev_hash),
        ).with_columns(
            bad_version=(pl.col("keyed_before") | pl.lit(self._keyed_seen)) & ~keyed,
            bad_id=pl.col("transfer_id") != pl.col("expected_id"),
            bad_link=pl.col("prev_hash").ne_missing(pl.col("expected_prev")),
            bad_hash=pl.col("hash").ne_missing(pl.col("recomputed")),
            bad_amount=~(pl.col("amount_fen") > 0).fill_null(False)
            | (pl.col("debit_account") == pl.col("credit_account")).fill_null(True),
        )
        self._keyed_seen = self._keyed_seen or bool(
            frame.get_column("personal_mac").is_not_null().any()
        )
        bad = checked.filter(
            pl.any_horizontal("bad_id", "bad_link", "bad_hash", "bad_amount", "bad_version")
        )
        if bad.height == 0:
            return None
        row = bad.row(0, named=True)
        tid = row["transfer_id"]
        self.broken_at = int(tid)
        if row["bad_id"]:
            before = row["expected_id"] - 1
            problem = (
                f"ids jump from {before} to {tid}: transfer {row['expected_id']} is missing (deleted)"
                if tid > row["expected_id"]
                else f"id out of order after transfer {before}"
            )
        elif row["bad_version"]:
            problem = (
                "it has no personal_mac (chain version 1) after transfers of version 2: "
                "its digest was removed, or the row was written behind the engine's back"
            )
        elif row["bad_hash"]:
            problem = "its hash does not match its content: the row was changed after posting"
        elif row["bad_link"]:
            problem = (
                "its prev_hash does not match the hash of the transfer before it: "
                "an earlier row was changed, removed or re-hashed"
            )
        else:
            problem = "amount_fen must be > 0 between two different accounts"
        return Check(
            "chain",
            False,
            f"broken at transfer {tid}",
            f"transfer {tid} ({_describe(row)})",
            problem,
        )

    def chain_check(self) -> Check:
        """The chain's verdict: the first broken transfer, or ok."""
        if self.broken is not None:
            return self.broken
        return Check(
            "chain", True, f"every transfer chained from genesis to transfer {self.prev_id}"
        )

    def accounts(self) -> pl.DataFrame:
        """Debits and credits per account over every transfer scanned."""
        if not self._accounts:
            return pl.DataFrame(
                schema={"account": pl.String, "debits_fen": pl.Int64, "credits_fen": pl.Int64}
            )
        if len(self._accounts) > 1:
            self._accounts = [_sum_accounts(pl.concat(self._accounts))]
        return self._accounts[0]

    def keys(self) -> pl.DataFrame:
        """Grants, first and last grant, first transfer and net amount per entitlement key."""
        if len(self._keys) > 1:
            self._keys = [_merge_keys(pl.concat(self._keys))]
        if not self._keys:
            return pl.DataFrame(
                schema={
                    **dict.fromkeys(KEY, pl.String),
                    "grants": pl.UInt32,
                    "first_grant": pl.Int64,
                    "last_grant": pl.Int64,
                    "first_transfer": pl.Int64,
                    "net_fen": pl.Int64,
                }
            )
        return self._keys[0]

    def run_ids(self) -> pl.DataFrame:
        """Each run used, with the first transfer that used it."""
        if not self._runs:
            return pl.DataFrame(schema={"run_id": pl.Int64, "transfer_id": pl.Int64})
        return pl.concat(self._runs).group_by("run_id").agg(pl.col("transfer_id").min())


def _sum_accounts(legs: pl.DataFrame) -> pl.DataFrame:
    return legs.group_by("account").agg(pl.col("debits_fen").sum(), pl.col("credits_fen").sum())


def _merge_keys(per_key: pl.DataFrame) -> pl.DataFrame:
    return per_key.group_by(KEY).agg(
        pl.col("grants").sum(),
        pl.col("first_grant").min(),
        pl.col("last_grant").max(),
        pl.col("first_transfer").min(),
        pl.col("net_fen").sum(),
    )


def _describe(row: dict[str, Any]) -> str:
    """A transfer named in a finding: its kind, key (a resident entity masked) and amount."""
    key = key_name(row) if row.get("policy_id") else ""
    return " ".join(x for x in (row.get("kind") or "", key, f"{row.get('amount_fen')} fen") if x)
