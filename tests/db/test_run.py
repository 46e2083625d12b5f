"""The nightly run, end to end, as finance runs it: the `disburse run` command in a process
of its own, against SQLite and PostgreSQL.

* killed with SIGKILL at every named point of every phase (and at random moments),
  the same command again finishes the run and the ledger is identical, transfer by
  transfer and hash by hash, run ids included, to that of a run never interrupted (a local run kills at a
  fixed sample of the points; CI=true or --all-kill-points kills at every one);
* a second run with nothing changed posts nothing;
* a corrected source file posts adjustments for exactly the keys whose amounts changed;
* two runs at once never both post: the second exits with a message, or waits.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import create_engine, func, select, text

from ledgers.holdings import signed_amount
from ledgers.schema import Run, Transfer
from tests.keys import shared_key_file

AS_OF = "2026-03-15"
KILL_POINTS = [
    "run:starting",  # inside the transaction that records the run: on PostgreSQL, before
    # run ids were deterministic, it spent a sequence number and the re-run's ids differed
    "run:started",
    "ingest:staged",
    "run:ingested",
    "run:decisions-written",
    "run:allocation-written",
    "run:evaluated",
    "post:chunk:1",
    "post:chunk:3",
    "run:posted",
    "run:completed",
]
CHUNK = "150"  # small chunks: a kill lands between committed chunks of one post


def sampled(index: int) -> bool:
    """The kill points a local run takes: every third from the first, and the last."""
    return index % 3 == 0 or index == len(KILL_POINTS) - 1


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per kill point: every point under CI=true or with --all-kill-points,
    otherwise the sample, the others skipped with a note that says how to run them."""
    if "kill_point" not in metafunc.fixturenames:
        return
    every = os.environ.get("CI") == "true" or metafunc.config.getoption("--all-kill-points")
    skip = pytest.mark.skip(
        reason="a local run kills at a sample of the points; CI=true or --all-kill-points "
        "kills at every one"
    )
    metafunc.parametrize(
        "kill_point",
        [
            pytest.param(point, marks=() if every or sampled(i) else skip)
            for i, point in enumerate(KILL_POINTS)
        ],
        ids=KILL_POINTS,
    )


def disburse(
    *args: str,
    db: str,
    store: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "disburse.cli", *args, "--db", db]
    cmd += ["--store", str(store)] if store is not None else []
    full_env = {k: v for k, v in os.environ.items() if k != "DISBURSE_KILL_AT"}
    full_env.update(env or {})
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    return done


def run_cmd(data: Path, db: str, store: Path, *extra: str) -> list[str]:
    """The `disburse run` command line of these tests, in a process of its own."""
    return [
        sys.executable, "-m", "disburse.cli", "run", "--data", str(data), "--as-of", AS_OF,
        *extra, "--db", db, "--store", str(store),
    ]  # fmt: skip


def run(data: Path, db: str, store: Path, **kw) -> subprocess.CompletedProcess[str]:
    return disburse(
        "run",
        "--data",
        str(data),
        "--as-of",
        AS_OF,
        "--chunk-size",
        CHUNK,
        "--json",
        db=db,
        store=store,
        **kw,
    )


def ledger(db: str) -> list[tuple]:
    engine = create_engine(db)
    t = Transfer.__table__
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.transfer_id)).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows]


def runs(db: str) -> list[tuple]:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    select(Run.run_id, Run.kind, Run.state, Run.summary_json).order_by(Run.run_id)
                ).all()
            ]
    finally:
        engine.dispose()


def fresh_db(db_url: str, tag: str) -> str:
    """Another empty database of the same kind as `db_url`, named after `tag`."""
    if db_url.startswith("sqlite"):
        return db_url.replace("ledger.db", f"ledger-{tag}.db")
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    name = f"{url.database}_{tag.replace(':', '_').replace('-', '_')}"[:63]
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_db(db: str) -> None:
    if db.startswith("sqlite"):
        return
    from sqlalchemy.engine import make_url

    url = make_url(db)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def ledger_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One ledger key for every run here (the key file is in no run's store), so that the
    interrupted runs chain the same hashes as the reference run."""
    path = shared_key_file(tmp_path_factory.getbasetemp())
    monkeypatch.setenv("DISBURSE_LEDGER_KEY_FILE", str(path))


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[list[tuple], dict]]:
    """The reference runs made so far, by backend: each is made once per module."""
    return {}


@pytest.fixture
def reference(
    city: Path,
    db_url: str,
    tmp_path: Path,
    references: dict[str, tuple[list[tuple], dict]],
) -> tuple[list[tuple], dict]:
    """The ledger and summary of an uninterrupted run on the backend of `db_url`, made in a
    database of its own (the first time it is asked for) so that `db_url` stays empty."""
    backend = db_url.split(":", 1)[0]
    if backend not in references:
        db = fresh_db(db_url, "reference")
        try:
            out = run(city, db, tmp_path / "store-ref")
            summary = json.loads(out.stdout)
            assert summary["state"] == "completed"
            assert summary["totals"]["transfers"] > 3 * int(CHUNK)  # kill points fall mid-post
            references[backend] = (ledger(db), summary)
        finally:
            drop_db(db)
    return references[backend]


def comparable(summary: dict) -> dict:
    """The parts of a summary that do not depend on timing or on the interruption."""
    return {k: summary[k] for k in ("run_id", "as_of", "state", "policies", "totals", "sources")}


@pytest.mark.slow
def test_a_run_killed_anywhere_finishes_with_the_same_ledger(
    city: Path,
    db_url: str,
    tmp_path: Path,
    reference: tuple[list[tuple], dict],
    kill_point: str,
) -> None:
    """Killed at `kill_point`, the same command again ends with the reference ledger.

    Under CI=true every point of KILL_POINTS runs, on both backends.  A local run (CI
    unset) kills at a fixed sample, every third point from the first and the last one
    (run:started, run:decisions-written, post:chunk:1, run:completed), and skips the
    others; `pytest --all-kill-points` (or CI=true) runs them all locally.
    """
    want_ledger, want_summary = reference
    store = tmp_path / "store"
    killed = run(city, db_url, store, env={"DISBURSE_KILL_AT": kill_point}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = json.loads(run(city, db_url, store).stdout)
    assert ledger(db_url) == want_ledger
    recorded = runs(db_url)
    assert comparable({**json.loads(recorded[0][3]), "state": recorded[0][2]}) == comparable(
        want_summary
    )
    if kill_point == "run:completed":
        # It had finished: the command again is a second run that finds nothing to post.
        assert [r[2] for r in recorded] == ["completed", "completed"]
        assert again["totals"]["transfers"] == 0
    else:
        assert comparable(again) == comparable(want_summary)
        assert [r[2] for r in recorded] == ["completed"]
    verify = disburse("audit", "verify", "--json", db=db_url)
    assert json.loads(verify.stdout)["ok"] is True


@pytest.mark.slow
def test_a_run_killed_at_random_moments_finishes_with_the_same_ledger(
    city: Path, db_url: str, tmp_path: Path, reference: tuple[list[tuple], dict]
) -> None:
    want_ledger, want_summary = reference
    rnd = random.Random(20261121)
    store = tmp_path / "store-random"
    cmd = run_cmd(city, db_url, store, "--chunk-size", CHUNK, "--quiet")
    for _ in range(4):  # several kills of the same run, each at a random moment
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run(city, db_url, store)
    assert ledger(db_url) == want_ledger
    recorded = runs(db_url)
    assert comparable({**json.loads(recorded[0][3]), "state": recorded[0][2]}) == comparable(
        want_summary
    )
    # later commands found run 1 finished: they posted nothing
    assert all(state == "completed" for _, _, state, _ in recorded)


def test_a_second_run_with_nothing_changed_posts_nothing(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = json.loads(run(city, db_url, store).stdout)
    second = json.loads(run(city, db_url, store).stdout)
    assert first["totals"]["transfers"] > 0
    assert second["totals"]["transfers"] == 0

    # The same entitlements of the night's own periods; a past period's back-pay
    # (`<policy>@<period>`) was paid by the first run and is not decided again.
    def own(out: dict) -> int:
        return sum(p["entitled_fen"] for k, p in out["policies"].items() if "@" not in k)

    assert own(second) == own(first)
    assert any("@" in k for k in first["policies"])
    assert not any("@" in k for k in second["policies"])
    # the reused decisions count one row per policy and entity, as the first run's did
    assert {p: r["evaluated"] for p, r in second["policies"].items()} == {
        p: r["evaluated"] for p, r in first["policies"].items() if "@" not in p
    }
    assert second["phases"]["evaluate"]["rows"] == first["phases"]["evaluate"]["rows"]
    # nothing was validated or evaluated again: the earlier files were reused
    assert "skipped" in second["phases"]["ingest"]
    assert "skipped" in second["phases"]["evaluate"]


def test_a_corrected_file_posts_adjustments_for_the_changed_keys_only(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(city, data)
    store = tmp_path / "store"
    run(data, db_url, store)
    before = allocation(db_url, 1)
    # The registry corrects one small enterprise that got the job-stabilisation refund to "large".
    paid = before.filter(
        (pl.col("policy_id") == "job-stabilisation-refund") & (pl.col("amount_fen") > 0)
    )
    ents = pl.read_parquet(data / "enterprises.parquet")
    target = ents.filter(
        pl.col("credit_code").is_in(paid["entity"].implode())
        & pl.col("size_class").is_in(["micro", "small"])
    ).sort("credit_code")["credit_code"][0]
    correct_enterprise(data, target, "size_class", "large")
    out = json.loads(run(data, db_url, store).stdout)
    after = allocation(db_url, 2)
    # The first night also paid a past year's back-pay, which a later night does not
    # decide again: compare the periods both nights decided.
    before = before.join(
        after.select("policy_id", "benefit_period").unique(),
        on=["policy_id", "benefit_period"],
        how="semi",
    )
    changed = (
        before.join(after, on=["policy_id", "benefit_period", "entity"], how="full", coalesce=True)
        .filter(pl.col("amount_fen").fill_null(0) != pl.col("amount_fen_right").fill_null(0))
        .select("policy_id", "entity")
        .sort(["policy_id", "entity"])
    )
    assert target in changed["entity"].to_list()
    t = Transfer.__table__
    engine = create_engine(db_url)
    with engine.connect() as conn:
        posted = conn.execute(
            select(t.c.policy_id, t.c.entity, t.c.kind).where(t.c.run_id == 2)
        ).all()
    engine.dispose()
    assert posted, "the correction posted nothing"
    assert {k for _, _, k in posted} <= {"adjustment", "reversal", "grant"}
    assert "grant" not in {
        k for p, e, k in posted if e == target and p == "job-stabilisation-refund"
    }
    got = (
        pl.DataFrame([(p, e) for p, e, _ in posted], schema=["policy_id", "entity"], orient="row")
        .unique()
        .sort(["policy_id", "entity"])
    )
    assert got.equals(changed)
    assert out["totals"]["transfers"] == len(posted)
    # What changed, to sign off: the kinds the run posted, a decrease or reversal negative,
    # and together the run's effect on what payees are owed.
    changes = out["changes"]
    assert sum(c["transfers"] for c in changes.values()) == len(posted)
    assert all(changes[k]["signed_fen"] < 0 for k in ("decrease", "reversal") if k in changes)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        effect = conn.execute(
            select(func.sum(signed_amount())).where(Transfer.__table__.c.run_id == 2)
        ).scalar_one()
    engine.dispose()
    assert sum(c["signed_fen"] for c in changes.values()) == effect


def test_a_payout_whose_entity_became_ineligible_is_reversed(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    """The run keeps only the claims; a key the ledger holds that is refused tonight comes
    from the run's archive, and is allocated 0: a reversal."""
    data = tmp_path / "data"
    shutil.copytree(city, data)
    store = tmp_path / "store"
    run(data, db_url, store)
    paid = allocation(db_url, 1).filter(
        (pl.col("policy_id") == "job-stabilisation-refund") & (pl.col("amount_fen") > 0)
    )
    target = paid.sort("entity")["entity"][0]
    correct_enterprise(data, target, "status", "revoked")
    run(data, db_url, store)
    after = allocation(db_url, 2).filter(
        (pl.col("policy_id") == "job-stabilisation-refund") & (pl.col("entity") == target)
    )
    assert after["amount_fen"].to_list() == [0]
    t = Transfer.__table__
    engine = create_engine(db_url)
    with engine.connect() as conn:
        posted = conn.execute(
            select(t.c.kind, t.c.amount_fen).where(t.c.run_id == 2, t.c.entity == target)
        ).all()
    engine.dispose()
    assert [(k, a) for k, a in posted] == [("reversal", paid.sort("entity")["amount_fen"][0])]


def correct_enterprise(data: Path, credit_code: str, column: str, value: str) -> None:
    """The registry's file as delivered again with one enterprise's `column` corrected."""
    ents = pl.read_parquet(data / "enterprises.parquet")
    ents.with_columns(
        pl.when(pl.col("credit_code") == credit_code)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    ).write_parquet(data / "enterprises.parquet")


def allocation(db: str, run_id: int) -> pl.DataFrame:
    engine = create_engine(db)
    with engine.connect() as conn:
        path = conn.execute(select(Run.allocation_file).where(Run.run_id == run_id)).scalar_one()
    engine.dispose()
    return pl.read_parquet(path).select("policy_id", "benefit_period", "entity", "amount_fen")


def hold_run_lock(db: str):
    """Take the run lock as another run would; returns the function that releases it."""
    if db.startswith("sqlite"):
        fh = open(db.removeprefix("sqlite:///") + ".run-lock", "a+")  # noqa: SIM115
        fcntl.flock(fh, fcntl.LOCK_EX)
        return lambda: (fcntl.flock(fh, fcntl.LOCK_UN), fh.close())
    engine = create_engine(db)
    conn = engine.connect()
    conn.execute(text("LOCK TABLE runs IN SHARE UPDATE EXCLUSIVE MODE"))  # kept till released

    def release() -> None:
        conn.rollback()
        conn.close()
        engine.dispose()

    return release


def test_a_second_run_at_once_exits_with_a_message_or_waits(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    release = hold_run_lock(db_url)
    try:
        refused = run(city, db_url, store, check=False)
        assert refused.returncode == 1
        assert "another nightly run holds this database" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert ledger(db_url) == []
        cmd = run_cmd(city, db_url, store, "--wait", "--json")
        waiting = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None, "a run with --wait did not wait for the lock"
        assert ledger(db_url) == []
    finally:
        release()
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert json.loads(out)["totals"]["transfers"] > 0


def test_two_runs_started_together_never_both_post(city: Path, db_url: str, tmp_path: Path) -> None:
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    cmd = run_cmd(city, db_url, tmp_path / "store", "--json")
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    ok = [json.loads(out) for code, out, _ in results if code == 0]
    refused = [err for code, _, err in results if code != 0]
    assert ok
    assert all("another nightly run holds this database" in err for err in refused)
    posting = [o for o in ok if o["totals"]["transfers"] > 0]
    assert len(posting) == 1
    keys = [(r[6], r[7], r[8]) for r in ledger(db_url) if r[1] == "grant"]
    assert len(keys) == len(set(keys))


def test_a_run_that_fails_before_it_is_decided_ends_failed_and_the_next_starts_afresh(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(city, data)
    good = pl.read_parquet(data / "tax_ratings.parquet")
    # A delivery with a column of the wrong type: the run stops in ingest, nothing posted.
    good.with_columns(
        pl.col(good.columns[-1]).cast(pl.String).str.len_chars().cast(pl.Float64)
    ).write_parquet(data / "tax_ratings.parquet")
    store = tmp_path / "store"
    broken = run(data, db_url, store, check=False)
    assert broken.returncode == 1
    assert "tax_ratings" in broken.stderr
    assert "Traceback" not in broken.stderr
    first = runs(db_url)
    assert [r[2] for r in first] == ["failed"]
    assert ledger(db_url) == []
    good.write_parquet(data / "tax_ratings.parquet")
    fixed = json.loads(run(data, db_url, store).stdout)
    assert fixed["run_id"] == 2
    assert fixed["state"] == "completed"
    assert [r[2] for r in runs(db_url)] == ["failed", "completed"]
    engine = create_engine(db_url)
    with engine.connect() as conn:
        message = conn.execute(select(Run.message).where(Run.run_id == 1)).scalar_one()
    engine.dispose()
    assert message.startswith("failed while ingesting, nothing posted: source 'tax_ratings'")
