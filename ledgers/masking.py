"""Masking personal data in everything printed (identity numbers, bank accounts, names).

In the ledger, an entity or payee is either an enterprise's unified social credit
code (public: printed on its business licence) or a resident identity number
(personal data, masked unless the reader asks with --unmask).  They are told
apart by the resident number's own structure, GB 11643-1999: 17 digits, a birth
date in digits 7-14, and its ISO 7064 MOD 11-2 check character
(`common.identifiers.is_resident_id`).  An all-digit credit code passes all three
only by a rare accident, and then it is masked: the safe side.
"""

from __future__ import annotations

import polars as pl

from common.identifiers import is_resident_id, is_resident_id_expr


def mask_id(value: str | None) -> str | None:
    """Keep the first 6 and last 2 characters of an identifier: 330106**********1X."""
    if value is None:
        return None
    if len(value) <= 8:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 8) + value[-2:]


def mask_account(value: str | None) -> str | None:
    """Keep the last 4 digits of an account number (none of one shorter than 8: too little
    would be left hidden)."""
    if value is None:
        return None
    if len(value) < 8:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def mask_name(value: str | None) -> str | None:
    """Keep the first character of a name (the family name in Chinese)."""
    if value is None:
        return None
    return value[:1] + "*" * (len(value) - 1)


MASKERS = {"id": mask_id, "account": mask_account, "name": mask_name}


def _stars(n: pl.Expr) -> pl.Expr:
    """n asterisks (none for n <= 0)."""
    return pl.lit("").str.pad_end(pl.max_horizontal(n, pl.lit(0)), "*")


def mask_id_expr(col: pl.Expr) -> pl.Expr:
    """Polars: `mask_id` for every row: the first 6 and last 2 characters kept, all of a
    value of 8 characters or fewer hidden; null stays null."""
    n = col.str.len_chars()
    kept = pl.concat_str([col.str.slice(0, 6), _stars(n - 8), col.str.slice(-2)])
    return pl.when(n <= 8).then(_stars(n)).otherwise(kept)


def mask_name_expr(col: pl.Expr) -> pl.Expr:
    """Polars: `mask_name` for every row: the first character kept (the family name)."""
    return col.str.slice(0, 1).str.pad_end(col.str.len_chars(), "*")


def mask_entity(value: str | None) -> str | None:
    """A ledger entity or payee as printed: resident numbers masked, credit codes whole."""
    return mask_id(value) if is_resident_id(value) else value


def mask_entity_expr(col: pl.Expr) -> pl.Expr:
    """Polars: `mask_entity` for every row: 330106**********1X for residents, codes whole."""
    masked = pl.concat_str([col.str.slice(0, 6), pl.lit("*" * 10), col.str.slice(16, 2)])
    return pl.when(is_resident_id_expr(col)).then(masked).otherwise(col)


def mask_account_address(value: str | None) -> str | None:
    """An account address as printed: a resident payee masked (payable:330106**********1X)."""
    if value is None:
        return None
    kind, sep, holder = value.partition(":")
    if sep and kind in ("payable", "receivable") and is_resident_id(holder):
        return f"{kind}:{mask_id(holder)}"
    return value


def mask_account_address_expr(col: pl.Expr) -> pl.Expr:
    """Polars: an account address with a resident payee masked (payable:330106**********1X)."""
    kind = col.str.split_exact(":", 1).struct.field("field_0")
    holder = col.str.split_exact(":", 1).struct.field("field_1")
    personal = kind.is_in(["payable", "receivable"]) & is_resident_id_expr(holder)
    return (
        pl.when(personal)
        .then(pl.concat_str([kind, pl.lit(":"), mask_entity_expr(holder)]))
        .otherwise(col)
    )


__all__ = [
    "MASKERS",
    "is_resident_id",
    "is_resident_id_expr",
    "mask_account",
    "mask_account_address",
    "mask_account_address_expr",
    "mask_entity",
    "mask_entity_expr",
    "mask_id",
    "mask_id_expr",
    "mask_name",
    "mask_name_expr",
]
