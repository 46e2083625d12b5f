"""Faults from outside the engine, told apart from everything else and put in the reader's
words: OS errors (also inside Polars' messages), psycopg errors by SQLSTATE, real SQLite
errors; and the stop signals' handlers."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from jobs.faults import Stopped, file_fault, os_error, outside_fault, stop_on_signals
from ledgers.db import DatabaseFault, database_fault

STORE = Path("/srv/store")
PG = "postgresql+psycopg://batch:secret@db.example:5432/ledger"


@pytest.mark.parametrize(
    ("exc", "found"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/srv/store/a.parquet"), 28),
        (
            RuntimeError(
                "parquet: File out of specification: underlying IO error: "
                "No space left on device (os error 28)"
            ),
            28,
        ),
        (FileNotFoundError(errno.ENOENT, "gone"), 2),
        (ValueError("a bug"), None),
    ],
    ids=["oserror", "polars-message", "enoent", "not-os"],
)
def test_the_os_error_behind_an_exception_is_found(exc: BaseException, found: int | None) -> None:
    got = os_error(exc)
    assert (got[0] if got else None) == found


def _wrapped_erofs() -> None:
    try:
        raise OSError(errno.EROFS, "Read-only file system")
    except OSError as inner:
        raise RuntimeError("writing failed") from inner


def test_an_os_error_is_found_through_the_exceptions_chain() -> None:
    with pytest.raises(RuntimeError) as outer:
        _wrapped_erofs()
    assert os_error(outer.value) == (errno.EROFS, None)


@pytest.mark.parametrize(
    ("code", "kind", "what", "remedy"),
    [
        (errno.ENOSPC, "disk-full", "the disk is full under /srv/store", "free space under"),
        (errno.EDQUOT, "disk-full", "the disk is full under /srv/store", "free space under"),
        (errno.EFBIG, "disk-full", "grew past the size this process may write", "ulimit -f"),
        (errno.EROFS, "read-only", "the file system under /srv/store is read-only", "writable"),
        (errno.EACCES, "permission", "this user may not open /srv/store", "give this user access"),
        (errno.EIO, "io", "failed (Input/output error)", "dmesg"),
    ],
    ids=["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EIO"],
)
def test_a_file_fault_says_what_happened_and_what_to_do(
    code: int, kind: str, what: str, remedy: str
) -> None:
    fault = file_fault(OSError(code, os.strerror(code)), STORE)
    assert fault is not None
    assert fault.kind == kind
    assert what in fault.what
    assert remedy in fault.remedy
    assert fault.render().endswith(", then run the same command again")


def test_errors_that_are_no_fault_from_outside_are_left_alone() -> None:
    assert file_fault(FileNotFoundError(errno.ENOENT, "gone"), STORE) is None
    assert outside_fault(ValueError("a bug")) is None
    assert database_fault(psycopg.errors.UniqueViolation("duplicate key"), PG) is None


@pytest.mark.parametrize(
    ("error", "kind", "what"),
    [
        (
            psycopg.errors.InsufficientPrivilege("permission denied for table transfers"),
            "permission",
            "this login ('batch') cannot write the ledger on "
            "postgresql+psycopg://batch:***@db.example:5432/ledger "
            "(permission denied for table transfers)",
        ),
        (
            psycopg.errors.DiskFull("could not extend file"),
            "disk-full",
            "the database server ran out of disk space",
        ),
        (
            psycopg.errors.ReadOnlySqlTransaction(
                "cannot execute INSERT in a read-only transaction"
            ),
            "read-only",
            "is read-only",
        ),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            "lost",
            "the connection to postgresql+psycopg://batch:***@db.example:5432/ledger was lost",
        ),
        (psycopg.OperationalError("the connection is closed"), "lost", "was lost"),
    ],
    ids=["permission", "disk-full", "read-only", "terminated", "closed"],
)
def test_a_postgresql_fault_is_told_by_its_sqlstate(
    error: psycopg.Error, kind: str, what: str
) -> None:
    wrapped = OperationalError("INSERT INTO transfers ...", {}, error)
    fault = database_fault(wrapped, PG)
    assert fault is not None
    assert fault.kind == kind
    assert what in fault.what
    assert "secret" not in fault.render()


def test_a_refused_read_says_read_and_names_the_table() -> None:
    denied = psycopg.errors.InsufficientPrivilege("permission denied for table runs")
    fault = database_fault(OperationalError("SELECT max(runs.run_id) FROM runs", {}, denied), PG)
    assert fault is not None
    assert fault.what.startswith("this login ('batch') may not read table runs on ")
    assert "run it as the batch role" in fault.remedy


def sqlite_error(tmp_path: Path, *statements: str, db: str = "x.db") -> sqlite3.Error:
    """The error the last of `statements` raises on a SQLite file in tmp_path."""
    conn = sqlite3.connect(tmp_path / db, isolation_level=None)
    try:
        for sql in statements[:-1]:
            conn.execute(sql)
        with pytest.raises(sqlite3.Error) as raised:
            conn.execute(statements[-1])
        return raised.value
    finally:
        conn.close()


def test_sqlite_faults_are_told_by_their_result_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    full = sqlite_error(
        tmp_path,
        "CREATE TABLE t (x)",
        "PRAGMA max_page_count = 2",
        "INSERT INTO t SELECT zeroblob(100000)",
    )
    fault = database_fault(full, url)
    assert fault is not None
    assert (fault.kind, fault.remedy) == ("disk-full", f"free space under {tmp_path}")
    other = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        locked = sqlite_error(tmp_path, "PRAGMA busy_timeout = 0", "BEGIN IMMEDIATE")
    finally:
        other.close()
    fault = database_fault(locked, url)
    assert fault is not None
    assert fault.kind == "locked"
    assert f"fuser {tmp_path / 'x.db'}" in fault.remedy
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    damaged = database_fault(sqlite_error(tmp_path, "SELECT * FROM t", db="junk.db"), url)
    assert damaged is not None
    assert damaged.kind == "damaged"


def test_a_read_only_sqlite_uri_is_named_by_its_file(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").close()
    conn = sqlite3.connect(f"file:{tmp_path / 'x.db'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as raised:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    fault = database_fault(raised.value, f"sqlite:///file:{tmp_path / 'x.db'}?mode=ro&uri=true")
    assert isinstance(fault, DatabaseFault)
    assert fault.kind == "read-only"
    assert fault.what.startswith(f"the SQLite file {tmp_path / 'x.db'} cannot be written")


def _stopped_by_sigterm() -> None:
    with stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


def test_a_stop_signal_raises_stopped_and_the_handlers_are_put_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Stopped) as stopped:
        _stopped_by_sigterm()
    assert (stopped.value.name, stopped.value.exit_code) == ("SIGTERM", 143)
    assert isinstance(stopped.value, KeyboardInterrupt)  # `except Exception` lets it by
    assert {s: signal.getsignal(s) for s in before} == before
