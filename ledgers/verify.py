"""`verify`: recompute everything the ledger promises from the stored transfers alone.

The hash chain (see `ledgers.chain`), the personal fields against their keyed
digests (with the ledger key, `ledgers.keys`), the balance invariants and the
uniqueness of entitlement keys, with the first bad entry of each check named, so
an edit made behind the engine's back (with the triggers dropped) is found and
located.  Without the key the personal fields are not checked, and the result
says so: it is incomplete, not ok.
The pass over the transfers is `ledgers.scan`; the checks are `ledgers.checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from ledgers.checkpoints import Anchor, Checkpoint
from ledgers.checks import Check, check_balances, check_keys, check_runs, check_snapshot
from ledgers.db import READ_FIX, privileged, require_ledger
from ledgers.frames import prefetch, read_frame
from ledgers.holdings import newest_snapshot
from ledgers.keys import LedgerKey
from ledgers.scan import Scan, batches
from ledgers.schema import EntitlementKey, Run
from ledgers.validate import KEY

VERIFY_BATCH = 200_000


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
        """True only if every check was made and holds."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> bool:
        """True if a check found something wrong (not merely could not be made)."""
        return any(not c.ok and not c.unchecked for c in self.checks)

    @property
    def status(self) -> str:
        """ok (every check made and held), failed, or incomplete (nothing wrong found, but
        some check could not be made)."""
        return "ok" if self.ok else "failed" if self.failed else "incomplete"

    @property
    def first_problem(self) -> Check | None:
        """The first failed check, naming its first bad entry (else the first not made)."""
        return next((c for c in self.checks if not c.ok and not c.unchecked), None) or next(
            (c for c in self.checks if not c.ok), None
        )

    def to_json(self) -> dict[str, Any]:
        """The result as plain data."""
        return {
            "ok": self.ok,
            "status": self.status,
            "transfers": self.transfers,
            "keys": self.keys,
            "head": {"transfer_id": self.head_id, "hash": self.head_hash},
            "checks": [c.to_json() for c in self.checks],
        }

    def to_text(self) -> str:
        """The result for people, one line per check, the first bad entry named."""
        lines = [
            f"{self.status if self.ok else self.status.upper()}: {self.transfers:,} transfers, "
            f"{self.keys:,} entitlement keys; head transfer {self.head_id} hash {self.head_hash}"
        ]
        for c in self.checks:
            shown = {"ok": "ok", "failed": "FAILED", "not checked": "NOT CHECKED"}[c.status]
            lines.append(f"  {c.name:<10} {shown:<12}{c.detail}")
            if c.unchecked:
                lines.append(f"    fix: {c.problem}")
            elif not c.ok:
                lines.append(f"    first bad entry: {c.entry}: {c.problem}")
        return "\n".join(lines) + "\n"


def verify(
    engine: Engine,
    *,
    key: LedgerKey | None = None,
    expect_head: str | None = None,
    checkpoints: Sequence[tuple[Checkpoint, str]] = (),
    batch: int = VERIFY_BATCH,
) -> VerifyResult:
    """Check the hash chain, the balance invariants and key uniqueness; name the first bad entry.

    One pass over the transfers in id order (in batches, so memory stays flat
    in the ledger's length) recomputes every hash and gathers per account and
    per key totals; then Polars checks them against `entitlement_keys` and
    `runs`.  Nothing depends on the database's planner or statistics.

    `key`: the ledger key, to check the personal fields of chain version 2 against
    their digests; without it they are not checked, and the result is incomplete.

    `checkpoints`: run checkpoints (`ledgers.checkpoints`), each with the file it was
    read from: the ledger must extend each (its head still there with its hash, the
    chain and the totals up to it as recorded, nothing after it claiming a run that
    had ended), and each must bear the signature of `key`.  The anchor against a
    chain cut short or rewritten whole with fresh hashes.

    `expect_head` is a hash an auditor recorded earlier (printed by every
    verify): the chain must still contain it, which catches a ledger cut short
    or rewritten from that point on.
    """
    with privileged("read the ledger's tables", READ_FIX, engine), engine.connect() as conn:
        require_ledger(conn)
        snapshot = newest_snapshot(conn)
        anchors = [Anchor(cp, source) for cp, source in checkpoints]
        scan = Scan(expect_head, snapshot, key, anchors)
        # Read batch k+1 while batch k is hashed.
        for frame in prefetch(batches(conn, batch)):
            scan.add(frame)
        keys = read_frame(
            conn,
            select(*[EntitlementKey.__table__.c[c] for c in (*KEY, "transfer_id")]),
            {**dict.fromkeys(KEY, pl.String), "transfer_id": pl.Int64},
        )
        runs = read_frame(conn, select(Run.__table__.c.run_id), {"run_id": pl.Int64})
    checks = [scan.chain_check(), scan.personal_check()]
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
    checks.extend(a.check(key, scan.broken_at, scan.prev_id) for a in anchors)
    checks.append(check_balances(scan.accounts(), scan.keys()))
    checks.append(check_keys(scan.keys(), keys))
    checks.append(check_runs(scan.run_ids(), runs))
    if snapshot is not None:
        checks.append(check_snapshot(snapshot, scan))
    return VerifyResult(tuple(checks), scan.count, keys.height, scan.prev_id, scan.prev_hash)
