"""Writing payment instructions as a plain bulk-payment (代发) CSV, for banks without pain.001.

One header row, then one row per payment:

    end_to_end_id,creditor_name,creditor_account,creditor_bank_code,amount_yuan,remittance

amount_yuan is yuan with two decimals written by integer arithmetic; remittance is empty
when null.  UTF-8 with a byte-order mark (Excel on a Chinese Windows reads a CSV without
one as GBK and garbles names), CRLF line ends (RFC 4180), fields quoted only when they
must be.  The same instructions give the same bytes.

Two things the reader should know: a cell that begins with = + - or @ is a formula to
Excel, so a name or remittance beginning so is refused rather than written; and an
account number saved back by Excel loses its digits past the fifteenth (6.22E+18), so
the file is for uploading as written, not for editing in Excel.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from common.errors import DisburseError
from jobs.bankfiles.instructions import check_instructions, ctrl_sum_fen, yuan_text
from jobs.bankfiles.pain001 import PaymentFile
from jobs.bankfiles.xmlstream import replaced_atomically, write_failed

BULK_CSV_COLUMNS = (
    "end_to_end_id",
    "creditor_name",
    "creditor_account",
    "creditor_bank_code",
    "amount_yuan",
    "remittance",
)
_FORMULA = r"^[=+\-@]"


def write_bulk_csv(instructions: pl.DataFrame, target: Path) -> PaymentFile:
    """Write `instructions` (see `jobs.bankfiles.instructions`) as a bulk-payment CSV at
    `target` (moved into place whole), after the same checks as pain.001."""
    check_instructions(instructions)
    _refuse_formulas(instructions)
    target = Path(target)
    frame = instructions.select(
        "end_to_end_id",
        "creditor_name",
        "creditor_account",
        "creditor_bank_code",
        yuan_text(pl.col("amount_fen").cast(pl.Int64)).alias("amount_yuan"),
        pl.col("remittance").cast(pl.String),
    )
    with replaced_atomically(target, "bulk payment CSV") as tmp:
        try:
            frame.write_csv(tmp, include_bom=True, line_terminator="\r\n", quote_style="necessary")
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        except OSError as e:
            raise write_failed("bulk payment CSV", target, e) from None
    return PaymentFile(target, "csv", None, digest, instructions.height, ctrl_sum_fen(instructions))


def _refuse_formulas(instructions: pl.DataFrame) -> None:
    bad = (
        instructions.with_row_index("row", offset=1)
        .filter(
            pl.col("creditor_name").str.contains(_FORMULA)
            | pl.col("remittance").cast(pl.String).str.contains(_FORMULA).fill_null(False)
        )
        .select("row", "end_to_end_id")
        .head(20)
    )
    if bad.height:
        rows = ", ".join(f"row {row} ({e2e})" for row, e2e in bad.iter_rows())
        raise DisburseError(
            f"a creditor_name or remittance begins with = + - or @, which Excel runs as a "
            f"formula: {rows}",
            fix="correct the text at its source, or pay these rows by pain.001; nothing was "
            "written",
        )
