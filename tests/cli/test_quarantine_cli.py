"""`disburse quarantine`: the refused rows as the people correcting the files read them, with
identity numbers, names and bank accounts masked unless --unmask is given."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from disburse.cli import main
from tests import minicity

LI_SI = minicity.person_ids(3)[1]  # 李四, whose birth date the bureau got wrong
LI_SI_ACCOUNT = "6228480012345678"  # her social security card account in the mini city


def _ingested(tmp_path: Path) -> str:
    """The mini city ingested with 李四's birth date unreadable: her row is quarantined,
    and so are the rows that refer to her (her bank account among them)."""
    persons = minicity.frames()["persons"].with_columns(
        pl.Series("birth_on", ["1980-01-01", "1980-02-30", "1980-01-01"])
    )
    data = minicity.write(tmp_path / "data", {"persons": persons})
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    args = ["--as-of", "2026-01-01", "--db", db, "--store", str(tmp_path / "store")]
    done = CliRunner().invoke(main, ["ingest", "--data", str(data), *args])
    assert done.exit_code == 0, done.output
    return db


def _quarantine(db: str, *args: str) -> str:
    done = CliRunner().invoke(main, ["quarantine", "--db", db, *args])
    assert done.exit_code == 0, done.output
    return done.output


def test_quarantined_rows_are_printed_with_personal_data_masked(tmp_path: Path) -> None:
    db = _ingested(tmp_path)
    masked_id = LI_SI[:6] + "*" * 10 + LI_SI[-2:]
    masked_account = "*" * 12 + LI_SI_ACCOUNT[-4:]

    person = json.loads(_quarantine(db, "--source", "persons", "--json"))
    assert (person["rule"], person["column"], person["value"]) == (
        "unparseable_date",
        "birth_on",
        "1980-02-30",
    )
    assert (person["row"]["person_id"], person["row"]["name"]) == (masked_id, "李*")
    account = json.loads(_quarantine(db, "--source", "person_accounts", "--json"))
    assert (account["rule"], account["value"]) == ("unknown_person", masked_id)
    assert account["row"]["account_no"] == masked_account

    # The masked forms are printed, and nothing of hers in full.
    text = _quarantine(db)
    for shown in (masked_id, '"李*"', masked_account):
        assert shown in text
    for hidden in (LI_SI, "李四", LI_SI_ACCOUNT):
        assert hidden not in text

    unmasked = _quarantine(db, "--unmask")
    for shown in (LI_SI, "李四", LI_SI_ACCOUNT):
        assert shown in unmasked


def test_a_duplicate_key_of_several_columns_is_masked_part_by_part(tmp_path: Path) -> None:
    """A key spanning two identity numbers and a relation is printed with each number masked
    and the relation whole (it used to be printed whole: 274 numbers in a test city)."""
    relations = minicity.frames()["relations"]
    data = minicity.write(tmp_path / "data", {"relations": pl.concat([relations, relations])})
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    args = ["--as-of", "2026-01-01", "--db", db, "--store", str(tmp_path / "store")]
    done = CliRunner().invoke(main, ["ingest", "--data", str(data), *args])
    assert done.exit_code == 0, done.output
    a, b = minicity.person_ids(3)[:2]
    rows = [
        json.loads(line)
        for line in _quarantine(db, "--rule", "duplicate_key", "--json").splitlines()
    ]
    assert [(r["column"], r["value"]) for r in rows] == [
        ("person_id+related_person_id+relation", f"{masked(a)}+{masked(b)}+spouse")
    ] * 2
    text = _quarantine(db)
    assert a not in text
    assert b not in text
    assert f"{a}+{b}+spouse" in _quarantine(db, "--unmask")


def masked(resident_id: str) -> str:
    """A resident identity number as printed without --unmask."""
    return resident_id[:6] + "*" * 10 + resident_id[-2:]
