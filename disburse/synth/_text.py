"""Building String columns from NumPy arrays without a Python object per row.

Three shapes of text occur in the sources: fixed-width ASCII (identifiers,
codes, dates as digits), ASCII of a few widths (account numbers: one
fixed-width block per width, put back in row order) and words picked from small
tables and concatenated (names, categories).  ASCII is written straight into
Arrow buffers; words are a Polars gather from a short Series followed by
`concat_str`, both of which run in Rust.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.integer[Any]]
ByteRows = npt.NDArray[np.uint8]


def _from_arrow(name: str, array: pa.Array) -> pl.Series:
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.alias(name)


def _validity(valid: BoolArray | None, n: int) -> tuple[pa.Buffer | None, int]:
    if valid is None or bool(valid.all()):
        return None, 0
    bitmap = np.packbits(valid.astype(np.uint8), bitorder="little")
    return pa.py_buffer(bitmap), int(n - np.count_nonzero(valid))


def ascii_series(name: str, rows: ByteRows, valid: BoolArray | None = None) -> pl.Series:
    """A String series from an (n, width) array of ASCII bytes; null where `valid` is False."""
    n, width = rows.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1)
    bitmap, nulls = _validity(valid, n)
    array = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), bitmap, nulls
    )
    return _from_arrow(name, array)


# Every 4-digit group as ASCII, one 4-byte item each: gathering items is far
# faster than dividing digit by digit or gathering rows of a byte table.
_FOUR_DIGITS = (
    np.array([[ord(c) for c in f"{i:04d}"] for i in range(10_000)], dtype=np.uint8)
    .view(np.uint32)
    .reshape(-1)
)


def digit_rows(values: npt.ArrayLike, width: int) -> ByteRows:
    """An (n, width) array of the ASCII decimal digits of non-negative integers, zero-padded."""
    v = np.asarray(values, dtype=np.int64)
    groups = -(-width // 4)
    out = np.empty((v.shape[0], groups), dtype=np.uint32)
    for g in range(groups):
        out[:, g] = _FOUR_DIGITS[(v // 10 ** (4 * (groups - 1 - g))) % 10_000]
    return out.view(np.uint8).reshape(v.shape[0], groups * 4)[:, groups * 4 - width :]


def pick(
    name: str, table: Sequence[str], index: npt.ArrayLike, valid: BoolArray | None = None
) -> pl.Series:
    """`table[index]` as a String series (null where `valid` is False)."""
    idx = pl.Series(name, np.asarray(index).astype(np.uint32, copy=False), dtype=pl.UInt32)
    if valid is not None and not bool(valid.all()):
        idx = pl.select(pl.when(pl.Series(valid)).then(idx)).to_series()
    return pl.Series(name, list(table), dtype=pl.String).gather(idx).alias(name)


def join(name: str, parts: Sequence[pl.Series | str]) -> pl.Series:
    """Concatenate String series (and literal words) row by row; a null contributes nothing."""
    series = [p.alias(f"p{i}") for i, p in enumerate(parts) if isinstance(p, pl.Series)]
    exprs = [
        pl.col(f"p{i}") if isinstance(p, pl.Series) else pl.lit(p) for i, p in enumerate(parts)
    ]
    frame = pl.DataFrame(series)
    return frame.select(pl.concat_str(exprs, ignore_nulls=True).alias(name)).to_series()


def take_in_order(pieces: Sequence[tuple[IntArray, pl.Series]], n: int, name: str) -> pl.Series:
    """One series of length n from pieces that each fill the rows at their indices."""
    order = np.concatenate([idx for idx, _ in pieces]) if pieces else np.empty(0, np.int64)
    values = pl.concat([s.alias(name) for _, s in pieces]) if pieces else pl.Series(name, [])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(order.shape[0], dtype=np.int64)
    return values.gather(pl.Series(inverse, dtype=pl.UInt32)).alias(name)
