"""`SourceRows`: the night's rows with events laid over them, found through indexes,
are the rows a plain overlay (replace by key, then filter) gives, batch after batch.

The night's surrogate key is a function of the key's identifier, as staging makes it;
some identifiers the night did not know (null key) and an event may name them with a
key registered since."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.events.overlay import SourceRows
from jobs.events.stage import EVENT, OP

KEY = ["ident", "month"]
IDENTS = [f"I{i}" for i in range(8)]
NIGHT_SK = {f"I{i}": (None if i in (3, 6) else 10 + i) for i in range(8)}  # I3, I6 unknown
LATER_SK = {**NIGHT_SK, "I3": 40}  # registered by an event since the night
SCHEMA = {
    "ident": pl.String,
    "month": pl.Int32,
    "value": pl.Int64,
    "a_sk": pl.Int32,
    "b_sk": pl.Int32,
}


def _night(rows: list[tuple[str, int, int, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(i, m, v, NIGHT_SK[i], b) for i, m, v, b in rows], schema=SCHEMA, orient="row"
    ).unique(KEY, keep="first", maintain_order=True)


ROW = st.tuples(
    st.sampled_from(IDENTS),
    st.integers(1, 3),
    st.integers(0, 99),
    st.one_of(st.none(), st.integers(1, 5)),
)
EVENTS = st.lists(st.tuples(ROW, st.sampled_from(["upsert", "remove"])), max_size=6)


def _plain_lay(now: pl.DataFrame, ev: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    replaced = now.join(ev.select(*KEY, EVENT), on=KEY, how="inner", nulls_equal=True)
    last = ev.sort(EVENT).unique(KEY, keep="last", maintain_order=True)
    kept = now.join(last.select(KEY), on=KEY, how="anti", nulls_equal=True)
    upserts = last.filter(pl.col(OP) == "upsert").select(list(SCHEMA)).cast(SCHEMA)  # type: ignore[arg-type]
    return pl.concat([kept, upserts]), replaced


def _sorted(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return sorted(frame.select(sorted(frame.columns)).iter_rows(), key=repr)


@settings(max_examples=300, deadline=None)
@given(
    night=st.lists(ROW, max_size=25),
    batches=st.lists(EVENTS, max_size=4),
    asked=st.lists(st.integers(1, 45), max_size=4),
    through=st.booleans(),
)
def test_rows_found_through_indexes_are_the_plain_overlays(
    night: list[tuple[str, int, int, int | None]],
    batches: list[list[tuple[tuple[str, int, int, int | None], str]]],
    asked: list[int],
    through: bool,
) -> None:
    start = _night(night)
    rows = SourceRows(start, ["a_sk", "b_sk"], KEY)
    plain = start
    next_id = 1
    for batch in batches:
        events = []
        for (ident, month, value, b), op in batch:
            events.append((next_id, op, ident, month, value, LATER_SK[ident], b))
            next_id += 1
        ev = pl.DataFrame(
            events,
            schema={EVENT: pl.Int64, OP: pl.String, **SCHEMA},
            orient="row",
        )
        if ev.height == 0:
            continue
        got = rows.lay(ev, ["a_sk"] if through else [])
        plain, want = _plain_lay(plain, ev)
        assert _sorted(got) == _sorted(want)
        assert _sorted(rows.frame()) == _sorted(plain)
        for column in ("a_sk", "b_sk"):
            found = rows.naming({column: asked})
            expected = plain.filter(pl.col(column).is_in(asked))
            assert _sorted(found) == _sorted(expected)
        both = rows.naming({"a_sk": asked, "b_sk": asked})
        either = plain.filter(pl.col("a_sk").is_in(asked) | pl.col("b_sk").is_in(asked))
        assert _sorted(both) == _sorted(either)
