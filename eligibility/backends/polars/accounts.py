"""Which of a payee's accounts a policy pays to: the first of the policy's accounts
(`payment: {account: coalesce(a, b)}`, else the catalogue's first of the payee's kind)
that the payee has on file in the account sources."""

from __future__ import annotations

import polars as pl

from eligibility.backends.polars.features import Scan
from eligibility.checked import CheckedCatalogue, CheckedPolicy, payee_kind

PAID_TO_SCHEMA = {"policy_id": pl.String, "payee": pl.String, "account": pl.String}


def paid_to(
    scan: Scan, cat: CheckedCatalogue, policies: list[CheckedPolicy], payees: pl.LazyFrame
) -> pl.LazyFrame:
    """Per (policy_id, payee) of `payees`: the name of the account paid to, null where the
    payee has none of the policy's accounts on file."""
    prefs = [
        (p.id, str(payee_kind(p.spec, cat)), name, rank)
        for p in policies
        for rank, name in enumerate(p.accounts)
    ]
    pairs = payees.select("policy_id", "payee").unique()
    if not prefs:
        return pairs.with_columns(pl.lit(None, dtype=pl.String).alias("account"))
    wanted = pl.LazyFrame(
        prefs,
        schema={"policy_id": pl.String, "kind": pl.String, "account": pl.String, "rank": pl.Int32},
        orient="row",
    )
    on_file = pl.concat(
        [
            scan(acc.source).select(
                pl.col(cat.source_keys.get(acc.source, (cat.id_column(kind),))[0]).alias("payee"),
                pl.lit(kind).alias("kind"),
                pl.lit(name).alias("account"),
            )
            for kind, name in sorted({(k, n) for _p, k, n, _r in prefs})
            for acc in (cat.spec.entities[kind].accounts[name],)
        ]
    ).unique()
    chosen = (
        pairs.join(wanted, on="policy_id")
        .join(on_file, on=["payee", "kind", "account"], how="semi")
        .sort("rank")
        .group_by("policy_id", "payee")
        .agg(pl.col("account").first())
    )
    return pairs.join(chosen, on=["policy_id", "payee"], how="left").select(list(PAID_TO_SCHEMA))
