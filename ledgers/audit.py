"""Reading the ledger for people: verify it, summarise it, list entries and balances.

`verify` recomputes everything the ledger promises from the stored transfers
alone: the hash chain (see `ledgers.chain`), the balance invariants and the
uniqueness of entitlement keys.  It names the first bad entry of each check, so
an edit made behind the engine's back (with the triggers dropped) is found and
located.  Everything printed is deterministic (ordered by id or by name, no
timestamps): the same ledger gives the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Connection, Engine, case, cast, func, select

from ledgers import accounts
from ledgers.chain import CHAIN_FIELDS, GENESIS, content_expr
from ledgers.db import LedgerError, require_ledger
from ledgers.frames import prefetch, read_frame
from ledgers.holdings import (
    HOLDING_KEY,
    HOLDINGS_SCHEMA,
    SIGNED_FEN,
    SnapshotRecord,
    newest_snapshot,
    signed_amount,
)
from ledgers.masking import mask_account_address_expr, mask_entity, mask_entity_expr
from ledgers.post import KEY, account_balances
from ledgers.schema import ENTITLEMENT_KINDS, EntitlementKey, Run, Transfer

VERIFY_BATCH = 200_000
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
    "prev_hash": pl.String,
    "hash": pl.String,
}


def yuan(fen: int) -> str:
    """Fen as yuan for people: 1234567 -> '12,345.67' (exact integer arithmetic)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


# --- verify -------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One verified property: ok, what was checked, and the first bad entry if not ok."""

    name: str
    ok: bool
    detail: str
    entry: str | None = None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The check as plain data."""
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "entry": self.entry,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify`: every check, and the ledger's size and head."""

    checks: tuple[Check, ...]
    transfers: int
    keys: int
    head_id: int
    head_hash: str

    @property
    def ok(self) -> bool:
        """True only if every check holds."""
        return all(c.ok for c in self.checks)

    @property
    def first_problem(self) -> Check | None:
        """The first failed check, naming its first bad entry."""
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict[str, Any]:
        """The result as plain data."""
        return {
            "ok": self.ok,
            "transfers": self.transfers,
            "keys": self.keys,
            "head": {"transfer_id": self.head_id, "hash": self.head_hash},
            "checks": [c.to_json() for c in self.checks],
        }

    def to_text(self) -> str:
        """The result for people, one line per check, the first bad entry named."""
        lines = [
            f"{'ok' if self.ok else 'FAILED'}: {self.transfers:,} transfers, {self.keys:,} "
            f"entitlement keys; head transfer {self.head_id} hash {self.head_hash}"
        ]
        for c in self.checks:
            lines.append(f"  {c.name:<10} {'ok' if c.ok else 'FAILED':<7}{c.detail}")
            if not c.ok:
                lines.append(f"    first bad entry: {c.entry}: {c.problem}")
        return "\n".join(lines) + "\n"


def verify(
    engine: Engine, *, expect_head: str | None = None, batch: int = VERIFY_BATCH
) -> VerifyResult:
    """Check the hash chain, the balance invariants and key uniqueness; name the first bad entry.

    One pass over the transfers in id order (in batches, so memory stays flat
    in the ledger's length) recomputes every hash and gathers per account and
    per key totals; then Polars checks them against `entitlement_keys` and
    `runs`.  Nothing depends on the database's planner or statistics.

    `expect_head` is a hash an auditor recorded earlier (printed by every
    verify): the chain must still contain it, which catches a ledger cut short
    or rewritten from that point on.
    """
    with engine.connect() as conn:
        require_ledger(conn)
        snapshot = newest_snapshot(conn)
        scan = _Scan(expect_head, snapshot)
        # Read batch k+1 while batch k is hashed.
        for frame in prefetch(_batches(conn, batch)):
            scan.add(frame)
        keys = read_frame(
            conn,
            select(*[EntitlementKey.__table__.c[c] for c in (*KEY, "transfer_id")]),
            {**dict.fromkeys(KEY, pl.String), "transfer_id": pl.Int64},
        )
        runs = read_frame(conn, select(Run.__table__.c.run_id), {"run_id": pl.Int64})
    checks = [scan.chain_check()]
    if expect_head is not None:
        checks.append(
            Check("head", True, f"the recorded head {expect_head} is in the chain")
            if scan.seen_head
            else Check(
                "head",
                False,
                "the recorded head is not in the chain",
                f"hash {expect_head}",
                "transfers were removed or rewritten after this head was recorded",
            )
        )
    checks.append(_check_balances(scan.accounts(), scan.keys()))
    checks.append(_check_keys(scan.keys(), keys))
    checks.append(_check_runs(scan.run_ids(), runs))
    if snapshot is not None:
        checks.append(_check_snapshot(snapshot, scan))
    return VerifyResult(tuple(checks), scan.count, keys.height, scan.prev_id, scan.prev_hash)


def _batches(conn: Connection, batch: int) -> Iterator[pl.DataFrame]:
    """All transfers in id order, `batch` ids at a time.

    By id range rather than LIMIT: right after a bulk post the table may have no
    statistics yet, and a range on the primary key is an index scan whatever
    the planner knows.  Ids are dense; a gap (a deleted row) just thins a batch.
    """
    t = Transfer.__table__
    columns = [t.c[name] for name in TRANSFER_SCHEMA]
    first = select(func.min(t.c.transfer_id))
    following: int | None = conn.execute(first).scalar_one_or_none()
    while following is not None:
        start = following - 1
        stmt = (
            select(*columns)
            .where(t.c.transfer_id > start, t.c.transfer_id <= start + batch)
            .order_by(t.c.transfer_id)
        )
        yield read_frame(conn, stmt, TRANSFER_SCHEMA)
        # The next id present (normally start + batch + 1): a run of missing ids is jumped.
        following = conn.execute(first.where(t.c.transfer_id > start + batch)).scalar_one_or_none()


class _Scan:
    """What verify gathers in its one pass over the transfers."""

    def __init__(self, expect_head: str | None, snapshot: SnapshotRecord | None = None) -> None:
        self.prev_id, self.prev_hash = 0, GENESIS
        self.snapshot = snapshot
        self.snapshot_hash: str | None = None  # the stored hash of the snapshot's head transfer
        self._held: list[pl.DataFrame] = []
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

    def _chain(self, frame: pl.DataFrame) -> Check | None:
        contents = frame.select(content_expr()).to_series().to_list()
        stored_prev = frame.get_column("prev_hash").to_list()
        sha256 = hashlib.sha256
        # Each row on its own: does its hash match its own prev_hash and content?
        # Then the links: does its prev_hash match the hash stored before it?
        recomputed = [
            sha256(((p or "") + c).encode()).hexdigest()
            for p, c in zip(stored_prev, contents, strict=True)
        ]
        checked = frame.with_columns(
            recomputed=pl.Series(recomputed, dtype=pl.String),
            expected_id=pl.int_range(
                self.prev_id + 1, self.prev_id + 1 + frame.height, dtype=pl.Int64
            ),
            expected_prev=pl.col("hash").shift(1).fill_null(self.prev_hash),
        ).with_columns(
            bad_id=pl.col("transfer_id") != pl.col("expected_id"),
            bad_link=pl.col("prev_hash").ne_missing(pl.col("expected_prev")),
            bad_hash=pl.col("hash").ne_missing(pl.col("recomputed")),
            bad_amount=~(pl.col("amount_fen") > 0).fill_null(False)
            | (pl.col("debit_account") == pl.col("credit_account")).fill_null(True),
        )
        bad = checked.filter(pl.any_horizontal("bad_id", "bad_link", "bad_hash", "bad_amount"))
        if bad.height == 0:
            return None
        row = bad.row(0, named=True)
        tid = row["transfer_id"]
        if row["bad_id"]:
            before = row["expected_id"] - 1
            problem = (
                f"ids jump from {before} to {tid}: transfer {row['expected_id']} is missing (deleted)"
                if tid > row["expected_id"]
                else f"id out of order after transfer {before}"
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
    key = "/".join(str(row.get(k)) for k in KEY) if row.get("policy_id") else ""
    return " ".join(x for x in (row.get("kind") or "", key, f"{row.get('amount_fen')} fen") if x)


def _key_name(row: dict[str, Any]) -> str:
    """An entitlement key as printed: a resident identity number as entity is masked."""
    return f"key {row['policy_id']}/{row['benefit_period']}/{mask_entity(row['entity'])}"


def _check_balances(account_totals: pl.DataFrame, per_key: pl.DataFrame) -> Check:
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
            f"account {row['account']}",
            f"balance {row['balance_fen']} fen: payables must be >= 0, receivables <= 0, "
            "and every account one of budget, payable, receivable, clearing",
        )
    below = per_key.filter(pl.col("net_fen") < 0).sort(KEY)
    if below.height:
        row = below.row(0, named=True)
        return Check(
            "balances",
            False,
            "an entitlement was taken back more than it was granted",
            _key_name(row),
            f"net {row['net_fen']} fen is below zero",
        )
    return Check(
        "balances",
        True,
        f"{n:,} accounts sum to 0 fen; no payable below 0, no receivable above 0, no key below 0",
    )


def _check_snapshot(snap: SnapshotRecord, scan: _Scan) -> Check:
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
            f"{_key_name(row)} payee {mask_entity(row['payee'])}",
            f"the snapshot holds {row['net_fen'] or 0} fen, the ledger "
            f"{row['net_fen_ledger'] or 0} fen; delete the snapshot's row from "
            "holdings_snapshots so that runs read the ledger itself",
        )
    return Check(
        "holdings",
        True,
        f"{name} equals the ledger's holdings there ({kept.height:,} keys and payees)",
    )


def _check_keys(per_key: pl.DataFrame, recorded: pl.DataFrame) -> Check:
    n = recorded.height
    dup = recorded.filter(pl.struct(KEY).is_duplicated()).sort(KEY)
    if dup.height:
        row = dup.row(0, named=True)
        return Check(
            "keys",
            False,
            "an entitlement key is recorded more than once",
            _key_name(row),
            f"{dup.height} rows in entitlement_keys share keys (their primary key was removed)",
        )
    twice = per_key.filter(pl.col("grants") > 1).sort(KEY)
    if twice.height:
        row = twice.row(0, named=True)
        return Check(
            "keys",
            False,
            "an entity was granted twice for one policy and benefit period",
            _key_name(row),
            f"{row['grants']} grants, transfers {row['first_grant']} and {row['last_grant']}",
        )
    orphans = per_key.join(recorded, on=KEY, how="anti").sort("first_transfer")
    if orphans.height:
        row = orphans.row(0, named=True)
        return Check(
            "keys",
            False,
            "a transfer belongs to no recorded entitlement key",
            f"transfer {row['first_transfer']} ({'/'.join(str(row[k]) for k in KEY)})",
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
            _key_name(row),
            f"transfer {row['transfer_id']} is not the grant of this key",
        )
    return Check("keys", True, f"{n:,} keys, each granted exactly once")


def _check_runs(used: pl.DataFrame, recorded: pl.DataFrame) -> Check:
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


# --- summary ------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Per policy and benefit period: keys entitled now, net amount, adjustments, reversals."""

    rows: pl.DataFrame
    totals: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The summary as plain data (rows ordered by policy and period)."""
        return {"policies": self.rows.to_dicts(), "total": self.totals}

    def to_text(self) -> str:
        """A fixed-width table for people, ending with the totals."""
        header = ("policy", "period", "count", "amount_fen", "yuan", "adjustments", "reversed")
        body = [
            (
                r["policy_id"],
                r["benefit_period"],
                f"{r['count']:,}",
                str(r["amount_fen"]),
                yuan(r["amount_fen"]),
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
                yuan(t["amount_fen"]),
                f"{t['adjustments']:,}",
                f"{t['reversed']:,}",
            )
        )
        return _table(header, body, right=(2, 3, 4, 5, 6))


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
    with engine.connect() as conn:
        require_ledger(conn)
        rows = read_frame(conn, stmt, schema)
    totals = {
        c: int(rows.get_column(c).sum()) for c in ("count", "amount_fen", "adjustments", "reversed")
    }
    return Summary(rows, totals)


# --- entries ------------------------------------------------------------------------

ENTRY_FIELDS = (
    "transfer",
    "kind",
    "run",
    "policy",
    "period",
    "entity",
    "payee",
    "debit",
    "credit",
    "amount_fen",
    "policy_sha256",
    "decision",
    "hash",
)


def entries(
    engine: Engine,
    *,
    policy: str | None = None,
    entity: str | None = None,
    run: int | None = None,
    limit: int | None = 100,
    unmask: bool = False,
) -> pl.DataFrame:
    """Transfers in id order, filtered; resident identity numbers masked unless `unmask`.

    Columns: `ENTRY_FIELDS` (decision as the stored compact JSON text).
    """
    t = Transfer.__table__
    stmt = select(*[t.c[name] for name in TRANSFER_SCHEMA]).order_by(t.c.transfer_id)
    if policy is not None:
        stmt = stmt.where(t.c.policy_id == policy)
    if entity is not None:
        stmt = stmt.where(t.c.entity == entity)
    if run is not None:
        stmt = stmt.where(t.c.run_id == run)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        require_ledger(conn)
        frame = read_frame(conn, stmt, TRANSFER_SCHEMA)
    out = frame.select(
        pl.col("transfer_id").alias("transfer"),
        "kind",
        pl.col("run_id").alias("run"),
        pl.col("policy_id").alias("policy"),
        pl.col("benefit_period").alias("period"),
        pl.col("entity"),
        pl.col("payee"),
        pl.col("debit_account").alias("debit"),
        pl.col("credit_account").alias("credit"),
        "amount_fen",
        "policy_sha256",
        "decision",
        "hash",
    )
    if not unmask:
        out = out.with_columns(
            mask_entity_expr(pl.col("entity")).alias("entity"),
            mask_entity_expr(pl.col("payee")).alias("payee"),
            mask_account_address_expr(pl.col("debit")).alias("debit"),
            mask_account_address_expr(pl.col("credit")).alias("credit"),
        )
    return out


def entries_json_lines(frame: pl.DataFrame) -> str:
    """One JSON object per entry and line, keys sorted, the decision as a JSON object."""
    lines = []
    for row in frame.iter_rows(named=True):
        if row["decision"] is not None:
            with contextlib.suppress(ValueError):  # not JSON: shown as the text it is
                row["decision"] = json.loads(row["decision"])
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(", ", ": ")))
    return "".join(line + "\n" for line in lines)


def entries_text(frame: pl.DataFrame) -> str:
    """A fixed-width table of entries for people."""
    header = (
        "transfer",
        "kind",
        "run",
        "policy",
        "period",
        "entity",
        "debit",
        "credit",
        "amount_fen",
        "yuan",
    )
    body = [
        (
            str(r["transfer"]),
            r["kind"],
            str(r["run"]),
            r["policy"] or "",
            r["period"] or "",
            r["entity"] or "",
            r["debit"],
            r["credit"],
            str(r["amount_fen"]),
            yuan(r["amount_fen"]),
        )
        for r in frame.iter_rows(named=True)
    ]
    return _table(header, body, right=(0, 2, 8, 9))


# --- balances -----------------------------------------------------------------------


@dataclass(frozen=True)
class Balances:
    """Every account's debits, credits and balance (credits - debits), and the totals."""

    accounts: pl.DataFrame
    totals: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """The balances as plain data (accounts ordered by address)."""
        return {"accounts": self.accounts.to_dicts(), "total": self.totals}

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
                yuan(r["balance_fen"]),
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
                yuan(t["balance_fen"]),
            )
        )
        return _table(header, body, right=(2, 3, 4, 5))


def balances(engine: Engine, *, kind: str | None = None, unmask: bool = False) -> Balances:
    """Account balances, optionally of one kind (budget, payable, receivable, clearing)."""
    if kind is not None and kind not in accounts.ACCOUNT_KINDS:
        raise LedgerError(
            f"unknown account kind {kind!r}\n  fix: use one of {', '.join(accounts.ACCOUNT_KINDS)}"
        )
    with engine.connect() as conn:
        require_ledger(conn)
        frame = account_balances(conn, kind)
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
    return Balances(frame, totals)


# --- rendering ----------------------------------------------------------------------


def _table(header: Sequence[str], body: Sequence[Sequence[str]], right: tuple[int, ...]) -> str:
    rows = [header, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for r in rows:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(r))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


__all__ = [
    "CHAIN_FIELDS",
    "Balances",
    "Check",
    "Summary",
    "VerifyResult",
    "balances",
    "entries",
    "entries_json_lines",
    "entries_text",
    "summary",
    "verify",
    "yuan",
]
