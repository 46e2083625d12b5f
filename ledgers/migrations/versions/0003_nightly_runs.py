"""Nightly runs: who runs it, what it read, and the files it decided from.

A nightly run records the sha256 of the source catalogue and of everything its
decisions depend on (its inputs key), and the content-hashed files of its
decision table, its allocation and its archive (the feature values and condition
results of every entity, and a copy of every policy file it read), so a crashed run resumes from what it
recorded and `explain` answers without re-running anything.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("host", sa.String(255)),
    ("pid", sa.Integer()),
    ("catalogue_sha256", sa.String(64)),
    ("inputs_sha256", sa.String(64)),
    ("decisions_file", sa.Text()),
    ("decisions_sha256", sa.String(64)),
    ("allocation_file", sa.Text()),
    ("allocation_sha256", sa.String(64)),
    ("archive_json", sa.Text()),
    ("summary_json", sa.Text()),
)


def upgrade() -> None:
    """Add the nightly run's columns (all nullable: an ingest has none of them)."""
    with op.batch_alter_table("runs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_runs_kind_as_of", "runs", ["kind", "as_of"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_runs_kind_as_of", "runs")
    with op.batch_alter_table("runs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
