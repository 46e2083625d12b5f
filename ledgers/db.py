"""Connecting to the database: SQLite file by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from ledgers.schema import Base


class LedgerError(Exception):
    """A problem with the database a person can act on (unreachable, wrong URL)."""


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as psycopg 3 URLs; leave others alone."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str) -> Engine:
    """An engine for `url`, checked to connect; SQLite gets WAL and enforced foreign keys."""
    url = normalise_url(url)
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise LedgerError(
            f"cannot use database URL {display_url(url)!r}: {exc}\n"
            "  fix: use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise LedgerError(
            f"cannot connect to {display_url(url)}: {reason}\n"
            "  fix: check that the database server is running and the URL is right"
        ) from None
    return engine


@contextmanager
def open_engine(url: str, *, init: bool = False) -> Iterator[Engine]:
    """An engine for the length of a command (schema created if `init`), disposed afterwards."""
    engine = make_engine(url)
    try:
        if init:
            init_schema(engine)
        yield engine
    finally:
        engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def init_schema(engine: Engine) -> None:
    """Create every table that does not exist yet."""
    Base.metadata.create_all(engine)


def bulk_insert(
    conn: Any, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert many rows fast: COPY on PostgreSQL, one executemany on SQLite."""
    rows = list(rows)
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        cols = ", ".join(columns)
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)
    conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)


__all__ = ["LedgerError", "bulk_insert", "display_url", "init_schema", "make_engine", "open_engine"]
