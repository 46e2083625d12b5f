"""Holdings snapshots: what the ledger held per entitlement key at a chain head.

A run with nothing new to post spent most of its time reading every entitlement
transfer back to learn what each key holds.  A post now records the holdings
after it in a Parquet file under the store; this table says at which head (id
and hash) the file is valid and what its sha256 is (see `ledgers.holdings`).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "holdings_snapshots",
        sa.Column(
            "head_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("policy_ids", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop it (the files under the store are left; nothing reads them)."""
    op.drop_table("holdings_snapshots")
