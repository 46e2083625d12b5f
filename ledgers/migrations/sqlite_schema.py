"""SQLite: a table's stored CREATE statement rewritten in place, for a change every
stored row already satisfies (a widened CHECK, a column's declared type).

SQLite cannot alter a constraint or a type, and rebuilding the table would copy the
whole ledger and drop its triggers and views.  Its documentation allows editing
`sqlite_master` instead (writable_schema), provided the schema version is raised so
that every connection reads the schema again; an integrity check follows.
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def table_sql(bind: Connection, table: str) -> str:
    """The stored CREATE TABLE statement of `table`."""
    sql: str = bind.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar_one()
    return sql


def rewrite_table_sql(bind: Connection, table: str, new: str, what: str) -> None:
    """Store `new` as `table`'s CREATE statement; `what` names the change in an error."""
    version = int(bind.execute(text("PRAGMA schema_version")).scalar_one())
    bind.execute(text("PRAGMA writable_schema = ON"))
    bind.execute(
        text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
        {"sql": new, "t": table},
    )
    bind.execute(text(f"PRAGMA schema_version = {version + 1}"))
    bind.execute(text("PRAGMA writable_schema = OFF"))
    result = bind.execute(text("PRAGMA integrity_check")).scalar_one()
    if result != "ok":
        raise RuntimeError(f"integrity check after {what}: {result}")
