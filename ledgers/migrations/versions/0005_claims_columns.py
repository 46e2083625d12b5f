"""Name the claims for what they hold: runs.decisions_file/decisions_sha256 become
claims_file/claims_sha256.

Since engine version 2 a nightly run keeps only the claims (the decision table's
eligible rows); the refusals are derived from its archive when asked for.  The
columns are renamed in place (ALTER TABLE ... RENAME COLUMN, which SQLite has had
since 3.25), so no table is copied and the views over `runs` stay as they are.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

RENAMED = (("decisions_file", "claims_file"), ("decisions_sha256", "claims_sha256"))


def upgrade() -> None:
    """Rename the two columns."""
    for old, new in RENAMED:
        op.alter_column("runs", old, new_column_name=new)


def downgrade() -> None:
    """Give them their old names back."""
    for old, new in RENAMED:
        op.alter_column("runs", new, new_column_name=old)
