"""The payment loop under random sequences (issue 19.6): publish, object and decide, export
on any day, the bank's replies (settled, returned, duplicated, reordered, imported twice),
later nights that take paid money back (clawbacks) and grant again, money paid back
(with references reused), grants set against what is owed, and steps that crash between
their writes, in any order.  A hypothesis state machine over the real steps (`jobs.pay`,
`jobs.publish`, `jobs.objections`, `jobs.recover`, `jobs.run`) on a copy of a ledger
after one night over a small synthetic city, on SQLite and on PostgreSQL (a database
made from a template database per example).

After every step:

* `audit.verify` passes: the chain, every balance summing to zero, no payable below zero;
* no instruction has two statuses, and none is settled or returned by two transfers;
* per key, what was instructed and not returned never exceeds what was ever credited to
  the payee for it (no entitlement is paid more than it was granted);
* `clearing:bank` holds exactly the open instructions, `paid:bank` exactly the settled;
* per policy and period every fen is in one state: what is entitled plus what was clawed
  back equals what is payable, at the bank, paid and set off; nothing is owed back below
  zero (no debt settled twice), and `recovered:bank` holds exactly what was paid back.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, make_url, select, text

import jobs.pay
import jobs.recover
from disburse.synth import generate
from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.objections import decide, object_to
from jobs.pay import Debtor, export_payments, import_reply, simulate_reply
from jobs.policies import features_path, load_policies, policies_dir
from jobs.publish import publish
from jobs.recover import recover
from jobs.run import RunRequest, run_nightly_on
from ledgers import accounts, audit, payments
from ledgers.balances import account_balances
from ledgers.db import make_engine, open_engine
from ledgers.holdings import read_held
from ledgers.money import money_by_period
from ledgers.plan import payable_balances
from ledgers.recoveries import owed_back, recoveries
from ledgers.schema import Transfer
from tests.conftest import PG_ADMIN_URL
from tests.keys import KEY

AS_OF = dt.date(2026, 3, 15)
DEBTOR = Debtor("Finance", "310066000000000001", "011")
POINTS = (
    "pay:file-written",
    "pay:instructions-recorded",
    "pay:offsets-posted",
    "reply:statuses-recorded",
    "recover:posted",
)
# The later nights: a death record for some of the very old (their paid March allowance
# is taken back), then corrected (April grants them again, set against what they owe).
NIGHTS = (dt.date(2026, 3, 29), dt.date(2026, 4, 15))
OFFSET = """
offset:
  against: any_policy
  ref: "test: an allowance paid in error is deducted from later payments"
"""


SEEN: dict[str, int] = {}


def event(what: str) -> None:
    """A path of interest taken (counted for `-s` runs, and hypothesis' statistics)."""
    SEEN[what] = SEEN.get(what, 0) + 1
    hypothesis_event(what)


class Crash(Exception):
    """A step stopped between two of its writes (as kill -9 would)."""


@dataclass(frozen=True)
class Template:
    """A ledger after one night over a small city, to copy for each example."""

    backend: str
    url: str  # the SQLite file's URL, or the PostgreSQL template database's
    store: Path
    data: tuple[Path, Path]  # the city, and the same with some of the very old deceased
    policies: Path  # the shipped policies, the monthly allowance with `offset:`

    def fresh(self, folder: Path) -> str:
        """A database of its own holding the template's ledger."""
        if self.backend == "sqlite":
            shutil.copyfile(make_url(self.url).database or "", folder / "ledger.db")
            return f"sqlite:///{folder / 'ledger.db'}"
        name = f"disburse_pm_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(self.url).database}"')
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        if self.backend == "postgresql":
            _admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _admin(sql: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    root = tmp_path_factory.mktemp(f"payment-machine-{request.param}")
    data, store, policies = root / "data", root / "store", root / "policies"
    generate(data, enterprises=250, persons=1200, seed=5, errors=0.0)
    shutil.copytree(policies_dir(), policies)
    allowance = policies / "elderly_allowance.yaml"
    allowance.write_text(allowance.read_text() + OFFSET)
    store.mkdir()
    (store / "ledger.key").write_text(KEY.secret.hex() + "\n")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'ledger.db'}"
    else:
        name = f"disburse_pmt_{uuid.uuid4().hex[:12]}"
        try:
            _admin(f'CREATE DATABASE "{name}"')
        except Exception as exc:  # the server is not reachable
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL is not reachable: {exc}")
            pytest.skip(f"PostgreSQL is not reachable: {exc}")
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    cat = load_source_catalogue()
    with open_engine(url, init=True) as engine:
        run_nightly_on(
            engine,
            RunRequest(data, AS_OF, store, features_path(None)),
            catalogue=cat,
            pset=load_policies(cat, [policies]),
        )
    # The deaths recorded later: of those the night granted the monthly allowance.
    with open_engine(url) as engine, engine.connect() as conn:
        granted = read_held(conn, ["elderly-allowance"])["entity"].sort().head(12)
    later = root / "data-deaths"
    shutil.copytree(data, later)
    persons = pl.read_parquet(later / "persons.parquet")
    persons.with_columns(
        pl.when(pl.col("person_id").is_in(granted.implode()))
        .then(pl.lit("deceased"))
        .otherwise(pl.col("status"))
        .alias("status")
    ).write_parquet(later / "persons.parquet")
    made = Template(request.param, url, store, (data, later), policies)
    yield made
    if request.param == "postgresql":
        made.drop(url)


class PaymentLoop(RuleBasedStateMachine):
    template: ClassVar[Template]
    folder: ClassVar[Path]
    pset: ClassVar[object]
    counter: ClassVar[int] = 0

    @initialize()
    def fresh_ledger(self) -> None:
        PaymentLoop.counter += 1
        self.dir = self.folder / f"example-{PaymentLoop.counter}"
        self.dir.mkdir()
        self.url = self.template.fresh(self.dir)
        self.engine = make_engine(self.url, remember=False)
        self.files: list[Path] = []
        self.replies: list[Path] = []
        self.day = AS_OF + dt.timedelta(days=1)
        self.nights = 0
        self.n = 0
        self.export(0, "pain.001", None)  # a file to answer from the start

    def teardown(self) -> None:
        self.engine.dispose()
        self.template.drop(self.url)

    def _path(self, stem: str, suffix: str) -> Path:
        self.n += 1
        return self.dir / f"{stem}-{self.n}{suffix}"

    def _crashing(self, point: str | None) -> object:
        real = jobs.pay.checkpoint

        def crash(at: str) -> None:
            if at == point:
                raise Crash(at)

        jobs.pay.checkpoint = crash  # type: ignore[assignment]
        jobs.recover.checkpoint = crash  # type: ignore[assignment]
        return real

    def _restore(self, real: object) -> None:
        jobs.pay.checkpoint = real  # type: ignore[assignment]
        jobs.recover.checkpoint = real  # type: ignore[assignment]

    @rule(days=st.integers(0, 12), fmt=st.sampled_from(["pain.001", "csv"]),
          crash=st.sampled_from([None, *POINTS[:3]]))  # fmt: skip
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
            self._restore(real)
        if done.offsets.height:
            event("a grant set against what its payee owed back")
        if done.msg_id is not None and fmt == "pain.001":
            self.files.append(out)

    @precondition(lambda self: self.files)
    @rule(
        data=st.data(),
        rate=st.sampled_from([0.0, 0.2, 1.0]),
        seed=st.integers(0, 3),
        crash=st.sampled_from([None, POINTS[3]]),
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
            self._restore(real)

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

    @precondition(lambda self: self.nights < len(NIGHTS))
    @rule()
    def a_later_night(self) -> None:
        """The death records arrive (paid March allowances are taken back), then are
        corrected (April grants the same persons again)."""
        as_of = NIGHTS[self.nights]
        data = self.template.data[1 if self.nights == 0 else 0]
        cat = load_source_catalogue()
        run_nightly_on(
            self.engine,
            RunRequest(data, as_of, self.template.store, features_path(None)),
            catalogue=cat,
            pset=self.pset,  # type: ignore[arg-type]
        )
        self.nights += 1
        self.day = max(self.day, as_of)

    @rule(data=st.data(), reference=st.sampled_from([f"BK-{i}" for i in range(1, 9)]),
          more=st.integers(0, 3), crash=st.sampled_from([None, None, POINTS[4]]))  # fmt: skip
    def money_paid_back(
        self, data: st.DataObject, reference: str, more: int, crash: str | None
    ) -> None:
        """A payee who owes pays back part, all or (refused) more; a bank reference may come
        again, for the same or another amount."""
        with self.engine.connect() as conn:
            owed = owed_back(conn)
            done = recoveries(conn)
        if owed.height == 0 and done.height == 0:
            return
        event("a payee owes back")
        if done.height and data.draw(st.booleans()):
            again = done.filter(pl.col("reference") == done["reference"][0])
            payee, fen = str(again["payee"][0]), int(again["amount_fen"].sum())
            reference = str(again["reference"][0])
        elif owed.height:
            payee = data.draw(st.sampled_from(sorted(set(owed["payee"].to_list()))))
            total = int(owed.filter(pl.col("payee") == payee)["owed_fen"].sum())
            fen = data.draw(st.integers(1, total)) + (more - 1 if more > 1 else 0)
        else:
            return
        real = self._crashing(crash)
        try:
            got = recover(self.engine, payee, fen, reference, self.day, KEY)
            event("money paid back" if got.run_id else "a reference recorded before")
        except Crash:
            return
        except JobError as e:
            if not any(w in str(e) for w in ("already recorded", "is more", "owes nothing")):
                raise
        finally:
            self._restore(real)

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

    @invariant()
    def every_fen_is_in_one_state_and_no_debt_is_settled_twice(self) -> None:
        with self.engine.connect() as conn:
            money = money_by_period(conn)
            balances = account_balances(conn)
            back = recoveries(conn)
        assert (money["owed_back_fen"] >= 0).all(), money.filter(pl.col("owed_back_fen") < 0)
        one_state = money.filter(
            pl.col("entitled_fen") + pl.col("clawed_back_fen")
            != pl.col("payable_fen") + pl.col("clearing_fen") + pl.col("paid_fen")
            + pl.col("offset_fen")
        )  # fmt: skip
        assert one_state.height == 0, one_state
        recovered = balances.filter(pl.col("account") == accounts.RECOVERED_BANK)
        assert -int(recovered["balance_fen"].sum()) == int(back["amount_fen"].sum())
        # A few payees' payables, summed alone (a post's clawback check), as summed with all.
        prefix = f"{accounts.PAYABLE}{accounts.SEP}"
        payable = balances.filter(pl.col("account").str.starts_with(prefix)).select(
            pl.col("account").str.strip_prefix(prefix).alias("payee"),
            pl.col("balance_fen").alias("payable_fen"),
        )
        few = [*payable["payee"].head(3).to_list(), "nobody"]
        with self.engine.connect() as conn:
            alone = payable_balances(conn, few)
        assert alone.sort("payee").equals(payable.filter(pl.col("payee").is_in(few)).sort("payee"))
        per_reference = back.group_by("reference").agg(pl.col("payee").n_unique())
        assert (per_reference["payee"] == 1).all()


def test_the_payment_loop_holds_under_any_order(template: Template, tmp_path: Path) -> None:
    SEEN.clear()
    PaymentLoop.template = template
    PaymentLoop.folder = tmp_path
    PaymentLoop.pset = load_policies(load_source_catalogue(), [template.policies])
    examples = int(os.environ.get("DISBURSE_PAYMENT_EXAMPLES", "25"))
    run_state_machine_as_test(
        PaymentLoop,
        settings=settings(
            # PostgreSQL: a database per example, and the same steps as on SQLite.
            max_examples=examples if template.backend == "sqlite" else max(examples // 2, 1),
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"{template.backend}: {dict(sorted(SEEN.items()))}")
