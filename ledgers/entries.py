"""Ledger entries for people: transfers in id order, filtered, and printed as JSON, CSV or text.

Resident identity numbers (as entity, payee, or inside an account address) are
masked unless asked otherwise; credit codes are not personal data and print whole.

A masked entry still prints its hash when the chain commits to its personal
fields through their keyed digest (chain version 2, `ledgers.chain`): the hash
allows no search for the masked digits without the ledger key.  A transfer of
version 1 (posted before migration 0006) hashed them in the clear, so its hash
would let anyone try every possible number against it: masked, it is printed
without its hash.
"""

from __future__ import annotations

import contextlib
import json

import polars as pl
from sqlalchemy import Engine, select

from common.money import format_yuan
from ledgers.db import READ_FIX, privileged, require_ledger
from ledgers.frames import read_frame
from ledgers.masking import mask_account_address_expr, mask_entity_expr
from ledgers.render import text_table
from ledgers.scan import TRANSFER_SCHEMA
from ledgers.schema import Transfer
from ledgers.versions import transfer_columns

ENTRY_FIELDS = (
    "transfer",
    "kind",
    "run",
    "policy",
    "period",
    "entity",
    "payee",
    "debit",
    "credit",
    "amount_fen",
    "policy_sha256",
    "decision",
    "personal_mac",
    "hash",
)


def entries(
    engine: Engine,
    *,
    policy: str | None = None,
    entity: str | None = None,
    run: int | None = None,
    limit: int | None = 100,
    unmask: bool = False,
) -> pl.DataFrame:
    """Transfers in id order, filtered; resident identity numbers masked unless `unmask`.

    Columns: `ENTRY_FIELDS` (decision as the stored compact JSON text).
    """
    t = Transfer.__table__
    stmt = select(*transfer_columns(t, TRANSFER_SCHEMA)).order_by(t.c.transfer_id)
    if policy is not None:
        stmt = stmt.where(t.c.policy_id == policy)
    if entity is not None:
        stmt = stmt.where(t.c.entity == entity)
    if run is not None:
        stmt = stmt.where(t.c.run_id == run)
    if limit:
        stmt = stmt.limit(limit)
    with privileged("read the ledger's tables", READ_FIX, engine), engine.connect() as conn:
        require_ledger(conn)
        frame = read_frame(conn, stmt, TRANSFER_SCHEMA)
    out = frame.select(
        pl.col("transfer_id").alias("transfer"),
        "kind",
        pl.col("run_id").alias("run"),
        pl.col("policy_id").alias("policy"),
        pl.col("benefit_period").alias("period"),
        pl.col("entity"),
        pl.col("payee"),
        pl.col("debit_account").alias("debit"),
        pl.col("credit_account").alias("credit"),
        "amount_fen",
        "policy_sha256",
        "decision",
        "personal_mac",
        "hash",
    )
    if not unmask:
        out = out.with_columns(
            mask_entity_expr(pl.col("entity")).alias("entity"),
            mask_entity_expr(pl.col("payee")).alias("payee"),
            mask_account_address_expr(pl.col("debit")).alias("debit"),
            mask_account_address_expr(pl.col("credit")).alias("credit"),
            pl.when(pl.col("personal_mac").is_not_null()).then(pl.col("hash")).alias("hash"),
        )
    return out


def entries_json_lines(frame: pl.DataFrame) -> str:
    """One JSON object per entry and line, keys sorted, the decision as a JSON object."""
    lines = []
    for row in frame.iter_rows(named=True):
        if row["decision"] is not None:
            with contextlib.suppress(ValueError):  # not JSON: shown as the text it is
                row["decision"] = json.loads(row["decision"])
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(", ", ": ")))
    return "".join(line + "\n" for line in lines)


def entries_csv(frame: pl.DataFrame) -> str:
    """The entries as CSV with a header row, the decision as its stored JSON text."""
    return frame.write_csv()


def entries_text(frame: pl.DataFrame) -> str:
    """A fixed-width table of entries for people."""
    header = (
        "transfer",
        "kind",
        "run",
        "policy",
        "period",
        "entity",
        "debit",
        "credit",
        "amount_fen",
        "yuan",
    )
    body = [
        (
            str(r["transfer"]),
            r["kind"],
            str(r["run"]),
            r["policy"] or "",
            r["period"] or "",
            r["entity"] or "",
            r["debit"],
            r["credit"],
            str(r["amount_fen"]),
            format_yuan(r["amount_fen"]),
        )
        for r in frame.iter_rows(named=True)
    ]
    return text_table(header, body, right=(0, 2, 8, 9))
