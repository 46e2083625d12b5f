"""Faults from outside the engine end in a clear message, exit non-zero without a traceback,
and the same command again finishes the run with the ledger of a run never interrupted
(transfer by transfer, run ids and hashes included), on SQLite and PostgreSQL:

* two processes initialising a fresh SQLite file at once;
* SQLite locked by another process for longer than the busy timeout;
* the disk filling up under the store, and under the SQLite database, mid-run (a small
  tmpfs mounted for the test: it needs root, as CI here has; elsewhere these skip);
* the database becoming unwritable mid-run (PostgreSQL: the login's INSERT revoked; a
  SQLite file opened read-only);
* the PostgreSQL connection lost mid-run (its sessions ended by pg_terminate_backend);
* SIGTERM and SIGINT: exit 143 / 130, "run the same command again to finish it";
* every command run as an auditor's login: a message naming the login, never a traceback;
* the run lock: no login that merely connects can take it, an advisory key held by such
  a login is named instead of waited for, and a SQLite file reached through a symlink
  shares the lock of its real path.

A fault is injected while the run is stopped at a named checkpoint: $DISBURSE_PAUSE_AT
makes the process SIGSTOP itself there (`jobs.faults.checkpoint`); the test breaks
something, then sends SIGCONT.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ledgers.db import LEDGER_LOCK_KEY, RUN_LOCK_KEY, SCHEMA_LOCK_KEY
from tests.db.test_run import (
    AS_OF,
    CHUNK,
    comparable,
    disburse,
    drop_db,
    fresh_db,
    hold_run_lock,
    ledger,
    run,
    run_cmd,
    runs,
)
from tests.keys import shared_key_file

ROUNDS = 30


# --- helpers -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def ledger_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One ledger key for every run here (in no run's store), so that a run finished after
    a fault chains the same hashes as the reference run."""
    monkeypatch.setenv(
        "DISBURSE_LEDGER_KEY_FILE", str(shared_key_file(tmp_path_factory.getbasetemp()))
    )


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[list[tuple], dict]]:
    """The uninterrupted runs made so far, by backend (made once per module)."""
    return {}


@pytest.fixture
def reference(
    city: Path, db_url: str, tmp_path: Path, references: dict[str, tuple[list[tuple], dict]]
) -> tuple[list[tuple], dict]:
    """The ledger and summary of an uninterrupted run on the backend of `db_url`."""
    backend = db_url.split(":", 1)[0]
    if backend not in references:
        db = fresh_db(db_url, "faults-reference")
        try:
            out = json.loads(run(city, db, tmp_path / "store-ref").stdout)
            assert out["totals"]["transfers"] > 3 * int(CHUNK)
            references[backend] = (ledger(db), out)
        finally:
            drop_db(db)
    return references[backend]


def paused(cmd: list[str], point: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`cmd` started with $DISBURSE_PAUSE_AT=point, returned once it has stopped there."""
    keep = ("DISBURSE_LEDGER_KEY_FILE",)  # the one key every run here chains under
    full = {k: v for k, v in os.environ.items() if not k.startswith("DISBURSE_") or k in keep}
    full.update(env or {}, DISBURSE_PAUSE_AT=point)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full
    )
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        _out, err = proc.communicate()
        raise AssertionError(f"the run ended before it reached {point}:\n{err}")
    return proc


def resumed(proc: subprocess.Popen[str], *signals: int) -> tuple[int, str]:
    """Send `signals`, then SIGCONT, to the stopped `proc`; its exit status and stderr."""
    for sig in signals:
        proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def assert_clean(err: str, *parts: str) -> None:
    """One message for people: no traceback, every one of `parts` in it."""
    assert "Traceback" not in err, err
    for part in parts:
        assert part in err, f"{part!r} not in:\n{err}"


def finishes_like_reference(
    city: Path, db: str, store: Path, reference: tuple[list[tuple], dict]
) -> None:
    """The same command again completes run 1, and the ledger is the reference's."""
    want_ledger, want_summary = reference
    again = json.loads(run(city, db, store).stdout)
    assert comparable(again) == comparable(want_summary)
    assert ledger(db) == want_ledger
    assert [r[2] for r in runs(db)] == ["completed"]


def state_of_run(db: str, run_id: int = 1) -> str:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    text("SELECT state FROM runs WHERE run_id = :r"), {"r": run_id}
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs mounted for the test (root only): a disk the test can fill up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its disk is full, to the last byte; the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            while (code := _write_error(fh, block)) is None:
                pass
            assert code == errno.ENOSPC
    return filler


def _write_error(fh: BinaryIO, block: bytes) -> int | None:
    """Write `block`; the errno if that failed."""
    try:
        fh.write(block)
    except OSError as exc:
        return exc.errno
    return None


def pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL fault")


def sqlite_only(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a SQLite fault")


def admin(db: str):  # type: ignore[no-untyped-def]
    """An autocommit engine on `db` as the superuser of the test server."""
    return create_engine(db, isolation_level="AUTOCOMMIT")


@pytest.fixture
def login(db_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL login role (roles are cluster-wide: a unique name), dropped
    with whatever it was granted in the test's database."""
    pg_only(db_url)
    name = f"disburse_test_{uuid.uuid4().hex[:10]}"
    eng = admin(db_url)
    with eng.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
    try:
        yield name
    finally:
        with eng.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
                {"n": name},
            )
            conn.execute(text(f"DROP OWNED BY {name}"))
            conn.execute(text(f"DROP ROLE {name}"))
        eng.dispose()


def as_login(db: str, name: str) -> str:
    return make_url(db).set(username=name).render_as_string(hide_password=False)


# --- SQLite: two processes initialising a fresh file -----------------------------------


def _init_in_turn(barrier, folder: str, rounds: int, out) -> None:  # type: ignore[no-untyped-def]
    """A process that initialises database i at the same instant as its twin, for each i."""
    from ledgers.db import open_engine

    failures = []
    for i in range(rounds):
        barrier.wait()
        try:
            with open_engine(f"sqlite:///{folder}/db-{i}.db", init=True):
                pass
        except Exception as exc:  # reported to the test, which names them
            failures.append(f"round {i}: {type(exc).__name__}: {exc}".splitlines()[0])
    out.put(failures)


def test_two_processes_initialising_a_fresh_sqlite_file_at_once_both_succeed(
    tmp_path: Path,
) -> None:
    """Before the fix every round failed ("database is locked"): a deferred migration that
    read first, and the WAL switch of a fresh file, failed at once."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_init_in_turn, args=(barrier, str(tmp_path), ROUNDS, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    failures = [f for _ in procs for f in out.get(timeout=300)]
    for p in procs:
        p.join(timeout=60)
    assert failures == []


# --- SQLite locked ------------------------------------------------------------------


def test_sqlite_locked_past_the_busy_timeout_stops_the_run_and_the_same_command_finishes_it(
    city: Path, db_url: str, tmp_path: Path, reference: tuple[list[tuple], dict]
) -> None:
    sqlite_only(db_url)
    import sqlite3

    store = tmp_path / "store"
    cmd = run_cmd(city, db_url, store, "--chunk-size", CHUNK, "--quiet")
    proc = paused(cmd, "post:chunk:1", env={"DISBURSE_SQLITE_BUSY_SECONDS": "1"})
    path = db_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction, never ending
    try:
        code, err = resumed(proc)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert code == 1
    assert_clean(
        err,
        "run 1 stopped while posting to the ledger: the SQLite file",
        "stayed locked by another process for more than 1 s",
        f"fuser {path}",
        "run the same command again: it finishes run 1",
    )
    assert state_of_run(db_url) == "evaluated"
    finishes_like_reference(city, db_url, store, reference)


# --- the disk fills up ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "doing"),
    [
        ("run:ingested", "writing the decision files"),
        ("run:started", "validating and staging the sources"),
    ],
)
def test_a_full_disk_under_the_store_stops_the_run_and_the_same_command_finishes_it(
    city: Path,
    db_url: str,
    small_disk: Path,
    reference: tuple[list[tuple], dict],
    point: str,
    doing: str,
) -> None:
    store = small_disk / "store"
    proc = paused(run_cmd(city, db_url, store, "--chunk-size", CHUNK, "--quiet"), point)
    filler = fill(small_disk)
    code, err = resumed(proc)
    assert code == 1
    assert_clean(
        err,
        f"run 1 stopped while {doing}: the disk is full under {store}",
        "nothing was posted",
        f"fix: free space under {store}",
        "then run the same command again: it finishes run 1",
    )
    assert ledger(db_url) == []
    assert state_of_run(db_url) in ("started", "ingested")  # left open, not failed
    filler.unlink()
    finishes_like_reference(city, db_url, store, reference)


def test_a_full_disk_under_the_sqlite_database_mid_post_and_the_same_command_finishes_it(
    city: Path,
    db_url: str,
    small_disk: Path,
    tmp_path: Path,
    reference: tuple[list[tuple], dict],
) -> None:
    sqlite_only(db_url)
    db = f"sqlite:///{small_disk / 'ledger.db'}"
    store = tmp_path / "store"
    proc = paused(run_cmd(city, db, store, "--chunk-size", CHUNK, "--quiet"), "post:chunk:1")
    filler = fill(small_disk)
    code, err = resumed(proc)
    assert code == 1
    assert_clean(
        err,
        "run 1 stopped while posting to the ledger: the disk holding the SQLite file",
        "is full",
        f"free space under {small_disk}",
        "it finishes run 1",
    )
    filler.unlink()
    finishes_like_reference(city, db, store, reference)


# --- the database becomes unwritable ---------------------------------------------------


def test_a_login_whose_insert_is_revoked_mid_run_is_told_and_the_same_command_finishes_it(
    city: Path,
    db_url: str,
    login: str,
    tmp_path: Path,
    reference: tuple[list[tuple], dict],
) -> None:
    """PostgreSQL: the batch login loses INSERT on transfers while the run posts."""
    eng = admin(db_url)
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    grant = f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {login}"
    with eng.connect() as conn:
        conn.execute(text(grant))
        conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {login}"))
    db = as_login(db_url, login)
    store = tmp_path / "store"
    proc = paused(run_cmd(city, db, store, "--chunk-size", CHUNK, "--quiet"), "post:chunk:1")
    with eng.connect() as conn:
        conn.execute(text(f"REVOKE INSERT ON transfers FROM {login}"))
    code, err = resumed(proc)
    assert code == 1
    assert_clean(
        err,
        "run 1 stopped while posting to the ledger: "
        f"this login ('{login}') cannot write the ledger on postgresql",
        "permission denied for table transfers",
        "the chunks it committed stay in the ledger",
        "fix: run it as the batch role",
        "it finishes run 1",
    )
    with eng.connect() as conn:
        conn.execute(text(grant))
    eng.dispose()
    finishes_like_reference(city, db, store, reference)


def test_a_read_only_sqlite_file_is_told_not_traced(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    sqlite_only(db_url)
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    path = db_url.removeprefix("sqlite:///")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    done = run(city, read_only, tmp_path / "store", check=False)
    assert done.returncode == 1
    assert_clean(done.stderr, "cannot be written", "readonly database", "writable for this user")


# --- the PostgreSQL connection is lost ---------------------------------------------------


@pytest.mark.parametrize(
    ("point", "doing"),
    [("post:chunk:2", "posting to the ledger"), ("run:ingested", "writing the decision files")],
)
def test_a_lost_postgresql_connection_is_told_and_the_same_command_finishes_it(
    city: Path,
    db_url: str,
    tmp_path: Path,
    reference: tuple[list[tuple], dict],
    point: str,
    doing: str,
) -> None:
    """Every session of the run ended by the server mid-run (before, the error reported was
    a failing unlock of the run lock, with a traceback)."""
    pg_only(db_url)
    store = tmp_path / "store"
    proc = paused(run_cmd(city, db_url, store, "--chunk-size", CHUNK, "--quiet"), point)
    eng = admin(db_url)
    with eng.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'disburse'"
            )
        ).scalar_one()
    eng.dispose()
    assert ended >= 2  # the run lock's session and the run's own
    code, err = resumed(proc)
    assert code == 1
    assert_clean(
        err,
        f"run 1 stopped while {doing}: the connection",
        "was lost",
        "check that the PostgreSQL server is up and reachable",
        "it finishes run 1",
    )
    assert "unlock" not in err
    finishes_like_reference(city, db_url, store, reference)


# --- SIGTERM and SIGINT -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "point", "phase", "posted"),
    [
        (
            signal.SIGTERM,
            "post:chunk:2",
            "post",
            "the chunks it committed stay in the ledger, the rest follows when it is finished",
        ),
        (signal.SIGINT, "run:ingested", "ingest", "nothing was posted"),
        (signal.SIGTERM, "run:allocation-written", "allocate", "nothing was posted"),
    ],
    ids=["SIGTERM-post", "SIGINT-ingest", "SIGTERM-allocate"],
)
def test_a_stop_signal_ends_the_run_with_a_message_and_the_same_command_finishes_it(
    city: Path,
    db_url: str,
    tmp_path: Path,
    reference: tuple[list[tuple], dict],
    sig: signal.Signals,
    point: str,
    phase: str,
    posted: str,
) -> None:
    store = tmp_path / "store"
    proc = paused(run_cmd(city, db_url, store, "--chunk-size", CHUNK, "--quiet"), point)
    code, err = resumed(proc, sig)
    assert code == 128 + sig
    assert_clean(
        err,
        f"interrupted by {sig.name}: run 1 stopped in phase {phase} ({posted}); "
        "run the same command again to finish it",
    )
    finishes_like_reference(city, db_url, store, reference)


def test_a_run_waiting_for_the_lock_stops_at_sigterm_before_it_starts(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    release = hold_run_lock(db_url)
    try:
        cmd = run_cmd(city, db_url, tmp_path / "store", "--wait")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        # Its log says when it waits: the signal then reaches a run that is waiting, not one
        # still importing (whose SIGTERM would end it by the default action).
        for line in proc.stderr:
            if "waiting for" in line:
                break
        else:
            raise AssertionError(f"the run did not wait for the lock: {proc.wait()}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        release()
    assert proc.returncode == 143
    assert_clean(err, "interrupted by SIGTERM before the run started (nothing was written)")
    assert runs(db_url) == []


# --- an auditor's login -------------------------------------------------------------------


def test_every_command_run_as_an_auditor_login_works_or_says_so_without_a_traceback(
    city: Path, db_url: str, login: str, tmp_path: Path
) -> None:
    """The auditor's role may read the audit_* views only: the commands that write, or read
    the base tables, name the login and say to run them as the batch role."""
    run(city, db_url, tmp_path / "store")
    disburse("db", "init", db=db_url)  # the auditor role and its grants
    eng = admin(db_url)
    with eng.connect() as conn:
        conn.execute(text(f"GRANT disburse_auditor TO {login}"))
    eng.dispose()
    db = as_login(db_url, login)
    store = ["--store", str(tmp_path / "store-auditor")]
    commands = [
        ["run", "--data", str(city), "--as-of", AS_OF, *store],
        ["ingest", "--data", str(city), "--as-of", AS_OF, *store],
        ["db", "init"],
        ["ledger", "summary"],
        ["ledger", "entries"],
        ["ledger", "balances"],
        ["audit", "verify"],
        ["quarantine"],
        ["explain", "--policy", "childcare-subsidy", "--entity", "X"],
        ["report", "--run", "1", "--out", str(tmp_path / "report.html")],
    ]
    readers = {"ledger", "audit"}  # told which reading role may: the unmasked reader
    for args in commands:
        done = disburse(*args, db=db, check=False)
        if done.returncode == 0:
            continue
        role = "the unmasked-reader role" if args[0] in readers else "run it as the batch role"
        assert_clean(done.stderr, f"this login ('{login}')", role)
    writes = disburse(*commands[0], db=db, check=False)
    assert_clean(writes.stderr, f"this login ('{login}') cannot write the ledger")
    assert ledger(db_url) != []  # and nothing changed: the first run's transfers only
    assert [r[2] for r in runs(db_url)] == ["completed"]


# --- the run lock ---------------------------------------------------------------------------


def test_an_auditor_login_cannot_take_the_run_lock_nor_block_the_night_unnamed(
    city: Path, db_url: str, login: str, tmp_path: Path
) -> None:
    """The run lock is a table lock only a role that may write runs can take; the advisory
    keys any login can take are named when such a login holds them, never waited for."""
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    disburse("db", "init", db=db_url)
    eng = admin(db_url)
    with eng.connect() as conn:
        conn.execute(text(f"GRANT disburse_auditor TO {login}"))
    eng.dispose()
    squatter = create_engine(as_login(db_url, login))
    store = tmp_path / "store"
    try:
        with squatter.connect() as conn:
            for sql in (
                "LOCK TABLE runs IN SHARE UPDATE EXCLUSIVE MODE",
                "LOCK TABLE audit_runs IN SHARE UPDATE EXCLUSIVE MODE",
                "SELECT * FROM audit_runs FOR UPDATE",
            ):
                with pytest.raises(Exception, match="permission denied"):
                    conn.execute(text(sql))
                conn.rollback()
            # The key the run lock used to be: held by the auditor, it blocks nothing now.
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": RUN_LOCK_KEY})
            conn.commit()
            for key, lock in ((SCHEMA_LOCK_KEY, "schema"), (LEDGER_LOCK_KEY, "ledger")):
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                started = time.monotonic()
                done = run(city, db_url, store, check=False)
                assert time.monotonic() - started < 120
                assert done.returncode == 1
                assert_clean(
                    done.stderr,
                    f"the {lock} lock is held by login '{login}' (pid ",
                    "which cannot write the ledger: not a disburse process",
                    "pg_terminate_backend(",
                )
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            out = json.loads(run(city, db_url, store).stdout)
            assert out["state"] == "completed"
            assert out["run_id"] == 1  # the refused attempts left no run behind, nor a gap
            assert out["totals"]["transfers"] > 0
    finally:
        squatter.dispose()


def test_the_sqlite_run_lock_holds_through_a_symlink_to_the_database(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    sqlite_only(db_url)
    from sqlalchemy import create_engine as engine_for

    from jobs.progress import Silent
    from jobs.run import run_lock
    from ledgers.db import open_engine

    with open_engine(db_url, init=True):
        pass
    real = Path(db_url.removeprefix("sqlite:///"))
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(real)
    engine = engine_for(db_url)
    try:
        with run_lock(engine, wait=False, progress=Silent()):
            done = run(city, f"sqlite:///{link}", tmp_path / "store", check=False)
    finally:
        engine.dispose()
    assert done.returncode == 1
    assert_clean(done.stderr, "another nightly run holds this database")
    assert ledger(db_url) == []
