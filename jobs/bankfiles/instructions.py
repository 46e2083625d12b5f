"""What a payment file is written from: one row per payment, and a header for the batch.

The instructions are a Polars DataFrame with these columns (`INSTRUCTION_COLUMNS`):

| column | type | rule |
| --- | --- | --- |
| end_to_end_id | String | 1 to 35 letters, digits or `. _ : / -`, unique: the bank's reply names it |
| amount_fen | integer | more than 0, at most `MAX_ENTITLEMENT_FEN`; integer fen, never float |
| creditor_name | String | the payee's name as the bank holds it, 1 to 140 characters |
| creditor_account | String | 1 to 34 digits |
| creditor_bank_code | String | the payee bank's CNAPS code: the 12-digit branch code (大额支付系统行号) or the 3-digit bank category the account sources deliver |
| remittance | String or null | what the payment is for (policy title, benefit period), at most 140 characters |

Lengths are those of ISO 20022 (Max35Text, Max140Text, Max34Text), counted in characters.
Every rule is checked before a byte is written, for all rows at once, and the problems
are reported together (the first 20), each naming its row with personal data masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from common.errors import DisburseError
from common.money import FEN_PER_YUAN, MAX_ENTITLEMENT_FEN, format_yuan
from ledgers.masking import mask_account, mask_id, mask_name

INSTRUCTION_COLUMNS = (
    "end_to_end_id",
    "amount_fen",
    "creditor_name",
    "creditor_account",
    "creditor_bank_code",
    "remittance",
)
MAX_ID = 35  # ISO 20022 Max35Text: MsgId, PmtInfId, EndToEndId
MAX_TEXT = 140  # Max140Text: names, unstructured remittance
MAX_ACCOUNT = 34  # Max34Text: GenericAccountIdentification1/Id
# CtrlSum is a DecimalNumber of at most 18 digits; written with 2 decimals that is
# 16 digits of yuan, so the sum of one file stays below 10**18 fen.
MAX_CTRL_SUM_FEN = 10**18 - 1
CURRENCY = "CNY"  # CNAPS clears renminbi only
SHOWN_PROBLEMS = 20
CHECK_ROWS = 100_000  # rows checked at once: memory stays flat however long the batch

# Identifiers the bank echoes back: a conservative character set every bank's system
# accepts (the SWIFT set less space, quote and brackets, plus underscore).
_ID = r"^[A-Za-z0-9._:/-]+$"
_DIGITS = r"^[0-9]+$"
_BANK_CODE = r"^([0-9]{3}|[0-9]{12})$"  # a bank category (102: ICBC) or a branch code
_CONTROL = r"[\x00-\x1f\x7f]"  # line breaks, tabs, NUL: no bank takes them in a name


@dataclass(frozen=True, slots=True)
class PaymentHeader:
    """The batch a payment file carries: who pays, from which account, when.

    `created_at` is given by the caller (the time the batch was first exported, kept with
    it) so that exporting the same batch again writes the same bytes.  It is written to
    the second, with its UTC offset if it has one."""

    msg_id: str  # unique per file for the bank: at most 35 characters
    created_at: datetime
    initiating_party_name: str  # the agency sending the file
    debtor_name: str  # the account holder paid from (the policy's budget account)
    debtor_account: str  # digits
    debtor_bank_code: str  # CNAPS code of the debtor's bank: 12-digit branch or 3-digit bank
    execution_on: date  # requested execution date
    currency: str = CURRENCY
    payment_info_id: str | None = None  # PmtInfId; the msg_id when not given

    @property
    def pmt_inf_id(self) -> str:
        """The payment information id written: `payment_info_id` or the message id."""
        return self.payment_info_id or self.msg_id


def check_header(header: PaymentHeader) -> None:
    """Refuse a header pain.001 or the bank would refuse, naming every problem."""
    problems: list[str] = []
    for name, value in (("msg_id", header.msg_id), ("payment_info_id", header.pmt_inf_id)):
        if not 1 <= len(value) <= MAX_ID or not re.match(_ID, value):
            problems.append(f"{name} {value!r} is not 1 to {MAX_ID} letters, digits or . _ : / -")
    for name, value in (
        ("initiating_party_name", header.initiating_party_name),
        ("debtor_name", header.debtor_name),
    ):
        if not value.strip() or len(value) > MAX_TEXT or re.search(_CONTROL, value):
            problems.append(
                f"{name} must be 1 to {MAX_TEXT} characters without line breaks "
                f"(it has {len(value)})"
            )
    if not re.match(_DIGITS, header.debtor_account) or len(header.debtor_account) > MAX_ACCOUNT:
        problems.append(
            f"debtor_account {mask_account(header.debtor_account)} is not 1 to {MAX_ACCOUNT} digits"
        )
    if not re.match(_BANK_CODE, header.debtor_bank_code):
        problems.append(
            f"debtor_bank_code {header.debtor_bank_code!r} is not a CNAPS bank code (3 or 12 digits)"
        )
    if header.currency != CURRENCY:
        problems.append(f"currency {header.currency!r}: disburse pays {CURRENCY} only")
    if not isinstance(header.created_at, datetime):
        problems.append("created_at must be a datetime")
    if not isinstance(header.execution_on, date) or isinstance(header.execution_on, datetime):
        problems.append("execution_on must be a date")
    if problems:
        raise DisburseError(
            "the payment file's header cannot be written:\n  " + "\n  ".join(problems),
            fix="correct the batch's settings (paying account, bank code, message id) and "
            "export again; nothing was written",
        )


def check_instructions(instructions: pl.DataFrame) -> None:
    """Refuse instructions pain.001 or the bank would refuse: every problem of every row
    found at once, the first 20 reported, each naming its row (1-based) and end_to_end_id,
    with names and accounts masked.  Nothing is truncated or mended silently."""
    _check_columns(instructions)
    if instructions.height == 0:
        raise DisburseError(
            "there is nothing to pay: the instructions have no rows",
            fix="export a batch that holds at least one payment",
        )
    found = _row_problems(instructions)
    if found:
        more = len(found) - SHOWN_PROBLEMS
        lines = found[:SHOWN_PROBLEMS] + ([f"... and more ({more}+)"] if more > 0 else [])
        raise DisburseError(
            f"{'a payment instruction' if len(found) == 1 else 'payment instructions'} "
            "cannot be written to a bank file:\n  " + "\n  ".join(lines),
            fix="correct the payee's data where it comes from (registry, account on file) "
            "and export again; nothing was written",
        )
    total = ctrl_sum_fen(instructions)
    if total > MAX_CTRL_SUM_FEN:
        raise DisburseError(
            f"the batch sums to {format_yuan(total)} yuan, more than one ISO 20022 file "
            "can carry (16 digits of yuan)",
            fix="split the batch into several files",
        )


def ctrl_sum_fen(instructions: pl.DataFrame) -> int:
    """The exact sum of amount_fen (summed in 128 bits: a million rows of up to 10**15 fen
    each can pass what 64 bits hold)."""
    total = instructions.get_column("amount_fen").cast(pl.Int128).sum()
    return int(total)


def yuan_text(fen: pl.Expr) -> pl.Expr:
    """Polars: positive integer fen written as yuan with two decimals, 12345 -> '123.45',
    by integer division (no float ever holds the amount)."""
    return pl.concat_str(
        [
            (fen // FEN_PER_YUAN).cast(pl.String),
            pl.lit("."),
            (fen % FEN_PER_YUAN).cast(pl.String).str.zfill(2),
        ]
    )


def yuan_text_of(fen: int) -> str:
    """`yuan_text` for one non-negative amount: 12345 -> '123.45'."""
    if fen < 0:
        raise ValueError("a payment file carries no negative amount")
    whole, cents = divmod(fen, FEN_PER_YUAN)
    return f"{whole}.{cents:02d}"


_AMOUNT_TEXT = re.compile(r"^([0-9]+)(?:\.([0-9]{1,2}))?$")


def fen_of_yuan_text(text: str | None) -> int | None:
    """Yuan written with at most two decimals ('123.45', '7', '0.5') as integer fen;
    None for anything else (more decimals, a sign, an exponent, empty)."""
    m = _AMOUNT_TEXT.match((text or "").strip())
    if m is None:
        return None
    return int(m.group(1)) * FEN_PER_YUAN + int((m.group(2) or "0").ljust(2, "0"))


def _check_columns(df: pl.DataFrame) -> None:
    missing = [c for c in INSTRUCTION_COLUMNS if c not in df.columns]
    if missing:
        raise DisburseError(
            f"the instructions lack the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (they have {', '.join(df.columns) or 'none'})",
            fix=f"give the columns {', '.join(INSTRUCTION_COLUMNS)}",
        )
    wrong: list[str] = []
    if not df.schema["amount_fen"].is_integer():
        wrong.append(f"amount_fen is {df.schema['amount_fen']}, not integer fen")
    for c in INSTRUCTION_COLUMNS:
        if c == "amount_fen":
            continue
        allowed = (pl.String, pl.Null) if c == "remittance" else (pl.String,)
        if df.schema[c] not in allowed:
            wrong.append(f"{c} is {df.schema[c]}, not text (String)")
    if wrong:
        raise DisburseError(
            "the instructions' columns have the wrong types: " + "; ".join(wrong),
            fix="amounts are integer fen (Int64), never float; identifiers and account "
            "numbers are text, so that leading zeros survive",
        )


# Each rule: (key, the failing condition).  Messages are written below from the row.
def _rules() -> list[tuple[str, pl.Expr]]:
    e2e, amount = pl.col("end_to_end_id"), pl.col("amount_fen")
    name, account = pl.col("creditor_name"), pl.col("creditor_account")
    bank, remittance = pl.col("creditor_bank_code"), pl.col("remittance").cast(pl.String)
    return [
        ("id_empty", e2e.is_null() | (e2e == "")),
        ("id_long", e2e.str.len_chars() > MAX_ID),
        ("id_chars", (e2e != "") & ~e2e.str.contains(_ID)),
        ("amount_empty", amount.is_null()),
        ("amount_low", amount <= 0),
        ("amount_high", amount > MAX_ENTITLEMENT_FEN),
        ("name_empty", name.is_null() | (name.str.strip_chars() == "")),
        ("name_long", name.str.len_chars() > MAX_TEXT),
        ("name_control", name.str.contains(_CONTROL)),
        ("account_bad", account.is_null() | ~account.str.contains(_DIGITS)),
        ("account_long", account.str.len_chars() > MAX_ACCOUNT),
        ("bank_bad", bank.is_null() | ~bank.str.contains(_BANK_CODE)),
        ("remittance_long", remittance.str.len_chars() > MAX_TEXT),
        ("remittance_control", remittance.str.contains(_CONTROL)),
    ]


def _row_problems(df: pl.DataFrame) -> list[str]:
    """Every broken rule of every row, in row order, as messages (the first 21).

    The rules run on slices of `CHECK_ROWS` rows, a boolean per rule and row, so checking
    a million rows costs a few megabytes beyond the frame; uniqueness is one n_unique()
    over the ids, and the rows sharing one are looked for only when there are some.  Only
    the rows reported are read back into Python."""
    rules = _rules()
    found: list[tuple[int, int, str]] = []  # (row, rule, message): sorted into row order
    for start in range(0, df.height, CHECK_ROWS):
        flags = (
            df.slice(start, CHECK_ROWS)
            .with_row_index("row", offset=start + 1)
            .select("row", *[cond.fill_null(False).alias(key) for key, cond in rules])
        )
        bad = flags.filter(pl.any_horizontal(pl.exclude("row"))).head(SHOWN_PROBLEMS + 1)
        for flagged in bad.iter_rows(named=True):
            row = int(flagged["row"])
            values = df.row(row - 1, named=True)
            found += [
                (row, i, f"{_where(row, values)}: {_say(key, values, df)}")
                for i, (key, _) in enumerate(rules)
                if flagged[key]
            ]
        if len(found) > SHOWN_PROBLEMS:
            break
    ids = df.get_column("end_to_end_id").drop_nulls()
    if ids.n_unique() != ids.len():
        twice = (
            df.with_row_index("row", offset=1)
            .filter(pl.col("end_to_end_id").is_duplicated() & pl.col("end_to_end_id").is_not_null())
            .head(SHOWN_PROBLEMS + 1)
        )
        for row in twice.get_column("row").to_list():
            values = df.row(row - 1, named=True)
            found.append(
                (row, len(rules), f"{_where(row, values)}: {_say('id_twice', values, df)}")
            )
    return [message for *_, message in sorted(found)[: SHOWN_PROBLEMS + 1]]


def _where(row: int, values: dict[str, object]) -> str:
    ident = values["end_to_end_id"]
    return f"row {row}" + (f" ({str(ident)[:MAX_ID]})" if ident else "")


def _shown_name(name: str) -> str:
    masked = mask_name(name) or ""
    return masked if len(masked) <= 8 else masked[:8] + "..."


def _say(key: str, v: dict[str, object], df: pl.DataFrame) -> str:
    """The message for one broken rule of one row, personal data masked."""
    e2e = str(v["end_to_end_id"] or "")
    name = str(v["creditor_name"] or "")
    account = str(v["creditor_account"] or "")
    remittance = str(v["remittance"] or "")
    match key:
        case "id_empty":
            return "end_to_end_id is empty"
        case "id_long":
            return f"end_to_end_id has {len(e2e)} characters; ISO 20022 allows at most {MAX_ID}"
        case "id_chars":
            return "end_to_end_id has characters other than letters, digits and . _ : / -"
        case "id_twice":
            rows = (
                df.with_row_index("row", offset=1)
                .filter(pl.col("end_to_end_id") == e2e)
                .get_column("row")
                .head(5)
                .to_list()
            )
            return (
                f"end_to_end_id is given to rows {', '.join(map(str, rows))}: each payment "
                "needs its own, the bank's reply is matched on it"
            )
        case "amount_empty":
            return "amount_fen is empty"
        case "amount_low":
            return f"amount_fen is {v['amount_fen']}: a payment is more than 0 fen"
        case "amount_high":
            return (
                f"amount_fen {v['amount_fen']} is more than one payment can be "
                f"({format_yuan(MAX_ENTITLEMENT_FEN)} yuan)"
            )
        case "name_empty":
            return "creditor_name is empty"
        case "name_long":
            return (
                f"creditor_name {_shown_name(name)} has {len(name)} characters; "
                f"pain.001 allows at most {MAX_TEXT}"
            )
        case "name_control":
            return f"creditor_name {_shown_name(name)} has a line break, tab or control character"
        case "account_bad":
            shown = mask_account(account) if account else "(empty)"
            return f"creditor_account {shown} is not digits only"
        case "account_long":
            return (
                f"creditor_account {mask_account(account)} has {len(account)} digits; "
                f"at most {MAX_ACCOUNT}"
            )
        case "bank_bad":
            code = str(v["creditor_bank_code"] or "")
            shown = repr(code) if len(code) <= 12 else mask_id(code)  # maybe a stray id number
            return f"creditor_bank_code {shown} is not a CNAPS bank code (3 or 12 digits)"
        case "remittance_long":
            return (
                f"remittance has {len(remittance)} characters; pain.001 allows at most {MAX_TEXT}"
            )
        case "remittance_control":
            return "remittance has a line break, tab or control character"
    raise AssertionError(f"no message for rule {key}")  # pragma: no cover
