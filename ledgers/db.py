"""Connecting to the database: SQLite file by default, PostgreSQL through psycopg 3.

The schema is created and upgraded by the Alembic migrations shipped inside the
package (`ledgers/migrations/`), run from `init_schema`: no alembic.ini needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from common.errors import DisburseError
from ledgers.schema import AUDIT_VIEWS, UNMASKED_VIEWS, Base

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision that matches the tables `Base.metadata.create_all` made before the
# ledger existed: such a database is stamped with it, then upgraded.
BASELINE_REVISION = "0001"
DEFAULT_ROLE_PREFIX = "disburse"
# pg_advisory_lock keys (any 64-bit number unique to disburse; "DSBRS" in ASCII, then a slot).
SCHEMA_LOCK_KEY = 0x4453425253_01
LEDGER_LOCK_KEY = 0x4453425253_02
RUN_LOCK_KEY = 0x4453425253_03


class LedgerError(DisburseError):
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
        event.listen(engine, "begin", _sqlite_begin)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        fix = "check that the database server is running and the URL is right"
        if engine.dialect.name == "sqlite":
            folder = Path(engine.url.database or ".").parent
            fix = (
                f"the folder {str(folder)!r} does not exist: create it or give another path"
                if not folder.is_dir()
                else "check that the file is a SQLite database you may write to"
            )
        raise LedgerError(f"cannot open {display_url(url)}: {reason}\n  fix: {fix}") from None
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
    # Let SQLAlchemy, not the sqlite3 module, say when a transaction begins: DDL
    # then runs inside transactions too (a migration is all or nothing), and the
    # ledger can ask for BEGIN IMMEDIATE (see `_sqlite_begin`).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # `conn.execution_options(sqlite_begin="IMMEDIATE")` takes the write lock at
    # BEGIN, so a writer reads and writes under one lock (SQLite's "SELECT ... FOR UPDATE").
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def init_schema(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to the newest migration (safe to run any number of times).

    `revision` stops at an older one (for tests of the upgrade path).
    """
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes initialising one database at once: the second waits.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        cfg = _alembic_config(conn)
        tables = set(inspect(conn).get_table_names())
        if "runs" in tables and "alembic_version" not in tables:
            if "transfers" in tables:
                raise LedgerError(
                    "the database has ledger tables but no record of its migrations\n"
                    "  fix: restore the alembic_version table from a backup, or start a new database"
                )
            # Made by create_all before migrations existed: it is the baseline.
            command.stamp(cfg, BASELINE_REVISION)
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None if it has no schema yet."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        return rev


def require_ledger(conn: Connection) -> None:
    """Raise a LedgerError with the fix if the database has no ledger tables yet."""
    if not inspect(conn).has_table("transfers"):
        raise LedgerError(
            f"{display_url(conn.engine.url.render_as_string(hide_password=False))} has no ledger yet\n"
            "  fix: run `disburse db init --db URL` first (or post a run into it)"
        )


@dataclass(frozen=True)
class Roles:
    """The PostgreSQL roles `disburse db init` sets up (all NOLOGIN: grant them to logins).

    * `owner` owns every table, view and function of the ledger: only it (and
      superusers) may alter or drop them or disable their triggers;
    * `batch` runs the nightly batch: INSERT and SELECT on the ledger tables, never
      UPDATE, DELETE or TRUNCATE, and the writes the run records need;
    * `auditor` reads the audit views, personal data masked, and nothing else;
    * `unmasked` reads the audit views, their `_unmasked` twins and the ledger's
      tables (to run `audit verify` and the `ledger` commands): granted explicitly
      to whoever may see identity numbers whole.
    """

    owner: str
    batch: str
    auditor: str
    unmasked: str

    @classmethod
    def named(cls, prefix: str = DEFAULT_ROLE_PREFIX) -> Roles:
        """The four roles named <prefix>_owner, _batch, _auditor and _auditor_unmasked."""
        return cls(
            f"{prefix}_owner", f"{prefix}_batch", f"{prefix}_auditor", f"{prefix}_auditor_unmasked"
        )

    def all(self) -> tuple[str, ...]:
        """The four names, owner first."""
        return (self.owner, self.batch, self.auditor, self.unmasked)

    def to_json(self) -> dict[str, str]:
        """As plain data."""
        return {
            "owner": self.owner,
            "batch": self.batch,
            "auditor": self.auditor,
            "unmasked": self.unmasked,
        }


@dataclass(frozen=True)
class SetupReport:
    """What `setup_database` did: the schema revision and, on PostgreSQL, the roles."""

    url: str
    dialect: str
    revision: str | None
    roles: Roles | None
    views: tuple[str, ...]
    unmasked_views: tuple[str, ...]

    @property
    def auditor_role(self) -> str | None:
        """The role that reads the masked audit views (None on SQLite)."""
        return self.roles.auditor if self.roles else None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "url": self.url,
            "dialect": self.dialect,
            "revision": self.revision,
            "auditor_role": self.auditor_role,
            "roles": self.roles.to_json() if self.roles else None,
            "views": list(self.views),
            "unmasked_views": list(self.unmasked_views),
        }


def setup_database(engine: Engine, *, roles: Roles | None = None) -> SetupReport:
    """Create or upgrade the schema and, on PostgreSQL, the roles (`Roles`, named
    disburse_* unless given): safe to run any number of times."""
    init_schema(engine)
    granted: Roles | None = None
    if engine.dialect.name == "postgresql":
        granted = roles or Roles.named()
        grant_roles(engine, granted)
    return SetupReport(
        url=display_url(engine.url.render_as_string(hide_password=False)),
        dialect=engine.dialect.name,
        revision=schema_revision(engine),
        roles=granted,
        views=AUDIT_VIEWS,
        unmasked_views=UNMASKED_VIEWS,
    )


# What the batch may do to each of its tables besides SELECT.  The ledger tables get
# INSERT only: an entry is never changed or removed, a correction is a new transfer.
BATCH_WRITES = {
    "transfers": "INSERT",
    "entitlement_keys": "INSERT",
    "runs": "INSERT, UPDATE",  # a run's state moves on
    "source_snapshots": "INSERT",
    "policy_snapshots": "INSERT",
    "quarantine": "INSERT",
    "holdings_snapshots": "INSERT, DELETE",  # a cache: the newest two are kept
}


# PostgreSQL's SQLSTATE for a statement the login's roles do not allow.
INSUFFICIENT_PRIVILEGE = "42501"


@contextmanager
def privileged(what: str, fix: str) -> Iterator[None]:
    """Turn PostgreSQL's refusal of a statement for lack of privilege into a LedgerError
    saying what this login may not do (`what`) and which role may (`fix`)."""
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        # Through SQLAlchemy the driver's error is `orig`; COPY on the raw connection raises it.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if getattr(orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        reason = str(orig).strip().splitlines()[0]
        raise LedgerError(f"this login may not {what}: {reason}", fix=fix) from None


READ_FIX = (
    "read the ledger as a login holding the unmasked-reader role (disburse_auditor_unmasked), "
    'or query the audit_* views as the auditor role (see ledgers/README.md, "Roles")'
)


# What the unmasked reader may read besides the views: what verify and the ledger commands read.
LEDGER_READS = ("transfers", "entitlement_keys", "runs", "holdings_snapshots")


def grant_roles(engine: Engine, roles: Roles) -> None:
    """Create the roles if needed (PostgreSQL), give the owner role the ledger's objects,
    and grant each role what it may do and nothing else (see `Roles`)."""
    for role in roles.all():
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise LedgerError(
                f"{role!r} is not a plain role name\n"
                "  fix: use lower-case letters, digits and underscores, e.g. disburse_auditor"
            )
    try:
        with engine.begin() as conn:
            # One init at a time (roles and ownership are changed below).
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            for role in roles.all():
                conn.execute(
                    text(
                        "DO $$ BEGIN "
                        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                        f"CREATE ROLE {role} NOLOGIN; END IF; "
                        # Roles are per cluster: another database's init may create it first.
                        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                    )
                )
            _give_to_owner(conn, roles.owner)
            _grant(conn, roles)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise LedgerError(
            f"cannot set up the database roles ({', '.join(roles.all())}): {reason}",
            fix="run `disburse db init` as a superuser or a user with CREATEROLE that owns "
            'the tables (see ledgers/README.md, "Roles")',
        ) from None


def _give_to_owner(conn: Connection, owner: str) -> None:
    """Every table, view and function of the ledger owned by `owner`, not by the login
    that ran the migrations (which may be the one that runs the batch)."""
    superuser = conn.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar_one()
    member = conn.execute(text("SELECT pg_has_role(current_user, :r, 'MEMBER')"), {"r": owner})
    if not superuser and not member.scalar_one():
        # To hand objects to a role one must be a member of it (and stay one, to migrate).
        conn.execute(text(f"GRANT {owner} TO CURRENT_USER"))
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    present = {
        name
        for (name,) in conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = :s UNION ALL "
                "SELECT viewname FROM pg_views WHERE schemaname = :s"
            ),
            {"s": schema},
        )
    }
    tables = [t for t in (*Base.metadata.tables, "alembic_version") if t in present]
    for table in tables:
        conn.execute(text(f"ALTER TABLE {_quote(table)} OWNER TO {owner}"))
    for view in (*UNMASKED_VIEWS, *AUDIT_VIEWS):
        if view in present:
            conn.execute(text(f"ALTER VIEW {view} OWNER TO {owner}"))
    conn.execute(
        text(
            "DO $$ BEGIN "
            "IF EXISTS (SELECT FROM pg_proc WHERE proname = 'ledger_refuse_change') THEN "
            f"ALTER FUNCTION ledger_refuse_change() OWNER TO {owner}; END IF; END $$"
        )
    )


def _grant(conn: Connection, roles: Roles) -> None:
    """Each role's privileges, after revoking whatever it (or anyone) held before."""
    schema = _quote(conn.execute(text("SELECT current_schema()")).scalar_one())
    database = _quote(conn.execute(text("SELECT current_database()")).scalar_one())
    # Nobody but the owner creates objects in the ledger's schema.
    conn.execute(text(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"))
    for role in (roles.batch, roles.auditor, roles.unmasked):
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}"))
        conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}"))
        conn.execute(text(f"REVOKE CREATE ON SCHEMA {schema} FROM {role}"))
        conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {role}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
    # The unmasked reader: the ledger itself too, so that it can run `disburse audit verify`
    # and the `ledger` commands (which read the tables, and mask unless --unmask).
    conn.execute(text(f"GRANT SELECT ON {', '.join(LEDGER_READS)} TO {roles.unmasked}"))
    # The batch: posting checks its chunks in temporary tables.
    conn.execute(text(f"GRANT TEMPORARY ON DATABASE {database} TO {roles.batch}"))
    for table, writes in BATCH_WRITES.items():
        conn.execute(text(f"GRANT SELECT, {writes} ON {table} TO {roles.batch}"))
    conn.execute(text(f"GRANT SELECT ON alembic_version TO {roles.batch}"))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {roles.batch}"))
    conn.execute(text(f"GRANT SELECT ON {', '.join(AUDIT_VIEWS)} TO {roles.auditor}"))
    readable = ", ".join((*AUDIT_VIEWS, *UNMASKED_VIEWS))
    conn.execute(text(f"GRANT SELECT ON {readable} TO {roles.unmasked}"))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


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


__all__ = [
    "LedgerError",
    "Roles",
    "SetupReport",
    "bulk_insert",
    "display_url",
    "grant_roles",
    "init_schema",
    "make_engine",
    "open_engine",
    "privileged",
    "require_ledger",
    "schema_revision",
    "setup_database",
]
