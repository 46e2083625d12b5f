"""SQLite: refuse INSERT OR REPLACE / REPLACE INTO on the ledger tables.

REPLACE resolves a primary-key conflict by deleting the row in the way, and
SQLite fires DELETE triggers for that only when `recursive_triggers` is on, a
setting of each connection that whoever edits the file need not set: the
append-only triggers of migration 0002 let REPLACE rewrite a transfer or an
entitlement key.  A BEFORE INSERT trigger runs before the conflict is resolved,
whatever the connection's settings, so each table gets one that refuses a row
whose primary key is already taken.  A plain INSERT of such a row was refused
anyway (by the primary key); INSERT OR IGNORE of one is now refused too, which the
posting code already treats as a refusal of the whole chunk.  PostgreSQL has no
REPLACE; its INSERT ... ON CONFLICT DO UPDATE fires the UPDATE trigger.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

KEYS = {
    "transfers": ("transfer_id",),
    "entitlement_keys": ("policy_id", "benefit_period", "entity"),
}
REFUSED = (
    "the ledger is append-only: a row of {table} may not be replaced "
    "(INSERT OR REPLACE, REPLACE INTO); post a correcting transfer"
)


def upgrade() -> None:
    """Create the two triggers (SQLite only)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, key in KEYS.items():
        same = " AND ".join(f"{c} = NEW.{c}" for c in key)
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {same}) "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=table)}'); END"
        )


def downgrade() -> None:
    """Drop them."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in KEYS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
