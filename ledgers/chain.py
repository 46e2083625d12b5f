"""The hash chain over transfers: each stores sha256(prev_hash || canonical content).

Canonical encoding of a list of fields, so anyone can recompute it in any
language: each field written as a netstring-like `<length in UTF-8 bytes>:<value>`
(integers in decimal) or `-` when null, joined by `,`.  The length prefix makes
the encoding unambiguous whatever the values hold.  Then

    hash = sha256(prev_hash + content).hexdigest()   # both as UTF-8 text

where `prev_hash` is the hash of the transfer with the next lower id, or 64
zeros for the first.  An edit to any field of any stored transfer changes its
hash, and the next transfer's `prev_hash` no longer matches: `audit verify`
names the first entry where either happens.

Two versions of `content`, told apart per transfer by `personal_mac`:

* version 1 (transfers posted before migration 0006, `personal_mac` null): the
  encoding of `CHAIN_FIELDS`, personal fields in the clear;
* version 2 (every transfer since): `v2;` and the encoding of `KEYED_FIELDS`,
  which commit to the personal fields (`PERSONAL_FIELDS`: the two accounts, the
  entity and the payee) only through

      personal_mac = HMAC-SHA256(personal key, encoding of PERSONAL_FIELDS).hexdigest()

  under the ledger key (`ledgers.keys`), held outside the database.  A printed
  hash then allows no search for a masked identity number: the search would need
  the key.  Without the key everything but the personal fields still verifies.

A chain never goes back from version 2 to version 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import polars as pl

from ledgers.keys import LedgerKey

GENESIS = "0" * 64
VERSION_2 = "v2;"
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
# The fields a version 2 transfer commits to in its hash, and those it commits to only
# through their keyed digest.
PERSONAL_FIELDS = ("debit_account", "credit_account", "entity", "payee")
KEYED_FIELDS = (
    "transfer_id",
    "kind",
    "amount_fen",
    "run_id",
    "policy_id",
    "benefit_period",
    "policy_sha256",
    "decision",
    "personal_mac",
)
# The digest is the last keyed field (always 64 characters): `keyed_chain` appends it to
# the content it has encoded up to there.
assert KEYED_FIELDS[-1] == "personal_mac"
# What a chained transfer holds besides its prev_hash and hash (the stored row names the
# policy sha256 by its version's number instead: `ledgers.versions`, migration 0013).
STORED_FIELDS = (*CHAIN_FIELDS, "personal_mac")
# The digests, in hex; `with_hashes` gives them as the ledger stores them too, the 32
# bytes (migration 0013), in the `DIGEST_BYTES` columns.
DIGESTS = ("personal_mac", "prev_hash", "hash")
DIGEST_BYTES = tuple(f"{c}_bytes" for c in DIGESTS)


def _field(name: str) -> pl.Expr:
    text = pl.col(name).cast(pl.String)
    # concat_str of a null is null: a null field is "-".
    return pl.concat_str([text.str.len_bytes().cast(pl.String), pl.lit(":"), text]).fill_null("-")


def _encoded(fields: Sequence[str]) -> pl.Expr:
    return pl.concat_str([_field(name) for name in fields], separator=",")


def content_expr() -> pl.Expr:
    """Polars: the version 1 content of each transfer row (see the module docstring)."""
    return _encoded(CHAIN_FIELDS).alias("content")


def keyed_content_expr() -> pl.Expr:
    """Polars: the version 2 content of each transfer row, from its `personal_mac`."""
    return pl.concat_str([pl.lit(VERSION_2), _encoded(KEYED_FIELDS)]).alias("content")


def personal_content_expr() -> pl.Expr:
    """Polars: the encoding of each row's personal fields, the message its `personal_mac` keys."""
    return _encoded(PERSONAL_FIELDS).alias("personal")


def stored_content_expr() -> pl.Expr:
    """Polars: the content each stored row was hashed with: version 2 if it has a
    `personal_mac`, else version 1."""
    return (
        pl.when(pl.col("personal_mac").is_null())
        .then(_encoded(CHAIN_FIELDS))
        .otherwise(pl.concat_str([pl.lit(VERSION_2), _encoded(KEYED_FIELDS)]))
        .alias("content")
    )


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


def keyed_content(values: Sequence[object]) -> str:
    """The version 2 content of one transfer from its `KEYED_FIELDS` values (the reference)."""
    return VERSION_2 + canonical_content(values)


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


def keyed_chain(
    personal: Sequence[str], prefixes: Sequence[str], prev_hash: str, key: LedgerKey
) -> tuple[list[bytes], list[bytes]]:
    """The personal digests and hashes (32 bytes each) of consecutive version 2 transfers,
    after `prev_hash`.

    `personal`: each transfer's encoded personal fields; `prefixes`: its version 2
    content up to the digest (the digest is the last field, always 64 characters).
    One loop for both (the chain's loop over rows, see `chain`): about 1.2
    microseconds per transfer.  The content holds the digests as hex; the bytes are
    what the ledger stores.
    """
    inner, outer = key.personal_hmac()
    macs: list[bytes] = []
    hashes: list[bytes] = []
    sha256 = hashlib.sha256
    h = prev_hash.encode()
    for p, prefix in zip(personal, prefixes, strict=True):
        i = inner.copy()
        i.update(p.encode())
        o = outer.copy()
        o.update(i.digest())
        mac = o.digest()
        digest = sha256(h + prefix.encode() + mac.hex().encode()).digest()
        h = digest.hex().encode()
        macs.append(mac)
        hashes.append(digest)
    return macs, hashes


def with_hashes(frame: pl.DataFrame, prev_hash: str, key: LedgerKey) -> pl.DataFrame:
    """`frame` (`CHAIN_FIELDS`, ordered by transfer_id) with its `personal_mac`, `prev_hash`
    and `hash` columns computed: version 2 of the chain, under `key`; hex text, and as
    the 32 bytes the ledger stores in `DIGEST_BYTES` columns (`personal_mac_bytes`, ...)."""
    if frame.height == 0:
        return frame.with_columns(
            personal_mac=pl.lit(None, pl.String),
            prev_hash=pl.lit(None, pl.String),
            hash=pl.lit(None, pl.String),
            **{c: pl.lit(None, pl.Binary) for c in DIGEST_BYTES},
        )
    parts = frame.select(
        personal_content_expr(),
        pl.concat_str([pl.lit(VERSION_2), _encoded(KEYED_FIELDS[:-1]), pl.lit(",64:")]).alias(
            "prefix"
        ),
    )
    macs, chained = keyed_chain(
        parts.get_column("personal").to_list(),
        parts.get_column("prefix").to_list(),
        prev_hash,
        key,
    )
    hashes = pl.Series("hash_bytes", chained, dtype=pl.Binary)
    mac_bytes = pl.Series("personal_mac_bytes", macs, dtype=pl.Binary)
    prev = hashes.shift(1).fill_null(bytes.fromhex(prev_hash)).alias("prev_hash_bytes")
    return frame.with_columns(
        mac_bytes.bin.encode("hex").alias("personal_mac"),
        prev.bin.encode("hex").alias("prev_hash"),
        hashes.bin.encode("hex").alias("hash"),
        mac_bytes,
        prev,
        hashes,
    )
