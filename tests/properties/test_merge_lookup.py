"""Property test: ingest's merge lookup of identity-number codes finds exactly what a hash
join on the same codes finds, row for row, nulls and unknown codes included."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.validate import merge_lookup

codes = st.integers(1, 10**18)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(codes, unique=True, max_size=60),
    st.lists(st.one_of(st.none(), codes), max_size=80),
)
def test_merge_lookup_equals_hash_join(known: list[int], refs: list[int | None]) -> None:
    # References mostly to known codes (repeats included), some to unknown ones or none.
    if known:
        refs = [r if r is None or r % 3 else known[r % len(known)] for r in refs]
    table = pl.DataFrame(
        {"_code": sorted(known), "_sk": list(range(1, len(known) + 1))},
        schema={"_code": pl.Int64, "_sk": pl.Int32},
    )
    probe = pl.DataFrame({"c": refs}, schema={"c": pl.Int64})
    want = probe.join(table, left_on="c", right_on="_code", how="left", maintain_order="left")
    got = merge_lookup(probe.get_column("c"), table)
    assert got.dtype == pl.Int32
    assert got.name == "c"
    assert got.to_list() == want.get_column("_sk").to_list()
