"""The run records (`ledgers.runs`), their migration and the advisory locks, on SQLite and
PostgreSQL: runs written through the API, read back typed; what a nightly run decides from
the open runs it finds; the claims columns renamed in an existing database; two holders of
one lock."""

from __future__ import annotations

import datetime as dt
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, inspect, text

from jobs.errors import JobError
from jobs.progress import Silent
from jobs.resume import Step, Tonight, plan_resume
from jobs.run import run_lock
from ledgers import db, runs
from ledgers.db import LedgerError, init_schema, open_engine, schema_revision
from ledgers.locks import LEDGER_LOCK, RUN_LOCK, Lock, LockBusy, hold
from ledgers.runs import HashedFile, PolicyFile, RunArchive, RunState

AS_OF = dt.date(2026, 3, 15)
POLICIES = [
    PolicyFile("p2", "/policies/p2.yaml", "b" * 64),
    PolicyFile("p1", "/p/p1.yaml", "a" * 64),
]


def start(engine: Engine, as_of: dt.date = AS_OF, data_dir: str = "/data") -> int:
    return runs.start_run(
        engine,
        kind=runs.NIGHTLY,
        as_of=as_of,
        data_dir=data_dir,
        store_dir="/store",
        host="night-1",
        pid=4242,
        policies=POLICIES,
    )


def ingest(engine: Engine, run_id: int, sources: dict[str, str]) -> None:
    """What an ingest records: the source snapshots, then the state."""
    with engine.begin() as conn:
        for source, sha256 in sources.items():
            conn.execute(
                text(
                    "INSERT INTO source_snapshots (run_id, source, file, format, sha256, rows,"
                    " accepted, quarantined) VALUES (:r, :s, :f, 'parquet', :h, 10, 9, 1)"
                ),
                {"r": run_id, "s": source, "f": f"/data/{source}.parquet", "h": sha256},
            )
        runs.mark_ingested(conn, run_id, catalogue_sha256="c" * 64)


def archive(tmp_path: Path) -> RunArchive:
    files = {}
    for name in ("features-enterprise", "p1", "features.yaml"):
        (tmp_path / name).write_text(name)
        files[name] = HashedFile(str(tmp_path / name), name.ljust(64, "0"))
    return RunArchive(
        features={"enterprise": files["features-enterprise"]},
        policies={"p1": files["p1"]},
        catalogue=files["features.yaml"],
    )


def test_a_run_is_recorded_and_read_back_typed(engine: Engine, tmp_path: Path) -> None:
    run_id = start(engine)
    run = runs.get_run(engine, run_id)
    assert run is not None
    assert (run.state, run.host, run.pid, run.as_of) == (RunState.STARTED, "night-1", 4242, AS_OF)
    assert run.policies == {"p1": "a" * 64, "p2": "b" * 64}
    assert run.claims is None
    assert run.archive is None
    ingest(engine, run_id, {"enterprises": "d" * 64})
    kept = archive(tmp_path)
    claims = HashedFile(str(tmp_path / "claims.parquet"), "1" * 64)
    runs.mark_evaluated(
        engine,
        run_id,
        inputs_sha256="9" * 64,
        claims=claims,
        allocation=HashedFile("/store/allocation.parquet", "2" * 64),
        archive=kept,
        counts={"allocation": {"p1": {"entitled": 3}}},
    )
    run = runs.get_run(engine, run_id)
    assert run is not None
    assert run.state is RunState.EVALUATED
    assert run.state.is_decided
    assert (run.claims, run.archive) == (claims, kept)
    assert run.sources == {"enterprises": "d" * 64}
    assert run.counts == {"allocation": {"p1": {"entitled": 3}}}
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT claims_file, archive_json FROM runs")).one()
    assert stored.claims_file == str(tmp_path / "claims.parquet")
    assert stored.archive_json == kept.to_json()
    runs.mark_posted(engine, run_id)
    runs.complete(engine, run_id, summary={"run_id": run_id}, timings={"post": {"seconds": 1.0}})
    runs.complete(engine, run_id, summary={"run_id": run_id}, timings={"summary": {"seconds": 2}})
    run = runs.get_run(engine, run_id)
    assert run is not None
    assert run.state is RunState.COMPLETED
    assert run.finished_at is not None
    assert run.summary == {"run_id": run_id}
    # A resumed run keeps the phases it timed before it was interrupted.
    assert run.timings == {"post": {"seconds": 1.0}, "summary": {"seconds": 2}}
    assert runs.open_runs(engine) == []


def test_the_archive_json_is_the_stored_shape(tmp_path: Path) -> None:
    kept = archive(tmp_path)
    stored = kept.to_json()
    assert stored.startswith('{"catalogue":{"file":')
    assert RunArchive.from_json(stored) == kept
    early = '{"features":{"person":{"file":"/f","sha256":"0"}},"policies":{}}'
    assert RunArchive.from_json(early).catalogue is None
    assert RunArchive.from_json(early).to_json() == early


def test_open_runs_decide_what_tonight_does(engine: Engine) -> None:
    """Records written through the API, read back as a nightly run reads them."""
    sources = {"enterprises": "d" * 64}
    decided_elsewhere = start(engine, as_of=dt.date(2026, 3, 14))
    ingest(engine, decided_elsewhere, sources)
    runs.mark_posted(engine, decided_elsewhere)  # the state only matters here
    stale = start(engine, data_dir="/data/old")
    ingest(engine, stale, sources)
    same = start(engine)
    done = start(engine)
    runs.fail(engine, done, "x" * 3000)
    tonight = Tonight(
        as_of=AS_OF,
        data_dir="/data",
        policies={"p1": "a" * 64, "p2": "b" * 64},
        catalogue_sha256="c" * 64,
        sources=sources,
    )
    open_now = runs.open_runs(engine)
    assert [r.run_id for r in open_now] == [decided_elsewhere, stale, same]
    plan = plan_resume(open_now, tonight)
    assert plan.steps == (
        (decided_elsewhere, Step.FINISH),
        (stale, Step.ABANDON),
        (same, Step.CONTINUE),
    )
    assert plan.current == same
    failed = runs.get_run(engine, done)
    assert failed is not None
    assert failed.state is RunState.FAILED
    assert failed.message == "x" * 2000


def test_decisions_are_reused_only_while_their_files_are_kept(
    engine: Engine, tmp_path: Path
) -> None:
    run_id = start(engine)
    (tmp_path / "claims.parquet").write_text("claims")
    kept = archive(tmp_path)
    claims = HashedFile(str(tmp_path / "claims.parquet"), "1" * 64)
    allocation = HashedFile(str(tmp_path / "allocation.parquet"), "2" * 64)
    runs.mark_evaluated(
        engine,
        run_id,
        inputs_sha256="9" * 64,
        claims=claims,
        allocation=allocation,
        archive=kept,
        counts={},
    )
    found = runs.reusable_decisions(engine, "9" * 64)
    assert found is not None
    assert found.run_id == run_id
    assert runs.reusable_decisions(engine, "8" * 64) is None
    Path(kept.policies["p1"].file).unlink()
    assert runs.reusable_decisions(engine, "9" * 64) is None


def test_an_ingest_is_reused_only_for_the_same_files_and_catalogue(engine: Engine) -> None:
    first = start(engine)
    ingest(engine, first, {"enterprises": "d" * 64, "persons": "e" * 64})
    found = runs.reusable_ingest(
        engine,
        catalogue_sha256="c" * 64,
        sources={"persons": "e" * 64, "enterprises": "d" * 64},
        kept=lambda run: True,
    )
    assert found is not None
    assert found.run_id == first
    for catalogue, sources, kept in (
        ("0" * 64, {"enterprises": "d" * 64, "persons": "e" * 64}, True),
        ("c" * 64, {"enterprises": "d" * 64}, True),
        ("c" * 64, {"enterprises": "d" * 64, "persons": "e" * 64}, False),
    ):
        assert (
            runs.reusable_ingest(
                engine, catalogue_sha256=catalogue, sources=sources, kept=lambda run, k=kept: k
            )
            is None
        )


# --- the migration ------------------------------------------------------------------


def test_an_existing_database_upgrades_to_the_claims_columns(db_url: str) -> None:
    with open_engine(db_url) as engine:
        init_schema(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (kind, as_of, state, data_dir, started_at, decisions_file,"
                    " decisions_sha256) VALUES ('nightly', :d, 'evaluated', '/data', :t, :f, :h)"
                ),
                {
                    "d": AS_OF,
                    "t": dt.datetime(2026, 3, 15, 1),
                    "f": "/s/claims.parquet",
                    "h": "1" * 64,
                },
            )
        init_schema(engine, "0005")
        assert schema_revision(engine) == "0005"
        columns = {c["name"] for c in inspect(engine).get_columns("runs")}
        assert {"claims_file", "claims_sha256"} <= columns
        assert not columns & {"decisions_file", "decisions_sha256"}
        run = runs.get_run(engine, 1)
        assert run is not None
        assert run.claims == HashedFile("/s/claims.parquet", "1" * 64)
        with engine.connect() as conn:  # the auditors' view over runs still reads
            assert conn.execute(text("SELECT state FROM audit_runs")).scalar_one() == "evaluated"


# --- the locks ----------------------------------------------------------------------


def entering(held: AbstractContextManager[object]) -> BaseException:
    """Enter `held` in a thread, so that a lock that blocks fails the test instead of hanging
    it; the exception that refused it."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with held:
                outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert outcome, "a holder that would not wait was made to wait"
    assert outcome[0] is not None, "two holders of one lock"
    return outcome[0]


def refused(conn: Connection, lock: Lock, holder: str) -> LockBusy:
    """The LockBusy that refuses `lock` on `conn` to a holder that will not wait."""
    busy = entering(hold(conn, lock, wait=False, holder=lambda: holder))
    assert isinstance(busy, LockBusy)
    return busy


def test_a_second_holder_is_refused_with_the_holder_named(engine: Engine) -> None:
    with engine.connect() as first, engine.connect() as second:
        with hold(first, RUN_LOCK, wait=False, holder=lambda: "nobody: it is free"):
            busy = refused(second, RUN_LOCK, "run 7")
            assert busy.holder == "run 7"
            if engine.dialect.name == "postgresql":
                # and the session that holds it, from pg_locks: this test's own first one
                assert busy.session is not None
                assert busy.session.startswith("login 'postgres' (pid ")
                assert "application 'disburse'" in busy.session
                assert (
                    str(busy)
                    == f"the nightly run lock is held by run 7; its session: {busy.session}"
                )
            else:
                assert str(busy) == "the nightly run lock is held by run 7"
        with hold(second, RUN_LOCK, wait=False):  # free again once the first let go
            pass


def test_a_waiting_holder_gets_the_lock_when_it_is_released(engine: Engine) -> None:
    order: list[str] = []
    told: list[str] = []
    with engine.connect() as first, engine.connect() as second:
        with hold(first, RUN_LOCK, wait=False):

            def waiter() -> None:
                with hold(second, RUN_LOCK, wait=True, holder=lambda: "run 1", waiting=told.append):
                    order.append("second")

            thread = threading.Thread(target=waiter)
            thread.start()
            time.sleep(1)
            order.append("first releases")
        thread.join(timeout=30)
    assert order == ["first releases", "second"]
    assert len(told) == 1
    assert told[0].startswith("run 1")  # and, on PostgreSQL, "; its session: login ..."


def test_the_ledger_lock_serialises_posters_on_postgresql(engine: Engine) -> None:
    """SQLite serialises writers with BEGIN IMMEDIATE instead: the ledger lock takes nothing."""
    with engine.connect() as first, engine.connect() as second, hold(first, LEDGER_LOCK):
        if engine.dialect.name == "postgresql":
            assert refused(second, LEDGER_LOCK, "the first poster").holder == "the first poster"
        else:
            with hold(second, LEDGER_LOCK, wait=False):
                pass


def test_the_run_lock_names_the_running_run(engine: Engine) -> None:
    run_id = start(engine)
    with run_lock(engine, wait=False, progress=Silent()):
        second = entering(run_lock(engine, wait=False, progress=Silent()))
    assert isinstance(second, JobError)
    message = second.render()
    assert message.startswith(
        f"another nightly run holds this database: run {run_id} (as of 2026-03-15, "
        "state started, pid 4242 on night-1, started "
    )
    assert "fix: wait for it to finish (or give --wait" in message


def test_a_migration_of_runs_during_a_nightly_run_is_refused_not_deadlocked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the run lock is held on `runs` for the whole run; a migration that alters
    `runs` meanwhile would queue the run's own statements behind it, forever.  It gives up
    after its lock timeout instead, saying why, and succeeds once the run is over."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no table locks: its run lock is a file")
    monkeypatch.setattr(db, "MIGRATION_LOCK_TIMEOUT_S", 1)
    with open_engine(db_url) as engine:
        init_schema(engine, revision="0004")
        with engine.connect() as conn, hold(conn, RUN_LOCK, wait=False):
            with pytest.raises(LedgerError, match="stayed locked for 1 s by another session"):
                init_schema(engine)
            assert schema_revision(engine) == "0004"
        init_schema(engine)
        newest = max(p.stem.split("_")[0] for p in (db.MIGRATIONS / "versions").glob("0*.py"))
        assert schema_revision(engine) == newest
