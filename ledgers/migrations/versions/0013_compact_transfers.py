"""Fewer bytes per transfer (issue 21.5): digests as bytes, policy versions by number.

A transfer carried four 64-character hexadecimal strings: its hash, the hash before
it, the digest of its personal fields and the policy file's sha256, 256 of the
roughly 550 bytes of a posted row.  Now `hash`, `prev_hash` and `personal_mac` are
their 32 bytes (bytea, BLOB; `ledgers.schema.Digest` reads them back as hex), and
the policy file's sha256 is a row of the new append-only table `policy_versions`
(policy_id, sha256, numbered in the order first posted), which the transfer names by
`policy_version_id`.  Nothing a hash covers changes: the chain commits to the
sha256 and the digests exactly as before (`ledgers.chain`), so every existing
transfer verifies as it did, and a checkpoint's head hash is the same.

Existing rows are converted in place, one rewrite of the table.  PostgreSQL: one
ALTER TABLE changes the four columns' types, the sha256 looked up by a function made
for the migration (ALTER TABLE fires no row trigger).  SQLite: the UPDATE trigger is
set aside for one UPDATE and put back as it was, the sha256 column is dropped, and
the three digest columns' declared types become BLOB in the stored schema (as
migration 0011 changed a CHECK).  The auditors' views show what they showed: the
digests as hex, the policy's sha256 joined back.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import importlib
import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from ledgers.migrations.sqlite_schema import rewrite_table_sql, table_sql
from ledgers.schema import ident

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

VERSIONS = "policy_versions"
DIGESTS = ("personal_mac", "prev_hash", "hash")
REFUSED = "{table} is append-only: {op} is refused; a new version of a policy is a new row"
_0008 = importlib.import_module("ledgers.migrations.versions.0008_masked_views")


def upgrade() -> None:
    """Create policy_versions, convert the transfers, and recreate the views over them."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    _drop_views(dialect)
    op.create_table(
        VERSIONS,
        sa.Column("policy_version_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("policy_id", ident(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("policy_id", "sha256", name="uq_policy_versions"),
    )
    _append_only(dialect)
    # Every version the ledger has posted, numbered in the order it first appeared.
    op.execute(
        f"INSERT INTO {VERSIONS} (policy_version_id, policy_id, sha256) "
        "SELECT ROW_NUMBER() OVER (ORDER BY MIN(transfer_id)), policy_id, policy_sha256 "
        "FROM transfers WHERE policy_sha256 IS NOT NULL GROUP BY policy_id, policy_sha256"
    )
    orphans = bind.execute(
        text("SELECT COUNT(*) FROM transfers WHERE policy_sha256 IS NOT NULL AND policy_id IS NULL")
    ).scalar_one()
    if orphans:
        raise RuntimeError(
            f"{orphans} transfers carry a policy sha256 but no policy id; the ledger was "
            "changed outside the engine: run `disburse audit verify` on it before migrating"
        )
    if dialect == "postgresql":
        _convert_postgresql()
    else:
        _convert_sqlite(bind)
    _create_views(dialect)


def downgrade() -> None:
    """Back to hex text and the sha256 on every transfer; drop policy_versions."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    _drop_views(dialect)
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION disburse_policy_sha256(v integer) RETURNS varchar LANGUAGE sql "
            f"STABLE AS $$ SELECT sha256 FROM {VERSIONS} WHERE policy_version_id = v $$"
        )
        op.execute(
            "ALTER TABLE transfers "
            "ALTER COLUMN policy_version_id TYPE varchar(64) "
            "USING disburse_policy_sha256(policy_version_id), "
            + ", ".join(
                f"ALTER COLUMN {c} TYPE varchar(64) USING encode({c}, 'hex')" for c in DIGESTS
            )
        )
        op.execute("ALTER TABLE transfers RENAME COLUMN policy_version_id TO policy_sha256")
        op.execute("DROP FUNCTION disburse_policy_sha256(integer)")
    else:
        _retype_sqlite(bind, "BLOB", "VARCHAR(64)")
        op.execute("ALTER TABLE transfers ADD COLUMN policy_sha256 VARCHAR(64)")
        with _update_allowed(bind):
            op.execute(
                "UPDATE transfers SET policy_sha256 = (SELECT v.sha256 FROM "
                f"{VERSIONS} AS v WHERE v.policy_version_id = transfers.policy_version_id), "
                + ", ".join(f"{c} = lower(hex({c}))" for c in DIGESTS)
            )
        op.execute("ALTER TABLE transfers DROP COLUMN policy_version_id")
    op.drop_table(VERSIONS)
    for name, sql in _0008.views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def _append_only(dialect: str) -> None:
    if dialect == "postgresql":
        # ledger_refuse_change() is migration 0002's.
        op.execute(
            f"CREATE TRIGGER {VERSIONS}_append_only BEFORE UPDATE OR DELETE ON {VERSIONS} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {VERSIONS}_no_truncate BEFORE TRUNCATE ON {VERSIONS} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {VERSIONS}_no_{verb.lower()} BEFORE {verb} ON {VERSIONS} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=VERSIONS, op=verb)}'); END"
        )
    op.execute(
        f"CREATE TRIGGER {VERSIONS}_no_replace BEFORE INSERT ON {VERSIONS} "
        f"WHEN EXISTS (SELECT 1 FROM {VERSIONS} WHERE policy_version_id = NEW.policy_version_id "
        "OR (policy_id = NEW.policy_id AND sha256 = NEW.sha256)) "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=VERSIONS, op='REPLACE')}'); END"
    )


def _convert_postgresql() -> None:
    """One ALTER TABLE: one rewrite of the table, no row trigger fired."""
    op.execute(
        "CREATE FUNCTION disburse_policy_version(p varchar, s varchar) RETURNS integer "
        f"LANGUAGE sql STABLE AS $$ SELECT policy_version_id FROM {VERSIONS} "
        "WHERE policy_id = p AND sha256 = s $$"
    )
    op.execute(
        "ALTER TABLE transfers "
        "ALTER COLUMN policy_sha256 TYPE integer "
        "USING disburse_policy_version(policy_id, policy_sha256), "
        + ", ".join(f"ALTER COLUMN {c} TYPE bytea USING decode({c}, 'hex')" for c in DIGESTS)
    )
    op.execute("ALTER TABLE transfers RENAME COLUMN policy_sha256 TO policy_version_id")
    op.execute("DROP FUNCTION disburse_policy_version(varchar, varchar)")


def _convert_sqlite(bind: sa.Connection) -> None:
    op.execute("ALTER TABLE transfers ADD COLUMN policy_version_id INTEGER")
    raw = bind.connection.driver_connection
    raw.create_function("disburse_unhex", 1, _unhex, deterministic=True)  # type: ignore[union-attr]
    with _update_allowed(bind):
        op.execute(
            "UPDATE transfers SET policy_version_id = (SELECT v.policy_version_id FROM "
            f"{VERSIONS} AS v WHERE v.policy_id = transfers.policy_id "
            "AND v.sha256 = transfers.policy_sha256), "
            + ", ".join(f"{c} = disburse_unhex({c})" for c in DIGESTS)
        )
    op.execute("ALTER TABLE transfers DROP COLUMN policy_sha256")
    _retype_sqlite(bind, "VARCHAR(64)", "BLOB")


def _unhex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


class _update_allowed:
    """SQLite: the transfers' UPDATE trigger set aside for the migration's one UPDATE and
    created again from its own stored SQL, so it comes back exactly as it was."""

    def __init__(self, bind: sa.Connection) -> None:
        self.bind = bind
        self.sql = ""

    def __enter__(self) -> None:
        self.sql = self.bind.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'transfers_no_update'"
            )
        ).scalar_one()
        op.execute("DROP TRIGGER transfers_no_update")

    def __exit__(self, *exc: object) -> None:
        op.execute(self.sql)


def _retype_sqlite(bind: sa.Connection, before: str, after: str) -> None:
    """The digest columns' declared types in the stored schema, `before` to `after`."""
    sql = table_sql(bind, "transfers")
    pattern = re.compile(rf"(?<![A-Za-z_])({'|'.join(DIGESTS)}) {re.escape(before)}")
    new, n = pattern.subn(rf"\1 {after}", sql)
    if n != len(DIGESTS):
        raise RuntimeError(f"the transfers table's digest columns were not found in {sql!r}")
    rewrite_table_sql(bind, "transfers", new, "retyping the digest columns")


def _drop_views(dialect: str) -> None:
    for name in reversed(list(_0008.views(dialect))):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def views(dialect: str) -> dict[str, str]:
    """Migration 0008's views, the two over transfers reading the new columns."""

    def hexed(column: str) -> str:
        if dialect == "postgresql":
            return f"encode(t.{column}, 'hex')"
        return f"nullif(lower(hex(t.{column})), '')"  # hex(NULL) is '' in SQLite

    keyed = "CASE WHEN t.personal_mac IS NULL THEN NULL ELSE {v} END"
    base = (
        "SELECT t.transfer_id, t.kind, {debit} AS debit_account, {credit} AS credit_account, "
        "t.amount_fen, t.run_id, t.policy_id, t.benefit_period, {entity} AS entity, "
        "{payee} AS payee, v.sha256 AS policy_sha256, t.decision, "
        f"{hexed('personal_mac')} AS personal_mac, {{prev_hash}} AS prev_hash, {{hash}} AS hash "
        f"FROM transfers AS t LEFT JOIN {VERSIONS} AS v "
        "ON v.policy_version_id = t.policy_version_id"
    )
    made = dict(_0008.views(dialect))
    made["audit_transfers_unmasked"] = base.format(
        debit="t.debit_account",
        credit="t.credit_account",
        entity="t.entity",
        payee="t.payee",
        prev_hash=hexed("prev_hash"),
        hash=hexed("hash"),
    )
    made["audit_transfers"] = base.format(
        debit=_0008.mask_account("t.debit_account", dialect),
        credit=_0008.mask_account("t.credit_account", dialect),
        entity=_0008.mask_id("t.entity", dialect),
        payee=_0008.mask_id("t.payee", dialect),
        prev_hash=keyed.format(v=hexed("prev_hash")),
        hash=keyed.format(v=hexed("hash")),
    )
    return made


def _create_views(dialect: str) -> None:
    for name, sql in views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
