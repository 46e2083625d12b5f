"""What payees owe back (issue 19.4), on SQLite and PostgreSQL, through the commands finance
runs: a paid entitlement taken back becomes a clawback the payee owes (not a negative
payment); `pay recover` records money paid back once per bank reference, never more than
is owed; a later grant under a policy that says so is set against what is still owed and
only the rest is instructed; the money by state (ledger summary and balances, runs)
shows payable, at the bank, paid, returned, waived, owed back and recovered per policy;
the chain verifies throughout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from ledgers.schema import PaymentInstruction
from tests.db.test_pay import export, table
from tests.db.test_run import disburse, ledger, runs

FUEL = """\
policy: winter-fuel
title: A monthly fuel allowance for the very old
basis: {document: "Test notice, Art. 9: an allowance paid in error is set against later months"}
target: person
valid: {from: 2026-01-01, until: 2026-12-31}
assess: as_of
benefit_period: month
offset:
  against: this_policy
  ref: "Art. 9: what was paid in error is deducted from the following months' allowance"
eligible:
  - {id: alive, when: status == "alive"}
  - {id: very-old, when: age_on(as_of) >= 75}
amount: 300 yuan
"""


def _policies(tmp: Path, text: str = FUEL) -> list[str]:
    root = Path(__file__).resolve().parents[2] / "policies"
    folder = tmp / "policies"
    folder.mkdir(exist_ok=True)
    for name in ("features.yaml", "sources.yaml"):
        shutil.copy(root / name, folder)
    (folder / "winter_fuel.yaml").write_text(text)
    return ["--policies", str(folder)]


def _set_status(data: Path, people: list[str], status: str) -> None:
    path = data / "persons.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.col("person_id").is_in(people))
        .then(pl.lit(status))
        .otherwise(pl.col("status"))
        .alias("status")
    ).write_parquet(path)


def _pay_all(db: str, store: Path, day: str, tmp: Path, p: list[str]) -> dict:
    """Export what is due on `day` and import a reply that settles all of it."""
    done = export(db, store, day, tmp / f"pay-{day}.xml", args=p)
    if done.get("msg_id"):
        reply = tmp / f"reply-{day}.xml"
        disburse("pay", "simulate-reply", "--out", str(reply), "--return-rate", "0", *p,
                 db=db, store=store)  # fmt: skip
        disburse("pay", "import", str(reply), db=db, store=store)
    return done


def _run(data: Path, db: str, store: Path, day: str, p: list[str]) -> None:
    disburse("run", "--data", str(data), "--as-of", day, *p, db=db, store=store)


def _recover(db: str, store: Path, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return disburse("pay", "recover", *args, "--on", "2026-04-02", "--json", db=db, store=store,
                    check=check)  # fmt: skip


def test_clawback_recovery_and_offset(clean_city: Path, db_url: str, tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    shutil.copytree(clean_city, data)
    p = _policies(tmp_path)
    _run(data, db_url, store, "2026-03-15", p)
    paid = _pay_all(db_url, store, "2026-03-16", tmp_path, p)
    assert paid["instructions"] > 2
    granted = table(db_url, PaymentInstruction)
    x, y = sorted(granted["payee"].to_list())[:2]

    # A death record arrives for both: March was paid, so taking it back is a clawback
    # (the payee owes it), not a payment below zero.
    _set_status(data, [x, y], "deceased")
    _run(data, db_url, store, "2026-03-20", p)
    rows = ledger(db_url)
    claws = [r for r in rows if r[1] == "clawback"]
    assert sorted(r[9] for r in claws) == sorted([x, y])
    assert all(r[4] == 30000 for r in claws)

    # Money paid back: recorded once per reference, never more than owed.
    first = json.loads(_recover(db_url, store, "--entity", y, "--amount", "120.50",
                                "--reference", "BK-0001").stdout)  # fmt: skip
    assert first["still_owed_fen"] == 30000 - 12050
    assert first["settled"] == [
        {"policy_id": "winter-fuel", "benefit_period": "2026-03", "amount_fen": 12050}
    ]
    before = ledger(db_url)
    again = json.loads(_recover(db_url, store, "--entity", y, "--amount", "120.50",
                                "--reference", "BK-0001").stdout)  # fmt: skip
    assert again["run_id"] is None
    assert ledger(db_url) == before
    clash = _recover(db_url, store, "--entity", y, "--amount", "100", "--reference", "BK-0001",
                     check=False)  # fmt: skip
    assert clash.returncode != 0
    assert "already recorded" in clash.stderr
    too_much = _recover(db_url, store, "--entity", y, "--amount", "200", "--reference", "BK-0002",
                        check=False)  # fmt: skip
    assert too_much.returncode != 0
    assert "owes 179.50 yuan back" in too_much.stderr
    assert "Traceback" not in too_much.stderr
    nobody = _recover(db_url, store, "--entity", sorted(granted["payee"])[-1], "--amount", "1",
                      "--reference", "BK-0003", check=False)  # fmt: skip
    assert nobody.returncode != 0
    assert "owes nothing back" in nobody.stderr
    assert ledger(db_url) == before
    rest = json.loads(_recover(db_url, store, "--entity", y, "--amount", "179.50",
                               "--reference", "BK-0004").stdout)  # fmt: skip
    assert rest["still_owed_fen"] == 0

    # The death record of x was wrong: April grants x again, and the export sets the
    # grant against the March allowance x owes back, instructing nothing for x.
    _set_status(data, [x], "alive")
    _run(data, db_url, store, "2026-04-15", p)
    april = _pay_all(db_url, store, "2026-04-16", tmp_path, p)
    assert april["offset"] == {"keys": 1, "amount_fen": 30000}
    instructed = table(db_url, PaymentInstruction)
    assert x not in instructed.filter(pl.col("msg_id") == april["msg_id"])["payee"].to_list()
    offsets = [r for r in ledger(db_url) if r[1] == "offset"]
    assert [(r[7], r[9], r[4]) for r in offsets] == [("2026-04", x, 30000)]
    # Exported again: nothing set off twice.
    again = export(db_url, store, "2026-04-16", tmp_path / "again.xml", args=p)
    assert again["offset"] == {"keys": 0, "amount_fen": 0}
    assert len([r for r in ledger(db_url) if r[1] == "offset"]) == 1

    # The money by state, per policy.
    money = json.loads(disburse("ledger", "summary", "--json", db=db_url).stdout)["money"]
    fuel = {m["benefit_period"]: m for m in money if m["policy_id"] == "winter-fuel"}
    assert fuel["2026-03"]["owed_back_fen"] == 0
    assert fuel["2026-03"]["recovered_fen"] == 30000
    assert fuel["2026-03"]["clawed_back_fen"] == 60000
    assert fuel["2026-04"]["offset_fen"] == 30000
    for m in money:  # every fen is in exactly one state
        assert m["entitled_fen"] + m["clawed_back_fen"] == (
            m["payable_fen"] + m["clearing_fen"] + m["paid_fen"] + m["offset_fen"]
        )
    balances = json.loads(disburse("ledger", "balances", "--json", db=db_url).stdout)
    recovered = [a for a in balances["accounts"] if a["account"] == "recovered:bank"]
    assert recovered[0]["balance_fen"] == -30000
    disburse("audit", "verify", db=db_url, store=store)


def _owed_then_granted(data: Path, db: str, store: Path, tmp: Path, p: list[str]) -> str:
    """March granted and paid, x's death recorded (a clawback), then corrected: April
    grants x again.  x's identity number."""
    _run(data, db, store, "2026-03-15", p)
    _pay_all(db, store, "2026-03-16", tmp, p)
    x = sorted(table(db, PaymentInstruction)["payee"].to_list())[0]
    _set_status(data, [x], "deceased")
    _run(data, db, store, "2026-03-20", p)
    _set_status(data, [x], "alive")
    _run(data, db, store, "2026-04-15", p)
    return x


@pytest.mark.parametrize("point", ["pay:offsets-posted", "recover:posted"])
def test_killed_after_posting_the_same_command_finishes_it(
    clean_city: Path, db_url: str, tmp_path: Path, point: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("compared against a second database: SQLite files")
    p = _policies(tmp_path)
    result = {}
    for name in ("killed", "clean"):
        db = db_url.replace("ledger.db", f"{name}.db")
        data, store = tmp_path / f"data-{name}", tmp_path / f"store-{name}"
        shutil.copytree(clean_city, data)
        store.mkdir()
        (store / "ledger.key").write_text("cd" * 32 + "\n")
        x = _owed_then_granted(data, db, store, tmp_path, p)
        env = {"DISBURSE_KILL_AT": point} if name == "killed" else {}
        if point == "recover:posted":
            cmd = ("pay", "recover", "--entity", x, "--amount", "100", "--reference", "BK-9",
                   "--on", "2026-04-02")  # fmt: skip
        else:
            cmd = ("pay", "export", "--as-of", "2026-04-16", "--out",
                   str(tmp_path / f"{name}.xml"), *p)  # fmt: skip
        if env:
            killed = disburse(*cmd, db=db, store=store, env=env, check=False)
            assert killed.returncode == -9
        disburse(*cmd, db=db, store=store)
        result[name] = ledger(db)
        assert not [r for r in runs(db) if r[2] != "completed"]
    assert result["killed"] == result["clean"]
    kinds = {r[1] for r in result["clean"]}
    assert ("offset" if point.startswith("pay") else "recovered") in kinds
