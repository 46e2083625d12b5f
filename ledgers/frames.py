"""Moving Polars frames in and out of the database in bulk, the same on both backends.

PostgreSQL: COPY (query) TO STDOUT and COPY ... FROM STDIN as CSV, parsed and
written by Polars (no Python loop over rows).  SQLite: the sqlite3 module's
cursor, which is already in process.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Connection
from sqlalchemy.sql import Executable

COPY_BLOCK = 1 << 20
T = TypeVar("T")


def compile_sql(conn: Connection, stmt: Executable) -> str:
    """`stmt` as SQL text with its parameters inlined (they are never user free text)."""
    return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]


def read_frame(
    conn: Connection, stmt: Executable | str, schema: Mapping[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """The rows of a query as a frame with exactly `schema` (names in query order)."""
    sql = stmt if isinstance(stmt, str) else compile_sql(conn, stmt)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        buf = io.BytesIO()
        # NULL as \N, so that an empty string ("" in CSV) and a null come back apart.
        copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT csv, NULL '\\N')"
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:  # type: ignore[union-attr]
            for block in copy:
                buf.write(block)
        if buf.tell() == 0:
            return pl.DataFrame(schema=dict(schema))
        buf.seek(0)
        return pl.read_csv(
            buf,
            has_header=False,
            new_columns=list(schema),
            schema=dict(schema),
            null_values="\\N",
            empty_string_is_null=False,
            infer_schema=False,
        )
    rows = conn.exec_driver_sql(sql).all()
    return pl.DataFrame(rows, schema=dict(schema), orient="row")


def write_frame(conn: Connection, table: str, frame: pl.DataFrame) -> int:
    """Append every row of `frame` to `table` (columns by name): COPY or executemany."""
    if frame.height == 0:
        return 0
    columns = frame.columns
    if conn.dialect.name == "postgresql":
        buf = io.BytesIO()
        frame.write_csv(buf, include_header=False)
        data = buf.getbuffer()
        raw = conn.connection.driver_connection
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            for start in range(0, len(data), COPY_BLOCK):
                copy.write(data[start : start + COPY_BLOCK])
        return frame.height
    return executemany(
        conn,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        frame.iter_rows(),
    )


def executemany(conn: Connection, sql: str, rows: Any) -> int:
    """Run `sql` for every row on the connection's own DBAPI cursor; the rows changed (SQLite)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(sql, rows)
        return int(cur.rowcount)
    finally:
        cur.close()


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` ahead; its exceptions surface here.

    Overlaps Python work (hashing, CSV) with the database working on the previous
    item: Polars, psycopg and sqlite3 release the GIL while they wait or compute.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(("error", exc))

    worker = threading.Thread(target=produce, name="ledger-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            tag, value = q.get()
            if tag == "done":
                return
            if tag == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
