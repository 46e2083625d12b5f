"""The payout ledger: transfers, entitlement keys, policy snapshots, run counts and timings;
append-only triggers and the auditors' read-only views.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledgers.schema import ENTITLEMENT_KINDS, ident

# The kinds this revision allowed, frozen: later kinds are added by later revisions
# (0011), so an upgraded ledger and a new one end with the same constraint.
KINDS_0002 = ("grant", "adjustment", "reversal", "clawback", "instructed", "settled", "rejected")

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

LEDGER_TABLES = ("transfers", "entitlement_keys")
REFUSED = "the ledger is append-only: {op} on {table} is refused; post a correcting transfer"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    """Create the ledger tables, their triggers and the audit views."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("counts_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("timings_json", sa.Text(), nullable=True))
    op.create_table(
        "policy_snapshots",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("policy_id", ident(64), primary_key=True),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "transfers",
        sa.Column(
            "transfer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit_account", ident(200), nullable=False),
        sa.Column("credit_account", ident(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", ident(64), nullable=True),
        sa.Column("benefit_period", ident(16), nullable=True),
        sa.Column("entity", ident(64), nullable=True),
        sa.Column("payee", ident(64), nullable=True),
        sa.Column("policy_sha256", sa.String(64), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint("debit_account <> credit_account", name="ck_transfers_two_accounts"),
        sa.CheckConstraint(_in("kind", KINDS_0002), name="ck_transfers_kind"),
        sa.CheckConstraint(
            f"NOT ({_in('kind', ENTITLEMENT_KINDS)}) OR (policy_id IS NOT NULL"
            " AND benefit_period IS NOT NULL AND entity IS NOT NULL AND payee IS NOT NULL)",
            name="ck_transfers_entitlement_key",
        ),
    )
    op.create_index("ix_transfers_entity", "transfers", ["entity"])
    op.create_index("ix_transfers_run", "transfers", ["run_id"], postgresql_using="brin")
    op.create_table(
        "entitlement_keys",
        sa.Column("policy_id", ident(64), primary_key=True),
        sa.Column("benefit_period", ident(16), primary_key=True),
        sa.Column("entity", ident(64), primary_key=True),
        sa.Column("transfer_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()
    for name, sql in _views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def _postgresql_triggers() -> None:
    op.execute(
        "CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME "
        "USING ERRCODE = 'restrict_violation', HINT = 'post a correcting transfer instead'; "
        "END $$"
    )
    for table in LEDGER_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )


def _sqlite_triggers() -> None:
    for table in LEDGER_TABLES:
        for verb in ("UPDATE", "DELETE"):
            message = REFUSED.format(op=verb, table=table)
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def _views(dialect: str) -> dict[str, str]:
    """The auditors' views: plain SQL over the ledger, documented in ledgers/README.md."""
    kind = (
        "split_part(account, ':', 1)"
        if dialect == "postgresql"
        else "substr(account, 1, instr(account, ':') - 1)"
    )
    entitlement = _in("t.kind", ENTITLEMENT_KINDS)
    return {
        "audit_transfers": (
            "SELECT transfer_id, kind, debit_account, credit_account, amount_fen, run_id, "
            "policy_id, benefit_period, entity, payee, policy_sha256, decision, prev_hash, hash "
            "FROM transfers"
        ),
        "audit_balances": (
            f"SELECT account, {kind} AS account_kind, "
            "CAST(SUM(debit_fen) AS BIGINT) AS debits_fen, "
            "CAST(SUM(credit_fen) AS BIGINT) AS credits_fen, "
            "CAST(SUM(credit_fen) - SUM(debit_fen) AS BIGINT) AS balance_fen "
            "FROM (SELECT debit_account AS account, amount_fen AS debit_fen, 0 AS credit_fen "
            "FROM transfers UNION ALL "
            "SELECT credit_account, 0, amount_fen FROM transfers) AS legs "
            "GROUP BY account"
        ),
        "audit_entitlements": (
            "SELECT k.policy_id, k.benefit_period, k.entity, "
            "k.transfer_id AS grant_transfer_id, k.run_id AS grant_run_id, "
            "CAST(SUM(CASE WHEN substr(t.debit_account, 1, 7) = 'budget:' "
            "THEN t.amount_fen ELSE -t.amount_fen END) AS BIGINT) AS amount_fen, "
            "COUNT(t.transfer_id) AS transfers, MAX(t.transfer_id) AS last_transfer_id "
            "FROM entitlement_keys AS k JOIN transfers AS t "
            "ON t.policy_id = k.policy_id AND t.benefit_period = k.benefit_period "
            f"AND t.entity = k.entity AND {entitlement} "
            "GROUP BY k.policy_id, k.benefit_period, k.entity, k.transfer_id, k.run_id"
        ),
        "audit_summary": (
            "SELECT policy_id, benefit_period, "
            "SUM(CASE WHEN amount_fen > 0 THEN 1 ELSE 0 END) AS count, "
            "CAST(SUM(amount_fen) AS BIGINT) AS amount_fen, "
            "SUM(transfers) - COUNT(*) AS adjustments, "
            "SUM(CASE WHEN amount_fen = 0 THEN 1 ELSE 0 END) AS reversed "
            "FROM audit_entitlements GROUP BY policy_id, benefit_period"
        ),
        "audit_runs": (
            "SELECT run_id, kind, as_of, state, started_at, finished_at, message, "
            "counts_json, timings_json FROM runs"
        ),
    }


def downgrade() -> None:
    """Drop the views, triggers and ledger tables (the data goes with them)."""
    dialect = op.get_bind().dialect.name
    for name in reversed(list(_views(dialect))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("entitlement_keys")
    op.drop_table("transfers")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    op.drop_table("policy_snapshots")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("timings_json")
        batch.drop_column("counts_json")
