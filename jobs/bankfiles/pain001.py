"""Writing payment instructions as ISO 20022 pain.001.001.09 (CustomerCreditTransferInitiation).

One file holds one batch: a group header, one payment information block (the debtor's
account and bank, the requested execution date) and one CdtTrfTxInf per payment:

    CdtTrfTxInf
      PmtId/EndToEndId                    end_to_end_id
      Amt/InstdAmt Ccy="CNY"              amount_fen as yuan with two decimals
      CdtrAgt/FinInstnId/ClrSysMmbId      ClrSysId/Cd = CNAPS, MmbId = creditor_bank_code
      Cdtr/Nm                             creditor_name
      CdtrAcct/Id/Othr/Id                 creditor_account
      RmtInf/Ustrd                        remittance (left out when null)

The file is streamed: lxml's incremental writer (`etree.xmlfile`) writes one reused
element per payment, batch by batch, so memory does not grow with the batch.  It is
written to a temporary file beside the target, read back through the XSD (streamed the
same way), checked for what the XSD cannot say (the counts and sums equal the
transactions, amounts have at most two decimals, every agent names its bank), and only
then moved onto the target name.  The same inputs give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
from lxml import etree

from common.errors import DisburseError
from common.money import format_yuan
from jobs.bankfiles.instructions import (
    PaymentHeader,
    check_header,
    check_instructions,
    ctrl_sum_fen,
    fen_of_yuan_text,
    yuan_text,
    yuan_text_of,
)
from jobs.bankfiles.xmlstream import PAIN001, replaced_atomically, stream_valid, write_failed

BATCH_ROWS = 10_000
INDENT = "  "
CLEARING_SYSTEM = "CNAPS"  # ISO 20022 ExternalClearingSystemIdentification1Code for China


@dataclass(frozen=True, slots=True)
class PaymentFile:
    """A payment file written (or checked): where, what it holds, and its sha256."""

    path: Path
    format: str  # "pain.001.001.09" or "csv"
    msg_id: str | None  # the GrpHdr/MsgId; None for the CSV template, which has none
    sha256: str
    count: int
    ctrl_sum_fen: int


def write_pain001(
    instructions: pl.DataFrame,
    header: PaymentHeader,
    target: Path,
    *,
    batch_rows: int = BATCH_ROWS,
) -> PaymentFile:
    """Write `instructions` (see `jobs.bankfiles.instructions`) as a pain.001.001.09 file at
    `target`, validated against the XSD before it takes the target's name.

    Raises DisburseError before writing when a row or the header breaks a rule, and after
    writing (leaving no file under the target name) when the file fails its checks."""
    check_header(header)
    check_instructions(instructions)
    count, total = instructions.height, ctrl_sum_fen(instructions)
    target = Path(target)
    with replaced_atomically(target, "pain.001 payment file") as tmp:
        try:
            _write(tmp, instructions, header, count, total, batch_rows)
        except OSError as e:
            raise write_failed("pain.001 payment file", target, e) from None
        written = validate_pain001(tmp, shown=str(target))
        if (written.msg_id, written.count, written.ctrl_sum_fen) != (header.msg_id, count, total):
            raise DisburseError(  # pragma: no cover - the writer and the reader disagree
                f"the pain.001 written holds {written.count} payments, "
                f"{format_yuan(written.ctrl_sum_fen)} yuan; {count} payments, "
                f"{format_yuan(total)} yuan were given",
                file=str(target),
                fix="nothing was written under the target name; report this as a bug",
            )
    return replace(written, path=target)


def _el(tag: str, text: str | None = None, *children: etree._Element) -> etree._Element:
    el = etree.Element(tag)
    el.text = text
    el.extend(children)
    return el


def _agent(bank_code: str) -> etree._Element:
    """A bank named by its CNAPS code: FinInstnId/ClrSysMmbId/(ClrSysId/Cd, MmbId)."""
    return _el(
        "FinInstnId",
        None,
        _el(
            "ClrSysMmbId",
            None,
            _el("ClrSysId", None, _el("Cd", CLEARING_SYSTEM)),
            _el("MmbId", bank_code),
        ),
    )


def _account(number: str) -> etree._Element:
    return _el("Id", None, _el("Othr", None, _el("Id", number)))


def _indented(el: etree._Element, level: int) -> etree._Element:
    etree.indent(el, space=INDENT, level=level)
    return el


class _Transaction:
    """One CdtTrfTxInf element, reused for every payment: its leaves are refilled and it
    is serialised again, so a million payments build no million elements."""

    def __init__(self, currency: str, *, remittance: bool) -> None:
        self.e2e = _el("EndToEndId", "-")
        self.amount = _el("InstdAmt", "0.00")
        self.amount.set("Ccy", currency)
        agent = _agent("-")
        self.agent = agent[0][1]  # FinInstnId/ClrSysMmbId/MmbId
        self.name = _el("Nm", "-")
        self.account = _el("Id", "-")
        self.remittance = _el("Ustrd", "-")
        parts = [
            _el("PmtId", None, self.e2e),
            _el("Amt", None, self.amount),
            _el("CdtrAgt", None, agent),
            _el("Cdtr", None, self.name),
            _el("CdtrAcct", None, _el("Id", None, _el("Othr", None, self.account))),
        ]
        if remittance:
            parts.append(_el("RmtInf", None, self.remittance))
        self.element = _indented(_el("CdtTrfTxInf", None, *parts), 3)


def _write(
    path: Path,
    instructions: pl.DataFrame,
    header: PaymentHeader,
    count: int,
    total_fen: int,
    batch_rows: int,
) -> None:
    # Elements below the root are written without a namespace: inside
    # <Document xmlns="urn:...pain.001.001.09"> an unprefixed name is in that namespace,
    # and lxml would otherwise repeat the declaration on every element it writes.
    group = _indented(
        _el(
            "GrpHdr",
            None,
            _el("MsgId", header.msg_id),
            _el("CreDtTm", header.created_at.isoformat(timespec="seconds")),
            _el("NbOfTxs", str(count)),
            _el("CtrlSum", yuan_text_of(total_fen)),
            _el("InitgPty", None, _el("Nm", header.initiating_party_name)),
        ),
        2,
    )
    payment_info = [
        _el("PmtInfId", header.pmt_inf_id),
        _el("PmtMtd", "TRF"),
        _el("NbOfTxs", str(count)),
        _el("CtrlSum", yuan_text_of(total_fen)),
        _el("ReqdExctnDt", None, _el("Dt", header.execution_on.isoformat())),
        _el("Dbtr", None, _el("Nm", header.debtor_name)),
        _el("DbtrAcct", None, _account(header.debtor_account)),
        _el("DbtrAgt", None, _agent(header.debtor_bank_code)),
    ]
    with_remittance = _Transaction(header.currency, remittance=True)
    without_remittance = _Transaction(header.currency, remittance=False)
    line3, line2, line1 = "\n" + INDENT * 3, "\n" + INDENT * 2, "\n" + INDENT
    columns = [
        pl.col("end_to_end_id"),
        yuan_text(pl.col("amount_fen").cast(pl.Int64)),
        pl.col("creditor_bank_code"),
        pl.col("creditor_name"),
        pl.col("creditor_account"),
        pl.col("remittance").cast(pl.String),
    ]
    with etree.xmlfile(str(path), encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(PAIN001.tag("Document"), nsmap={None: PAIN001.namespace}):
            xf.write(line1)
            with xf.element("CstmrCdtTrfInitn"):
                xf.write(line2, group, line2)
                with xf.element("PmtInf"):
                    for el in payment_info:
                        xf.write(line3, _indented(el, 3))
                    for batch in instructions.iter_slices(batch_rows):
                        values = batch.select(columns).get_columns()
                        for e2e, amount, bank, name, account, remittance in zip(
                            *(s.to_list() for s in values), strict=True
                        ):
                            tx = with_remittance if remittance else without_remittance
                            tx.e2e.text = e2e
                            tx.amount.text = amount
                            tx.agent.text = bank
                            tx.name.text = name
                            tx.account.text = account
                            if remittance:
                                tx.remittance.text = remittance
                            xf.write(line3, tx.element)
                    xf.write(line2)
                xf.write(line1)
            xf.write("\n")


def validate_pain001(path: Path, *, shown: str | None = None) -> PaymentFile:
    """Check a pain.001.001.09 file as `write_pain001` does before it names a file: the XSD,
    streamed, then what the XSD cannot say.  Returns what the file holds, with its sha256.

    Beyond the XSD: the group's and each payment block's NbOfTxs and CtrlSum are given and
    equal their transactions; every amount is CNY with at most two decimals; every agent
    (debtor's and creditor's) names its bank.  Raises DisburseError at the first problem,
    with its line."""
    path = Path(path)
    shown = shown or str(path)
    t = PAIN001.tag
    # Leaves read are asked of the parser by tag (filtered in C), not looked up with find():
    # at a million transactions that halves the time of the checks.
    kinds = {
        t(name): name
        for name in (
            "InstdAmt",
            "MmbId",
            "BICFI",
            "CdtTrfTxInf",
            "MsgId",
            "NbOfTxs",
            "CtrlSum",
            "DbtrAgt",
            "GrpHdr",
            "PmtInf",
        )
    }
    agents = {t("CdtrAgt"), t("DbtrAgt")}
    problem: tuple[int | None, str] | None = None
    problem_rank: tuple[bool, int] = (True, 0)
    msg_id: str | None = None
    declared: dict[str, tuple[int, str | None, str | None]] = {}  # GrpHdr: (line, nb, sum)
    nb: str | None = None
    total_sum: str | None = None
    count = total = block_count = block_total = 0
    fen: int | None = None  # the amount of the transaction being read
    amount_seen = False
    bank_named = False  # its agent (or the debtor's) names a bank

    def note(line: int | None, message: str, *, totals: bool = False) -> None:
        """Keep the problem to report: a transaction's before a total's (a bad amount makes
        a sum wrong too), then the first in the file (the group's totals are checked last)."""
        nonlocal problem, problem_rank
        rank = (totals, line or 0)
        if problem is None or rank < problem_rank:
            problem, problem_rank = (line, message), rank

    stream, elements = stream_valid(path, PAIN001, tuple(kinds), shown=shown)
    for el in elements:
        kind = kinds[str(el.tag)]
        if kind == "InstdAmt":
            amount_seen, fen = True, fen_of_yuan_text(el.text)
            if fen is None:
                note(el.sourceline, f"amount {el.text!r} is not yuan with at most 2 decimals")
            elif el.get("Ccy") != "CNY":
                note(el.sourceline, f"amount in {el.get('Ccy')}: disburse pays CNY only")
        elif kind in ("MmbId", "BICFI"):
            # FinInstnId/ClrSysMmbId/MmbId or FinInstnId/BICFI, in a creditor or debtor agent
            up = el.getparent()
            agent = up.getparent() if up is not None else None
            if kind == "MmbId" and agent is not None:
                agent = agent.getparent()
            if agent is not None and agent.tag in agents and (el.text or "").strip():
                bank_named = True
        elif kind == "CdtTrfTxInf":
            if not amount_seen:
                note(el.sourceline, "a transaction gives no amount in yuan (InstdAmt)")
            if not bank_named:
                note(el.sourceline, "the creditor agent (CdtrAgt) names no bank")
            block_count += 1
            block_total += fen or 0
            fen, amount_seen, bank_named = None, False, False
        elif kind == "DbtrAgt":
            if not bank_named:
                note(el.sourceline, "the debtor agent (DbtrAgt) names no bank")
            bank_named = False
        elif kind == "MsgId":
            msg_id = el.text
        elif kind == "NbOfTxs":
            nb = el.text
        elif kind == "CtrlSum":
            total_sum = el.text
        elif kind == "GrpHdr":
            declared["GrpHdr"] = (el.sourceline or 0, nb, total_sum)
            nb = total_sum = None
        elif kind == "PmtInf":
            wrong = _totals_problem("PmtInf", nb, total_sum, block_count, block_total)
            if wrong:
                note(el.sourceline, wrong, totals=True)
            count, total = count + block_count, total + block_total
            block_count = block_total = 0
            nb = total_sum = None
    if "GrpHdr" in declared:
        group_line, group_nb, group_sum = declared["GrpHdr"]
        wrong = _totals_problem("GrpHdr", group_nb, group_sum, count, total)
        if wrong:
            note(group_line, wrong, totals=True)
    if problem is not None:
        at, message = problem
        raise DisburseError(
            f"the pain.001 file fails a check its schema cannot make: {message}",
            file=shown,
            line=at,
            fix="nothing was sent; if disburse wrote this file, report it as a bug",
        )
    return PaymentFile(path, PAIN001.name, msg_id, stream.sha256, count, total)


def _totals_problem(
    where: str, nb: str | None, ctrl: str | None, count: int, total: int
) -> str | None:
    """What is wrong with a block's declared NbOfTxs and CtrlSum, given its transactions."""
    if nb is None or ctrl is None:
        return f"{where} gives no {'NbOfTxs' if nb is None else 'CtrlSum'}"
    if int(nb) != count:
        return f"{where}/NbOfTxs says {nb}, the file holds {count} transactions"
    if fen_of_yuan_text(ctrl) is None:
        return f"{where}/CtrlSum {ctrl!r} is not yuan with at most 2 decimals"
    if fen_of_yuan_text(ctrl) != total:
        return f"{where}/CtrlSum says {ctrl}, the transactions sum to {yuan_text_of(total)}"
    return None
