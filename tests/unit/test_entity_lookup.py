"""`EntityKeys.lookup`: the identifiers a few events name, found without reading every
one, as a join with the whole table finds them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.validate import EntityKeys

IDS = st.text(alphabet="0123456789AX", min_size=1, max_size=4)


def _keys(known: list[str], extra: list[str], presorted: bool) -> EntityKeys:
    table = pl.DataFrame(
        {"id": known, "_sk": list(range(1, len(known) + 1))},
        schema={"id": pl.String, "_sk": pl.Int32},
    )
    registered = pl.DataFrame(
        {"id": extra, "_sk": list(range(1000, 1000 + len(extra)))},
        schema={"id": pl.String, "_sk": pl.Int32},
    )
    return EntityKeys(
        Path("/nonexistent.parquet"),
        "id",
        "sk",
        extra=registered if extra else None,
        known=table.sort("id") if presorted else table,
    )


@settings(max_examples=200, deadline=None)
@given(
    known=st.lists(IDS, unique=True, max_size=30),
    extra=st.lists(IDS, unique=True, max_size=5),
    asked=st.lists(st.one_of(st.none(), IDS), max_size=12),
    presorted=st.booleans(),
)
def test_lookup_finds_what_the_whole_table_finds(
    known: list[str], extra: list[str], asked: list[str | None], presorted: bool
) -> None:
    keys = _keys(known, extra, presorted)
    wanted = pl.Series("id", asked, dtype=pl.String)
    expected = (
        keys.table()
        .join(wanted.drop_nulls().to_frame().lazy(), on="id", how="semi")
        .unique("id")
        .collect()
        .sort("id")
    )
    got = keys.lookup(wanted).collect().sort("id")
    assert got.to_dicts() == expected.to_dicts()
