"""The auditors' views mask personal data; unmasked views for a role granted apart.

The views of migration 0002 showed resident identity numbers whole (as entity,
payee, and inside payable/receivable account addresses) to every auditor.  Now
the views under those names mask them as everything the engine prints does (the
first 6 and last 2 characters kept), and three views with the suffix
`_unmasked` show them whole: `disburse db init` grants those only to the
unmasked-reader role (see ledgers/README.md).  `audit_transfers` also shows the
personal fields' digest (chain version 2, migration 0006), and, masked, shows no
hash for transfers of version 1, whose hash covers the identity number in the
clear and would let anyone search the few million numbers a mask leaves.

A number is recognised by its shape in SQL, 17 digits and a check character:
the masking covers every resident identity number, and an all-digit credit code
of that shape is masked as well (the safe side).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None

ENTITLEMENT_KINDS = ("grant", "adjustment", "reversal", "clawback")
MASK = "*" * 10


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def mask_id(column: str, dialect: str) -> str:
    """SQL: `column` with a resident identity number masked, anything else as it is."""
    if dialect == "postgresql":
        return f"regexp_replace({column}, '^([0-9]{{6}})[0-9]{{10}}([0-9][0-9X])$', '\\1{MASK}\\2')"
    shape = "[0-9]" * 17 + "[0-9X]"
    return (
        f"CASE WHEN {column} GLOB '{shape}' "
        f"THEN substr({column}, 1, 6) || '{MASK}' || substr({column}, 17, 2) ELSE {column} END"
    )


def mask_account(column: str, dialect: str) -> str:
    """SQL: an account address with a resident payee masked (payable:330106**********1X)."""
    if dialect == "postgresql":
        return (
            f"regexp_replace({column}, '^(payable|receivable):([0-9]{{6}})[0-9]{{10}}([0-9][0-9X])$', "
            f"'\\1:\\2{MASK}\\3')"
        )
    shape = "[0-9]" * 17 + "[0-9X]"
    return (
        f"CASE WHEN {column} GLOB 'payable:{shape}' OR {column} GLOB 'receivable:{shape}' "
        f"THEN substr({column}, 1, length({column}) - 12) || '{MASK}' || "
        f"substr({column}, length({column}) - 1, 2) ELSE {column} END"
    )


def views(dialect: str) -> dict[str, str]:
    """Every view, in the order they are created (the unmasked ones first: others read them)."""
    kind = (
        "split_part(account, ':', 1)"
        if dialect == "postgresql"
        else "substr(account, 1, instr(account, ':') - 1)"
    )
    entitlement = _in("t.kind", ENTITLEMENT_KINDS)
    columns = (
        "transfer_id, kind, {debit}, {credit}, amount_fen, run_id, policy_id, benefit_period, "
        "{entity}, {payee}, policy_sha256, decision, personal_mac, {prev_hash}, {hash}"
    )
    keyed = "CASE WHEN personal_mac IS NULL THEN NULL ELSE {c} END AS {c}"
    return {
        "audit_transfers_unmasked": "SELECT "
        + columns.format(
            debit="debit_account",
            credit="credit_account",
            entity="entity",
            payee="payee",
            prev_hash="prev_hash",
            hash="hash",
        )
        + " FROM transfers",
        "audit_transfers": "SELECT "
        + columns.format(
            debit=f"{mask_account('debit_account', dialect)} AS debit_account",
            credit=f"{mask_account('credit_account', dialect)} AS credit_account",
            entity=f"{mask_id('entity', dialect)} AS entity",
            payee=f"{mask_id('payee', dialect)} AS payee",
            prev_hash=keyed.format(c="prev_hash"),
            hash=keyed.format(c="hash"),
        )
        + " FROM transfers",
        "audit_balances_unmasked": (
            f"SELECT account, {kind} AS account_kind, "
            "CAST(SUM(debit_fen) AS BIGINT) AS debits_fen, "
            "CAST(SUM(credit_fen) AS BIGINT) AS credits_fen, "
            "CAST(SUM(credit_fen) - SUM(debit_fen) AS BIGINT) AS balance_fen "
            "FROM (SELECT debit_account AS account, amount_fen AS debit_fen, 0 AS credit_fen "
            "FROM transfers UNION ALL "
            "SELECT credit_account, 0, amount_fen FROM transfers) AS legs "
            "GROUP BY account"
        ),
        "audit_balances": (
            f"SELECT {mask_account('account', dialect)} AS account, account_kind, debits_fen, "
            "credits_fen, balance_fen FROM audit_balances_unmasked"
        ),
        "audit_entitlements_unmasked": (
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
        "audit_entitlements": (
            f"SELECT policy_id, benefit_period, {mask_id('entity', dialect)} AS entity, "
            "grant_transfer_id, grant_run_id, amount_fen, transfers, last_transfer_id "
            "FROM audit_entitlements_unmasked"
        ),
        "audit_summary": (
            "SELECT policy_id, benefit_period, "
            "SUM(CASE WHEN amount_fen > 0 THEN 1 ELSE 0 END) AS count, "
            "CAST(SUM(amount_fen) AS BIGINT) AS amount_fen, "
            "SUM(transfers) - COUNT(*) AS adjustments, "
            "SUM(CASE WHEN amount_fen = 0 THEN 1 ELSE 0 END) AS reversed "
            "FROM audit_entitlements_unmasked GROUP BY policy_id, benefit_period"
        ),
        "audit_runs": (
            "SELECT run_id, kind, as_of, state, started_at, finished_at, message, "
            "counts_json, timings_json FROM runs"
        ),
    }


# The views of migration 0002, dropped here and restored by the downgrade.
OLD_VIEWS = (
    "audit_summary",
    "audit_entitlements",
    "audit_balances",
    "audit_transfers",
    "audit_runs",
)


def upgrade() -> None:
    """Replace the views of migration 0002 with masked ones, and add the unmasked ones."""
    dialect = op.get_bind().dialect.name
    for name in OLD_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, sql in views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    """Back to the views of migration 0002 (unmasked, under the plain names)."""
    import importlib

    dialect = op.get_bind().dialect.name
    for name in reversed(list(views(dialect))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    old = importlib.import_module("ledgers.migrations.versions.0002_ledger")
    for name, sql in old._views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
