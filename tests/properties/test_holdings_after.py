"""`Holdings.after`: what the ledger holds once some transfers are written is what it
held plus their effect on each key, whether it sums every key or only those touched."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgers.holdings import HOLDING_KEY, HOLDINGS_SCHEMA, Holdings

KEYS = st.tuples(
    st.sampled_from(["p1", "p2"]),
    st.sampled_from(["2026-01", "2026-02"]),
    st.sampled_from(["E1", "E2", "E3"]),
    st.sampled_from(["E1", "E2", "G9"]),
)
KINDS = ["grant", "adjustment", "reversal", "clawback", "instructed"]


@settings(max_examples=300, deadline=None)
@given(
    held=st.dictionaries(KEYS, st.integers(-500, 500), max_size=12),
    moves=st.lists(
        st.tuples(KEYS, st.sampled_from(KINDS), st.booleans(), st.integers(1, 300)),
        min_size=1,
        max_size=10,
    ),
)
def test_after_is_what_was_held_plus_each_transfers_effect(
    held: dict[tuple[str, str, str, str], int],
    moves: list[tuple[tuple[str, str, str, str], str, bool, int]],
) -> None:
    before = pl.DataFrame([(*k, v) for k, v in held.items()], schema=HOLDINGS_SCHEMA, orient="row")
    transfers = pl.DataFrame(
        [
            (*k, kind, "budget:x" if from_budget else f"payable:{k[3]}", amount)
            for k, kind, from_budget, amount in moves
        ],
        schema={
            **dict.fromkeys(HOLDING_KEY, pl.String),
            "kind": pl.String,
            "debit_account": pl.String,
            "amount_fen": pl.Int64,
        },
        orient="row",
    )
    got = Holdings((0, ""), frozenset({"p1", "p2"}), before).after(transfers, (1, "h")).frame
    want = dict(held)
    for k, kind, from_budget, amount in moves:
        if kind != "instructed":  # a payment does not change what a key holds
            want[k] = want.get(k, 0) + (amount if from_budget else -amount)
    rows = {tuple(r[:4]): r[4] for r in got.iter_rows()}
    assert len(rows) == got.height  # each key once
    assert rows == want
