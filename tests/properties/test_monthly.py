"""A monthly amount (the sum of each month's amount over the benefit period, `month` bound to
each month's first day) is the same in the compiled plan and the reference interpreter, on
birth dates either side of every tier's birthday, and stays within narwhals' operations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from eligibility import load_policy
from eligibility.backends.polars import evaluate_frame
from eligibility.backends.polars.policy import policy_columns
from eligibility.plan import Naming, needs, run_dates
from eligibility.reference import decide, env_for
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies
from tests.unit.test_polars_backend import NARWHALS, _check

HERE = Path(__file__).resolve().parents[1] / "policies"
CAT = load_policies(load_source_catalogue()).catalogue
POLICY = load_policy(HERE / "birthday_month_allowance.yaml", CAT)
AS_OF = dt.date(2026, 12, 1)
births = st.one_of(
    st.none(),
    st.dates(dt.date(1920, 1, 1), dt.date(1950, 12, 31)),
    st.sampled_from([dt.date(1936, m, d) for m in (1, 6, 7, 12) for d in (1, 15, 28)]),
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(births, st.sampled_from(["alive", "dead", None])), min_size=1, max_size=12
    )
)
def test_compiled_monthly_amounts_equal_the_reference(
    rows: list[tuple[dt.date | None, str | None]],
) -> None:
    naming, window = Naming(CAT), run_dates(POLICY, AS_OF).window
    used = sorted({name for name, _w in needs([POLICY], CAT, AS_OF)["person"].features})
    assert set(used) == {"birth_on", "status"}
    frame = pl.DataFrame(
        {
            naming.feature("person", "birth_on", window): pl.Series(
                [b for b, _s in rows], dtype=pl.Date
            ),
            naming.feature("person", "status", window): pl.Series(
                [s for _b, s in rows], dtype=pl.String
            ),
            "sk": pl.Series(range(len(rows)), dtype=pl.Int32),
            "entity_id": [f"P{i}" for i in range(len(rows))],
        }
    )
    out = evaluate_frame(frame.lazy(), [POLICY], CAT, AS_OF, "sk", "entity_id").collect().sort("sk")
    for i, (born, status) in enumerate(rows):
        want = decide(
            POLICY, env_for(POLICY, AS_OF, {"birth_on": born, "status": status}, set()), f"P{i}"
        )
        got = out.row(i, named=True)
        assert (got["eligible"], got["amount_fen"], got["reason"]) == (
            want["eligible"],
            want["amount_fen"],
            want["reason"],
        ), (born, status)


def test_the_monthly_plan_stays_in_the_narwhals_subset() -> None:
    conditions, amount = policy_columns(POLICY, CAT, Naming(CAT), AS_OF)
    assert [bad for e in [*conditions, amount] for bad in _check(e, set(NARWHALS))] == []
