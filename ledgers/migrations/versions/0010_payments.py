"""From ledger to money (issue 19): notices, objections and their decisions, payment
instructions, the bank's statuses, the payment files, and entitlements deemed waived.

Append-only like the ledger tables (triggers refuse UPDATE and DELETE, TRUNCATE on
PostgreSQL, and on SQLite a row that would replace one): a state changes by a new
row (an objection's decision, an instruction's status), never by an update.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledgers.schema import ident

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None

REFUSED = "{table} is append-only: {op} is refused; a change is a new row"
# Each table and the columns of its primary key (for SQLite's no-replace trigger).
TABLES = {
    "notices": ("run_id",),
    "objections": ("objection_id",),
    "objection_decisions": ("objection_id",),
    "payment_instructions": ("end_to_end_id",),
    "payment_statuses": ("end_to_end_id",),
    "payment_files": ("msg_id",),
    "waivers": ("policy_id", "benefit_period", "entity"),
}


def upgrade() -> None:
    """Create the tables and their append-only triggers."""
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "notices",
        sa.Column("run_id", sa.Integer(), primary_key=True),
        sa.Column("published_on", sa.Date(), nullable=False),
        sa.Column("working_days", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("entitlements", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("csv_sha256", sa.String(64), nullable=False),
        sa.Column("html_sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "objections",
        sa.Column("objection_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("policy_id", ident(64), nullable=False),
        sa.Column("benefit_period", ident(16), nullable=False),
        sa.Column("entity", ident(64), nullable=False),
        sa.Column("standing", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence_name", sa.Text()),
        sa.Column("evidence_sha256", sa.String(64)),
        sa.Column("filed_at", tz, nullable=False),
    )
    op.create_table(
        "objection_decisions",
        sa.Column("objection_id", sa.Integer(), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_at", tz, nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.CheckConstraint("decision IN ('upheld', 'dismissed')", name="ck_objection_decision"),
    )
    op.create_table(
        "payment_instructions",
        sa.Column("end_to_end_id", ident(35), primary_key=True),
        sa.Column("msg_id", ident(35), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", ident(64), nullable=False),
        sa.Column("benefit_period", ident(16), nullable=False),
        sa.Column("entity", ident(64), nullable=False),
        sa.Column("payee", ident(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("account_kind", sa.String(32), nullable=False),
        sa.Column("account_masked", sa.String(64), nullable=False),
        sa.Column("account_digest", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_payment_instructions_key",
        "payment_instructions",
        ["policy_id", "benefit_period", "entity"],
    )
    op.create_index("ix_payment_instructions_msg", "payment_instructions", ["msg_id"])
    op.create_table(
        "payment_statuses",
        sa.Column("end_to_end_id", ident(35), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(8)),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('settled', 'rejected')", name="ck_payment_status"),
    )
    op.create_table(
        "payment_files",
        sa.Column("msg_id", ident(35), primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("instructions", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "waivers",
        sa.Column("policy_id", ident(64), primary_key=True),
        sa.Column("benefit_period", ident(16), primary_key=True),
        sa.Column("entity", ident(64), primary_key=True),
        sa.Column("payee", ident(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("waived_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, key in TABLES.items():
        if postgres:
            # ledger_refuse_change() is migration 0002's.
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
            continue
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=table, op=verb)}'); END"
            )
        same = " AND ".join(f"{c} = NEW.{c}" for c in key)
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {same}) "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=table, op='REPLACE')}'); END"
        )


def downgrade() -> None:
    """Drop them (the records go with them)."""
    for table in reversed(list(TABLES)):
        op.drop_table(table)
