"""Advisory locks: one holder at a time of a named lock on a database, across processes.

PostgreSQL: a session advisory lock (`pg_try_advisory_lock` / `pg_advisory_lock`)
on the connection given, held until the block ends.  SQLite has no advisory
locks: a lock that needs one there takes an exclusive `flock` on a file beside
the database file; a lock that does not (the ledger's, where every transaction
is BEGIN IMMEDIATE) takes nothing.  Both vanish with the process, so a killed
holder never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from ledgers.db import LEDGER_LOCK_KEY, RUN_LOCK_KEY, LedgerError


@dataclass(frozen=True)
class Lock:
    """A named lock: its PostgreSQL advisory key and, if SQLite needs one, its file's suffix."""

    name: str
    key: int
    sqlite_suffix: str | None = None


# Posting: on SQLite every ledger transaction is BEGIN IMMEDIATE, which serialises writers.
LEDGER_LOCK = Lock("ledger", LEDGER_LOCK_KEY)
# One nightly run at a time per database: on SQLite, <database file>.run-lock.
RUN_LOCK = Lock("nightly run", RUN_LOCK_KEY, ".run-lock")


class LockBusy(LedgerError):
    """Another holder has the lock and the caller would not wait."""

    def __init__(self, lock: Lock, holder: str) -> None:
        self.lock = lock
        self.holder = holder
        super().__init__(f"the {lock.name} lock is held by {holder}")


def _nobody() -> str:
    return "another process"


@contextmanager
def hold(
    conn: Connection,
    lock: Lock,
    *,
    wait: bool = True,
    holder: Callable[[], str] = _nobody,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold `lock` for the block, on `conn`'s database.

    Free: taken at once.  Held by another: with `wait`, `waiting(holder())` is
    told and the call blocks until it is free; without, `LockBusy` names
    `holder()` (asked only then, on another connection if it reads the database).
    """
    if conn.dialect.name == "postgresql":
        with _advisory(conn, lock, wait=wait, holder=holder, waiting=waiting):
            yield
        return
    database = conn.engine.url.database
    if lock.sqlite_suffix is None or not database or database == ":memory:":
        yield
        return
    with _flock(Path(f"{database}{lock.sqlite_suffix}"), lock, wait, holder, waiting):
        yield


@contextmanager
def _advisory(
    conn: Connection,
    lock: Lock,
    *,
    wait: bool,
    holder: Callable[[], str],
    waiting: Callable[[str], None] | None,
) -> Iterator[None]:
    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock.key}).scalar_one()
    conn.commit()
    if not got:
        if not wait:
            raise LockBusy(lock, holder())
        if waiting is not None:
            waiting(holder())
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock.key})
        conn.commit()
    try:
        yield
    finally:
        try:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock.key})
            conn.commit()
        except Exception:
            # A connection broken mid-COPY: closing its session releases the lock.
            conn.invalidate()


@contextmanager
def _flock(
    path: Path,
    lock: Lock,
    wait: bool,
    holder: Callable[[], str],
    waiting: Callable[[str], None] | None,
) -> Iterator[None]:
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockBusy(lock, holder()) from None
            if waiting is not None:
                waiting(holder())
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


__all__ = ["LEDGER_LOCK", "RUN_LOCK", "Lock", "LockBusy", "hold"]
