"""Locks: one holder at a time of a named lock on a database, across processes.

PostgreSQL, two kinds:

* a table lock (`Lock.pg_table`, the nightly run's): `LOCK TABLE <table> IN SHARE
  UPDATE EXCLUSIVE MODE` in a transaction the lock's own connection keeps open
  for the block.  PostgreSQL grants that mode only to a role that may UPDATE,
  DELETE or TRUNCATE the table, so no login that merely connects (an auditor's)
  can take it and block the night.  The mode conflicts with itself, with VACUUM,
  ANALYZE, CREATE INDEX and ALTER TABLE, and not with reads or row writes, so the
  run's own statements on other connections never wait for it.
* a session advisory lock (`pg_try_advisory_lock` / `pg_advisory_lock`) on the
  connection given (the ledger's, held for a post).  Any login can take an
  advisory key; a waiter that finds the key held by a session whose login cannot
  write the ledger refuses at once and names it instead of waiting forever.

A lock that is busy names who holds it: the caller's `holder()` (which run), and on
PostgreSQL the session from pg_locks and pg_stat_activity (login, pid, application,
since when).

SQLite has no such locks: a lock that needs one there takes an exclusive `flock` on
a file beside the database file (its real path, symlinks resolved, so two names for
one file share one lock); a lock that does not (the ledger's, where every
transaction is BEGIN IMMEDIATE) takes nothing.  All of them vanish with the process,
so a killed holder never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ledgers.db import (
    APPLICATION,
    LEDGER_LOCK_KEY,
    RUN_LOCK_KEY,
    SCHEMA_LOCK_KEY,
    DatabaseFault,
    LedgerError,
    display_url,
    sqlite_file,
)

# SQLSTATE lock_not_available: LOCK TABLE ... NOWAIT found the table locked.
_LOCK_NOT_AVAILABLE = "55P03"
# The modes that conflict with SHARE UPDATE EXCLUSIVE (PostgreSQL manual, "Table-Level Locks").
_CONFLICTING = (
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


@dataclass(frozen=True)
class Lock:
    """A named lock: its PostgreSQL advisory key, or the table whose lock it is, and, if
    SQLite needs one, its file's suffix."""

    name: str
    key: int
    sqlite_suffix: str | None = None
    pg_table: str | None = None


# Upgrading the schema, for one transaction (`ledgers.db.init_schema`).
SCHEMA_LOCK = Lock("schema", SCHEMA_LOCK_KEY)
# Posting: on SQLite every ledger transaction is BEGIN IMMEDIATE, which serialises writers.
LEDGER_LOCK = Lock("ledger", LEDGER_LOCK_KEY)
# One nightly run at a time per database: on PostgreSQL the runs table, which only a
# role that records runs may lock; on SQLite, <database file>.run-lock.
RUN_LOCK = Lock("nightly run", RUN_LOCK_KEY, ".run-lock", pg_table="runs")


class LockBusy(LedgerError):
    """Another holder has the lock and the caller would not (or should not) wait."""

    def __init__(
        self, lock: Lock, holder: str, *, session: str | None = None, fix: str = ""
    ) -> None:
        self.lock = lock
        self.holder = holder
        self.session = session
        extra = f"; its session: {session}" if session and session != holder else ""
        super().__init__(f"the {lock.name} lock is held by {holder}{extra}", fix=fix)


@dataclass(frozen=True)
class Session:
    """A PostgreSQL session that holds a lock, as pg_stat_activity shows it to us."""

    pid: int
    login: str
    application: str
    since: str | None
    can_write: bool | None  # may its login write the ledger? None: no ledger yet

    @property
    def ours(self) -> bool:
        """Whether it is a disburse process (by the application name every engine sets)."""
        return self.application.startswith(APPLICATION)

    def describe(self) -> str:
        """login 'x' (pid N, application 'a', connected since T)."""
        parts = [f"pid {self.pid}"]
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.since:
            parts.append(f"connected since {self.since}")
        return f"login {self.login!r} ({', '.join(parts)})"


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

    Free: taken at once.  Held by another: with `wait`, `waiting(who)` is told and
    the call blocks until it is free; without, `LockBusy` names the holder
    (`holder()`, asked only then, on another connection if it reads the database,
    and on PostgreSQL its session).  A table lock (`Lock.pg_table`) keeps a
    transaction open on `conn` for the block: give it a connection of its own.
    """
    if conn.dialect.name == "postgresql":
        take = _table_lock if lock.pg_table is not None else _advisory
        with take(conn, lock, wait=wait, holder=holder, waiting=waiting):
            yield
        return
    database = sqlite_file(conn.engine.url.database, uri=bool(conn.engine.url.query.get("uri")))
    if lock.sqlite_suffix is None or database is None:
        yield
        return
    with _flock(Path(f"{database.resolve()}{lock.sqlite_suffix}"), lock, wait, holder, waiting):
        yield


def _holding_session(conn: Connection, lock: Lock, *, rollback: bool = True) -> Session | None:
    """The other session that holds `lock` (the oldest, if several), from pg_locks; the
    read's transaction ended if `rollback`."""
    if lock.pg_table is not None:
        which = (
            "l.locktype = 'relation' AND l.relation = to_regclass(:table) AND l.mode = ANY(:modes)"
        )
        params: dict[str, Any] = {"table": lock.pg_table, "modes": list(_CONFLICTING)}
    else:
        which = (
            "l.locktype = 'advisory' AND l.objsubid = 1 "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
        )
        params = {"hi": lock.key >> 32, "lo": lock.key & 0xFFFFFFFF}
    sql = text(
        "SELECT a.pid, a.usename, coalesce(a.application_name, '') AS application, "
        "to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS') AS since, "
        "CASE WHEN to_regclass('transfers') IS NULL THEN NULL "
        "ELSE has_table_privilege(a.usesysid, 'transfers', 'INSERT') END AS can_write "
        "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.granted AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND {which} ORDER BY a.backend_start LIMIT 1"
    )
    row = conn.execute(sql, params).first()
    if rollback:
        conn.rollback()
    if row is None:
        return None
    return Session(int(row.pid), str(row.usename), row.application, row.since, row.can_write)


def _busy(lock: Lock, holder: Callable[[], str], session: Session | None) -> LockBusy:
    """The refusal: the run (or poster) `holder()` names if the session is ours, else the
    session alone."""
    if session is None:
        return LockBusy(lock, holder())
    if session.ours:
        return LockBusy(lock, holder(), session=session.describe())
    return LockBusy(lock, session.describe())


def _who(busy: LockBusy) -> str:
    """The holder and, if known, its session, for a `waiting` notice."""
    return busy.holder if busy.session is None else f"{busy.holder}; its session: {busy.session}"


def _foreign(lock: Lock, session: Session) -> LockBusy:
    """The refusal for a session that holds an advisory key but cannot write the ledger."""
    who = session.describe()
    return LockBusy(
        lock,
        f"{who}, which cannot write the ledger: not a disburse process",
        fix=f"ask whoever uses login {session.login!r} to release it (SELECT "
        f"pg_advisory_unlock_all()), or have an administrator end that session (SELECT "
        f"pg_terminate_backend({session.pid})); then run the same command again",
    )


@contextmanager
def _table_lock(
    conn: Connection,
    lock: Lock,
    *,
    wait: bool,
    holder: Callable[[], str],
    waiting: Callable[[str], None] | None,
) -> Iterator[None]:
    statement = f"LOCK TABLE {lock.pg_table} IN SHARE UPDATE EXCLUSIVE MODE"
    # The lock lives as long as this transaction: a server-side timeout for idle
    # transactions or lock waits must not end it, or end the wait, behind our back.
    conn.exec_driver_sql("SET idle_in_transaction_session_timeout = 0")
    conn.exec_driver_sql("SET lock_timeout = 0")
    conn.commit()
    try:
        conn.exec_driver_sql(f"{statement} NOWAIT")
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        conn.rollback()
        busy = _busy(lock, holder, _holding_session(conn, lock))
        if not wait:
            raise busy from None
        if waiting is not None:
            waiting(_who(busy))
        conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        _release(conn, None)


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
        session = _holding_session(conn, lock)
        if session is not None and session.can_write is False:
            raise _foreign(lock, session)
        busy = _busy(lock, holder, session)
        if not wait:
            raise busy
        if waiting is not None:
            waiting(_who(busy))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock.key})
        conn.commit()
    try:
        yield
    finally:
        _release(conn, lock.key)


def hold_for_transaction(conn: Connection, lock: Lock) -> None:
    """PostgreSQL: take advisory `lock` until `conn`'s transaction ends, waiting for another
    holder, but refusing at once (LockBusy) one whose login cannot write the ledger."""
    take = "SELECT pg_try_advisory_xact_lock(:k)"
    if conn.execute(text(take), {"k": lock.key}).scalar_one():
        return
    session = _holding_session(conn, lock, rollback=False)
    if session is not None and session.can_write is False:
        raise _foreign(lock, session)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock.key})


def _release(conn: Connection, key: int | None) -> None:
    """End the lock's transaction (a table lock) or unlock its key (an advisory lock).

    Never raises: after a lost connection the server has released the lock already,
    and the error that ended the block is the one to report, not this one."""
    try:
        if conn.in_transaction():
            conn.rollback()
        if key is not None:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    except Exception:
        # A connection broken mid-run: closing its session releases the lock.
        conn.invalidate()


def session_alive(conn: Connection, lock: Lock) -> None:
    """Raise a DatabaseFault if the connection that holds `lock` was lost (and the lock
    with it): checked before a step that only the lock's holder may take."""
    if conn.dialect.name != "postgresql":
        return
    try:
        if conn.invalidated:
            raise ConnectionError("invalidated")
        conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        url = display_url(conn.engine.url.render_as_string(hide_password=False))
        raise DatabaseFault(
            "lost",
            f"the connection that held the {lock.name} lock on {url} was lost",
            "check that the PostgreSQL server is up and reachable",
        ) from exc


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


__all__ = [
    "LEDGER_LOCK",
    "RUN_LOCK",
    "SCHEMA_LOCK",
    "Lock",
    "LockBusy",
    "Session",
    "hold",
    "hold_for_transaction",
    "session_alive",
]
