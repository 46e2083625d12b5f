"""Setting grants against what payees owe back, and money paid back (`ledgers.recoveries`):
the allocation is exact to the fen, never settles more than a receivable holds or a grant
pays, keeps a this_policy grant to its own policy's debts, and takes the oldest first."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgers.recoveries import OWED_SCHEMA, offset_transfers, recovery_transfers

PAY_SCHEMA = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
}


def owed(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    """(policy, period, payee, owed_fen, since) rows; the entity is the payee."""
    return pl.DataFrame(
        [(p, b, e, e, fen, since) for p, b, e, fen, since in rows],
        schema=OWED_SCHEMA,
        orient="row",
    )


def payable(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(p, b, e, e, fen) for p, b, e, fen in rows], schema=PAY_SCHEMA, orient="row"
    )


def settles(frame: pl.DataFrame) -> list[tuple[str, str, int]]:
    return [
        (json.loads(d)["settles"]["policy_id"], json.loads(d)["settles"]["benefit_period"], fen)
        for d, fen in frame.select("decision", "amount_fen").iter_rows()
    ]


def test_this_policy_settles_only_its_own_debts() -> None:
    debts = owed([("fuel", "2026-03", "A", 300_00, 1), ("rent", "2026", "A", 500_00, 2)])
    due = payable([("fuel", "2026-04", "A", 300_00), ("rent", "2027", "A", 200_00)])
    got = offset_transfers(due, debts, {"fuel": "this_policy", "rent": "this_policy"})
    assert settles(got) == [("fuel", "2026-03", 300_00), ("rent", "2026", 200_00)]
    assert got["debit_account"].to_list() == ["payable:A", "payable:A"]
    assert got["credit_account"].to_list() == ["receivable:A", "receivable:A"]
    assert got["benefit_period"].to_list() == ["2026-04", "2027"]  # the paying key's


def test_any_policy_takes_the_oldest_debt_first_and_leaves_the_rest_to_pay() -> None:
    debts = owed([("rent", "2026", "A", 100_00, 7), ("fuel", "2026-03", "A", 50_00, 3)])
    due = payable([("aid", "2026", "A", 120_00)])
    got = offset_transfers(due, debts, {"aid": "any_policy"})
    assert settles(got) == [("fuel", "2026-03", 50_00), ("rent", "2026", 70_00)]


def test_no_offset_without_the_policy_saying_so_or_for_another_payee() -> None:
    debts = owed([("fuel", "2026-03", "A", 300_00, 1)])
    assert offset_transfers(payable([("aid", "2026", "A", 100)]), debts, {}).height == 0
    due = payable([("fuel", "2026-04", "B", 300_00)])
    assert offset_transfers(due, debts, {"fuel": "any_policy"}).height == 0


def test_money_paid_back_settles_the_oldest_debt_first() -> None:
    debts = owed([("rent", "2026", "A", 100_00, 9), ("fuel", "2026-03", "A", 50_00, 4)])
    got = recovery_transfers(debts, "A", 120_00, "BK-1", dt.date(2026, 4, 2))
    assert got.select("policy_id", "amount_fen").rows() == [("fuel", 50_00), ("rent", 70_00)]
    assert set(got["debit_account"]) == {"recovered:bank"}
    assert json.loads(got["decision"][0]) == {"received_on": "2026-04-02", "reference": "BK-1"}


POLICIES = ["p", "q", "r"]
debt_rows = st.lists(
    st.tuples(st.sampled_from(POLICIES), st.sampled_from(["2026", "2027"]),
              st.sampled_from(["A", "B"]), st.integers(1, 10_000), st.integers(1, 100)),
    max_size=8,
    unique_by=lambda r: (r[0], r[1], r[2]),
)  # fmt: skip
pay_rows = st.lists(
    st.tuples(st.sampled_from(POLICIES), st.sampled_from(["2028", "2029"]),
              st.sampled_from(["A", "B"]), st.integers(1, 10_000)),
    max_size=8,
    unique_by=lambda r: (r[0], r[1], r[2]),
)  # fmt: skip
scopes = st.dictionaries(st.sampled_from(POLICIES), st.sampled_from(["this_policy", "any_policy"]))


@settings(max_examples=300, deadline=None)
@given(debt_rows, pay_rows, scopes)
def test_offsets_never_settle_more_than_is_owed_or_paid(debts, due, scope) -> None:  # type: ignore[no-untyped-def]
    got = offset_transfers(payable(due), owed(debts), scope)
    assert (got["amount_fen"] > 0).all()
    taken = got.group_by("policy_id", "benefit_period", "payee").agg(pl.col("amount_fen").sum())
    for p, b, e, fen in taken.iter_rows():
        assert fen <= next(f for q, c, x, f in due if (q, c, x) == (p, b, e))
    settled: dict[tuple[str, str, str], int] = {}
    for d, payee, paying, fen in got.select(
        "decision", "payee", "policy_id", "amount_fen"
    ).iter_rows():
        s = json.loads(d)["settles"]
        key = (s["policy_id"], s["benefit_period"], payee)
        settled[key] = settled.get(key, 0) + fen
        assert scope[paying] == "any_policy" or s["policy_id"] == paying
    for key, fen in settled.items():
        assert fen <= next(f for p, b, e, f, _ in debts if (p, b, e) == key)
    # Greedy and complete: a grant left with money owes nothing it could settle.
    for p, b, e, fen in due:
        if p not in scope:
            continue
        used = sum(f for q, c, x, f in taken.iter_rows() if (q, c, x) == (p, b, e))
        if used < fen:
            reachable = [
                k for k, f in ((d[:3], d[3]) for d in debts)
                if k[2] == e and (scope[p] == "any_policy" or k[0] == p)
                and settled.get(k, 0) < f
            ]  # fmt: skip
            assert reachable == []
