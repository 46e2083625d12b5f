"""Ledger invariants under random sequences of posts, re-posts, changes, reversals and clawbacks.

One hypothesis state machine, run on SQLite and on PostgreSQL.  The database
(one per backend) is shared by all examples, because the ledger is append-only
and cannot be reset: each example posts under its own policy ids and payees, and
the checks cover the example's keys and the whole ledger.  After every step:

* no key is entitled twice (one key row, at most one grant per key);
* the ledger holds exactly the amounts the model says, per key;
* per payee, what is payable + what was paid + what is owed back = what is entitled;
* balances sum to zero, payables >= 0, receivables <= 0;
* `audit.verify` passes (chain, balances, keys, runs).
Re-posting what the ledger holds writes nothing and leaves the chain head alone.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path
from typing import ClassVar

import polars as pl
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, select

from ledgers import audit
from ledgers.holdings import HOLDING_KEY, holdings, signed_amount
from ledgers.post import (
    ENTITLEMENT_COLUMNS,
    PostResult,
    post_entitlements,
    post_transfers,
)
from ledgers.runs import start_run
from ledgers.schema import ENTITLEMENT_KINDS, EntitlementKey, Transfer
from tests.keys import KEY

SHA = "e" * 64
SCHEMA = ENTITLEMENT_COLUMNS
POLICIES = ("a", "b")
PERIODS = ("2026", "2026-Q1")
ENTITIES = tuple(f"E{i}" for i in range(4))
Key = tuple[str, str, str]

amounts = st.integers(min_value=1, max_value=10_000_00)
keys = st.tuples(st.sampled_from(POLICIES), st.sampled_from(PERIODS), st.sampled_from(ENTITIES))
chunks = st.sampled_from([1, 2, 1000])


class LedgerMachine(RuleBasedStateMachine):
    """A model of entitlements and payments next to the real ledger."""

    engine: ClassVar[Engine]
    examples: ClassVar[itertools.count[int]]
    snapshots: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.ns = f"x{next(self.examples)}"
        self.posts = 0
        self.entitled: dict[Key, tuple[str, int]] = {}  # key -> (payee, amount_fen)
        self.paid: dict[str, int] = {}  # payee -> fen settled

    @initialize()
    def start_run(self) -> None:
        with self.engine.begin() as conn:
            self.run = start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))

    # --- helpers ----------------------------------------------------------------

    def _key(self, key: Key) -> Key:
        policy, period, entity = key
        return (f"{self.ns}-{policy}", period, f"{self.ns}{entity}")

    def _payee(self, key: Key, guardian: bool) -> str:
        return f"{self.ns}G{key[2][-1]}" if guardian else key[2]

    def _post(self, changes: dict[Key, tuple[str, int]], chunk_size: int = 1000) -> PostResult:
        rows = [
            (*k, payee, amount, SHA, f'{{"amount_fen":{amount}}}')
            for k, (payee, amount) in changes.items()
        ]
        frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
        # Every other post starts from holdings read before it (from the newest snapshot
        # and the transfers after it) and keeps a snapshot; the rest read the ledger.
        self.posts += 1
        known = holdings(self.engine, self._policies(), self.snapshots) if self.posts % 2 else None
        result = post_entitlements(
            self.engine,
            frame,
            self.run,
            chunk_size=chunk_size,
            known=known,
            keep=self.snapshots,
            key=KEY,
        )
        for k, (payee, amount) in changes.items():
            if amount or k in self.entitled:
                self.entitled[k] = (payee, amount)
        return result

    def _policies(self) -> list[str]:
        return [f"{self.ns}-{p}" for p in POLICIES]

    def _balances(self) -> dict[str, int]:
        frame = audit.balances(self.engine, unmask=True).accounts
        return dict(frame.select("account", "balance_fen").iter_rows())

    def _live(self) -> list[Key]:
        return sorted(k for k, (_, amount) in self.entitled.items() if amount > 0)

    # --- rules ------------------------------------------------------------------

    @rule(
        new=st.dictionaries(
            keys, st.tuples(st.booleans(), st.integers(0, 10_000_00)), min_size=1, max_size=4
        ),
        chunk_size=chunks,
    )
    def post_new_keys(self, new: dict[Key, tuple[bool, int]], chunk_size: int) -> None:
        changes = {}
        for raw, (guardian, amount) in new.items():
            k = self._key(raw)
            if k not in self.entitled:
                changes[k] = (self._payee(k, guardian), amount)
        if not changes:
            return
        result = self._post(changes, chunk_size)
        assert result.granted == sum(1 for _, a in changes.values() if a > 0)
        assert result.granted_fen == sum(a for _, a in changes.values())

    @precondition(lambda self: bool(self.entitled))
    @rule(chunk_size=chunks)
    def repost_everything(self, chunk_size: int) -> None:
        before = audit.verify(self.engine, key=KEY).head_hash
        result = self._post(dict(self.entitled), chunk_size)
        assert result.transfers == 0
        assert result.unchanged == len(self.entitled)
        assert audit.verify(self.engine, key=KEY).head_hash == before

    @precondition(lambda self: bool(self.entitled))
    @rule(data=st.data(), amount=amounts, chunk_size=chunks)
    def change_amount(self, data: st.DataObject, amount: int, chunk_size: int) -> None:
        k = data.draw(st.sampled_from(sorted(self.entitled)))
        payee, old = self.entitled[k]
        result = self._post({k: (payee, amount)}, chunk_size)
        if amount == old:
            assert (result.transfers, result.adjusted) == (0, 0)
        else:
            # A decrease already paid out is part payable, part clawback: two transfers.
            assert result.transfers in ((1,) if amount > old else (1, 2))
            assert result.adjusted == 1

    @precondition(lambda self: bool(self.entitled))
    @rule(data=st.data())
    def change_payee(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(sorted(self.entitled)))
        payee, amount = self.entitled[k]
        other = self._payee(k, guardian=payee == k[2])
        result = self._post({k: (other, amount)})
        # Reversed from the old payee (part of it a clawback if already paid), granted to the new.
        assert result.transfers in ((2, 3) if amount else (0,))

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(self._live()))
        payee, _ = self.entitled[k]
        result = self._post({k: (payee, 0)})
        assert result.reversed == 1

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        payee = data.draw(st.sampled_from(sorted({self.entitled[k][0] for k in self._live()})))
        payable = self._balances().get(f"payable:{payee}", 0)
        if payable <= 0:
            return
        part = data.draw(st.integers(1, payable))
        self._settle(payee, part)

    def _settle(self, payee: str, amount: int) -> None:
        frame = pl.DataFrame(
            {
                "kind": ["settled"],
                "debit_account": [f"payable:{payee}"],
                "credit_account": ["clearing:bank"],
                "amount_fen": [amount],
            }
        )
        assert post_transfers(self.engine, frame, self.run, key=KEY) == 1
        self.paid[payee] = self.paid.get(payee, 0) + amount

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data())
    def clawback(self, data: st.DataObject) -> None:
        """Pay a payee everything, then take part of an entitlement back: it is owed."""
        k = data.draw(st.sampled_from(self._live()))
        payee, amount = self.entitled[k]
        payable = self._balances().get(f"payable:{payee}", 0)
        if payable > 0:
            self._settle(payee, payable)
        new = data.draw(st.integers(0, amount - 1))
        result = self._post({k: (payee, new)})
        assert result.clawback_fen == amount - new
        assert result.decreased_fen == 0

    @precondition(lambda self: bool(self.entitled))
    @rule(
        data=st.data(),
        new=st.dictionaries(keys, st.integers(0, 10_000_00), max_size=3),
        chunk_size=chunks,
    )
    def mixed_batch(self, data: st.DataObject, new: dict[Key, int], chunk_size: int) -> None:
        """New keys, changed amounts and reversals in one post."""
        old = data.draw(st.lists(st.sampled_from(sorted(self.entitled)), unique=True, max_size=3))
        changes = {k: (self.entitled[k][0], data.draw(st.integers(0, 10_000_00))) for k in old}
        for raw, amount in new.items():
            k = self._key(raw)
            changes.setdefault(k, (self.entitled.get(k, (self._payee(k, False), 0))[0], amount))
        self._post(changes, chunk_size)

    # --- invariants -------------------------------------------------------------

    @invariant()
    def ledger_matches_the_model(self) -> None:
        t = Transfer.__table__
        mine = f"{self.ns}-%"
        with self.engine.connect() as conn:
            held = dict(
                conn.execute(
                    select(
                        t.c.policy_id + "|" + t.c.benefit_period + "|" + t.c.entity,
                        func.sum(signed_amount()),
                    )
                    .where(t.c.policy_id.like(mine), t.c.kind.in_(ENTITLEMENT_KINDS))
                    .group_by(t.c.policy_id, t.c.benefit_period, t.c.entity)
                ).all()
            )
            k = EntitlementKey.__table__
            key_rows = conn.execute(
                select(
                    func.count(),
                    func.count(
                        func.distinct(k.c.policy_id + "|" + k.c.benefit_period + "|" + k.c.entity)
                    ),
                ).where(k.c.policy_id.like(mine))
            ).one()
            grants = conn.execute(
                select(func.count()).where(t.c.policy_id.like(mine), t.c.kind == "grant")
            ).scalar_one()
        expected = {"|".join(k): a for k, (_, a) in self.entitled.items()}
        assert held == expected
        # No key entitled twice: one key row each, one grant each.
        assert key_rows[0] == key_rows[1] == len(self.entitled) == grants

    @invariant()
    def snapshot_and_later_transfers_equal_the_ledger(self) -> None:
        kept = holdings(self.engine, self._policies(), self.snapshots)
        scanned = holdings(self.engine, self._policies())
        assert kept.head == scanned.head
        order = list(HOLDING_KEY)
        assert kept.frame.sort(order).equals(scanned.frame.sort(order))

    @invariant()
    def money_is_conserved_per_payee(self) -> None:
        balances = self._balances()
        assert sum(balances.values()) == 0
        payees = {p for p, _ in self.entitled.values()} | set(self.paid)
        for payee in payees:
            entitled = sum(a for p, a in self.entitled.values() if p == payee)
            payable = balances.get(f"payable:{payee}", 0)
            owed = balances.get(f"receivable:{payee}", 0)
            assert payable >= 0
            assert owed <= 0
            assert payable + self.paid.get(payee, 0) + owed == entitled, payee

    @invariant()
    def verify_passes(self) -> None:
        result = audit.verify(self.engine, key=KEY)
        assert result.ok, result.to_text()


def test_ledger_state_machine(engine: Engine, tmp_path: Path) -> None:
    class Machine(LedgerMachine):
        pass

    Machine.engine = engine
    Machine.snapshots = tmp_path / "holdings"
    Machine.examples = itertools.count()
    run_state_machine_as_test(
        Machine,
        settings=settings(
            # Modest, so the suite stays fast; DISBURSE_LEDGER_EXAMPLES=500 for a long hunt.
            max_examples=int(os.environ.get("DISBURSE_LEDGER_EXAMPLES", "10")),
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
