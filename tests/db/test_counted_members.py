"""Members counted once (`once_per`, issue 18.6), on SQLite and PostgreSQL: the
counted_members table keeps one row per (scope, member) whatever is recorded again or
at once, and the nightly run reads it back, so that a young person counted for one
enterprise's job-expansion grant never counts for another's, in this run or a later one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import DBAPIError

from jobs.explain import explain
from ledgers.counted import COUNTED_COLUMNS, counted_frame, record_counted
from ledgers.db import LedgerError
from ledgers.masking import mask_entity
from ledgers.schema import CountedMember, Transfer
from tests import minicity
from tests.db.test_ledger import new_run
from tests.db.test_run import disburse
from tests.keys import shared_key_file

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-04-10"
POLICY = "job-expansion-grant"
SCOPE = POLICY  # a policy counting once on its own: its own id
M = minicity.person_ids(4, seed=5)
E = minicity.credit_codes(2, seed=5)


def rows(*r: tuple[str, str, str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(list(r), schema=COUNTED_COLUMNS, orient="row")


def members(engine: Engine) -> list[tuple[str, str, str]]:
    t = CountedMember.__table__
    with engine.connect() as conn:
        found = conn.execute(
            select(t.c.scope, t.c.member, t.c.entity).order_by(t.c.scope, t.c.member)
        ).all()
    return [tuple(r) for r in found]


def test_a_member_is_counted_once_per_scope_whatever_is_recorded_again(engine: Engine) -> None:
    run = new_run(engine)
    first = rows(("s", M[0], "p", "2026", E[0]), ("s", M[1], "p", "2026", E[0]))
    assert record_counted(engine, first, run).written == 2
    again = record_counted(engine, first, run)  # a re-run, a resumed run: nothing new
    assert (again.written, again.already) == (0, 2)
    # Another scope is another rule: the same person may count there.
    assert record_counted(engine, rows(("t", M[0], "q", "2026", E[1])), run).written == 1
    # Counted for another enterprise in the same scope: refused, masked, nothing written.
    with pytest.raises(LedgerError, match=r"330106\*+.. is already counted for p 2026") as exc:
        record_counted(
            engine, rows(("s", M[2], "p", "2026", E[1]), ("s", M[0], "p", "2026", E[1])), run
        )
    assert M[0] not in str(exc.value)
    assert len(members(engine)) == 3
    counted = counted_frame(engine, ["s"])
    assert counted["member"].to_list() == [M[0], M[1]]
    assert counted["run_id"].to_list() == [run, run]
    assert counted_frame(engine, []).height == 0


def test_the_table_refuses_a_second_row_for_a_member_and_any_change(engine: Engine) -> None:
    run = new_run(engine)
    record_counted(engine, rows(("s", M[0], "p", "2026", E[0])), run)
    values = {"m": M[0], "e": E[1], "r": run}
    insert = (
        "INSERT INTO counted_members (scope, member, policy_id, benefit_period, entity, run_id) "
        "VALUES ('s', :m, 'p', '2026', :e, :r)"
    )
    statements = [insert, "UPDATE counted_members SET entity = :e", "DELETE FROM counted_members"]
    if engine.dialect.name == "sqlite":
        statements.append(insert.replace("INSERT", "INSERT OR REPLACE"))
    for sql in statements:
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(sql), values)
    assert members(engine) == [("s", M[0], E[0])]


# --- the nightly run ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def ledger_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DISBURSE_LEDGER_KEY_FILE", str(shared_key_file(tmp_path_factory.getbasetemp()))
    )


def run(data: Path, db: str, store: Path, policies: Path) -> None:
    disburse(
        "run", "--data", str(data), "--as-of", AS_OF, "--policies", str(policies),
        "--json", db=db, store=store,
    )  # fmt: skip


def transfers(db: str) -> list[tuple[str, str, int]]:
    engine = create_engine(db)
    t = Transfer.__table__
    try:
        with engine.connect() as conn:
            found = conn.execute(
                select(t.c.kind, t.c.entity, t.c.amount_fen).order_by(t.c.transfer_id)
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in found]


def counted(db: str) -> dict[str, str]:
    engine = create_engine(db)
    try:
        return {m: e for _s, m, e in members(engine)}
    finally:
        engine.dispose()


def hire_again(data: Path, person: str, by: str) -> None:
    """Add a spell of `person` at enterprise `by`, begun in the month of their first."""
    path = data / "employment.parquet"
    spells = pl.read_parquet(path)
    first = spells.filter(pl.col("person_id") == person).sort("from_month").row(0, named=True)
    extra = pl.DataFrame([{**first, "credit_code": by, "to_month": None}], schema=spells.schema)
    pl.concat([spells, extra]).write_parquet(path)


def test_a_run_counts_each_young_hire_for_one_enterprise_and_a_later_run_keeps_it(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(ROOT / "policies" / "job_expansion_grant.yaml", policies)
    data = tmp_path / "data"
    shutil.copytree(city, data)
    store = tmp_path / "store"
    run(data, db_url, store, policies)
    first, held = transfers(db_url), counted(db_url)
    granted = {e: fen for kind, e, fen in first if kind == "grant"}
    assert len(granted) >= 2
    # Every member counted once, for an enterprise paid 1,500 yuan for each it counted.
    per_entity = pl.DataFrame({"entity": list(held.values())}).group_by("entity").len()
    assert {r["entity"]: r["len"] * 150_000 for r in per_entity.iter_rows(named=True)} == granted

    # Nothing changed: nothing posted, nothing counted anew.
    run(data, db_url, store, policies)
    assert transfers(db_url) == first
    assert counted(db_url) == held

    # A person counted for one enterprise turns up as another's hire of the same month,
    # at an enterprise paid too whose credit code comes first (which would win them in a
    # run that counted them afresh): the ledger keeps them where they were counted.
    person, owner = next(iter(sorted(held.items())))
    rival = min(e for e in granted if e != owner)
    if rival > owner:
        person, owner = next((m, e) for m, e in sorted(held.items()) if e > rival)
    hire_again(data, person, rival)
    run(data, db_url, store, policies)
    assert transfers(db_url) == first  # no adjustment: the rival's count did not grow
    assert counted(db_url) == held
    # Explain says so, the person masked (whole with --unmask).
    engine = create_engine(db_url)
    try:
        told = explain(engine, POLICY, rival)
        whole = explain(engine, POLICY, rival, unmask=True)
    finally:
        engine.dispose()
    assert [p["member"] for p in told.passed_over] == [mask_entity(person)]
    assert told.passed_over[0]["by"].startswith(f"{POLICY} 2026 for {owner} (run 1)")
    assert f"not counted: {mask_entity(person)}: already counted for {POLICY}" in told.to_text()
    assert person not in told.to_text() + json.dumps(told.to_json())
    assert whole.passed_over[0]["member"] == person
    # The auditor asks the ledger who was counted for whom: masked, the enterprise whole.
    listed = disburse("ledger", "counted", "--member", person, db=db_url).stdout
    assert f"{mask_entity(person)} " in listed
    assert f"{POLICY} 2026 {owner}" in listed
    assert person not in listed
    assert "1 member(s) counted" in listed
    every = json.loads(
        disburse("ledger", "counted", "--policy", POLICY, "--json", db=db_url).stdout
    )
    assert {r["entity"] for r in every} == set(held.values())
    assert len(every) == len(held)
    whole_rows = disburse("ledger", "counted", "--entity", owner, "--unmask", db=db_url).stdout
    assert person in whole_rows

    # The same data in a fresh ledger: within one run the earlier credit code wins.
    fresh = db_url.replace("ledger.db", "fresh.db") if db_url.startswith("sqlite") else None
    if fresh is not None:
        run(data, fresh, tmp_path / "store-fresh", policies)
        assert counted(fresh)[person] == rival
        assert (
            sum(fen for kind, e, fen in transfers(fresh) if e == rival) == granted[rival] + 150_000
        )
