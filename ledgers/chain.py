"""The hash chain over transfers: each stores sha256(prev_hash || canonical content).

Canonical content of a transfer, so anyone can recompute it in any language:
the fields of `CHAIN_FIELDS` in that order, each written as a netstring-like
`<length in UTF-8 bytes>:<value>` (integers in decimal) or `-` when null, joined
by `,`.  The length prefix makes the encoding unambiguous whatever the values
hold.  Then

    hash = sha256(prev_hash + content).hexdigest()   # both as UTF-8 text

where `prev_hash` is the hash of the transfer with the next lower id, or 64
zeros for the first.  An edit to any field of any stored transfer changes its
hash, and the next transfer's `prev_hash` no longer matches: `audit verify`
names the first entry where either happens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import polars as pl

GENESIS = "0" * 64
CHAIN_FIELDS = (
    "transfer_id",
    "kind",
    "debit_account",
    "credit_account",
    "amount_fen",
    "run_id",
    "policy_id",
    "benefit_period",
    "entity",
    "payee",
    "policy_sha256",
    "decision",
)


def _field(name: str) -> pl.Expr:
    text = pl.col(name).cast(pl.String)
    return (
        pl.when(text.is_null())
        .then(pl.lit("-"))
        .otherwise(pl.concat_str([text.str.len_bytes().cast(pl.String), pl.lit(":"), text]))
    )


def content_expr() -> pl.Expr:
    """Polars: the canonical content of each transfer row (see the module docstring)."""
    return pl.concat_str([_field(name) for name in CHAIN_FIELDS], separator=",").alias("content")


def canonical_content(values: Sequence[object]) -> str:
    """The canonical content of one transfer from its `CHAIN_FIELDS` values (the reference)."""
    parts = []
    for value in values:
        if value is None:
            parts.append("-")
        else:
            text = str(value)
            parts.append(f"{len(text.encode())}:{text}")
    return ",".join(parts)


def chain(contents: Iterable[str], prev_hash: str) -> list[str]:
    """The hashes of consecutive transfers with these contents, after `prev_hash`.

    The one loop over rows in the ledger: each hash needs the one before it, so
    the chain cannot be vectorised.  It costs about a microsecond per transfer.
    """
    out: list[str] = []
    append = out.append
    sha256 = hashlib.sha256
    h = prev_hash
    for content in contents:
        h = sha256((h + content).encode()).hexdigest()
        append(h)
    return out


def with_hashes(frame: pl.DataFrame, prev_hash: str) -> pl.DataFrame:
    """`frame` (ordered by transfer_id) with its `prev_hash` and `hash` columns computed."""
    if frame.height == 0:
        return frame.with_columns(prev_hash=pl.lit(None, pl.String), hash=pl.lit(None, pl.String))
    contents = frame.select(content_expr()).to_series().to_list()
    hashes = pl.Series("hash", chain(contents, prev_hash), dtype=pl.String)
    prev = hashes.shift(1).fill_null(prev_hash).alias("prev_hash")
    return frame.with_columns(prev, hashes)
