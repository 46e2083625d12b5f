"""Reading a bank's status reply: ISO 20022 pain.002.001.12 (CustomerPaymentStatusReport).

No package ships the pain.002.001.10 schema that pairs with pain.001.001.09, so disburse
reads version 12 (the current one, whose elements used here are those of version 10).
A bank replying in another version gets an error that names the version it sent.

A reply gives statuses at three levels, each optional below the first:

    OrgnlGrpInfAndSts          OrgnlMsgId; GrpSts and StsRsnInf for the whole message
    OrgnlPmtInfAndSts          OrgnlPmtInfId; PmtInfSts and StsRsnInf for one payment block
      TxInfAndSts              OrgnlEndToEndId, TxSts, StsRsnInf/Rsn/Cd for one payment

`read_pain002` gives every transaction-level status (a `TxInfAndSts` without its own
TxSts takes its block's, else the group's), the group- and block-level statuses apart,
and `StatusReport.resolve` the outcome of every payment of a batch: its own status where
the reply gives one, else its block's, else the group's (a GrpSts RJCT with no
transactions rejects every payment of the message), else pending.  Status codes come
down to settled, rejected or pending as `jobs.bankfiles.codes` says.

A reply that contradicts itself (a message or block rejected whole, and a payment in it
not rejected; one payment given two outcomes) is refused: settling or re-paying on a
guess could pay twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from lxml import etree

from common.errors import DisburseError
from jobs.bankfiles.codes import OUTCOMES, outcome
from jobs.bankfiles.xmlstream import PAIN002, stream_valid

STATUS_SCHEMA = pl.Schema(
    {
        "original_msg_id": pl.String(),  # the pain.001 message answered (null in a CSV reply)
        "end_to_end_id": pl.String(),
        "status": pl.Enum(OUTCOMES),  # settled | rejected | pending
        "bank_status": pl.String(),  # the code or word as the bank wrote it (RJCT, 退票, ...)
        "reason_code": pl.String(),  # ISO 20022 reason (AC04...), null when none given
        "note": pl.String(),  # the bank's words (AddtlInf), null when none
        "line": pl.Int64(),  # where the status is in the file
    }
)
LEVEL_SCHEMA = pl.Schema(
    {
        "scope": pl.Enum(["group", "payment_information"]),
        "pmt_inf_id": pl.String(),  # the OrgnlPmtInfId of a block; null for the group
        "status": pl.Enum(OUTCOMES),
        "bank_status": pl.String(),
        "reason_code": pl.String(),
        "note": pl.String(),
        "line": pl.Int64(),
        "transactions": pl.Int64(),  # how many TxInfAndSts the level lists itself
    }
)
RESOLVED_SCHEMA = pl.Schema(
    {
        "end_to_end_id": pl.String(),
        "status": pl.Enum(OUTCOMES),
        "bank_status": pl.String(),
        "reason_code": pl.String(),
        "note": pl.String(),
        "line": pl.Int64(),
        "scope": pl.Enum(["transaction", "payment_information", "group", "none"]),
    }
)
PARTIAL = "PART"  # a group or block status that says: look at the transactions


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A bank's status reply, read and checked: what it answers and every status it gives."""

    path: Path
    format: str  # "pain.002.001.12" or "csv"
    sha256: str  # of the file's bytes: the same reply imported twice is known as such
    msg_id: str | None  # the reply's own GrpHdr/MsgId (None for CSV)
    original_msg_id: str | None  # the pain.001 it answers (None for CSV)
    statuses: pl.DataFrame  # STATUS_SCHEMA: one row per payment the reply names
    levels: pl.DataFrame  # LEVEL_SCHEMA: statuses of the whole message or a payment block

    @property
    def group_rejected(self) -> bool:
        """True if the bank rejected the whole message (GrpSts RJCT or CANC)."""
        group = self.levels.filter(pl.col("scope") == "group")
        return bool((group.get_column("status") == "rejected").any())

    def resolve(self, end_to_end_ids: Iterable[str], *, msg_id: str | None = None) -> pl.DataFrame:
        """The outcome of every payment of a batch (RESOLVED_SCHEMA, one row per id, in the
        order given): its own status, else its block's, else the group's, else pending
        with scope 'none'.  A block-level status is applied only when the reply has one
        block (disburse writes one per file).

        Raises DisburseError if `msg_id` is given and the reply answers another message,
        or if the reply names payments that are not among `end_to_end_ids`."""
        where = str(self.path)
        if msg_id is not None and self.original_msg_id not in (None, msg_id):
            raise DisburseError(
                f"this reply answers message {self.original_msg_id}, not {msg_id}",
                file=where,
                fix="import the reply to the batch it answers (its OrgnlMsgId)",
            )
        ids = pl.DataFrame(
            {"end_to_end_id": list(end_to_end_ids)}, schema={"end_to_end_id": pl.String}
        )
        strays = self.statuses.join(ids, on="end_to_end_id", how="anti")
        if strays.height:
            shown = ", ".join(
                f"line {line}: {e2e}"
                for e2e, line in strays.select("end_to_end_id", "line").head(5).iter_rows()
            )
            raise DisburseError(
                f"the reply names {strays.height} payment(s) that are not in this batch ({shown})",
                file=where,
                fix="check that the reply answers this batch; nothing was imported",
            )
        fallback = self._fallback()
        own = ids.join(
            self.statuses.unique("end_to_end_id", keep="first", maintain_order=True),
            on="end_to_end_id",
            how="left",
            maintain_order="left",
        )
        given = pl.col("status").is_not_null()

        def pick(column: str, value: object) -> pl.Expr:
            return pl.when(given).then(pl.col(column)).otherwise(pl.lit(value))

        return own.select(
            "end_to_end_id",
            pick("status", fallback["status"]).cast(RESOLVED_SCHEMA["status"]),
            pick("bank_status", fallback["bank_status"]).cast(pl.String),
            pick("reason_code", fallback["reason_code"]).cast(pl.String),
            pick("note", fallback["note"]).cast(pl.String),
            pick("line", fallback["line"]).cast(pl.Int64),
            pl.when(given)
            .then(pl.lit("transaction"))
            .otherwise(pl.lit(fallback["scope"]))
            .cast(RESOLVED_SCHEMA["scope"])
            .alias("scope"),
        )

    def _fallback(self) -> dict[str, object]:
        """The status of a payment the reply does not name: its block's (one block only),
        else the group's, unless they say PART; else pending."""
        blocks = self.levels.filter(pl.col("scope") == "payment_information")
        group = self.levels.filter(pl.col("scope") == "group")
        candidates = [blocks] if blocks.height == 1 else []
        candidates.append(group)
        for level in candidates:
            for row in level.iter_rows(named=True):
                if row["bank_status"] not in (None, PARTIAL):
                    return {**row, "scope": row["scope"]}
        return {
            "status": "pending",
            "bank_status": None,
            "reason_code": None,
            "note": None,
            "line": None,
            "scope": "none",
        }


@dataclass(slots=True)
class _Level:
    """The status of the whole message or of one payment block, as it is read."""

    scope: str
    pmt_inf_id: str | None = None
    bank_status: str | None = None
    reason_code: str | None = None
    note: str | None = None
    line: int | None = None
    transactions: int = 0

    def row(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "pmt_inf_id": self.pmt_inf_id,
            "status": outcome(self.bank_status),
            "bank_status": self.bank_status,
            "reason_code": self.reason_code,
            "note": self.note,
            "line": self.line,
            "transactions": self.transactions,
        }


def _reason(parent: etree._Element) -> tuple[str | None, str | None]:
    """The first StsRsnInf's code (Cd, else Prtry) and its notes (AddtlInf, joined)."""
    t = PAIN002.tag
    info = parent.find(t("StsRsnInf"))
    if info is None:
        return None, None
    code = info.findtext(t("Rsn", "Cd")) or info.findtext(t("Rsn", "Prtry"))
    notes = [n.text for n in info.iterfind(t("AddtlInf")) if n.text]
    return code, "; ".join(notes) or None


def read_pain002(path: Path) -> StatusReport:
    """Read a pain.002.001.12 reply, validated against its XSD as it streams (constant
    memory), into a StatusReport.  Raises DisburseError naming the file, the line and what
    is wrong for a file that is not XML, not pain.002.001.12, fails the schema, names a
    payment without its OrgnlEndToEndId, or contradicts itself."""
    path = Path(path)
    t = PAIN002.tag
    kinds = {
        t(name): name
        for name in (
            "TxInfAndSts",
            "GrpHdr",
            "OrgnlGrpInfAndSts",
            "OrgnlPmtInfId",
            "PmtInfSts",
            "StsRsnInf",
            "OrgnlPmtInfAndSts",
        )
    }
    block_tag = t("OrgnlPmtInfAndSts")
    problems: list[tuple[int, str]] = []
    msg_id: str | None = None
    original: str | None = None
    group = _Level("group")
    block: _Level | None = None
    levels: list[_Level] = []
    rows: dict[str, list[object]] = {name: [] for name in STATUS_SCHEMA}

    stream, elements = stream_valid(path, PAIN002, tuple(kinds), shown=str(path))
    for el in elements:
        kind = kinds[str(el.tag)]
        line = el.sourceline or 0
        if kind == "TxInfAndSts":
            e2e = el.findtext(t("OrgnlEndToEndId"))
            code = el.findtext(t("TxSts"))
            reason, note = _reason(el)
            if code is None:  # the block's status, else the group's
                inherited = block if block is not None and block.bank_status else group
                code = inherited.bank_status
                if reason is None:
                    reason, note = inherited.reason_code, inherited.note
            if not e2e:
                problems.append((line, "a payment's status names no OrgnlEndToEndId"))
                continue
            said = outcome(code)
            for level, name in ((group, "message"), (block, "payment block")):
                if level is not None and outcome(level.bank_status) == "rejected" != said:
                    problems.append(
                        (line, f"the {name} is rejected whole, yet payment {e2e} is {code}")
                    )
            if block is not None:
                block.transactions += 1
            group.transactions += 1
            for name, value in zip(
                STATUS_SCHEMA, (original, e2e, said, code, reason, note, line), strict=True
            ):
                rows[name].append(value)
        elif kind == "GrpHdr":
            msg_id = el.findtext(t("MsgId"))
        elif kind == "OrgnlGrpInfAndSts":
            original = el.findtext(t("OrgnlMsgId"))
            status = el.find(t("GrpSts"))
            if status is not None:
                group.bank_status, group.line = status.text, status.sourceline
                group.reason_code, group.note = _reason(el)
        elif kind == "OrgnlPmtInfId":
            block = _Level("payment_information", pmt_inf_id=el.text, line=line)
        elif kind == "PmtInfSts" and block is not None:
            block.bank_status, block.line = el.text, line
        elif kind == "StsRsnInf" and block is not None:
            parent = el.getparent()
            if parent is not None and parent.tag == block_tag and block.reason_code is None:
                block.reason_code, block.note = _reason(parent)
        elif kind == "OrgnlPmtInfAndSts" and block is not None:
            if block.bank_status is not None:
                levels.append(block)
            block = None
    if group.bank_status is not None:
        levels.insert(0, group)
    statuses = pl.DataFrame(rows, schema=STATUS_SCHEMA)
    problems += conflicting_statuses(statuses)
    if problems:
        raise import_refused(problems, path, "pain.002 reply")
    return StatusReport(
        path=path,
        format=PAIN002.name,
        sha256=stream.sha256,
        msg_id=msg_id,
        original_msg_id=original,
        statuses=statuses,
        levels=pl.DataFrame([lv.row() for lv in levels], schema=LEVEL_SCHEMA),
    )


def conflicting_statuses(statuses: pl.DataFrame) -> list[tuple[int, str]]:
    """A payment given two different outcomes in one reply, named at its second line."""
    twice = (
        statuses.group_by("end_to_end_id", maintain_order=True)
        .agg(pl.col("status").n_unique().alias("outcomes"), pl.col("line"))
        .filter(pl.col("outcomes") > 1)
        .head(20)
    )
    return [
        (lines[1], f"payment {e2e} is given two outcomes (lines {', '.join(map(str, lines[:5]))})")
        for e2e, _, lines in twice.iter_rows()
    ]


def import_refused(problems: list[tuple[int, str]], path: Path, what: str) -> DisburseError:
    problems = sorted(problems)
    shown = [f"line {line}: {message}" for line, message in problems[:20]]
    if len(problems) > 20:
        shown.append(f"... and {len(problems) - 20} more")
    return DisburseError(
        f"the {what} cannot be imported:\n  " + "\n  ".join(shown),
        file=str(path),
        line=problems[0][0],
        fix="ask the bank for a corrected reply; nothing was imported",
    )
