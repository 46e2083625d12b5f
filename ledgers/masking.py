"""Masking personal data in everything printed (identity numbers, bank accounts, names).

In the ledger, an entity or payee is either an enterprise's unified social credit
code (public: printed on its business licence) or a resident identity number
(personal data, masked unless the reader asks with --unmask).  They are told
apart by the resident number's own structure, GB 11643-1999: 17 digits, a birth
date in digits 7-14, and its ISO 7064 MOD 11-2 check character.  An all-digit
credit code passes all three only by a rare accident, and then it is masked:
the safe side.
"""

from __future__ import annotations

import polars as pl

RESIDENT_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
RESIDENT_CHECK = "10X98765432"  # index: weighted sum mod 11


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


def is_resident_id(value: str | None) -> bool:
    """True if `value` is a resident identity number (personal data), not a credit code."""
    if value is None or len(value) != 18 or not value[:17].isdigit():
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not (1850 <= year <= 2199 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(c) * w for c, w in zip(value[:17], RESIDENT_WEIGHTS, strict=True))
    return RESIDENT_CHECK[total % 11] == value[17]


def mask_entity(value: str | None) -> str | None:
    """A ledger entity or payee as printed: resident numbers masked, credit codes whole."""
    return mask_id(value) if is_resident_id(value) else value


def is_resident_id_expr(col: pl.Expr) -> pl.Expr:
    """Polars: `is_resident_id` for every row of a string column (null is False)."""
    digits = [col.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(17)]
    weighted = pl.sum_horizontal(
        [d * w for d, w in zip(digits, RESIDENT_WEIGHTS, strict=True)], ignore_nulls=False
    )
    check = (weighted % 11).replace_strict(
        dict(enumerate(RESIDENT_CHECK)), default=None, return_dtype=pl.String
    )
    year = col.str.slice(6, 4).cast(pl.Int64, strict=False)
    month = col.str.slice(10, 2).cast(pl.Int64, strict=False)
    day = col.str.slice(12, 2).cast(pl.Int64, strict=False)
    return (
        (col.str.len_bytes() == 18)
        & col.str.slice(0, 17).str.contains(r"^[0-9]{17}$")
        & year.is_between(1850, 2199)
        & month.is_between(1, 12)
        & day.is_between(1, 31)
        & (col.str.slice(17, 1) == check)
    ).fill_null(False)


def mask_entity_expr(col: pl.Expr) -> pl.Expr:
    """Polars: `mask_entity` for every row: 330106**********1X for residents, codes whole."""
    masked = pl.concat_str([col.str.slice(0, 6), pl.lit("*" * 10), col.str.slice(16, 2)])
    return pl.when(is_resident_id_expr(col)).then(masked).otherwise(col)


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
