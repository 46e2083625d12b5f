"""Objections (issue 19.1), on SQLite and PostgreSQL: an upheld objection reverses the
entitlement at once and every later night keeps it at zero; a dismissed one changes
nothing; one from someone refused is recorded for review and re-decides nothing; a
decision is recorded once; the tables refuse any change."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.objections import decide, object_to
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers.db import LedgerError
from ledgers.holdings import read_held
from ledgers.objections import objections, upheld_keys
from tests.keys import KEY

POLICY = "job-stabilisation-refund"


def night(engine: Engine, data: Path, store: Path, as_of: dt.date) -> None:
    cat = load_source_catalogue()
    run_nightly_on(
        engine,
        RunRequest(data, as_of, store, features_path(None)),
        catalogue=cat,
        pset=load_policies(cat),
    )


def holds(engine: Engine, entity: str) -> int:
    with engine.connect() as conn:
        held = read_held(conn, [POLICY]).filter(pl.col("entity") == entity)
    return int(held["net_fen"].sum())


def test_upheld_dismissed_and_refused_objections(
    clean_city: Path, engine: Engine, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "ledger.key").write_text(KEY.secret.hex() + "\n")
    night(engine, clean_city, store, dt.date(2026, 3, 15))
    with engine.connect() as conn:
        paid = (
            read_held(conn, [POLICY])
            .filter(pl.col("net_fen") > 0)
            .sort("entity")["entity"]
            .to_list()
        )
    first, second = paid[0], paid[1]
    before = holds(engine, first)
    assert before > 0

    upheld = object_to(engine, policy_id=POLICY, entity=first, reason="laid off 40% in December")
    assert upheld.standing == "granted"
    assert upheld.benefit_period == "2026"
    kept = object_to(engine, policy_id=POLICY, entity=second, reason="a rival's complaint")
    refused = object_to(
        engine, policy_id=POLICY, entity="91330106MA2X00000X", reason="we were refused",
        benefit_period="2026",
    )  # fmt: skip
    assert refused.standing == "refused"

    said = decide(engine, upheld.objection_id, uphold=True, note="confirmed", key=KEY)
    assert "reversed" in said
    assert holds(engine, first) == 0
    decide(engine, kept.objection_id, uphold=False, note="no evidence", key=KEY)
    assert holds(engine, second) > 0
    with pytest.raises(JobError, match="already dismissed"):
        decide(engine, kept.objection_id, uphold=True, note="again", key=KEY)
    with pytest.raises(JobError, match="there is no objection 99"):
        decide(engine, 99, uphold=True, note="x", key=KEY)

    # Later nights keep the upheld key at zero and re-decide nothing else.
    night(engine, clean_city, store, dt.date(2026, 3, 16))
    assert holds(engine, first) == 0
    assert holds(engine, second) > 0
    with engine.connect() as conn:
        listed = objections(conn)
        assert upheld_keys(conn)["entity"].to_list() == [first]
    assert listed.filter(pl.col("decision").is_null())["standing"].to_list() == ["refused"]

    # Append-only: a decision cannot be edited or removed behind the engine's back.
    for sql in ("UPDATE objection_decisions SET decision = 'dismissed'", "DELETE FROM objections"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(sql))


def test_an_objection_without_a_key_held_names_the_period(engine: Engine) -> None:
    with pytest.raises(JobError, match="holds nothing"):
        object_to(engine, policy_id=POLICY, entity="91330106MA2X00000X", reason="x")
    with pytest.raises(LedgerError, match="needs its reason"):
        object_to(engine, policy_id=POLICY, entity="9133", reason=" ", benefit_period="2026")


def test_evidence_is_hashed_and_must_exist(engine: Engine, tmp_path: Path) -> None:
    proof = tmp_path / "letter.pdf"
    proof.write_bytes(b"%PDF-1.4 a letter")
    filed = object_to(
        engine, policy_id=POLICY, entity="9133", reason="see letter", benefit_period="2026",
        evidence=proof,
    )  # fmt: skip
    with engine.connect() as conn:
        row = objections(conn).row(0, named=True)
    assert row["objection_id"] == filed.objection_id
    assert row["evidence_name"] == "letter.pdf"
    assert len(row["evidence_sha256"]) == 64
    shutil.move(proof, tmp_path / "gone.pdf")
    with pytest.raises(JobError, match="does not exist"):
        object_to(
            engine, policy_id=POLICY, entity="9133", reason="x", benefit_period="2026",
            evidence=proof,
        )  # fmt: skip
