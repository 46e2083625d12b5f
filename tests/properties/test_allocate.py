"""Properties of allocation: budgets are never exceeded and pro-rata pays them exactly,
one payout per entity per group, the order of rows changes nothing, and a second
allocation against what the first granted changes nothing."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.allocate import Terms, allocate, period_bounds
from ledgers.holdings import HOLDINGS_SCHEMA

YEAR = (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
ENTITIES = [f"E{i:03d}" for i in range(12)]
POLICIES = ["p-a", "p-b", "p-c"]


def terms(pid: str, group: str, priority: int, budget: int | None, rule: str | None) -> Terms:
    return Terms(pid, "enterprise", "2026", *YEAR, group, priority, budget, rule)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[pl.DataFrame, list[Terms], pl.DataFrame]:
    rules = []
    for pid in POLICIES:
        group = draw(st.sampled_from(["", "g1", "g2"]))
        budgeted = draw(st.booleans())
        rule = draw(st.sampled_from(["pro_rata", "rank", "refuse"])) if budgeted else None
        budget = draw(st.integers(1, 5_000)) if budgeted else None
        rules.append(terms(pid, group, draw(st.integers(0, 3)), budget, rule))
    rows = []
    for pid in POLICIES:
        for e in draw(st.lists(st.sampled_from(ENTITIES), unique=True, max_size=len(ENTITIES))):
            eligible = draw(st.booleans())
            amount = draw(st.integers(1, 2_000)) if eligible else 0
            rank = draw(st.one_of(st.none(), st.integers(0, 5).map(float)))
            rows.append(
                (pid, "2026", "enterprise", e, eligible, amount, e if eligible else None, rank)
            )
    decisions = pl.DataFrame(
        rows,
        schema={
            "policy_id": pl.String,
            "period": pl.String,
            "target": pl.String,
            "entity_id": pl.String,
            "eligible": pl.Boolean,
            "amount_fen": pl.Int64,
            "payee": pl.String,
            "rank": pl.Float64,
        },
        orient="row",
    )
    return decisions, rules, pl.DataFrame(schema=HOLDINGS_SCHEMA)


def as_held(frame: pl.DataFrame) -> pl.DataFrame:
    """What the ledger holds after posting an allocation."""
    return frame.filter(pl.col("amount_fen") > 0).select(
        "policy_id", "benefit_period", "entity", "payee", pl.col("amount_fen").alias("net_fen")
    )


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_budgets_hold_and_pro_rata_pays_exactly(case: tuple) -> None:
    decisions, rules, held = case
    out = allocate(decisions, rules, held)
    frame = out.entitlements
    assert (frame["amount_fen"] >= 0).all()
    assert (frame["amount_fen"] <= frame["claim_fen"]).all()
    for t in rules:
        mine = frame.filter(pl.col("policy_id") == t.policy_id)
        paid = int(mine["amount_fen"].sum())
        use = out.policies[t.policy_id].budget
        if t.budget_fen is None:
            assert use is None
            continue
        assert use is not None
        assert paid <= t.budget_fen
        claims = int(
            mine.filter(pl.col("stacking").is_null() | pl.col("stacking").is_in(["won", "alone"]))[
                "claim_fen"
            ].sum()
        )
        if claims <= t.budget_fen:
            assert paid == claims
        elif t.over_budget == "refuse":
            assert paid == 0
            assert use.refused_fen == claims - t.budget_fen
        else:
            assert paid == t.budget_fen  # pro rata and rank spend the whole budget
        if t.over_budget == "pro_rata" and claims > t.budget_fen:
            for claim, amount in mine.select("claim_fen", "amount_fen").iter_rows():
                exact = Fraction(claim * t.budget_fen, claims)
                assert amount - int(exact) in (0, 1)  # within a fen of the exact share


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_one_payout_per_entity_per_group(case: tuple) -> None:
    decisions, rules, held = case
    frame = allocate(decisions, rules, held).entitlements
    group = {t.policy_id: t.group for t in rules}
    paid = frame.filter(pl.col("amount_fen") > 0).with_columns(
        pl.col("policy_id").replace_strict(group).alias("group")
    )
    grouped = paid.filter(pl.col("group") != "")
    assert not grouped.select("group", "entity").is_duplicated().any()


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_row_order_changes_nothing(case: tuple, rnd) -> None:
    decisions, rules, held = case
    order = list(range(decisions.height))
    rnd.shuffle(order)
    shuffled = decisions[order]
    first = allocate(decisions, rules, held)
    second = allocate(shuffled, list(reversed(rules)), held)
    assert first.entitlements.equals(second.entitlements)
    assert first.policies == second.policies


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_allocating_again_against_its_own_grants_changes_nothing(case: tuple) -> None:
    decisions, rules, held = case
    first = allocate(decisions, rules, held).entitlements
    second = allocate(decisions, rules, as_held(first)).entitlements
    amounts = ["policy_id", "entity", "amount_fen"]
    assert (
        second.filter(pl.col("amount_fen") > 0)
        .select(amounts)
        .equals(first.filter(pl.col("amount_fen") > 0).select(amounts))
    )
    assert (second["held_fen"] == second["amount_fen"]).all()


def test_rank_pays_in_rank_order_and_the_marginal_claim_gets_the_rest() -> None:
    decisions = pl.DataFrame(
        {
            "policy_id": ["p"] * 4,
            "period": ["2026"] * 4,
            "target": ["enterprise"] * 4,
            "entity_id": ["A", "B", "C", "D"],
            "eligible": [True] * 4,
            "amount_fen": [500, 300, 400, 200],
            "payee": ["A", "B", "C", "D"],
            "rank": [1.0, 9.0, 5.0, None],
        }
    )
    out = allocate(
        decisions, [terms("p", "", 0, 1000, "rank")], pl.DataFrame(schema=HOLDINGS_SCHEMA)
    )
    got = dict(out.entitlements.select("entity", "amount_fen").iter_rows())
    assert got == {"B": 300, "C": 400, "A": 300}  # D (rank unknown) comes last: nothing left


def test_budget_counts_what_earlier_runs_granted() -> None:
    """Night 2: the earlier grant is kept, the new claimant shares only what is left."""
    decisions = pl.DataFrame(
        {
            "policy_id": ["p", "p"],
            "period": ["2026", "2026"],
            "target": ["enterprise"] * 2,
            "entity_id": ["A", "B"],
            "eligible": [True, True],
            "amount_fen": [600, 600],
            "payee": ["A", "B"],
            "rank": [None, None],
        },
        schema_overrides={"rank": pl.Float64},
    )
    held = pl.DataFrame(
        {
            "policy_id": ["p"],
            "benefit_period": ["2026"],
            "entity": ["A"],
            "payee": ["A"],
            "net_fen": [600],
        }
    )
    out = allocate(decisions, [terms("p", "", 0, 1000, "pro_rata")], held)
    got = dict(out.entitlements.select("entity", "amount_fen").iter_rows())
    assert got == {"A": 600, "B": 400}
    use = out.policies["p"].budget
    assert use is not None
    assert use.kept_fen == 600
    assert use.remaining_fen == 400


def test_an_earlier_payout_of_the_group_blocks_an_overlapping_claim() -> None:
    decisions = pl.DataFrame(
        {
            "policy_id": ["new"],
            "period": ["2026"],
            "target": ["enterprise"],
            "entity_id": ["A"],
            "eligible": [True],
            "amount_fen": [900],
            "payee": ["A"],
            "rank": [None],
        },
        schema_overrides={"rank": pl.Float64},
    )
    held = pl.DataFrame(
        {
            "policy_id": ["old"],
            "benefit_period": ["once"],
            "entity": ["A"],
            "payee": ["A"],
            "net_fen": [100],
        }
    )
    out = allocate(
        decisions,
        [terms("new", "g", 0, None, None)],
        held,
        groups={"old": "g"},
        once={"old": (dt.date(2025, 1, 1), dt.date(2026, 6, 30))},
    )
    assert out.entitlements.height == 0
    assert out.policies["new"].lost_stacking == 1
    # a payout that ended before the claim's period does not block it
    out = allocate(
        decisions,
        [terms("new", "g", 0, None, None)],
        held,
        groups={"old": "g"},
        once={"old": (dt.date(2024, 1, 1), dt.date(2025, 6, 30))},
    )
    assert out.entitlements["amount_fen"].to_list() == [900]


def test_period_bounds() -> None:
    assert period_bounds("2026") == YEAR
    assert period_bounds("2026-H2") == (dt.date(2026, 7, 1), dt.date(2026, 12, 31))
    assert period_bounds("2026-Q1") == (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    assert period_bounds("2026-02") == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert period_bounds("2026-12") == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


def test_a_policy_decided_once_keeps_its_grants_whatever_tonight_says() -> None:
    """decide: once. A (granted 600, tonight no longer eligible) keeps 600, C (granted 600,
    tonight claims 900) keeps 600; B is decided for the first time tonight.  Decided each
    run, A is reversed and C raised."""
    decisions = pl.DataFrame(
        {
            "policy_id": ["p"] * 3,
            "period": ["2026"] * 3,
            "target": ["enterprise"] * 3,
            "entity_id": ["A", "B", "C"],
            "eligible": [False, True, True],
            "amount_fen": [0, 500, 900],
            "payee": [None, "B", "C"],
            "rank": [None, None, None],
        },
        schema_overrides={"rank": pl.Float64},
    )
    held = pl.DataFrame(
        {
            "policy_id": ["p", "p"],
            "benefit_period": ["2026", "2026"],
            "entity": ["A", "C"],
            "payee": ["A", "C"],
            "net_fen": [600, 600],
        }
    )
    once = Terms("p", "enterprise", "2026", *YEAR, "", 0, None, None, "once")
    got = allocate(decisions, [once], held).entitlements
    assert dict(got.select("entity", "amount_fen").iter_rows()) == {"A": 600, "B": 500, "C": 600}
    assert dict(got.select("entity", "stacking").iter_rows())["A"] == "decided"
    each = allocate(decisions, [terms("p", "", 0, None, None)], held).entitlements
    assert dict(each.select("entity", "amount_fen").iter_rows()) == {"A": 0, "B": 500, "C": 900}
