"""The payment loop under random sequences (issue 19.6): publish, object and decide, export
on any day, the bank's replies (settled, returned, duplicated, reordered, imported twice),
and steps that crash between their writes, in any order.  A hypothesis state machine
over the real steps (`jobs.pay`, `jobs.publish`, `jobs.objections`) on a copy of a SQLite
ledger after one night over a small synthetic city.

After every step:

* `audit.verify` passes: the chain, every balance summing to zero, no payable below zero;
* no instruction has two statuses, and none is settled or returned by two transfers;
* per key, what was instructed and not returned never exceeds what was ever credited to
  the payee for it (no entitlement is paid more than it was granted);
* `clearing:bank` holds exactly the open instructions, `paid:bank` exactly the settled.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
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
from sqlalchemy import select

import jobs.pay
from disburse.synth import generate
from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.objections import decide, object_to
from jobs.pay import Debtor, export_payments, import_reply, simulate_reply
from jobs.policies import features_path, load_policies
from jobs.publish import publish
from jobs.run import RunRequest, run_nightly_on
from ledgers import accounts, audit, payments
from ledgers.balances import account_balances
from ledgers.db import make_engine, open_engine
from ledgers.holdings import read_held
from ledgers.schema import Transfer
from tests.keys import KEY

AS_OF = dt.date(2026, 3, 15)
DEBTOR = Debtor("Finance", "310066000000000001", "011")
POINTS = ("pay:file-written", "pay:instructions-recorded", "reply:statuses-recorded")


class Crash(Exception):
    """A step stopped between two of its writes (as kill -9 would)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ledger after one night over a small city: (database file, store)."""
    root = tmp_path_factory.mktemp("payment-machine")
    data, store = root / "data", root / "store"
    generate(data, enterprises=250, persons=1200, seed=5, errors=0.0)
    store.mkdir()
    (store / "ledger.key").write_text(KEY.secret.hex() + "\n")
    db = root / "ledger.db"
    cat = load_source_catalogue()
    with open_engine(f"sqlite:///{db}", init=True) as engine:
        run_nightly_on(
            engine,
            RunRequest(data, AS_OF, store, features_path(None)),
            catalogue=cat,
            pset=load_policies(cat),
        )
    return db, store


class PaymentLoop(RuleBasedStateMachine):
    template: ClassVar[tuple[Path, Path]]
    folder: ClassVar[Path]
    pset: ClassVar[object]
    counter: ClassVar[int] = 0

    @initialize()
    def fresh_ledger(self) -> None:
        PaymentLoop.counter += 1
        self.dir = self.folder / f"example-{PaymentLoop.counter}"
        self.dir.mkdir()
        db, _store = self.template
        shutil.copyfile(db, self.dir / "ledger.db")
        self.engine = make_engine(f"sqlite:///{self.dir / 'ledger.db'}", remember=False)
        self.files: list[Path] = []
        self.replies: list[Path] = []
        self.day = AS_OF + dt.timedelta(days=1)
        self.n = 0
        self.export(0, "pain.001", None)  # a file to answer from the start

    def teardown(self) -> None:
        self.engine.dispose()

    def _path(self, stem: str, suffix: str) -> Path:
        self.n += 1
        return self.dir / f"{stem}-{self.n}{suffix}"

    def _crashing(self, point: str | None) -> object:
        real = jobs.pay.checkpoint

        def crash(at: str) -> None:
            if at == point:
                raise Crash(at)

        jobs.pay.checkpoint = crash  # type: ignore[assignment]
        return real

    @rule(days=st.integers(0, 12), fmt=st.sampled_from(["pain.001", "csv"]),
          crash=st.sampled_from([None, *POINTS[:2]]))  # fmt: skip
    def export(self, days: int, fmt: str, crash: str | None) -> None:
        self.day = max(self.day, AS_OF + dt.timedelta(days=1 + days))
        out = self._path("pay", ".xml" if fmt == "pain.001" else ".csv")
        real = self._crashing(crash)
        try:
            done = export_payments(
                self.engine, self.pset, self.day, out, fmt=fmt, debtor=DEBTOR, key=KEY
            )
        except Crash:
            return  # the next export finishes it
        finally:
            jobs.pay.checkpoint = real  # type: ignore[assignment]
        if done.msg_id is not None and fmt == "pain.001":
            self.files.append(out)

    @precondition(lambda self: self.files)
    @rule(
        data=st.data(),
        rate=st.sampled_from([0.0, 0.2, 1.0]),
        seed=st.integers(0, 3),
        crash=st.sampled_from([None, POINTS[2]]),
    )
    def the_bank_answers(
        self, data: st.DataObject, rate: float, seed: int, crash: str | None
    ) -> None:
        """The bank's reply to one of the files written, imported (perhaps crashing)."""
        with self.engine.connect() as conn:
            written = payments.files(conn)
        msg = data.draw(st.sampled_from(sorted(written["msg_id"].to_list())))
        reply = self._path("reply", ".xml")
        simulate_reply(self.engine, self.pset, reply, debtor=DEBTOR, key=KEY, seed=seed,
                       return_rate=rate, msg_id=msg)  # fmt: skip
        self.replies.append(reply)
        self._import(reply, crash)

    def _import(self, reply: Path, crash: str | None) -> None:
        real = self._crashing(crash)
        try:
            import_reply(self.engine, reply, KEY)
        except Crash:
            return
        except JobError as e:
            # Only a reply that contradicts an earlier one (the same payment settled by
            # one simulated reply and returned by another) may be refused.
            if "contradicts an earlier one" not in str(e):
                raise
        finally:
            jobs.pay.checkpoint = real  # type: ignore[assignment]

    @precondition(lambda self: self.replies)
    @rule(data=st.data(), reordered=st.booleans())
    def a_reply_again(self, data: st.DataObject, reordered: bool) -> None:
        """A reply imported again, as it was or as a CSV shuffled with a row given twice."""
        reply = data.draw(st.sampled_from(self.replies))
        if reordered:
            from jobs.bankfiles import read_pain002

            rows = read_pain002(reply).statuses.select(
                "end_to_end_id", pl.col("status").cast(pl.String), "reason_code"
            )
            if rows.height == 0:
                return
            rows = pl.concat([rows, rows.head(1)]).sample(fraction=1.0, shuffle=True, seed=self.n)
            reply = self._path("reply", ".csv")
            rows.with_columns(pl.col("reason_code").fill_null("")).write_csv(reply)
        self._import(reply, None)

    @rule()
    def publish_the_night(self) -> None:
        publish(self.engine, 1, self.dir / "notice.html", published_on=AS_OF + dt.timedelta(days=1))

    @rule(data=st.data(), uphold=st.booleans())
    def object_and_decide(self, data: st.DataObject, uphold: bool) -> None:
        with self.engine.connect() as conn:
            held = read_held(conn, ["job-stabilisation-refund"]).filter(pl.col("net_fen") > 0)
        if held.height == 0:
            return
        entity = data.draw(st.sampled_from(sorted(held["entity"].to_list())))
        filed = object_to(
            self.engine, policy_id="job-stabilisation-refund", entity=entity, reason="a complaint"
        )
        if data.draw(st.booleans()):
            decide(self.engine, filed.objection_id, uphold=uphold, note="decided", key=KEY)

    @invariant()
    def the_ledger_verifies(self) -> None:
        result = audit.verify(self.engine, key=KEY)
        assert result.ok, result.to_text()

    @invariant()
    def every_instruction_is_answered_once_and_never_overpaid(self) -> None:
        t = Transfer.__table__
        with self.engine.connect() as conn:
            done = payments.instructions(conn)
            raw = conn.execute(
                select(t.c.kind, t.c.decision, t.c.policy_id, t.c.benefit_period, t.c.entity,
                       t.c.credit_account, t.c.amount_fen)
            ).all()  # fmt: skip
            balances = account_balances(conn)
        moves = pl.DataFrame([tuple(r) for r in raw], orient="row", schema=[
            "kind", "decision", "policy_id", "benefit_period", "entity", "credit", "amount_fen"])  # fmt: skip
        pay = moves.filter(
            pl.col("kind").is_in(["instructed", "settled", "rejected"])
        ).with_columns(pl.col("decision").str.json_path_match("$.end_to_end_id").alias("e2e"))
        twice = pay.group_by("kind", "e2e").len().filter(pl.col("len") > 1)
        assert twice.height == 0, twice
        answered = pay.filter(pl.col("kind") != "instructed").group_by("e2e").len()
        assert answered.filter(pl.col("len") > 1).height == 0
        key = ["policy_id", "benefit_period", "entity"]
        credited = (
            moves.filter(
                pl.col("kind").is_in(["grant", "adjustment"])
                & pl.col("credit").str.starts_with("payable:")
            )
            .group_by(key)
            .agg(pl.col("amount_fen").sum().alias("credited"))
        )
        out = (
            done.filter(pl.col("status").is_null() | (pl.col("status") != "rejected"))
            .group_by(key)
            .agg(pl.col("amount_fen").sum().alias("out"))
            .join(credited, on=key, how="left")
        )
        assert out.filter(pl.col("out") > pl.col("credited").fill_null(0)).height == 0

        def balance(account: str) -> int:
            return int(balances.filter(pl.col("account") == account)["balance_fen"].sum())

        # The bank's accounts hold what the instructions say: clearing the instructed ones
        # not yet answered by a posted transfer, paid the settled ones (a step that crashed
        # between recording a status and posting it leaves the amount in clearing).
        by_kind = {
            k: set(pay.filter(pl.col("kind") == k)["e2e"].to_list())
            for k in ("instructed", "settled", "rejected")
        }
        amount = dict(zip(done["end_to_end_id"], done["amount_fen"], strict=True))
        recorded = dict(zip(done["end_to_end_id"], done["status"], strict=True))
        in_flight = by_kind["instructed"] - by_kind["settled"] - by_kind["rejected"]
        assert balance(accounts.CLEARING_BANK) == sum(amount[e] for e in in_flight)
        assert balance(accounts.PAID_BANK) == sum(amount[e] for e in by_kind["settled"])
        assert all(recorded[e] == "settled" for e in by_kind["settled"])
        assert all(recorded[e] == "rejected" for e in by_kind["rejected"])


def test_the_payment_loop_holds_under_any_order(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    PaymentLoop.template = template
    PaymentLoop.folder = tmp_path
    PaymentLoop.pset = load_policies(load_source_catalogue())
    run_state_machine_as_test(
        PaymentLoop,
        settings=settings(
            max_examples=int(os.environ.get("DISBURSE_PAYMENT_EXAMPLES", "25")),
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
