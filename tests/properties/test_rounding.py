"""Every rounding a policy may declare (to fen, yuan or ten yuan; half up, half to even,
down) gives the same whole fen in the compiled plan as in the reference interpreter."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eligibility.amounts import Rounding
from eligibility.backends.polars import DEC
from eligibility.backends.polars.amounts import round_amount as compiled
from eligibility.reference import round_amount as reference

ROUNDINGS = [
    Rounding(to, mode)
    for to in ("fen", "yuan", "ten_yuan")
    for mode in ("half_up", "half_even", "down")
]
EDGES = [
    Decimal(x)
    for x in (
        "0",
        "0.5",
        "1.5",
        "2.5",
        "-2.5",
        "49.5",
        "50",
        "150",
        "250",
        "-150",
        "1049.999",
        "12345.5",
    )
]


@pytest.mark.parametrize("rounding", ROUNDINGS, ids=lambda r: f"{r.to}-{r.mode}")
@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.sampled_from(EDGES),
            st.decimals(-(10**9), 10**9, places=4, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_compiled_rounding_equals_the_reference(rounding: Rounding, values: list[Decimal]) -> None:
    frame = pl.DataFrame({"fen": pl.Series(values, dtype=DEC)})
    got = frame.select(compiled(pl.col("fen"), rounding).alias("r"))["r"].to_list()
    assert got == [reference(v, rounding) for v in values]


def test_the_modes_differ_where_they_should() -> None:
    half = Decimal("250")  # 2.50 yuan
    assert [reference(half, Rounding("yuan", m)) for m in ("half_up", "half_even", "down")] == [
        300,
        200,
        200,
    ]
    assert reference(Decimal("1500"), Rounding("ten_yuan", "half_up")) == 2000
    assert reference(Decimal("-250"), Rounding("yuan", "half_up")) == -300
