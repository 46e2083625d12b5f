"""Bank files of the payment loop: payment instructions out, status replies in.

    write_pain001(instructions, header, target) -> PaymentFile     ISO 20022 pain.001.001.09
    write_bulk_csv(instructions, target) -> PaymentFile            plain 代发 CSV
    validate_pain001(path) -> PaymentFile                          check a file written before
    read_pain002(path) -> StatusReport                             ISO 20022 pain.002.001.12
    read_status_csv(path) -> StatusReport                          CSV status reply
    StatusReport.resolve(end_to_end_ids, msg_id=...) -> DataFrame  each payment's outcome
    simulate_bank_reply(instructions, header, seed=..., return_rate=..., xml_target=...)

Instructions are a Polars DataFrame (`instructions.INSTRUCTION_COLUMNS`, amounts in
integer fen); outcomes are settled, rejected or pending (`codes`).  Every file is written
beside its target and moved into place only once it passed its checks; XML is written and
read streaming, against the official XSDs vendored in xsd/ (see xsd/ORIGIN.md).  Errors
are `DisburseError`s naming the file, the line or row, and a fix.  No ledger here: the
states a payment moves through are the ledger's, which calls these functions.
"""

from jobs.bankfiles.bulkcsv import BULK_CSV_COLUMNS, write_bulk_csv
from jobs.bankfiles.codes import (
    OUTCOMES,
    REASONS,
    Outcome,
    outcome,
    reason_words,
    reason_words_expr,
)
from jobs.bankfiles.instructions import INSTRUCTION_COLUMNS, PaymentHeader, check_instructions
from jobs.bankfiles.pain001 import PaymentFile, validate_pain001, write_pain001
from jobs.bankfiles.pain002 import RESOLVED_SCHEMA, STATUS_SCHEMA, StatusReport, read_pain002
from jobs.bankfiles.simulate import SimulatedReply, simulate_bank_reply
from jobs.bankfiles.statuscsv import STATUS_CSV_COLUMNS, read_status_csv

__all__ = [
    "BULK_CSV_COLUMNS",
    "INSTRUCTION_COLUMNS",
    "OUTCOMES",
    "REASONS",
    "RESOLVED_SCHEMA",
    "STATUS_CSV_COLUMNS",
    "STATUS_SCHEMA",
    "Outcome",
    "PaymentFile",
    "PaymentHeader",
    "SimulatedReply",
    "StatusReport",
    "check_instructions",
    "outcome",
    "read_pain002",
    "read_status_csv",
    "reason_words",
    "reason_words_expr",
    "simulate_bank_reply",
    "validate_pain001",
    "write_bulk_csv",
    "write_pain001",
]
