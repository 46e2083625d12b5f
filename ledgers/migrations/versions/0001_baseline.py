"""Baseline: the run records as they were before the ledger (runs, source snapshots, quarantine).

A database made by `create_all` before migrations existed is stamped with this
revision by `init_schema`, then upgraded.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create runs, source_snapshots and quarantine."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data_dir", sa.Text(), nullable=False),
        sa.Column("store_dir", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_table(
        "source_snapshots",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("staged_file", sa.Text(), nullable=True),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("row_no", sa.BigInteger(), nullable=False),
        sa.Column("column_name", sa.String(64), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("row_json", sa.Text(), nullable=False),
    )
    op.create_index("ix_quarantine_run_source_rule", "quarantine", ["run_id", "source", "rule"])


def downgrade() -> None:
    """Drop the run records."""
    op.drop_table("quarantine")
    op.drop_table("source_snapshots")
    op.drop_table("runs")
