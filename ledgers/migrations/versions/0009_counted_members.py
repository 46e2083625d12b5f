"""The members each entitlement counted (`once_per`, issue 18.6): counted_members.

One row per (scope, member), ever: the related person a grant counted (a hired young
person), and the entitlement key that counted them.  The primary key is the last line
of defence against counting a person twice in a scope, whatever runs at once or again;
append-only like the ledger tables (triggers refuse UPDATE and DELETE, TRUNCATE on
PostgreSQL, and on SQLite a row that would replace one, as migration 0007 does).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledgers.schema import ident

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

TABLE = "counted_members"
REFUSED = "counted_members is append-only: {op} is refused; a member once counted stays counted"


def upgrade() -> None:
    """Create the table and its append-only triggers."""
    op.create_table(
        TABLE,
        sa.Column("scope", ident(200), primary_key=True),
        sa.Column("member", ident(64), primary_key=True),
        sa.Column("policy_id", ident(64), nullable=False),
        sa.Column("benefit_period", ident(16), nullable=False),
        sa.Column("entity", ident(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # ledger_refuse_change() is migration 0002's.
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(op=verb)}'); END"
        )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE} "
        f"WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE scope = NEW.scope AND member = NEW.member) "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(op='REPLACE')}'); END"
    )


def downgrade() -> None:
    """Drop it (the records go with it)."""
    op.drop_table(TABLE)
