"""Two more kinds of transfer (issue 19.4): `offset` (a later grant set against what its
payee owes back: payable to receivable) and `recovered` (money a payee paid back:
recovered:bank to receivable).

Only the transfers table's CHECK on `kind` changes, widened to every kind of
`ledgers.schema.TRANSFER_KINDS`; no row is touched.  PostgreSQL drops and adds the
constraint (it checks the existing rows, which all pass).  SQLite cannot alter a
constraint, and rebuilding the table would copy the whole ledger and drop its
triggers and views; the CHECK is rewritten in the stored schema instead, as SQLite's
documentation allows for a change that leaves every stored row valid (writable_schema,
the schema version raised so every connection reads it again, an integrity check).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import re

from alembic import op

from ledgers.migrations.sqlite_schema import rewrite_table_sql, table_sql
from ledgers.schema import TRANSFER_KINDS

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None

NAME = "ck_transfers_kind"
KIND_CHECK = re.compile(r"CONSTRAINT ck_transfers_kind CHECK \(kind IN \([^)]*\)\)")


BEFORE = ("grant", "adjustment", "reversal", "clawback", "instructed", "settled", "rejected")


def upgrade() -> None:
    """Allow every kind of TRANSFER_KINDS."""
    _allow(TRANSFER_KINDS)


def downgrade() -> None:
    """Allow the kinds of 0010 again (PostgreSQL refuses while an offset or recovery exists)."""
    _allow(BEFORE)


def _allow(kinds: tuple[str, ...]) -> None:
    bind = op.get_bind()
    check = f"kind IN ({', '.join(repr(k) for k in kinds)})"
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE transfers DROP CONSTRAINT {NAME}")
        op.execute(f"ALTER TABLE transfers ADD CONSTRAINT {NAME} CHECK ({check})")
        return
    sql = table_sql(bind, "transfers")
    new, n = KIND_CHECK.subn(f"CONSTRAINT {NAME} CHECK ({check})", sql)
    if n != 1:
        raise RuntimeError(f"the transfers table's {NAME} was not found in its schema")
    if new != sql:
        rewrite_table_sql(bind, "transfers", new, f"changing {NAME}")
