"""Chain version 2: transfers commit to their personal fields through a keyed digest.

`transfers.personal_mac` holds HMAC-SHA256 of a transfer's accounts, entity and
payee under the ledger key (`ledgers.keys`), and the hash of every transfer
posted from now on covers that digest instead of the fields themselves
(`ledgers.chain`).  Transfers posted before keep a null `personal_mac` and keep
verifying under version 1.  Adding a nullable column copies nothing on either
database.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("transfers", sa.Column("personal_mac", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop it (the version 2 transfers then no longer verify)."""
    with op.batch_alter_table("transfers") as batch:
        batch.drop_column("personal_mac")
