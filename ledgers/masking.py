"""Masking personal data in everything printed (identity numbers, bank accounts, names)."""

from __future__ import annotations


def mask_id(value: str | None) -> str | None:
    """Keep the first 6 and last 2 characters of an identifier: 330106**********1X."""
    if value is None:
        return None
    if len(value) <= 8:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 8) + value[-2:]


def mask_account(value: str | None) -> str | None:
    """Keep the last 4 digits of an account number."""
    if value is None:
        return None
    return "*" * max(len(value) - 4, 0) + value[-4:]


def mask_name(value: str | None) -> str | None:
    """Keep the first character of a name (the family name in Chinese)."""
    if value is None:
        return None
    return value[:1] + "*" * (len(value) - 1)


MASKERS = {"id": mask_id, "account": mask_account, "name": mask_name}
