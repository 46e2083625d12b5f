"""What is wrong with a source file that could not be read, said with its position.

Polars refuses a CSV that is not UTF-8, that has a row with more fields than its
header, or whose quote is never closed, and a Parquet file whose data pages are
damaged; its message names neither the line nor the column.  These checks run
only after a read has failed (a good file costs nothing) and find the first
problem in the file's own terms: the line of a CSV, the column and row group of
a Parquet file, with what to do about it.  They never show the file's content:
a line of a source file may hold an identity number.

The CSV checks read the file in blocks of bytes and work on whole blocks with
NumPy (no loop over lines); quotes are followed across blocks, so a quoted value
may hold separators and line breaks, as RFC 4180 allows.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import Code
from jobs.errors import JobError

BLOCK: Final = 1 << 23  # 8 MiB of the file at a time
QUOTE: Final = ord('"')
SEPARATOR: Final = ord(",")
NEWLINE: Final = ord("\n")


@dataclass(frozen=True, slots=True)
class FileProblem:
    """The first thing wrong with a file: where (a line, for a CSV), what, and the fix."""

    message: str
    fix: str
    code: Code
    line: int | None = None


def unreadable(name: str, path: Path, fmt: str, exc: BaseException) -> JobError | None:
    """The error a person reads for a source file that failed to read with `exc`; None when
    the failure is not about the file (the caller re-raises `exc`)."""
    problem = csv_problem(path) if fmt == "csv" else parquet_problem(path)
    if problem is not None:
        return JobError(
            f"source {name!r}: {problem.message}",
            fix=problem.fix,
            code=problem.code,
            file=str(path),
            line=problem.line,
        )
    if isinstance(exc, pl.exceptions.ComputeError | pl.exceptions.NoDataError | pa.ArrowException):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return JobError(
            f"source {name!r} ({path}): cannot be read as {fmt}: {first}",
            fix=f"re-export the file as {fmt} (see `disburse sources` for what each file holds)",
            code=Code.DATA_UNREADABLE,
        )
    return None


# --- CSV ------------------------------------------------------------------------------


def csv_problem(path: Path) -> FileProblem | None:
    """The first encoding or structure problem of a CSV file, or None."""
    if path.stat().st_size == 0:
        return FileProblem(
            "the file is empty: a CSV file has at least its header row",
            fix="deliver the file with its header row (and its rows; a header alone is fine "
            "when there are none)",
            code=Code.DATA_CSV_SHAPE,
        )
    return _encoding_problem(path) or _structure_problem(path)


def _encoding_problem(path: Path) -> FileProblem | None:
    """Where the file stops being UTF-8, and what it looks like instead."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return FileProblem(
            'the file is UTF-16 text (as spreadsheets save "Unicode text"), not UTF-8',
            fix=f"convert it: `iconv -f UTF-16 -t UTF-8 {path.name} > utf8-{path.name}`, "
            'or save it from the spreadsheet as "CSV UTF-8"',
            code=Code.DATA_NOT_UTF8,
            line=1,
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = 0  # bytes of the file before this block
    with path.open("rb") as fh:
        while True:
            block = fh.read(BLOCK)
            # The decoder holds back the bytes of a character cut by the block's end, and
            # counts an error's position from them.
            held = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return _not_utf8(path, read - held + exc.start)
            if not block:
                return None
            read += len(block)


def _not_utf8(path: Path, at: int) -> FileProblem:
    """The problem of the byte at offset `at` of the file, which is not UTF-8."""
    line, line_bytes, prefix = _line_around(path, at)
    where = f"line {line}, {_column_at(path, line, _field_of(prefix))}, byte 0x{line_bytes[len(prefix)]:02X}"
    guess = _chinese_encoding(line_bytes)
    if guess is not None:
        return FileProblem(
            f"the file is not UTF-8 ({where}); it looks like {guess}",
            fix=f"convert it with `iconv -f {guess} -t UTF-8 {path.name} > utf8-{path.name}` "
            "and deliver the converted file (or export it as UTF-8)",
            code=Code.DATA_NOT_UTF8,
            line=line,
        )
    return FileProblem(
        f"the file is not UTF-8 ({where})",
        fix=f"convert it to UTF-8 (`iconv -f <its encoding> -t UTF-8 {path.name} > "
        f"utf8-{path.name}`) or export it as UTF-8",
        code=Code.DATA_NOT_UTF8,
        line=line,
    )


def _line_around(path: Path, at: int, reach: int = 1 << 20) -> tuple[int, bytes, bytes]:
    """The line number of file offset `at`, the line's bytes (at most `reach` either side)
    and its bytes before `at`."""
    lines = 1
    with path.open("rb") as fh:
        done = 0
        while done < at:  # count the line breaks before `at`, a block at a time
            chunk = fh.read(min(BLOCK, at - done))
            lines += chunk.count(b"\n")
            done += len(chunk)
        lo = max(0, at - reach)
        fh.seek(lo)
        window = fh.read(at - lo + reach)
    here = at - lo
    start = window.rfind(b"\n", 0, here) + 1
    end = window.find(b"\n", here)
    return lines, window[start : end if end >= 0 else len(window)], window[start:here]


def _column_at(path: Path, line: int, field: int) -> str:
    """Which column the `field`th field (0-based) of a data line is, in words."""
    if line == 1:
        return "in the header"
    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    names = next(csv.reader([header]), [])
    return f"column {names[field]!r}" if field < len(names) else f"field {field + 1}"


def _chinese_encoding(line: bytes) -> str | None:
    """GBK or GB18030 if the line decodes in it to text with Chinese characters, else None."""
    for encoding in ("GBK", "GB18030"):
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError:
            continue
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            return encoding
    return None


def _field_of(prefix: bytes) -> int:
    """How many separators outside quotes precede the end of `prefix` (a line's start)."""
    b = np.frombuffer(prefix, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate((b == QUOTE).astype(np.uint8)) if b.size else b
    return int(np.count_nonzero((b == SEPARATOR) & (inside == 0)))


@dataclass
class _Scan:
    """Where a structure scan is between two blocks: the open row and the quote state."""

    lines_before: int = 0  # newlines in the blocks already read
    in_quote: int = 0  # 1 inside a quoted value at the end of the last block
    row_start_line: int = 1
    row_separators: int = 0  # separators of the open row so far
    row_bytes: int = 0
    rows: int = 0  # rows finished, the header included
    header_fields: int = 0


def _structure_problem(path: Path) -> FileProblem | None:
    """The first row whose field count differs from the header's, or a quote never closed."""
    scan = _Scan()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            found = _scan_block(np.frombuffer(block, dtype=np.uint8), scan)
            if found is not None:
                return found
    if scan.in_quote:
        return FileProblem(
            "a double quote opened in the row that starts on this line is never closed, "
            "so the rest of the file would be one value",
            fix='close the quote, and write a quote inside a value as two quotes ("")',
            code=Code.DATA_CSV_SHAPE,
            line=scan.row_start_line,
        )
    if scan.row_bytes > 0 and scan.rows > 0:  # a last row without a line break
        fields = scan.row_separators + 1
        if fields != scan.header_fields and not _blank(scan.row_bytes, fields):
            return _wrong_fields(scan.row_start_line, scan.row_start_line, fields, scan)
    return None


def _scan_block(b: npt.NDArray[np.uint8], scan: _Scan) -> FileProblem | None:
    """Finish every row that ends in block `b`, checking its field count; update `scan`."""
    quotes = (b == QUOTE).astype(np.uint8)
    # 1 where a byte lies inside quotes: the parity of the quotes up to it ("" inside a
    # value flips twice, so it stays inside).
    inside = np.bitwise_xor.accumulate(quotes) ^ np.uint8(scan.in_quote)
    outside = inside == 0
    separators = np.flatnonzero((b == SEPARATOR) & outside)
    ends = np.flatnonzero((b == NEWLINE) & outside)
    newlines = np.flatnonzero(b == NEWLINE)
    if ends.size:
        before = np.searchsorted(separators, ends)
        fields = np.diff(before, prepend=0) + 1
        fields[0] += scan.row_separators
        starts = np.concatenate(([0], ends[:-1] + 1))
        sizes = ends - starts
        sizes[0] += scan.row_bytes
        start_lines = scan.lines_before + 1 + np.searchsorted(newlines, starts)
        start_lines[0] = scan.row_start_line
        end_lines = scan.lines_before + 1 + np.searchsorted(newlines, ends)
        if scan.rows == 0:
            scan.header_fields = int(fields[0])
        expected = np.full(fields.size, scan.header_fields)
        bad = (fields != expected) & ~((sizes <= 1) & (fields == 1))
        if scan.rows == 0:
            bad[0] = False
        hits = np.flatnonzero(bad)
        if hits.size:
            k = int(hits[0])
            return _wrong_fields(int(start_lines[k]), int(end_lines[k]), int(fields[k]), scan)
        scan.rows += int(ends.size)
        last = int(ends[-1]) + 1
        scan.row_start_line = scan.lines_before + 1 + int(np.searchsorted(newlines, last))
        scan.row_separators = int(separators.size - np.searchsorted(separators, last))
        scan.row_bytes = int(b.size - last)
    else:
        scan.row_separators += int(separators.size)
        scan.row_bytes += int(b.size)
    scan.lines_before += int(newlines.size)
    scan.in_quote = int(inside[-1]) if b.size else scan.in_quote
    return None


def _blank(size: int, fields: int) -> bool:
    """An empty line (perhaps with a carriage return): read as a row of empty values."""
    return size <= 1 and fields == 1


def _wrong_fields(start: int, end: int, fields: int, scan: _Scan) -> FileProblem:
    """A row with `fields` fields where the header has another count."""
    more = fields > scan.header_fields
    counts = f"{fields} fields where the header has {scan.header_fields}"
    if end > start:
        return FileProblem(
            f"the row that starts on this line runs on to line {end} ({counts}): "
            "a double quote on this line is probably not closed",
            fix='close the quote, and write a quote inside a value as two quotes ("")',
            code=Code.DATA_CSV_SHAPE,
            line=start,
        )
    return FileProblem(
        f"the row has {counts}",
        fix=(
            "a value holding a comma must be in double quotes; remove the extra separator "
            "or re-export the file with quoting"
            if more
            else "give every column a value (an empty one between two commas is fine)"
        ),
        code=Code.DATA_CSV_SHAPE,
        line=start,
    )


# --- Parquet -------------------------------------------------------------------------


def parquet_problem(path: Path) -> FileProblem | None:
    """The first column and row group of a Parquet file whose data cannot be decoded, or None."""
    try:
        meta = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        return FileProblem(
            f"the file is not a readable Parquet file ({_first_line(exc)})",
            fix="deliver the file again: it is damaged or not Parquet; compare its sha256 "
            "with the sender's",
            code=Code.DATA_UNREADABLE,
        )
    groups = meta.metadata.num_row_groups
    first_row = 0
    for group in range(groups):
        rows = meta.metadata.row_group(group).num_rows
        for column in meta.schema_arrow.names:
            try:
                meta.read_row_group(group, columns=[column])
            except (OSError, pa.ArrowException) as exc:
                return FileProblem(
                    f"column {column!r}, row group {group + 1} of {groups} (rows "
                    f"{first_row + 1} to {first_row + rows}), cannot be decoded: the file is "
                    f"damaged ({_first_line(exc)})",
                    fix="deliver the file again (a truncated copy or a failing disk, not a "
                    "value in it); compare its sha256 with the sender's",
                    code=Code.DATA_UNREADABLE,
                )
        first_row += rows
    # What PyArrow reads, Polars may still refuse: name the column at least.
    for column in meta.schema_arrow.names:
        try:
            pl.scan_parquet(path).select(column).collect()
        except pl.exceptions.PolarsError as exc:
            return FileProblem(
                f"column {column!r} cannot be decoded ({_first_line(exc)})",
                fix="deliver the file again, or re-export it as Parquet",
                code=Code.DATA_UNREADABLE,
            )
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
