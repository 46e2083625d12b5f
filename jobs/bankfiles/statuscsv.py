"""Reading a bank's status reply given as CSV (the plain form of a 代发 result file).

Columns, named in a header row (any order, names case-insensitive; other columns are
ignored): end_to_end_id, status, reason_code, and optionally note.  `status` is a word
or an ISO 20022 code, mapped as `jobs.bankfiles.codes` says (成功, 失败, 退票, RJCT...);
reason_code is an ISO 20022 reason (AC04) or empty.

Encoding: UTF-8, with or without a byte-order mark.  A file in any other encoding is
refused, never guessed: Excel on a Chinese Windows saves "CSV" as GBK, and a GBK file
read as anything else garbles names silently, so the error says which line is not
UTF-8 and how to save the file as UTF-8.  Every bad row is named by its line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from pathlib import Path

import polars as pl

from common.errors import DisburseError
from jobs.bankfiles.codes import CSV_WORDS, ISO_STATUS_CODES, RETURN_WORDS, Outcome, outcome
from jobs.bankfiles.pain002 import (
    LEVEL_SCHEMA,
    STATUS_SCHEMA,
    StatusReport,
    conflicting_statuses,
    import_refused,
)
from ledgers.masking import mask_name

STATUS_CSV_COLUMNS = ("end_to_end_id", "status", "reason_code", "note")
_REQUIRED = STATUS_CSV_COLUMNS[:3]
_REASON = re.compile(r"^[A-Z0-9]{1,4}$")  # ExternalStatusReason1Code: at most 4 characters


def read_status_csv(path: Path) -> StatusReport:
    """Read a CSV status reply into a StatusReport (no message ids: a CSV carries none).

    Raises DisburseError for a file that cannot be read, is not UTF-8, lacks a column, or
    has bad rows (all named by line, the first 20 shown)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DisburseError(
            f"cannot read the status file: {e.strerror}",
            file=str(path),
            fix="check the path and that the file can be read",
        ) from None
    text = _decode(data, path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[tuple[int, str]] = []
    rows: dict[str, list[object]] = {name: [] for name in STATUS_SCHEMA}
    try:
        header = next(reader, None)
        if header is None:
            raise DisburseError(
                "the status file is empty",
                file=str(path),
                fix=f"give a header row ({', '.join(STATUS_CSV_COLUMNS)}) and one row per payment",
            )
        index = _columns(header, path)
        for record in reader:
            line = reader.line_num
            if not any(field.strip() for field in record):
                continue  # a blank line
            if len(record) != len(header):
                problems.append(
                    (line, f"{len(record)} fields where the header names {len(header)}")
                )
                continue
            e2e = record[index["end_to_end_id"]].strip()
            word = record[index["status"]].strip()
            reason = record[index["reason_code"]].strip().upper() or None
            note = record[index["note"]].strip() or None if "note" in index else None
            said = _outcome(word)
            if not e2e:
                problems.append((line, "end_to_end_id is empty"))
            if said is None:
                shown = word if word.isascii() and len(word) <= 12 else mask_name(word[:12])
                problems.append(  # a name in the wrong column is not printed whole
                    (line, f"status {shown!r} is not a status disburse knows ({_known_words()})")
                )
            if reason is not None and not _REASON.match(reason):
                problems.append(
                    (line, f"reason_code {reason!r} is not an ISO 20022 reason code (like AC04)")
                )
            if e2e and said is not None:
                bank_status = word.lower() if word.lower() in RETURN_WORDS else word
                for name, value in zip(
                    STATUS_SCHEMA, (None, e2e, said, bank_status, reason, note, line), strict=True
                ):
                    rows[name].append(value)
    except csv.Error as e:
        problems.append((reader.line_num, f"the CSV cannot be read here: {e}"))
    statuses = pl.DataFrame(rows, schema=STATUS_SCHEMA)
    problems += conflicting_statuses(statuses)
    if problems:
        raise import_refused(problems, path, "status file")
    return StatusReport(
        path=path,
        format="csv",
        sha256=hashlib.sha256(data).hexdigest(),
        msg_id=None,
        original_msg_id=None,
        statuses=statuses,
        levels=pl.DataFrame(schema=LEVEL_SCHEMA),
    )


def _decode(data: bytes, path: Path) -> str:
    """The file's text: UTF-8 (a BOM dropped); anything else refused with the line."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DisburseError(
            "the status file is not UTF-8: it is UTF-16 (what Excel calls 'Unicode text')",
            file=str(path),
            line=1,
            fix="save it as UTF-8: in Excel, Save As 'CSV UTF-8 (Comma delimited)'",
        )
    try:
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        try:
            data.decode("gb18030")
            looks = " (it reads as GBK, what Excel saves as 'CSV' on a Chinese Windows)"
        except UnicodeDecodeError:
            looks = ""
        raise DisburseError(
            f"the file is not UTF-8{looks}: the first byte that is not is on line {line}",
            file=str(path),
            line=line,
            fix="save it as UTF-8: in Excel, Save As 'CSV UTF-8 (Comma delimited)'; in a text "
            "editor, choose the UTF-8 encoding",
        ) from None


def _columns(header: list[str], path: Path) -> dict[str, int]:
    """Where each known column is, by its (stripped, lower-cased) name."""
    names = [h.strip().lower() for h in header]
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise DisburseError(
            f"the status file lacks the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (its header has {', '.join(h.strip() for h in header)})",
            file=str(path),
            line=1,
            fix=f"name the columns in the first row: {', '.join(STATUS_CSV_COLUMNS)} "
            "(note is optional)",
        )
    return {name: names.index(name) for name in STATUS_CSV_COLUMNS if name in names}


def _outcome(word: str) -> Outcome | None:
    """A status word or ISO 20022 code as an outcome; None if it is neither."""
    known = CSV_WORDS.get(word.lower())
    if known is not None:
        return known
    if word in ISO_STATUS_CODES:
        return outcome(word)
    return None


def _known_words() -> str:
    return "settled, rejected, returned, pending, 成功, 失败, 退票, 处理中, or an ISO code like ACSC, RJCT"
