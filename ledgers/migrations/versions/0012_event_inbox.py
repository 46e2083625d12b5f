"""The event inbox (issue 20): events delivered one at a time, and what became of each.

`event_inbox`: one row per delivered event (a row of a catalogue source, with its
operation), inserted by upstream systems or `disburse events add`.  `event_outcomes`:
one row per event the event path has taken, ever: decided (with the events run that
decided it and the night its data was laid over) or quarantined (with the rule and the
reason).  Its primary key is the event's id, so an event is decided at most once,
whatever serves at once or again; both tables are append-only like the ledger
(triggers refuse UPDATE and DELETE, TRUNCATE on PostgreSQL, and on SQLite an outcome
that would replace one).  On PostgreSQL an insert into the inbox notifies channel
`disburse_events`, which `disburse events serve` listens on.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledgers.schema import ident

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None

INBOX, OUTCOMES = "event_inbox", "event_outcomes"
REFUSED = "{table} is append-only: {op} is refused; an event and its outcome stay as recorded"
CHANNEL = "disburse_events"


def upgrade() -> None:
    """Create the tables, their append-only triggers and (PostgreSQL) the notification."""
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        INBOX,
        sa.Column("event_id", big, primary_key=True, autoincrement=True),
        sa.Column("source", ident(64), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("row_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        OUTCOMES,
        sa.Column("event_id", big, primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("base_run_id", sa.Integer(), nullable=True),
        sa.Column("column_name", sa.String(64), nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN ('decided', 'quarantined')", name="ck_event_outcome"),
    )
    op.create_index("ix_event_outcomes_base", OUTCOMES, ["base_run_id", "outcome"])
    if op.get_bind().dialect.name == "postgresql":
        for table in (INBOX, OUTCOMES):
            # ledger_refuse_change() is migration 0002's.
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
        op.execute(
            "CREATE FUNCTION disburse_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {INBOX}_notify AFTER INSERT ON {INBOX} "
            "FOR EACH STATEMENT EXECUTE FUNCTION disburse_event_notify()"
        )
        return
    for table in (INBOX, OUTCOMES):
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=table, op=verb)}'); END"
            )
    op.execute(
        f"CREATE TRIGGER {OUTCOMES}_no_replace BEFORE INSERT ON {OUTCOMES} "
        f"WHEN EXISTS (SELECT 1 FROM {OUTCOMES} WHERE event_id = NEW.event_id) "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED.format(table=OUTCOMES, op='REPLACE')}'); END"
    )


def downgrade() -> None:
    """Drop them (the events go with them)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {INBOX}_notify ON {INBOX}")
        op.execute("DROP FUNCTION IF EXISTS disburse_event_notify()")
    op.drop_table(OUTCOMES)
    op.drop_table(INBOX)
