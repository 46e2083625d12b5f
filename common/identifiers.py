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
expression (the reference the synthetic population is checked against), and
NumPy kernels over the Arrow buffer: `identifier_expr` gives ingest each value's
status and, for an identity number, an integer code; the generator builds
identifiers with the `*_bytes` functions.
"""

from __future__ import annotations

from typing import Final

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


def is_resident_id(value: str | None) -> bool:
    """True if `value` is a resident identity number (personal data), not a credit code: 17
    digits holding a plausible birth date, and the right check character."""
    if value is None or len(value) != 18 or not value[:17].isdigit():
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not (1850 <= year <= 2199 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(c) * w for c, w in zip(value[:17], RESIDENT_WEIGHTS, strict=True))
    return RESIDENT_CHECK[total % 11] == value[17]


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


# --- NumPy over Arrow buffers: validation of millions of rows -------------------------
#
# The Polars expressions above slice each of the 18 characters into a column of its
# own; on ten million identity numbers that costs seconds.  Reading the Arrow
# string buffer as an (n, 18) byte matrix and doing the weighted sum as one
# matrix product costs milliseconds, with no loop over rows.

_USCC_LUT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_LUT[ord(_c)] = _i
_RESIDENT_CHECK_LUT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(RESIDENT_CHECK):
    _RESIDENT_CHECK_LUT[ord(_c)] = _i


def _byte_matrix(
    series: pl.Series, width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The rows of exactly `width` bytes as an (m, width) matrix, and which rows they are.

    Read from the Arrow data buffer: when every other row is null or empty (the
    usual case) the rows lie back to back and the matrix is a reshape of the
    buffer; otherwise they are gathered by their offsets.
    """
    import pyarrow as pa

    rows = series.str.len_bytes().eq(width).fill_null(False).to_numpy()
    m = int(rows.sum())
    if m == 0:
        return np.zeros((0, width), dtype=np.uint8), rows
    arr = series.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(
        offsets_buf,
        dtype=offset_type,
        count=len(arr) + 1,
        offset=arr.offset * np.dtype(offset_type).itemsize,
    )
    data = np.frombuffer(data_buf, dtype=np.uint8)
    first, last = int(offsets[0]), int(offsets[-1])
    if last - first == m * width:
        return data[first : first + m * width].reshape(m, width), rows
    starts = offsets[:-1][rows].astype(np.int64)
    return data[starts[:, None] + np.arange(width)], rows


# What ingest needs to know of an identifier value, from one pass over its bytes: its
# status, and for a valid resident identity number an integer code that sorts as the
# text does, so that joins and ranks on ten million numbers compare 8-byte integers.
ID_VALID: Final = 0
ID_MALFORMED: Final = 1  # wrong length or a character outside the identifier's alphabet
ID_WRONG_CHECK: Final = 2
STATUS_FIELD: Final = "status"
CODE_FIELD: Final = "code"
# Rows per block inside a kernel: bounds the (rows, 18) temporaries to a few MB
# whether the engine hands over a streaming morsel or a whole column.
_BLOCK: Final = 1 << 16

_USCC_LUT8 = np.where(_USCC_LUT >= 0, _USCC_LUT, 255).astype(np.uint8)
# The last character of an identity number: its digit value, 10 for X; 255 otherwise.
# Codes are first17 * 11 + that value, which keeps the order of the text (digits < X).
_RESIDENT_LAST = np.full(256, 255, dtype=np.uint8)
_RESIDENT_LAST[ord("0") : ord("9") + 1] = np.arange(10, dtype=np.uint8)
_RESIDENT_LAST[ord("X")] = 10
# Value of the check character in RESIDENT_CHECK order ("10X98765432"), 255 otherwise.
_RESIDENT_CHECK_VALUE = np.where(_RESIDENT_CHECK_LUT >= 0, _RESIDENT_CHECK_LUT, 255).astype(
    np.uint8
)
# Per position of the first 17: the character's value times its weight, or _USCC_BAD for a
# character outside the alphabet, so one table lookup and one addition per position give
# both the weighted sum and whether every character was valid (valid sums stay below 10,000).
_USCC_BAD: Final = 1 << 20
_USCC_WEIGHTED = np.asarray(
    [np.where(_USCC_LUT >= 0, _USCC_LUT * w, _USCC_BAD) for w in USCC_WEIGHTS], dtype=np.uint32
)
_RESIDENT_W = np.asarray(RESIDENT_WEIGHTS, dtype=np.uint32)

# The kernels below work on a block transposed to (18, rows): each character position
# is then one contiguous run of bytes, and every step is a plain vector operation.


def _uscc_block(t: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    # np.take, not fancy indexing: about half the time (docs/benchmarks.md).
    total = np.take(_USCC_WEIGHTED[0], t[0])
    for j in range(1, 17):
        total += np.take(_USCC_WEIGHTED[j], t[j])
    check = np.take(_USCC_LUT8, t[17])
    bad = (total >= _USCC_BAD) | (check == 255)
    ok = check == (31 - total % 31) % 31
    return np.where(bad, ID_MALFORMED, np.where(ok, ID_VALID, ID_WRONG_CHECK)).astype(np.uint8)


def _resident_block(
    t: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    n = t.shape[1]
    total = np.zeros(n, dtype=np.uint32)
    bad = np.zeros(n, dtype=bool)
    # The 17 digits as two numbers of 9 and 8 digits, each within 32 bits.
    hi = np.zeros(n, dtype=np.uint32)
    lo = np.zeros(n, dtype=np.uint32)
    for j in range(17):
        d = t[j] - np.uint8(ord("0"))  # wraps above 9 for anything but a digit
        bad |= d > 9
        total += d * _RESIDENT_W[j]
        half = hi if j < 9 else lo
        half *= 10
        half += d
    last = _RESIDENT_LAST[t[17]]
    bad |= last == 255
    ok = _RESIDENT_CHECK_VALUE[t[17]] == total % 11
    status = np.where(bad, ID_MALFORMED, np.where(ok, ID_VALID, ID_WRONG_CHECK))
    codes = (hi.astype(np.int64) * 10**8 + lo) * 11 + last
    return status.astype(np.uint8), codes


def _id_arrays(
    series: pl.Series, kind: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64] | None]:
    """Status per row (ID_MALFORMED for nulls, which no rule asks about) and resident codes."""
    matrix, rows = _byte_matrix(series, 18)
    m = matrix.shape[0]
    # Computed for the rows of 18 bytes, then spread over all rows (unless they are all).
    status = np.empty(m, dtype=np.uint8)
    codes = np.empty(m, dtype=np.int64) if kind != "uscc" else None
    for lo in range(0, m, _BLOCK):
        block = np.ascontiguousarray(matrix[lo : lo + _BLOCK].T)
        at = slice(lo, lo + block.shape[1])
        if kind == "uscc":
            status[at] = _uscc_block(block)
            continue
        r_status, r_codes = _resident_block(block)
        if kind == "resident_id":
            status[at] = r_status
        else:  # either identifier: valid if either is, malformed if it has neither shape
            u_status = _uscc_block(block)
            either = (u_status == ID_VALID) | (r_status == ID_VALID)
            checked = (u_status == ID_WRONG_CHECK) | (r_status == ID_WRONG_CHECK)
            status[at] = np.where(either, ID_VALID, np.where(checked, ID_WRONG_CHECK, ID_MALFORMED))
        assert codes is not None
        # 0 marks "no resident code": a valid number's code is at least 1 (its check value
        # for seventeen zeros is 1), so a value valid only as a credit code keeps 0.
        codes[at] = np.where(r_status == ID_VALID, r_codes, 0)
    if m == len(series):
        return status, codes
    all_status = np.full(len(series), ID_MALFORMED, dtype=np.uint8)
    all_status[rows] = status
    if codes is None:
        return all_status, None
    all_codes = np.zeros(len(series), dtype=np.int64)
    all_codes[rows] = codes
    return all_status, all_codes


def identifier_fields(series: pl.Series, kind: str) -> pl.Series:
    """A struct per row: `status`, and `code` for a valid resident identity number (else null)."""
    status, codes = _id_arrays(series, kind)
    present = series.is_not_null()
    fields = [pl.when(present).then(pl.Series(STATUS_FIELD, status)).alias(STATUS_FIELD)]
    if codes is not None:  # 0: not a valid identity number (perhaps a valid credit code)
        code_ok = present & pl.Series(codes > 0)
        fields.append(pl.when(code_ok).then(pl.Series(CODE_FIELD, codes)).alias(CODE_FIELD))
    else:
        fields.append(pl.lit(None, dtype=pl.Int64).alias(CODE_FIELD))
    return pl.select(pl.struct(fields).alias(series.name)).to_series()


IDENTIFIER_DTYPE: Final = pl.Struct({STATUS_FIELD: pl.UInt8, CODE_FIELD: pl.Int64})


def identifier_expr(col: pl.Expr, kind: str) -> pl.Expr:
    """`identifier_fields` as an expression over the Arrow buffer (for ingest)."""
    return col.map_batches(
        lambda s: identifier_fields(s, kind), return_dtype=IDENTIFIER_DTYPE, is_elementwise=True
    )


def resident_code_of(number: str) -> int:
    """The integer code `identifier_fields` gives a valid identity number."""
    if not is_valid_resident_id(number):
        raise ValueError(f"not a valid resident identity number: {number!r}")
    return int(number[:17]) * 11 + (10 if number[17] == "X" else int(number[17]))


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
