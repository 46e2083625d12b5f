"""Policy versions: the (policy, sha256) pairs transfers were decided under, numbered.

A transfer names its policy file's version by `policy_version_id` (migration 0013)
instead of repeating the 64-character sha256 on every row; the chain still commits
to the sha256 itself (`ledgers.chain`), so readers that recompute or print it join
it back from here.  The table is append-only and small (one row per policy file
version ever posted): it is read whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.elements import ColumnElement, Label

from ledgers.frames import read_frame
from ledgers.schema import PolicyVersion

SCHEMA = {"policy_version_id": pl.Int32, "policy_id": pl.String, "policy_sha256": pl.String}


def known(conn: Connection) -> pl.DataFrame:
    """Every version the ledger has: policy_version_id, policy_id, policy_sha256."""
    v = PolicyVersion.__table__
    stmt = select(v.c.policy_version_id, v.c.policy_id, v.c.sha256).order_by(v.c.policy_version_id)
    return read_frame(conn, stmt, SCHEMA)


def ensure(conn: Connection, frame: pl.DataFrame) -> pl.DataFrame:
    """Number every (policy_id, policy_sha256) of `frame` not numbered yet, committed in a
    transaction of its own; return every version the ledger now has (`known`).

    A version numbered by a post that then fails stays: it names a file that was read,
    and the next post of it finds it.  The caller holds the ledger's write lock.
    """
    wanted = (
        frame.lazy()
        .select("policy_id", "policy_sha256")
        .filter(pl.col("policy_sha256").is_not_null())
        .unique()
        .collect()
    )
    with conn.begin():
        have = known(conn)
        new = wanted.join(have, on=["policy_id", "policy_sha256"], how="anti").sort(
            "policy_id", "policy_sha256"
        )
        if new.height:
            v = PolicyVersion.__table__
            first = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(v.c.policy_version_id), 0))
                    ).scalar_one()
                )
                + 1
            )
            conn.execute(
                insert(PolicyVersion),
                [
                    {"policy_version_id": first + i, "policy_id": p, "sha256": s}
                    for i, (p, s) in enumerate(new.iter_rows())
                ],
            )
            have = known(conn)
    return have


def numbered(versions: pl.DataFrame) -> pl.Expr:
    """Polars: each row's policy_version_id from its policy_id and policy_sha256 (null
    where the sha256 is null), given `versions` (`known` or `ensure`)."""
    key = pl.concat_str("policy_id", "policy_sha256", separator=" ")
    return key.replace_strict(
        versions.select(key).to_series(),
        versions.get_column("policy_version_id"),
        default=None,
        return_dtype=pl.Int32,
    ).alias("policy_version_id")


def sha256_expr(versions: pl.DataFrame) -> pl.Expr:
    """Polars: each row's policy_sha256 from its policy_version_id (null for a number
    `versions` lacks: the transfer's hash then no longer matches)."""
    return (
        pl.col("policy_version_id")
        .replace_strict(
            versions.get_column("policy_version_id"),
            versions.get_column("policy_sha256"),
            default=None,
            return_dtype=pl.String,
        )
        .alias("policy_sha256")
    )


def transfer_columns(transfers: FromClause, names: Iterable[str]) -> list[ColumnElement[Any]]:
    """SQL: these columns of `transfers`, "policy_sha256" read through `sha256_of`."""
    return [sha256_of(transfers) if n == "policy_sha256" else transfers.c[n] for n in names]


def sha256_of(transfers: FromClause) -> Label[str]:
    """SQL: a transfer's policy sha256 (null for one without), labelled policy_sha256,
    for a select over `transfers` (Transfer.__table__)."""
    v = PolicyVersion.__table__
    found: ColumnElement[str] = (
        select(v.c.sha256)
        .where(v.c.policy_version_id == transfers.c.policy_version_id)
        .scalar_subquery()
    )
    return found.label("policy_sha256")
