"""Money: integer fen in data and in the ledger, yuan only where people read or write it.

One yuan is 100 fen.  Amounts people write carry their unit (`1500 yuan`, `12 fen`);
a bare number where money is expected is yuan.  Nothing here uses floats: a yuan
amount with more than two decimals is not a whole number of fen and is refused
where a whole number is needed.  Standard library only (the reference interpreter
and explanations use it without Polars).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

FEN_PER_YUAN = 100
# The most one entitlement can be: 10 trillion yuan, far past any subsidy, far below what
# Int64 fen holds (9.2e18).  A computed amount beyond it is unknown, never wrapped.
MAX_ENTITLEMENT_FEN = 10**15
MoneyUnit = Literal["yuan", "fen"]

# An amount as written in a rule or a worked example: 1500 yuan, 1_000.50 yuan, -12 fen.
_WRITTEN = re.compile(r"^\s*(-?\d[\d_]*(?:\.\d+)?)\s*(yuan|fen)\s*$")


def to_fen(value: Decimal | int, unit: MoneyUnit | str) -> Decimal:
    """An amount in `unit` (yuan or fen) as exact (possibly fractional) fen."""
    return Decimal(value) * (FEN_PER_YUAN if unit == "yuan" else 1)


def yuan_to_fen(value: Decimal | int) -> int:
    """Whole yuan (or yuan with at most two decimals) as integer fen; ValueError otherwise."""
    return whole_fen(to_fen(value, "yuan"), repr(value))


def whole_fen(fen: Decimal, shown: str) -> int:
    """`fen` as an int, or ValueError naming `shown` if it is not a whole number of fen."""
    if not fen.is_finite():
        raise ValueError(f"{shown} is not an amount of money")
    if fen != fen.to_integral_value():
        raise ValueError(f"{shown} is not a whole number of fen")
    return int(fen)


def parse_money(value: object) -> int:
    """Money a person wrote, as integer fen: `1500 yuan`, `12 fen`, or a bare number of yuan.

    Raises ValueError with the reader's words when it is not an amount of money."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an amount of money")
    if isinstance(value, str):
        m = _WRITTEN.match(value)
        if m is None:
            raise ValueError(f"{value!r} is not an amount of money (write 1500 yuan)")
        fen = to_fen(Decimal(m.group(1).replace("_", "")), m.group(2))
    else:
        try:
            fen = to_fen(Decimal(str(value)), "yuan")
        except InvalidOperation:
            raise ValueError(f"{value!r} is not an amount of money") from None
    return whole_fen(fen, repr(value))


def format_yuan(fen: int | None) -> str:
    """Integer fen as yuan for people: 1234567 -> '12,345.67' (exact integer arithmetic);
    '-' for no amount."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{cents:02d}"


def format_fen_amount(fen: Decimal | int) -> str:
    """Exact fen (a fraction of a fen where a computation left one) as 'N yuan' for people:
    12345 -> '123.45 yuan'; 12345.5 -> '123.455 yuan'."""
    fen = Decimal(fen)
    sign = "-" if fen < 0 else ""
    whole = int(abs(fen)) // FEN_PER_YUAN
    cents = abs(fen) - whole * FEN_PER_YUAN
    if cents == int(cents):
        return f"{sign}{whole:,}.{int(cents):02d} yuan"
    return f"{sign}{(abs(fen) / FEN_PER_YUAN).normalize():,f} yuan"
