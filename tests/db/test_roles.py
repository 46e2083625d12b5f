"""PostgreSQL roles against an insider: an owner role owns the ledger, the batch's role may
only INSERT and SELECT it (it cannot disable the triggers, update or delete), auditors read
masked views, and whole identity numbers need a role granted apart.

Roles are per cluster while each test has a database of its own, so every test names its
roles with a prefix of its own and drops them afterwards."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from disburse.cli import main
from ledgers import audit
from ledgers.db import LedgerError, Roles, setup_database
from ledgers.masking import mask_entity
from ledgers.post import ENTITLEMENT_COLUMNS, post_entitlements
from ledgers.runs import start_run
from ledgers.schema import AUDIT_VIEWS, UNMASKED_VIEWS, Base
from tests import minicity
from tests.keys import KEY

PID = minicity.person_ids(2)
REFUSED = "permission denied|must be owner|must have admin option"


class Cluster:
    """The test's roles, and login roles holding them, on the test's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.prefix = f"t{uuid.uuid4().hex[:12]}"
        self.roles = Roles.named(self.prefix)
        self.logins: list[str] = []
        self.engines: list[Engine] = []

    def login(self, role: str) -> Engine:
        """An engine connected as a new login role that holds `role` (trust auth)."""
        name = f"{role}_login"
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE ROLE {name} LOGIN"))
            conn.execute(text(f"GRANT {role} TO {name}"))
        self.logins.append(name)
        url = make_url(self.engine.url.render_as_string(hide_password=False)).set(
            username=name, password=None
        )
        eng = create_engine(url)
        self.engines.append(eng)
        return eng

    def url_of(self, eng: Engine) -> str:
        return eng.url.render_as_string(hide_password=False)

    def drop(self) -> None:
        for eng in self.engines:
            eng.dispose()
        with self.engine.begin() as conn:
            # A login's connections would keep its role from being dropped.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(:n)"
                ),
                {"n": self.logins},
            )
            for name in (*self.logins, *reversed(self.roles.all())):
                exists = conn.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}
                ).first()
                if exists:
                    conn.execute(text(f"REASSIGN OWNED BY {name} TO CURRENT_USER"))
                    conn.execute(text(f"DROP OWNED BY {name}"))
                    conn.execute(text(f"DROP ROLE {name}"))


@pytest.fixture
def cluster(engine: Engine) -> Iterator[Cluster]:
    if engine.dialect.name != "postgresql":
        pytest.skip("roles are PostgreSQL's; on SQLite the file's permissions decide")
    c = Cluster(engine)
    try:
        setup_database(engine, roles=c.roles)
        yield c
    finally:
        c.drop()


def _post(engine: Engine, *rows: tuple[str, str, int]) -> int:
    with engine.begin() as conn:
        run = start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))
    frame = pl.DataFrame(
        [("p", "2026", e, p, a, "5" * 64, None) for e, p, a in rows],
        schema=ENTITLEMENT_COLUMNS,
        orient="row",
    )
    post_entitlements(engine, frame, run, key=KEY)
    return run


def _refused(eng: Engine, sql: str) -> None:
    with pytest.raises(DBAPIError, match=REFUSED), eng.begin() as conn:
        conn.execute(text(sql))


def test_db_init_makes_the_roles_and_gives_the_ledger_to_the_owner(
    engine: Engine, cluster: Cluster
) -> None:
    roles = cluster.roles
    again = setup_database(engine, roles=roles)  # repeatable
    assert again.roles == roles
    with engine.connect() as conn:
        logins = dict(
            conn.execute(
                text("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE :p"),
                {"p": f"{cluster.prefix}%"},
            ).all()
        )
        owners = dict(
            conn.execute(
                text(
                    "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = current_schema() "
                    "UNION ALL SELECT viewname, viewowner FROM pg_views "
                    "WHERE schemaname = current_schema()"
                )
            ).all()
        )
        function = conn.execute(
            text(
                "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'ledger_refuse_change'"
            )
        ).scalar_one()
    assert logins == dict.fromkeys(roles.all(), False)  # NOLOGIN: granted to logins
    for name in (*Base.metadata.tables, "alembic_version", *AUDIT_VIEWS, *UNMASKED_VIEWS):
        assert owners[name] == roles.owner, name
    assert function == roles.owner


def test_db_init_takes_the_ledger_from_the_login_that_made_it(db_url: str) -> None:
    """A ledger whose tables the engine's own login made (it ran the migrations): that
    login could disable the triggers.  After `db init` with the roles it holds the batch
    role only: it still posts, and can no longer touch the triggers or change a row."""
    if not db_url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's; on SQLite the file's permissions decide")
    from ledgers.db import init_schema, open_engine

    with open_engine(db_url) as admin:
        c = Cluster(admin)
        try:
            with admin.begin() as conn:
                conn.execute(text(f"CREATE ROLE {c.prefix}_engine LOGIN"))
                conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {c.prefix}_engine"))
            c.logins.append(f"{c.prefix}_engine")
            url = make_url(db_url).set(username=f"{c.prefix}_engine")
            engine = create_engine(url)
            c.engines.append(engine)
            init_schema(engine)
            _post(engine, (PID[0], PID[0], 100))
            with engine.begin() as conn:  # the hole: the owner may switch the triggers off
                conn.execute(text("ALTER TABLE transfers DISABLE TRIGGER transfers_append_only"))
                conn.execute(text("ALTER TABLE transfers ENABLE TRIGGER transfers_append_only"))
            setup_database(admin, roles=c.roles)
            with admin.begin() as conn:
                conn.execute(text(f"GRANT {c.roles.batch} TO {c.prefix}_engine"))
            engine.dispose()
            _post(engine, (PID[1], PID[1], 50))
            for sql in [
                "ALTER TABLE transfers DISABLE TRIGGER transfers_append_only",
                "ALTER TABLE entitlement_keys DISABLE TRIGGER ALL",
                "UPDATE transfers SET amount_fen = 1",
                "DELETE FROM entitlement_keys",
            ]:
                _refused(engine, sql)
            assert audit.verify(engine, key=KEY).ok
        finally:
            c.drop()


def test_the_batch_role_inserts_and_reads_the_ledger_and_nothing_more(
    engine: Engine, cluster: Cluster
) -> None:
    batch = cluster.login(cluster.roles.batch)
    _post(batch, (PID[0], PID[1], 100))  # runs, sequences, temp tables, COPY, checks
    assert audit.verify(batch, key=KEY).ok
    for sql in [
        "UPDATE transfers SET amount_fen = amount_fen + 1",
        "DELETE FROM transfers",
        "TRUNCATE transfers",
        "UPDATE entitlement_keys SET transfer_id = 2",
        "DELETE FROM entitlement_keys",
        "TRUNCATE entitlement_keys",
        # What an insider does first: the triggers go.
        "ALTER TABLE transfers DISABLE TRIGGER transfers_append_only",
        "ALTER TABLE transfers DISABLE TRIGGER ALL",
        "DROP TRIGGER transfers_append_only ON transfers",
        "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "SET session_replication_role = replica",  # would skip every trigger
        "ALTER TABLE transfers OWNER TO CURRENT_USER",
        "DROP TABLE transfers",
        "CREATE TABLE mine (x int)",
        "DELETE FROM policy_snapshots",
        "UPDATE quarantine SET value = NULL",
        f"GRANT {cluster.roles.owner} TO CURRENT_USER",
        "SELECT * FROM audit_transfers_unmasked",
    ]:
        _refused(batch, sql)
    assert len(audit.entries(engine, limit=None)) == 1


def test_a_nightly_run_needs_no_more_than_the_batch_role(
    engine: Engine, cluster: Cluster, city: Path, tmp_path: Path
) -> None:
    """The whole night, posting and checkpoint included, as a login holding only the batch
    role: its grants are enough.  Then verify as that login."""
    url = cluster.url_of(cluster.login(cluster.roles.batch))
    store = ["--store", str(tmp_path / "store")]
    done = CliRunner().invoke(
        main, ["run", "--data", str(city), "--as-of", "2026-03-15", "--db", url, *store, "--quiet"]
    )
    assert done.exit_code == 0, done.output
    assert "checkpoint:" in done.stdout
    done = CliRunner().invoke(main, ["audit", "verify", "--db", url, *store])
    assert done.exit_code == 0, done.output


def test_auditors_read_masked_views_and_whole_numbers_need_the_unmasked_role(
    engine: Engine, cluster: Cluster
) -> None:
    _post(engine, (PID[0], PID[1], 100))
    auditor = cluster.login(cluster.roles.auditor)
    with auditor.connect() as conn:
        shown = conn.execute(
            text("SELECT entity, payee, credit_account FROM audit_transfers")
        ).one()
        key = conn.execute(text("SELECT entity FROM audit_entitlements")).scalar_one()
        accounts = [a for (a,) in conn.execute(text("SELECT account FROM audit_balances"))]
        for view in AUDIT_VIEWS:
            conn.execute(text(f"SELECT * FROM {view}")).all()
    assert tuple(shown) == (
        mask_entity(PID[0]),
        mask_entity(PID[1]),
        f"payable:{mask_entity(PID[1])}",
    )
    assert key == mask_entity(PID[0])
    assert f"payable:{mask_entity(PID[1])}" in accounts
    for sql in [
        *(f"SELECT * FROM {view}" for view in UNMASKED_VIEWS),
        "SELECT * FROM transfers",
        "SELECT * FROM entitlement_keys",
        "SELECT * FROM runs",
        "SELECT * FROM quarantine",
        "INSERT INTO transfers (transfer_id, kind, debit_account, credit_account, amount_fen, "
        "run_id, prev_hash, hash) VALUES (9, 'settled', 'payable:x', 'clearing:bank', 1, 1, 'a', 'b')",
        "DELETE FROM audit_runs",
        "CREATE TABLE mine (x int)",
    ]:
        _refused(auditor, sql)
    # A view over a join (migration 0013) takes no writes from anyone.
    with pytest.raises(DBAPIError, match="not automatically updatable"), auditor.begin() as conn:
        conn.execute(text("DELETE FROM audit_transfers"))

    reader = cluster.login(cluster.roles.unmasked)
    with reader.connect() as conn:
        whole = conn.execute(text("SELECT entity, payee FROM audit_transfers_unmasked")).one()
        masked = conn.execute(text("SELECT entity FROM audit_transfers")).scalar_one()
    assert tuple(whole) == (PID[0], PID[1])
    assert masked == mask_entity(PID[0])
    for sql in [
        "UPDATE audit_runs SET message = 'x'",
        "UPDATE transfers SET amount_fen = 1",
        "DELETE FROM entitlement_keys",
        "SELECT * FROM quarantine",
    ]:
        _refused(reader, sql)


def test_the_ledger_commands_say_which_role_may_read_or_post(
    engine: Engine, cluster: Cluster, tmp_path: Path
) -> None:
    """The unmasked reader verifies and lists the ledger; the auditor, who may read only
    the views, and a poster without the batch role get a message, not a traceback."""
    _post(engine, (PID[0], PID[1], 100))
    key_file = tmp_path / "ledger.key"
    key_file.write_text(KEY.secret.hex() + "\n")
    reader = cluster.url_of(cluster.login(cluster.roles.unmasked))
    done = CliRunner().invoke(
        main, ["audit", "verify", "--db", reader, "--key-file", str(key_file)]
    )
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(main, ["ledger", "entries", "--db", reader, "--unmask"])
    assert done.exit_code == 0, done.output
    assert PID[0] in done.output
    auditor_engine = cluster.login(cluster.roles.auditor)
    auditor = cluster.url_of(auditor_engine)
    for command in (
        ["ledger", "summary"],
        ["ledger", "entries"],
        ["ledger", "balances"],
        ["audit", "verify"],
    ):
        done = CliRunner().invoke(main, [*command, "--db", auditor])
        assert done.exit_code == 1, (command, done.output)
        assert "Traceback" not in done.output
        assert "may not read the ledger's tables" in done.output
        assert "fix: read the ledger as a login holding the unmasked-reader role" in done.output
    with engine.begin() as conn:
        run = start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))
    frame = pl.DataFrame(
        [("p", "2026", PID[1], PID[1], 5, "5" * 64, None)], schema=ENTITLEMENT_COLUMNS, orient="row"
    )
    with pytest.raises(LedgerError, match=r"this login \(.*\) may not post to the ledger"):
        post_entitlements(auditor_engine, frame, run, key=KEY)
