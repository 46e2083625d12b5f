"""The payout ledger and the run records: SQL schema, posting, audit, payment files.

Knows nothing of rules: imports nothing from `eligibility`.
"""
