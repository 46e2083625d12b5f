"""A simulated bank: the status reply a bank would send to a batch, for demos and tests.

Given the batch's instructions and header, a seed and a return rate, `simulate_bank_reply`
writes a pain.002.001.12 reply (and, if asked, the same as a CSV status file) in which
round(return_rate * n) payments are rejected with realistic reason codes and the rest
settled.  Which payments, and which reason each gets, follow from the seed and the
end_to_end_id alone (a keyed BLAKE2b hash): the same batch and seed give the same bytes,
whatever the order of the rows and whichever Polars version runs.

`reject_all` (a reason code) has the bank reject the whole message instead: GrpSts RJCT
with that reason and no transaction statuses, as a bank does for a file it refuses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
from lxml import etree

from common.errors import DisburseError
from jobs.bankfiles.codes import REASONS
from jobs.bankfiles.instructions import (
    PaymentHeader,
    check_header,
    check_instructions,
    ctrl_sum_fen,
    yuan_text_of,
)
from jobs.bankfiles.pain002 import read_pain002
from jobs.bankfiles.xmlstream import PAIN001, PAIN002, replaced_atomically, write_failed

# How often each reason comes back for a 代发 batch paid to people and firms (weights of
# 100): wrong or closed accounts dominate; a deceased holder or a wrong bank code is rare.
REASON_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("AC01", 35),
    ("AC04", 25),
    ("BE01", 20),
    ("AC06", 12),
    ("MD07", 5),
    ("RC01", 3),
)
INDENT = "  "


@dataclass(frozen=True, slots=True)
class SimulatedReply:
    """The reply written: where, and how many payments it settles and rejects."""

    xml: Path
    csv: Path | None
    settled: int
    rejected: int
    sha256: str  # of the pain.002


def _draw(seed: int, end_to_end_id: str) -> tuple[int, int]:
    """Two numbers fixed by the seed and the id: the payment's rank (lowest are rejected)
    and its reason (0-99)."""
    key = seed.to_bytes(16, "big", signed=True)
    digest = hashlib.blake2b(end_to_end_id.encode(), key=key, digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") % 100


def _reason(draw: int) -> str:
    for code, weight in REASON_WEIGHTS:
        if draw < weight:
            return code
        draw -= weight
    raise AssertionError("weights sum to 100")  # pragma: no cover


def simulated_statuses(
    instructions: pl.DataFrame, *, seed: int, return_rate: float
) -> pl.DataFrame:
    """The reply's decisions: end_to_end_id, status (ACSC or RJCT), reason_code, in the
    instructions' order."""
    if not 0 <= return_rate <= 1:
        raise DisburseError(
            f"a return rate of {return_rate} is not between 0 and 1",
            fix="give the share of payments to reject, e.g. 0.02 for 2%",
        )
    ids = instructions.get_column("end_to_end_id").to_list()
    draws = [_draw(seed, e2e) for e2e in ids]  # a simulator: one hash per row is the point
    rejected_count = int(return_rate * len(ids) + 0.5)
    ranked = sorted(range(len(ids)), key=lambda i: (draws[i][0], ids[i]))
    rejected = set(ranked[:rejected_count])
    return pl.DataFrame(
        {
            "end_to_end_id": ids,
            "status": ["RJCT" if i in rejected else "ACSC" for i in range(len(ids))],
            "reason_code": [
                _reason(draws[i][1]) if i in rejected else None for i in range(len(ids))
            ],
        },
        schema={"end_to_end_id": pl.String, "status": pl.String, "reason_code": pl.String},
    )


def _el(tag: str, text: str | None = None, *children: etree._Element) -> etree._Element:
    el = etree.Element(tag)
    el.text = text
    el.extend(children)
    return el


def _reason_info(code: str) -> etree._Element:
    words = REASONS.get(code, (code, code))
    return _el(
        "StsRsnInf",
        None,
        _el("Rsn", None, _el("Cd", code)),
        _el("AddtlInf", f"{words[1]} {words[0]}"),
    )


def simulate_bank_reply(
    instructions: pl.DataFrame,
    header: PaymentHeader,
    *,
    seed: int,
    return_rate: float,
    xml_target: Path,
    csv_target: Path | None = None,
    reject_all: str | None = None,
) -> SimulatedReply:
    """Write the reply a bank would send to the batch (`instructions`, `header`): a valid
    pain.002.001.12 at `xml_target` and, when given, the CSV status file at `csv_target`.
    The reply is dated one hour after the batch's creation and read back before returning."""
    check_header(header)
    check_instructions(instructions)
    if reject_all is not None and reject_all not in REASONS:
        raise DisburseError(
            f"reject_all {reject_all!r} is not a reason code disburse knows",
            fix=f"use one of {', '.join(sorted(REASONS))}",
        )
    decided = simulated_statuses(instructions, seed=seed, return_rate=return_rate)
    if reject_all is not None:
        decided = decided.with_columns(status=pl.lit("RJCT"), reason_code=pl.lit(reject_all))
    rejected = int((decided.get_column("status") == "RJCT").sum())
    xml_target = Path(xml_target)
    with replaced_atomically(xml_target, "simulated pain.002 reply") as tmp:
        try:
            _write_pain002(tmp, decided, header, ctrl_sum_fen(instructions), reject_all)
        except OSError as e:
            raise write_failed("simulated pain.002 reply", xml_target, e) from None
        report = read_pain002(tmp)
    if csv_target is not None:
        _write_csv(decided, Path(csv_target))
    return SimulatedReply(
        xml_target, csv_target, decided.height - rejected, rejected, report.sha256
    )


def _write_pain002(
    path: Path, decided: pl.DataFrame, header: PaymentHeader, total_fen: int, reject_all: str | None
) -> None:
    rejected = int((decided.get_column("status") == "RJCT").sum())
    group_status = "RJCT" if rejected == decided.height else "PART" if rejected else "ACSC"
    original = _el(
        "OrgnlGrpInfAndSts",
        None,
        _el("OrgnlMsgId", header.msg_id),
        _el("OrgnlMsgNmId", PAIN001.name),
        _el("OrgnlCreDtTm", header.created_at.isoformat(timespec="seconds")),
        _el("OrgnlNbOfTxs", str(decided.height)),
        _el("OrgnlCtrlSum", yuan_text_of(total_fen)),
        _el("GrpSts", group_status),
    )
    if reject_all is not None:
        original.append(_reason_info(reject_all))
    group = _el(
        "GrpHdr",
        None,
        _el("MsgId", f"R{header.msg_id}"[:35]),
        _el("CreDtTm", (header.created_at + timedelta(hours=1)).isoformat(timespec="seconds")),
    )
    line1, line2, line3 = "\n" + INDENT, "\n" + INDENT * 2, "\n" + INDENT * 3
    for el, level in ((group, 2), (original, 2)):
        etree.indent(el, space=INDENT, level=level)
    with etree.xmlfile(str(path), encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(PAIN002.tag("Document"), nsmap={None: PAIN002.namespace}):
            xf.write(line1)
            with xf.element("CstmrPmtStsRpt"):
                xf.write(line2, group, line2, original)
                if reject_all is None:
                    xf.write(line2)
                    with xf.element("OrgnlPmtInfAndSts"):
                        xf.write(line3, _el("OrgnlPmtInfId", header.pmt_inf_id))
                        for e2e, status, reason in decided.iter_rows():
                            tx = _el(
                                "TxInfAndSts",
                                None,
                                _el("OrgnlEndToEndId", e2e),
                                _el("TxSts", status),
                            )
                            if reason is not None:
                                tx.append(_reason_info(reason))
                            etree.indent(tx, space=INDENT, level=3)
                            xf.write(line3, tx)
                        xf.write(line2)
                xf.write(line1)
            xf.write("\n")


def _write_csv(decided: pl.DataFrame, target: Path) -> None:
    words = {code: f"{zh} {en}" for code, (en, zh) in REASONS.items()}
    frame = decided.select(
        "end_to_end_id",
        pl.when(pl.col("status") == "RJCT")
        .then(pl.lit("rejected"))
        .otherwise(pl.lit("settled"))
        .alias("status"),
        "reason_code",
        pl.col("reason_code").replace_strict(words, default=None).alias("note"),
    )
    with replaced_atomically(target, "simulated CSV status file") as tmp:
        try:
            frame.write_csv(tmp, include_bom=True, line_terminator="\r\n")
        except OSError as e:
            raise write_failed("simulated CSV status file", target, e) from None
