"""From ledger to money (issue 19.2-3), on SQLite and PostgreSQL, through the commands
finance runs: the payment file instructs what is due and only that, is written again
byte for byte with nothing new, never instructs a key twice; the bank's reply settles or
returns each instruction once, a contradicting reply is refused whole; a returned payment
waits for a corrected account and is then retried under a new EndToEndId; a policy with
a notice is paid only after its notice closed; and an export or import killed at any
step, run again, leaves the ledger and the file of an uninterrupted one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from lxml import etree
from sqlalchemy import create_engine, select

from jobs.bankfiles import validate_pain001
from ledgers.schema import PaymentInstruction, PaymentStatus, Transfer, Waiver
from tests.db.test_run import disburse, ledger

NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
STAB = "job-stabilisation-refund"


def night(data: Path, db: str, store: Path, as_of: str) -> dict:
    out = disburse("run", "--data", str(data), "--as-of", as_of, "--json", db=db, store=store)
    return json.loads(out.stdout)


def export(db: str, store: Path, as_of: str, out: Path, args: list[str] = (), **kw) -> dict:  # type: ignore[assignment]
    done = disburse(
        "pay", "export", "--as-of", as_of, "--out", str(out), "--json", *args, db=db,
        store=store, **kw,
    )  # fmt: skip
    return json.loads(done.stdout) if done.returncode == 0 else {"stderr": done.stderr}


def table(db: str, model: type) -> pl.DataFrame:
    engine = create_engine(db)
    t = model.__table__
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t)).mappings().all()
    finally:
        engine.dispose()
    return pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)


def test_the_payment_loop(clean_city: Path, db_url: str, tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    shutil.copytree(clean_city, data)
    night(data, db_url, store, "2026-03-15")

    first = export(db_url, store, "2026-03-16", tmp_path / "pay1.xml")
    assert first["instructions"] > 200
    assert first["posted"] == first["instructions"]
    # The refund publishes before payment: nothing of it is instructed yet.
    assert first["withheld"]["not yet published (its policy requires a notice)"]["keys"] > 0
    checked = validate_pain001(tmp_path / "pay1.xml")
    assert checked.count == first["instructions"]
    assert checked.ctrl_sum_fen == first["amount_fen"]
    doc = etree.parse(str(tmp_path / "pay1.xml"))
    amounts = doc.xpath("//p:InstdAmt/text()", namespaces=NS)
    assert all(len(a.split(".")[1]) == 2 for a in amounts)
    ids = doc.xpath("//p:EndToEndId/text()", namespaces=NS)
    assert len(ids) == len(set(ids))
    assert all(len(i) <= 35 for i in ids)

    # Again with nothing new: the same bytes, the same MsgId, nothing posted.
    before = ledger(db_url)
    again = export(db_url, store, "2026-03-16", tmp_path / "pay1-again.xml")
    assert again["msg_id"] == first["msg_id"]
    assert again["posted"] == 0
    assert (tmp_path / "pay1-again.xml").read_bytes() == (tmp_path / "pay1.xml").read_bytes()
    assert ledger(db_url) == before

    # The bank settles most and returns some.
    reply = tmp_path / "reply1.xml"
    disburse("pay", "simulate-reply", "--out", str(reply), "--return-rate", "0.1", "--seed", "3",
             db=db_url, store=store)  # fmt: skip
    applied = json.loads(
        disburse("pay", "import", str(reply), "--json", db=db_url, store=store).stdout
    )
    assert applied["settled"]["instructions"] + applied["rejected"]["instructions"] == len(ids)
    assert applied["rejected"]["instructions"] > 0
    returned = set(
        table(db_url, PaymentStatus).filter(pl.col("status") == "rejected")["end_to_end_id"]
    )
    # Imported twice: nothing changes.
    after_reply = ledger(db_url)
    twice = json.loads(
        disburse("pay", "import", str(reply), "--json", db=db_url, store=store).stdout
    )
    assert twice["transfers"] == 0
    assert twice["already_applied"] == len(ids)
    assert ledger(db_url) == after_reply

    # A reply that contradicts the first (settled, then rejected) is refused whole.
    contra = tmp_path / "contra.csv"
    settled = sorted(set(ids) - returned)[0]
    contra.write_text(f"end_to_end_id,status,reason_code\n{settled},rejected,AC04\n")
    refused = disburse("pay", "import", str(contra), db=db_url, store=store, check=False)
    assert refused.returncode != 0
    assert "contradicts an earlier one" in refused.stderr
    assert ledger(db_url) == after_reply

    # Nothing corrected: the returned keys wait; the refund's notice is published and over.
    disburse("publish", "--run", "1", "--out", str(tmp_path / "n.html"), "--on", "2026-03-16",
             db=db_url)  # fmt: skip
    second = export(db_url, store, "2026-03-24", tmp_path / "pay2.xml")
    waiting = "returned by the bank; the account on file is the one returned"
    assert second["withheld"][waiting]["keys"] == len(returned)
    got = table(db_url, PaymentInstruction)
    assert set(got.filter(pl.col("msg_id") == second["msg_id"])["policy_id"]) == {STAB}

    # The delivered account of one returned payee is corrected: the next night's export
    # retries that key as attempt 2, a new EndToEndId for the same key.
    one = (
        got.filter(pl.col("end_to_end_id").is_in(sorted(returned)))
        .sort("end_to_end_id")
        .row(0, named=True)
    )
    fix_account(data, one["payee"])
    night(data, db_url, store, "2026-03-25")
    third = export(db_url, store, "2026-03-26", tmp_path / "pay3.xml")
    retried = table(db_url, PaymentInstruction).filter(pl.col("msg_id") == third["msg_id"])
    mine = retried.filter(
        (pl.col("policy_id") == one["policy_id"]) & (pl.col("entity") == one["entity"])
    )
    assert mine["attempt"].to_list() == [2]
    assert mine["end_to_end_id"][0] != one["end_to_end_id"]
    assert third["withheld"][waiting]["keys"] == len(returned) - 1
    # Every account balances: the ledger verifies.
    disburse("audit", "verify", db=db_url, store=store)
    # `runs` lists every step, and the money by state: paid is what the bank settled.
    listed = json.loads(disburse("runs", "--json", db=db_url).stdout)
    kinds = [r["kind"] for r in listed["runs"]]
    assert kinds.count("nightly") == 2
    assert kinds.count("payment") == 3
    assert "bank-reply" in kinds
    assert listed["money_fen"]["paid"] == applied["settled"]["amount_fen"]
    assert listed["runs"][0]["notice"]["deadline"] == "2026-03-23"


def fix_account(data: Path, payee: str) -> None:
    """Give `payee` a new account number in whichever account file holds it."""
    for name in ("person_accounts", "enterprise_accounts", "enterprise_si_accounts"):
        path = data / f"{name}.parquet"
        frame = pl.read_parquet(path)
        key = "person_id" if name == "person_accounts" else "credit_code"
        if payee in set(frame[key].to_list()):
            frame.with_columns(
                pl.when(pl.col(key) == payee)
                .then(pl.lit("6222020200112233445"))
                .otherwise(pl.col("account_no"))
                .alias("account_no")
            ).write_parquet(path)
            return
    raise AssertionError(f"{payee} has no account on file")


@pytest.mark.parametrize(
    "point",
    ["pay:file-written", "pay:instructions-recorded", "pay:posted"],
)
def test_an_export_killed_at_any_step_is_finished_by_the_same_command(
    clean_city: Path, db_url: str, tmp_path: Path, point: str
) -> None:
    store = tmp_path / "store"
    night(clean_city, db_url, store, "2026-03-15")
    out = tmp_path / "pay.xml"
    killed = disburse("pay", "export", "--as-of", "2026-03-16", "--out", str(out), db=db_url,
                      store=store, env={"DISBURSE_KILL_AT": point}, check=False)  # fmt: skip
    assert killed.returncode == -9
    done = export(db_url, store, "2026-03-16", out)
    assert done["instructions"] > 200

    # The same steps never interrupted, in a database of their own.
    other = db_url.replace("ledger.db", "clean.db") if db_url.startswith("sqlite") else None
    if other is None:
        return  # one PostgreSQL database per test: the SQLite run compares the bytes
    clean_store = tmp_path / "clean-store"
    clean_store.mkdir()
    shutil.copy(store / "ledger.key", clean_store / "ledger.key")  # the same key, same hashes
    night(clean_city, other, clean_store, "2026-03-15")
    plain = export(other, clean_store, "2026-03-16", tmp_path / "plain.xml")
    assert plain["msg_id"] == done["msg_id"]
    assert (tmp_path / "plain.xml").read_bytes() == out.read_bytes()
    assert ledger(db_url) == ledger(other)  # transfer by transfer, hashes included


@pytest.mark.parametrize("point", ["reply:statuses-recorded", "reply:posted"])
def test_an_import_killed_at_any_step_is_finished_by_the_same_command(
    clean_city: Path, db_url: str, tmp_path: Path, point: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("compared against a second database: SQLite files")
    ledgers = {}
    for name, kill in (("killed", point), ("clean", None)):
        db = db_url.replace("ledger.db", f"{name}.db")
        store = tmp_path / f"store-{name}"
        store.mkdir()
        (store / "ledger.key").write_text("ab" * 32 + "\n")
        night(clean_city, db, store, "2026-03-15")
        export(db, store, "2026-03-16", tmp_path / f"{name}.xml")
        reply = tmp_path / f"{name}-reply.xml"
        disburse("pay", "simulate-reply", "--out", str(reply), "--return-rate", "0.1",
                 db=db, store=store)  # fmt: skip
        if kill is not None:
            killed = disburse("pay", "import", str(reply), db=db, store=store,
                              env={"DISBURSE_KILL_AT": kill}, check=False)  # fmt: skip
            assert killed.returncode == -9
        disburse("pay", "import", str(reply), db=db, store=store)
        again = json.loads(
            disburse("pay", "import", str(reply), "--json", db=db, store=store).stdout
        )
        assert again["transfers"] == 0
        ledgers[name] = ledger(db)
    assert ledgers["killed"] == ledgers["clean"]


WINTER = """\
policy: winter-grant
title: A winter grant to the very old
basis: {document: "Test notice, Art. 4: unclaimed grants lapse after 30 days"}
target: person
valid: {from: 2026-01-01, until: 2026-12-31}
assess: as_of
benefit_period: year
unbanked:
  waive_after_days: 30
  ref: "Art. 4: a grant not claimed with a bank account within 30 days is deemed waived"
eligible:
  - {id: alive, when: status == "alive"}
  - {id: very-old, when: age_on(as_of) >= 75}
amount: 500 yuan
"""


def test_a_grant_without_an_account_is_waived_after_its_deadline(
    clean_city: Path, db_url: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2] / "policies"
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("features.yaml", "sources.yaml"):
        shutil.copy(root / name, policies)
    (policies / "winter_grant.yaml").write_text(WINTER)
    store = tmp_path / "store"
    p = ["--policies", str(policies)]
    disburse("run", "--data", str(clean_city), "--as-of", "2026-03-15", *p, db=db_url, store=store)
    held = export(db_url, store, "2026-03-20", tmp_path / "p1.xml", args=p)
    no_account = held["withheld"]["no account on file"]["keys"]
    assert no_account > 0
    assert held["instructions"] > 0
    # 30 days after the grant (2026-03-15): not yet on the 14th of April, waived on the 15th.
    assert "no account on file" in export(db_url, store, "2026-04-14", tmp_path / "p2.xml",
                                          args=p)["withheld"]  # fmt: skip
    lapsed = export(db_url, store, "2026-04-15", tmp_path / "p3.xml", args=p)
    waived = [k for k in lapsed["withheld"] if k.startswith("deemed waived")]
    assert waived == ["deemed waived: no usable account 30 days after it was granted"]
    assert lapsed["withheld"][waived[0]]["keys"] == no_account
    assert "no account on file" not in lapsed["withheld"]
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Transfer.__table__.c.decision).where(
                Transfer.__table__.c.kind == "reversal",
                Transfer.__table__.c.policy_id == "winter-grant",
            )
        ).all()
    engine.dispose()
    assert len(rows) == no_account
    assert all('"waived":true' in r[0] for r in rows)
    # The next night keeps them waived; exporting again waives nothing twice.
    before = ledger(db_url)
    disburse("run", "--data", str(clean_city), "--as-of", "2026-04-16", *p, db=db_url, store=store)
    waived_keys = set(table(db_url, Waiver).select("benefit_period", "entity").iter_rows())
    assert len(waived_keys) == no_account
    after = [r for r in ledger(db_url)[len(before) :] if r[6] == "winter-grant"]
    assert not [r for r in after if (r[7], r[8]) in waived_keys]  # none granted again
    again = export(db_url, store, "2026-04-17", tmp_path / "p4.xml", args=p)
    assert not [k for k in again["withheld"] if k.startswith("deemed waived")]
    disburse("audit", "verify", db=db_url, store=store)
