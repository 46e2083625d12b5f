"""Check characters of the two national identifiers the sources carry.

* Unified social credit code, GB 32100-2015: 18 characters from a 31-letter
  alphabet (digits and capitals without I, O, Z, S, V).  Positions 1-17 are
  weighted by 3**i mod 31; the 18th is the character whose value brings the
  weighted sum to a multiple of 31.  Positions 9-17 are the organisation code of
  GB 11714-1997, whose own check character (position 17) is mod 11.
* Resident identity number, GB 11643-1999: 17 digits (6 region, 8 birth date,
  3 sequence, odd for men) and a check character from ISO 7064 MOD 11-2,
  written 'X' for ten.

Three forms of each: a scalar function (for people and tests), a Polars
expression (for validating millions of rows in ingest, no row loops) and a
NumPy kernel (for the synthetic population generator).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# GB 11714-1997 organisation code: 8 body characters (digits and capitals), mod 11.
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_VALUE = {c: i for i, c in enumerate(ORG_ALPHABET)}
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

RESIDENT_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
RESIDENT_CHECK = "10X98765432"  # index: weighted sum mod 11


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a credit code."""
    if len(first17) != 17:
        raise ValueError("a credit code has 17 characters before its check character")
    total = sum(USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """True if `code` is 18 characters of the credit-code alphabet with a correct check character."""
    if len(code) != 18 or any(c not in USCC_VALUE for c in code):
        return False
    return uscc_check_char(code[:17]) == code[17]


def org_code_check_char(body8: str) -> str:
    """The GB 11714-1997 check character for an 8-character organisation code body."""
    total = sum(ORG_VALUE[c] * w for c, w in zip(body8, ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def resident_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits of an identity number."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("an identity number has 17 digits before its check character")
    total = sum(int(c) * w for c, w in zip(first17, RESIDENT_WEIGHTS, strict=True))
    return RESIDENT_CHECK[total % 11]


def is_valid_resident_id(number: str) -> bool:
    """True if `number` is 17 digits and a correct check character (digit or 'X')."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    return resident_check_char(number[:17]) == number[17]


# --- Polars: vectorised validation -------------------------------------------------


def _char_values(col: pl.Expr, position: int, table: dict[str, int]) -> pl.Expr:
    return col.str.slice(position, 1).replace_strict(table, default=None, return_dtype=pl.Int64)


def uscc_valid_expr(col: pl.Expr) -> pl.Expr:
    """A boolean expression: the column holds a valid credit code (null stays null)."""
    values = [_char_values(col, i, USCC_VALUE) for i in range(18)]
    weighted = pl.sum_horizontal(
        [v * w for v, w in zip(values[:17], USCC_WEIGHTS, strict=True)], ignore_nulls=False
    )
    expected = (31 - weighted % 31) % 31
    return (col.str.len_chars() == 18) & (values[17] == expected).fill_null(False)


def resident_id_valid_expr(col: pl.Expr) -> pl.Expr:
    """A boolean expression: the column holds a valid resident identity number."""
    digits = [col.str.slice(i, 1).cast(pl.Int64, strict=False) for i in range(17)]
    weighted = pl.sum_horizontal(
        [d * w for d, w in zip(digits, RESIDENT_WEIGHTS, strict=True)], ignore_nulls=False
    )
    expected = (weighted % 11).replace_strict(
        dict(enumerate(RESIDENT_CHECK)), default=None, return_dtype=pl.String
    )
    return (col.str.len_chars() == 18) & (col.str.slice(17, 1) == expected).fill_null(False)


# --- NumPy over Arrow buffers: validation of millions of rows -------------------------
#
# The Polars expressions above slice each of the 18 characters into a column of its
# own; on ten million identity numbers that costs seconds.  Reading the Arrow
# string buffer as an (n, 18) byte matrix and doing the weighted sum as one
# matrix product costs milliseconds, with no loop over rows.

_USCC_LUT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_LUT[ord(_c)] = _i
_DIGIT_LUT = np.full(256, -1, dtype=np.int64)
for _i in range(10):
    _DIGIT_LUT[ord("0") + _i] = _i
_RESIDENT_CHECK_LUT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(RESIDENT_CHECK):
    _RESIDENT_CHECK_LUT[ord(_c)] = _i


def _byte_matrix(
    series: pl.Series, width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The rows of exactly `width` bytes as an (m, width) matrix, and which rows they are.

    After filtering to rows of that width the Arrow data buffer holds them back to
    back, so the matrix is a reshape of the buffer, not a gather.
    """
    import pyarrow as pa

    rows = series.str.len_bytes().eq(width).fill_null(False)
    arr = series.filter(rows).to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    m = len(arr)
    mask = rows.to_numpy()
    if m == 0:
        return np.zeros((0, width), dtype=np.uint8), mask
    _validity, offsets_buf, data_buf = arr.buffers()
    first = int(np.frombuffer(offsets_buf, dtype=np.int64, count=1, offset=arr.offset * 8)[0])
    data = np.frombuffer(data_buf, dtype=np.uint8, count=m * width, offset=first)
    return data.reshape(m, width), mask


def _checked(
    series: pl.Series, verdict: npt.NDArray[np.bool_], rows: npt.NDArray[np.bool_]
) -> pl.Series:
    out = np.zeros(len(series), dtype=bool)
    out[rows] = verdict
    result = pl.Series(series.name, out)
    return pl.select(pl.when(series.is_not_null()).then(result)).to_series().alias(series.name)


def _weighted(
    matrix: npt.NDArray[np.uint8], lut: npt.NDArray[np.int64], weights: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Sum of lut[char] * weight over the leading columns, and whether every char was in the lut.

    One pass per column (17 in all): integer matrix products get no BLAS help in
    NumPy and a full (n, 17) lookup would allocate gigabytes for a city.
    """
    n = matrix.shape[0]
    total = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    small = lut.astype(np.int16)
    for j, w in enumerate(weights):
        v = small[matrix[:, j]]
        ok &= v >= 0
        total += v.astype(np.int64) * w
    return total, ok


def uscc_valid_numpy(series: pl.Series) -> pl.Series:
    """Per row: a valid credit code (False for wrong length, alphabet or check; null stays null)."""
    matrix, rows = _byte_matrix(series, 18)
    total, ok = _weighted(matrix, _USCC_LUT, USCC_WEIGHTS)
    check = _USCC_LUT[matrix[:, 17]]
    return _checked(series, ok & (check == (31 - total % 31) % 31), rows)


def resident_id_valid_numpy(series: pl.Series) -> pl.Series:
    """Per row: a valid resident identity number (null stays null)."""
    matrix, rows = _byte_matrix(series, 18)
    total, ok = _weighted(matrix, _DIGIT_LUT, RESIDENT_WEIGHTS)
    return _checked(series, ok & (_RESIDENT_CHECK_LUT[matrix[:, 17]] == total % 11), rows)


def uscc_valid_fast(col: pl.Expr) -> pl.Expr:
    """`uscc_valid_expr`, computed over the Arrow buffer (for ingest)."""
    return col.map_batches(uscc_valid_numpy, return_dtype=pl.Boolean, is_elementwise=True)


def resident_id_valid_fast(col: pl.Expr) -> pl.Expr:
    """`resident_id_valid_expr`, computed over the Arrow buffer (for ingest)."""
    return col.map_batches(resident_id_valid_numpy, return_dtype=pl.Boolean, is_elementwise=True)


# --- NumPy: vectorised generation --------------------------------------------------

_USCC_BYTES = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
_ORG_BYTES = np.frombuffer(ORG_ALPHABET.encode(), dtype=np.uint8)
_RESIDENT_CHECK_BYTES = np.frombuffer(RESIDENT_CHECK.encode(), dtype=np.uint8)


def uscc_check_values(first17: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """Check-character values (0..30) for an (n, 17) array of credit-code character values."""
    total = first17.astype(np.int64) @ np.asarray(USCC_WEIGHTS, dtype=np.int64)
    return (31 - total % 31) % 31


def uscc_bytes(first17: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """An (n, 18) array of ASCII bytes: the credit codes, check character included."""
    values = np.empty((first17.shape[0], 18), dtype=np.int64)
    values[:, :17] = first17
    values[:, 17] = uscc_check_values(first17)
    return _USCC_BYTES[values]


def org_code_values(body8: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """Values of the GB 11714 check characters for an (n, 8) array of body values (0..35)."""
    total = body8.astype(np.int64) @ np.asarray(ORG_WEIGHTS, dtype=np.int64)
    value = 11 - total % 11
    # 10 is written 'X' and 11 is written '0'; return the index into ORG_ALPHABET.
    return np.where(value == 10, ORG_VALUE["X"], np.where(value == 11, 0, value))


def resident_id_bytes(first17: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """An (n, 18) array of ASCII bytes: identity numbers from (n, 17) digit values."""
    total = first17.astype(np.int64) @ np.asarray(RESIDENT_WEIGHTS, dtype=np.int64)
    out = np.empty((first17.shape[0], 18), dtype=np.uint8)
    out[:, :17] = first17.astype(np.uint8) + ord("0")
    out[:, 17] = _RESIDENT_CHECK_BYTES[total % 11]
    return out


def ascii_rows_to_series(name: str, rows: npt.NDArray[np.uint8]) -> pl.Series:
    """A String series from an (n, width) array of ASCII bytes, without a Python loop."""
    import pyarrow as pa

    n, width = rows.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(rows).reshape(-1)
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.alias(name)
