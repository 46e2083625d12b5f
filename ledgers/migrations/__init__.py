"""Alembic migrations of the disburse schema, run by `ledgers.db.init_schema`."""
