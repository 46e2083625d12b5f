"""What may be posted: the entitlement and transfer frames, checked whole before any write.

Owns the shape of a posted entitlement (its key `KEY` and columns
`ENTITLEMENT_COLUMNS`), the patterns of ids, benefit periods, hashes and account
addresses, and the refusal: every broken rule named at once with its first
offending rows (pandera-style), so a malformed frame is refused before the
ledger is touched.
"""

from __future__ import annotations

import polars as pl

from common.periods import PERIOD_KEY
from ledgers.db import LedgerError
from ledgers.masking import mask_entity
from ledgers.schema import PAYMENT_KINDS

KEY = ("policy_id", "benefit_period", "entity")
ENTITLEMENT_COLUMNS: dict[str, type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "policy_sha256": pl.String,
    "decision": pl.String,
}
MAX_PROBLEMS = 10

POLICY_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
PARTY_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
BENEFIT_PERIOD = PERIOD_KEY  # the one pattern of a benefit-period key (common.periods)
SHA256 = r"[0-9a-f]{64}"
ACCOUNT = (
    rf"(budget:{POLICY_ID}:(?:{BENEFIT_PERIOD})|payable:{PARTY_ID}|receivable:{PARTY_ID}"
    r"|clearing:[a-z0-9_-]{1,32}|paid:[a-z0-9_-]{1,32}|recovered:[a-z0-9_-]{1,32})"
)


def validate_entitlements(frame: pl.DataFrame) -> pl.DataFrame:
    """The entitlement columns, typed, or a LedgerError naming every problem found."""
    missing = [c for c in ENTITLEMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise LedgerError(
            f"entitlements refused: missing column(s) {', '.join(missing)}\n"
            f"  fix: give one row per key with columns {', '.join(ENTITLEMENT_COLUMNS)}"
        )
    problems: list[str] = []
    amount = frame.schema["amount_fen"]
    if not amount.is_integer():
        raise LedgerError(
            f"entitlements refused: amount_fen is {amount}, not an integer type\n"
            "  fix: money is integer fen; round per the policy before posting (no float reaches the ledger)"
        )
    for name, dtype in ENTITLEMENT_COLUMNS.items():
        if dtype is pl.String and frame.schema[name] not in (pl.String, pl.Categorical, pl.Null):
            problems.append(f"column {name} is {frame.schema[name]}, not text")
    if problems:
        raise _refused(problems, "cast the columns to the types listed")
    typed = frame.select(
        [pl.col(c).cast(t) for c, t in ENTITLEMENT_COLUMNS.items()]
    ).with_row_index("row")
    rules: list[tuple[str, pl.Expr]] = [
        (f"{c} is missing", pl.col(c).is_null())
        for c in (*KEY, "payee", "amount_fen", "policy_sha256")
    ]
    rules += [
        ("amount_fen is negative", pl.col("amount_fen") < 0),
        (
            "policy_id is not a plain id (letters, digits, '.', '_', '-')",
            ~_matches("policy_id", POLICY_ID),
        ),
        (
            "benefit_period is not a year, half, quarter, month or 'once' (2026, 2026-H1, 2026-Q1, 2026-03)",
            ~_matches("benefit_period", BENEFIT_PERIOD),
        ),
        (
            "entity is not a plain id (letters, digits, '.', '_', '-')",
            ~_matches("entity", PARTY_ID),
        ),
        ("payee is not a plain id (letters, digits, '.', '_', '-')", ~_matches("payee", PARTY_ID)),
        ("policy_sha256 is not a lower-case sha256", ~_matches("policy_sha256", SHA256)),
        ("decision is an empty string", pl.col("decision") == ""),
        ("the key appears more than once", pl.struct(*KEY).is_duplicated()),
    ]
    problems = _collect(typed, rules)
    if problems:
        raise _refused(
            problems,
            "give exactly one row per (policy_id, benefit_period, entity), amounts in whole fen >= 0",
        )
    return typed.drop("row")


def _matches(column: str, pattern: str) -> pl.Expr:
    return pl.col(column).str.contains(f"^(?:{pattern})$").fill_null(True)


def _collect(frame: pl.DataFrame, rules: list[tuple[str, pl.Expr]]) -> list[str]:
    """Every rule broken, each with its first offending rows (pandera-style: all at once)."""
    flags = frame.select(
        pl.col("row"), *[e.fill_null(False).alias(f"r{i}") for i, (_, e) in enumerate(rules)]
    )
    problems = []
    for i, (message, _) in enumerate(rules):
        bad = flags.filter(pl.col(f"r{i}"))
        if bad.height:
            rows = ", ".join(str(r) for r in bad.get_column("row").head(3).to_list())
            more = f" and {bad.height - 3} more" if bad.height > 3 else ""
            key = frame.row(bad.get_column("row")[0], named=True)
            where = (
                "/".join(str(key.get(k)) for k in KEY[:2]) + f"/{mask_entity(key.get('entity'))}"
            )
            problems.append(f"{message}: row {rows}{more} (first: {where})")
    return problems


def _refused(problems: list[str], fix: str) -> LedgerError:
    shown = problems[:MAX_PROBLEMS]
    lines = "\n".join(f"  {p}" for p in shown)
    more = (
        f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    )
    noun = "problem" if len(problems) == 1 else "problems"
    return LedgerError(
        f"entitlements refused, nothing posted: {len(problems)} {noun}\n{lines}{more}\n  fix: {fix}"
    )


def validate_transfers(frame: pl.DataFrame) -> pl.DataFrame:
    """The payment transfer columns, typed, or a LedgerError naming every problem found."""
    required = ("kind", "debit_account", "credit_account", "amount_fen")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise LedgerError(
            f"transfers refused: missing column(s) {', '.join(missing)}\n"
            "  fix: give kind, debit_account, credit_account and amount_fen"
        )
    if not frame.schema["amount_fen"].is_integer():
        raise LedgerError(
            "transfers refused: amount_fen is not an integer type\n  fix: money is integer fen"
        )
    optional = ("policy_id", "benefit_period", "entity", "payee", "policy_sha256", "decision")
    typed = frame.select(
        pl.col("kind").cast(pl.String),
        pl.col("debit_account").cast(pl.String),
        pl.col("credit_account").cast(pl.String),
        pl.col("amount_fen").cast(pl.Int64),
        *[
            pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c)
            for c in optional
        ],
    ).with_row_index("row")
    rules = [
        (
            f"kind is not one of {', '.join(PAYMENT_KINDS)}",
            ~pl.col("kind").is_in(list(PAYMENT_KINDS)).fill_null(False),
        ),
        ("amount_fen is not greater than zero", ~(pl.col("amount_fen") > 0).fill_null(False)),
        (
            "debit_account is not an account address",
            ~_matches("debit_account", ACCOUNT) | pl.col("debit_account").is_null(),
        ),
        (
            "credit_account is not an account address",
            ~_matches("credit_account", ACCOUNT) | pl.col("credit_account").is_null(),
        ),
        (
            "debit and credit are the same account",
            pl.col("debit_account") == pl.col("credit_account"),
        ),
    ]
    problems = _collect(typed, rules)
    if problems:
        raise _refused(
            problems,
            "post entitlements with post_entitlements; an instruction moves payable -> clearing, "
            "the bank's reply clearing -> paid (settled) or clearing -> payable (rejected), "
            "an offset payable -> receivable, a recovery recovered -> receivable",
        )
    return typed.drop("row")
