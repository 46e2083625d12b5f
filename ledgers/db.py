"""Connecting to the database: SQLite file by default, PostgreSQL through psycopg 3.

The schema is created and upgraded by the Alembic migrations shipped inside the
package (`ledgers/migrations/`), run from `init_schema`: no alembic.ini needed.
"""

from __future__ import annotations

import getpass
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
# pg_stat_activity.application_name of every session disburse opens: who holds a lock.
APPLICATION = "disburse"
# pg_advisory_lock keys (any 64-bit number unique to disburse; "DSBRS" in ASCII, then a slot).
SCHEMA_LOCK_KEY = 0x4453425253_01
LEDGER_LOCK_KEY = 0x4453425253_02
RUN_LOCK_KEY = 0x4453425253_03
# PostgreSQL: how long a migration waits for a table's lock.  A nightly run holds its
# lock on `runs` for hours (`ledgers.locks.RUN_LOCK`): a migration of `runs` queued
# behind it would queue the run's own statements behind itself, a deadlock PostgreSQL
# cannot see; the timeout breaks it, and the upgrade is refused with a message.
MIGRATION_LOCK_TIMEOUT_S = 60
# SQLite: how long a writer waits for another's lock before it gives up.
BUSY_ENV = "DISBURSE_SQLITE_BUSY_SECONDS"
DEFAULT_BUSY_SECONDS = 30.0


class LedgerError(DisburseError):
    """A problem with the database a person can act on (unreachable, wrong URL)."""


class DatabaseFault(LedgerError):
    """The database refused or failed for a reason outside the engine: a login without the
    privilege, a full disk, a read-only database, a lock held too long, a lost connection.

    `what` says what happened, `remedy` what to do before running the same command
    again (nothing half-written stays: every write is a transaction); `kind` names
    the fault for code (`FAULT_KINDS`)."""

    def __init__(self, kind: str, what: str, remedy: str) -> None:
        self.kind = kind
        self.what = what
        self.remedy = remedy
        super().__init__(what, fix=f"{remedy}, then run the same command again")


FAULT_KINDS = ("permission", "disk-full", "read-only", "locked", "lost", "io", "damaged")
# PostgreSQL SQLSTATE classes and codes, from Appendix A of its manual.
_PG_LOST_CLASSES = ("08", "57")  # connection exception; operator intervention (57P01 ...)
_PG_DISK_FULL = ("53100", "53400")  # disk_full, configuration_limit_exceeded (temp_file_limit)
_PG_PERMISSION = "42501"
_PG_READ_ONLY = "25006"
_PG_CANCELED = "57014"  # query_canceled: statement_timeout, or pg_cancel_backend
_PG_LOCK_TIMEOUT = "55P03"  # lock_not_available: lock_timeout ran out
# The first word of a statement that writes: a login refused it cannot write the ledger.
_WRITES = ("INSERT", "UPDATE", "DELETE", "COPY", "CREATE", "ALTER", "DROP", "LOCK", "GRANT")
_LAST_URL: list[str] = []  # the URL of the engine made last in this process


def database_fault(
    exc: BaseException, url: str | None = None, *, writing: bool = False
) -> DatabaseFault | None:
    """`exc` (a SQLAlchemy, psycopg or sqlite3 error, or one caused by such) as the fault a
    person reads, naming the database `url` (default: the engine made last); None if it
    is no fault from outside (a constraint, a bug).  `writing`: the caller was writing
    (a refused login then "cannot write the ledger", whatever statement it failed on)."""
    if isinstance(exc, DatabaseFault):
        return exc
    url = url or (_LAST_URL[-1] if _LAST_URL else None)
    for cause in _causes(exc):
        if isinstance(cause, sqlite3.Error):
            return _sqlite_fault(cause, url)
        if type(cause).__module__.startswith("psycopg"):
            return _pg_fault(cause, url, getattr(exc, "statement", None), writing)
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the DBAPI error it wraps, and what caused them, outermost first."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pg_fault(
    exc: BaseException, url: str | None, statement: str | None, writing: bool
) -> DatabaseFault | None:
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return None
    where = display_url(url) if url else "the PostgreSQL database"
    state = exc.sqlstate or ""
    reason = _first_line(exc)
    if state == _PG_PERMISSION:
        login = _login(url)
        denied = reason.removeprefix("permission denied for ")
        verb = (statement or "").lstrip().split(" ", 1)[0].upper()
        if writing or verb in _WRITES:
            what = f"this login ({login}) cannot write the ledger on {where} ({reason})"
        elif verb in ("SELECT", "WITH"):
            what = f"this login ({login}) may not read {denied} on {where} (permission denied)"
        else:
            what = f"this login ({login}) may not use {denied} on {where} (permission denied)"
        return DatabaseFault(
            "permission",
            what,
            "run it as the batch role (an auditor's login reads the audit_* views with SQL "
            "instead), or have the database owner grant this login the batch role",
        )
    if state in _PG_DISK_FULL:
        return DatabaseFault(
            "disk-full",
            f"the database server ran out of disk space ({where}: {reason})",
            "free space on the database server",
        )
    if state == _PG_READ_ONLY:
        return DatabaseFault(
            "read-only",
            f"{where} is read-only ({reason}): a standby, or default_transaction_read_only is on",
            "point --db at the primary server, or make the database writable",
        )
    if state == _PG_CANCELED:
        return DatabaseFault(
            "lost",
            f"a statement on {where} was cancelled ({reason})",
            "raise statement_timeout for this login, or find who cancels it",
        )
    lost = state.startswith(_PG_LOST_CLASSES) or (
        isinstance(exc, psycopg.OperationalError) and not state
    )
    if lost:
        return DatabaseFault(
            "lost",
            f"the connection to {where} was lost ({reason})",
            "check that the PostgreSQL server is up and reachable",
        )
    return None


def _sqlite_fault(exc: sqlite3.Error, url: str | None) -> DatabaseFault | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    path = None
    if url and url.startswith("sqlite"):
        parsed = make_url(url)
        path = sqlite_file(parsed.database, uri=bool(parsed.query.get("uri")))
    file = f"the SQLite file {path}" if path else "the SQLite file"
    folder = str(path.parent) if path else "its folder"
    reason = _first_line(exc)
    primary = code & 0xFF  # extended codes keep the primary code in their low byte
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        who = f"fuser {path}" if path else "fuser"
        return DatabaseFault(
            "locked",
            f"{file} stayed locked by another process for more than "
            f"{sqlite_busy_seconds():g} s ({reason})",
            f"find the process that holds it (`{who}`) and let it finish or stop it",
        )
    if primary == sqlite3.SQLITE_FULL:
        return DatabaseFault(
            "disk-full",
            f"the disk holding {file} is full ({reason})",
            f"free space under {folder}",
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return DatabaseFault(
            "read-only",
            f"{file} cannot be written ({reason}): a read-only file, folder or file system",
            f"make {path or 'the file'} and {folder} writable for this user",
        )
    if primary == sqlite3.SQLITE_IOERR:
        return DatabaseFault(
            "io",
            f"reading or writing {file} failed ({reason})",
            f"check the disk under {folder} (free space, `dmesg` for errors)",
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return DatabaseFault(
            "damaged",
            f"{file} is damaged or is not a SQLite database ({reason})",
            "restore it from its backup",
        )
    return None


def sqlite_file(database: str | None, *, uri: bool = False) -> Path | None:
    """The file a SQLite URL's database names (a `file:` URI's path too), or None if it is
    in memory."""
    if not database or database == ":memory:":
        return None
    if uri or database.startswith("file:"):
        path = urlsplit(database).path
        return Path(unquote(path)) if path and path != ":memory:" else None
    return Path(database)


def _login(url: str | None) -> str:
    """The PostgreSQL login of `url`: its user, else libpq's default ($PGUSER, the OS user)."""
    user = None
    if url:
        try:
            user = make_url(url).username
        except ArgumentError:
            user = None
    return repr(user or os.environ.get("PGUSER") or getpass.getuser())


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


def make_engine(url: str, *, remember: bool = True) -> Engine:
    """An engine for `url`, checked to connect; SQLite gets WAL and enforced foreign keys,
    PostgreSQL sessions are named `disburse` (pg_stat_activity.application_name) unless
    the URL names them.  `remember`: the URL a fault without one names (not a scratch
    database's, such as a scenario's)."""
    url = normalise_url(url)
    try:
        args = make_url(url)
        named = args.drivername.startswith("postgresql") and "application_name" in args.query
        pg = args.drivername.startswith("postgresql") and not named
        engine = create_engine(url, connect_args={"application_name": APPLICATION} if pg else {})
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
        fault = database_fault(exc, url)
        if fault is not None and fault.kind not in ("lost", "read-only"):
            raise fault from None
        reason = _first_line(exc.orig) if exc.orig else str(exc)
        fix = "check that the database server is running and the URL is right"
        if engine.dialect.name == "sqlite":
            folder = Path(engine.url.database or ".").parent
            fix = (
                f"the folder {str(folder)!r} does not exist: create it or give another path"
                if not folder.is_dir()
                else "check that the file is a SQLite database you may write to"
            )
        raise LedgerError(f"cannot open {display_url(url)}: {reason}\n  fix: {fix}") from None
    if remember:
        _LAST_URL[:] = [url]
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


def sqlite_busy_seconds() -> float:
    """How long a SQLite writer waits for another's lock before giving up:
    $DISBURSE_SQLITE_BUSY_SECONDS, default 30."""
    raw = os.environ.get(BUSY_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_BUSY_SECONDS
    except ValueError:
        seconds = DEFAULT_BUSY_SECONDS
    return seconds if seconds >= 0 else DEFAULT_BUSY_SECONDS


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, say when a transaction begins: DDL
    # then runs inside transactions too (a migration is all or nothing), and the
    # ledger can ask for BEGIN IMMEDIATE (see `_sqlite_begin`).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # The busy timeout first: switching a fresh file to WAL takes a lock that a
    # second process opening it at the same moment must wait for, not fail on.
    busy = sqlite_busy_seconds()
    cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
    # Two processes switching a fresh file to WAL at once: the loser is told "locked"
    # at once (no busy handler runs for it), so it tries again until the timeout.
    deadline = time.monotonic() + busy
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    cur.execute("PRAGMA foreign_keys=ON")
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
    # Two processes initialising one database at once: the second waits for the
    # first, then finds the schema made.  SQLite: BEGIN IMMEDIATE takes the write
    # lock before the schema is read (a deferred transaction that read first
    # would fail at its first write, at once, whatever the busy timeout).
    try:
        with engine.connect() as bare:
            conn = bare.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    from ledgers.locks import SCHEMA_LOCK, hold_for_transaction

                    hold_for_transaction(conn, SCHEMA_LOCK)
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT_S}s'")
                _migrate(conn, revision)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _PG_LOCK_TIMEOUT:
            raise LedgerError(
                f"the schema could not be upgraded: a table it changes stayed locked for "
                f"{MIGRATION_LOCK_TIMEOUT_S} s by another session (a nightly run in progress?)",
                fix="run the command again once the nightly run has finished; nothing was changed",
            ) from None
        # Every command that upgrades the schema goes on to write: a login refused here
        # (an auditor's) cannot write the ledger, whichever table it was refused first.
        url = engine.url.render_as_string(hide_password=False)
        fault = database_fault(exc, url, writing=True)
        if fault is None:
            raise
        raise fault from exc


def _migrate(conn: Connection, revision: str) -> None:
    """Stamp a pre-migration database with the baseline, then upgrade it to `revision`."""
    from alembic import command

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
    "policy_versions": "INSERT",  # like the transfers that name them
    "counted_members": "INSERT",  # like the keys: a member once counted stays counted
    "runs": "INSERT, UPDATE",  # a run's state moves on
    "source_snapshots": "INSERT",
    "policy_snapshots": "INSERT",
    "quarantine": "INSERT",
    "holdings_snapshots": "INSERT, DELETE",  # a cache: the newest two are kept
    # From ledger to money: every state is a new row.
    "notices": "INSERT",
    "objections": "INSERT",
    "objection_decisions": "INSERT",
    "payment_instructions": "INSERT",
    "payment_statuses": "INSERT",
    "payment_files": "INSERT",
    "waivers": "INSERT",
}


# PostgreSQL's SQLSTATE for a statement the login's roles do not allow.
INSUFFICIENT_PRIVILEGE = "42501"


@contextmanager
def privileged(what: str, fix: str, engine: Engine | None = None) -> Iterator[None]:
    """Turn PostgreSQL's refusal of a statement for lack of privilege into a LedgerError
    saying what this login (`engine`'s) may not do (`what`) and which role may (`fix`)."""
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        # Through SQLAlchemy the driver's error is `orig`; COPY on the raw connection raises it.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if getattr(orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        reason = str(orig).strip().splitlines()[0]
        login = f" ({_login(str(engine.url))})" if engine is not None else ""
        raise LedgerError(f"this login{login} may not {what}: {reason}", fix=fix) from None


READ_FIX = (
    "read the ledger as a login holding the unmasked-reader role (disburse_auditor_unmasked), "
    'or query the audit_* views as the auditor role (see ledgers/README.md, "Roles")'
)


# What the unmasked reader may read besides the views: what verify and the ledger commands read.
LEDGER_READS = (
    "transfers",
    "entitlement_keys",
    "policy_versions",
    "counted_members",
    "runs",
    "holdings_snapshots",
    "notices",
    "objections",
    "objection_decisions",
    "payment_instructions",
    "payment_statuses",
    "payment_files",
    "waivers",
)


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
    "APPLICATION",
    "FAULT_KINDS",
    "DatabaseFault",
    "LedgerError",
    "Roles",
    "SetupReport",
    "bulk_insert",
    "database_fault",
    "display_url",
    "grant_roles",
    "init_schema",
    "make_engine",
    "open_engine",
    "privileged",
    "require_ledger",
    "schema_revision",
    "setup_database",
    "sqlite_busy_seconds",
    "sqlite_file",
]
