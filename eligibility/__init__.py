"""The rule language: policy files, expressions, compilers and explanations.

Knows nothing of databases; `eligibility.ast` imports no Polars.
"""
