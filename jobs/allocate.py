"""Allocate: from each policy's claims to what each key is entitled to after stacking and budgets.

Input: rows of the night's decision table (the claims, every eligible entity
with its claimed amount, and the refused rows of keys the ledger holds), the
terms of every policy (group, priority, budget) and what the ledger already
holds.  Output: the desired amount of every key this run decides, which `post`
turns into grants and adjustments.  A pure function of its inputs: the same
inputs in any row order give the same frame, byte for byte.

Stacking (a group): one payout per entity per group.  Among this run's claims
of the group's policies the highest amount wins; a tie goes to the higher
priority, then to the smaller policy id.  An entity that the ledger already
holds a payout for under another policy of the group, for a benefit period
that overlaps the claim's, keeps that one and wins nothing here.

Budgets (per policy and benefit period), counting what earlier runs granted:
every key keeps what it holds as far as its claim still covers it (a smaller
claim is reduced, a lost claim is reversed); the budget left after that pays
the new claims and increases:

* all of them, when they fit;
* ``pro_rata``: each scaled by remaining / claimed, rounded down to the fen,
  and the fen left over go one each to the largest remainders (ties: larger
  claim first, then smaller entity id), so exactly the remaining budget is paid;
* ``rank``: in order of ``rank_by`` (higher first; ties and unknowns: smaller
  entity id first), each paid in full while the budget lasts, the first that
  does not fit gets what is left, the rest nothing;
* ``refuse``: none of them; the summary says by how much the claims exceed
  the budget, for finance to raise it or the officer to change the policy.

Stacking comes first, on the claimed amounts; a winner cut by its own budget
does not fall back to another policy of its group.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from common.money import yuan_to_fen
from common.periods import FOREVER, Period, period_of_key
from eligibility import CheckedPolicy, run_dates

NO_GROUP = ""

# What `allocate` returns per key: the desired state for `post_entitlements`.
ALLOCATED_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "target": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "claim_fen": pl.Int64,
    "held_fen": pl.Int64,
    "amount_fen": pl.Int64,
    "stacking": pl.String,
    "budget": pl.String,
}


@dataclass(frozen=True)
class Terms:
    """What allocation needs to know of one policy."""

    policy_id: str
    target: str
    period: str
    start: dt.date
    end: dt.date
    group: str
    priority: int
    budget_fen: int | None
    over_budget: str | None
    decide: str = "each_run"  # once: a key granted on an earlier night stands as granted

    @classmethod
    def of(cls, policy: CheckedPolicy, as_of: dt.date) -> Terms:
        """The terms of `policy` for the benefit period `as_of` falls in."""
        period: Period = run_dates(policy, as_of).period
        budget = policy.spec.budget
        return cls(
            policy_id=policy.id,
            target=policy.target,
            period=period.key,
            start=period.start,
            end=period.end,
            group=policy.spec.group or NO_GROUP,
            priority=policy.spec.priority,
            budget_fen=yuan_to_fen(budget.total_yuan) if budget else None,
            over_budget=budget.over_budget if budget else None,
            decide=policy.spec.decide,
        )


@dataclass
class BudgetUse:
    """One budgeted policy's period, in fen."""

    budget_fen: int
    rule: str
    held_before_fen: int = 0
    kept_fen: int = 0
    untouched_fen: int = 0
    remaining_fen: int = 0
    new_claims_fen: int = 0
    new_paid_fen: int = 0
    outcome: str = "within"  # within | pro_rata | rank | refused
    refused_fen: int = 0


@dataclass
class PolicyAllocation:
    """One policy's outcome of the night's allocation."""

    policy_id: str
    benefit_period: str
    evaluated: int = 0
    eligible: int = 0
    claimed_fen: int = 0
    lost_stacking: int = 0
    entitled: int = 0
    entitled_fen: int = 0
    budget: BudgetUse | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain data."""
        return asdict(self)


@dataclass
class Allocation:
    """The desired state of every decided key, and each policy's outcome."""

    entitlements: pl.DataFrame
    policies: dict[str, PolicyAllocation] = field(default_factory=dict)


def period_bounds(period: str, once: tuple[dt.date, dt.date] = FOREVER) -> tuple[dt.date, dt.date]:
    """First and last day of a ledger benefit-period key (2026, 2026-H1, 2026-Q2, 2026-03, once)."""
    p = period_of_key(period, once)
    return p.start, p.end


def _terms_frame(terms: list[Terms]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "policy_id": [t.policy_id for t in terms],
            "group": [t.group for t in terms],
            "priority": [t.priority for t in terms],
            "start": [t.start for t in terms],
            "end": [t.end for t in terms],
        },
        schema={
            "policy_id": pl.String,
            "group": pl.String,
            "priority": pl.Int64,
            "start": pl.Date,
            "end": pl.Date,
        },
    )


def _blocked(
    claims: pl.DataFrame,
    held: pl.DataFrame,
    terms: dict[str, Terms],
    groups: dict[str, str],
    once: dict[str, tuple[dt.date, dt.date]],
) -> pl.DataFrame:
    """(policy_id, entity, stacking) of the claims that an earlier payout of the group blocks.

    Earlier payouts: what the ledger holds (> 0) under a policy of the group for a
    benefit period other than the one this run decides for it.
    """
    current = {(t.policy_id, t.period) for t in terms.values()}
    rows = []
    for (pid, period), part in held.filter(pl.col("net_fen") > 0).group_by(
        "policy_id", "benefit_period"
    ):
        pid_s, period_s = str(pid), str(period)
        group = groups.get(pid_s, NO_GROUP)
        if group == NO_GROUP or (pid_s, period_s) in current:
            continue
        start, end = period_bounds(period_s, once.get(pid_s, FOREVER))
        rows.append(
            part.select(
                pl.lit(group).alias("group"),
                "entity",
                pl.lit(start).alias("held_start"),
                pl.lit(end).alias("held_end"),
                pl.lit(f"held:{pid_s}/{period_s}").alias("stacking"),
            )
        )
    if not rows or claims.height == 0:
        return pl.DataFrame(
            schema={"policy_id": pl.String, "entity": pl.String, "stacking": pl.String}
        )
    earlier = pl.concat(rows)
    return (
        claims.join(earlier, on=["group", "entity"], how="inner")
        .filter((pl.col("held_start") <= pl.col("end")) & (pl.col("start") <= pl.col("held_end")))
        .sort(["policy_id", "entity", "stacking"])
        .group_by(["policy_id", "entity"], maintain_order=True)
        .agg(pl.col("stacking").first())
    )


def _stack(
    decisions: pl.DataFrame,
    held: pl.DataFrame,
    terms: dict[str, Terms],
    groups: dict[str, str],
    once: dict[str, tuple[dt.date, dt.date]],
) -> pl.DataFrame:
    """The claims of policies in a stacking group with `stacking`: won, alone, lost:<winner>
    or held:<policy>/<period>; null for a claim of 0."""
    meta = _terms_frame(list(terms.values()))
    grouped = decisions.join(meta, on="policy_id", how="left").filter(
        (pl.col("group") != NO_GROUP) & (pl.col("claim_fen") > 0)
    )
    blocked = _blocked(grouped, held, terms, groups, once)
    if blocked.height:
        grouped = grouped.join(blocked, on=["policy_id", "entity"], how="left")
    else:
        grouped = grouped.with_columns(pl.lit(None, pl.String).alias("stacking"))
    open_ = grouped.filter(pl.col("stacking").is_null())
    # The highest claim wins; then the higher priority; then the smaller policy id.
    order = meta.sort(["priority", "policy_id"], descending=[True, False]).select(
        "policy_id", pl.int_range(pl.len(), 0, -1, dtype=pl.Int64).alias("_order")
    )
    contest = ["group", "target", "entity"]
    score = pl.col("claim_fen") * (len(terms) + 1) + pl.col("_order")
    decided = open_.join(order, on="policy_id", how="left").select(
        "policy_id",
        "entity",
        pl.when(pl.len().over(contest) == 1)
        .then(pl.lit("alone"))
        .when(score == score.max().over(contest))
        .then(pl.lit("won"))
        .otherwise(pl.lit("lost:") + pl.col("policy_id").get(score.arg_max()).over(contest))
        .alias("stacking"),
    )
    return pl.concat(
        [decided, grouped.filter(pl.col("stacking").is_not_null()).select(decided.columns)]
    )


def _largest_remainder(over: pl.Expr, remaining: int, total_over: int) -> list[pl.Expr]:
    """Shares of `remaining` in proportion to `over`, floored, plus the leftover fen by remainder."""
    product = over.cast(pl.Int128) * pl.lit(remaining, dtype=pl.Int128)
    floor = (product // total_over).cast(pl.Int64)
    remainder = product % total_over
    return [floor.alias("_floor"), remainder.alias("_remainder")]


def _apply_budget(
    frame: pl.DataFrame, t: Terms, untouched_fen: int
) -> tuple[pl.DataFrame, BudgetUse]:
    """`amount_fen` and `budget` for one budgeted policy's rows (columns stacked_fen, held_fen)."""
    assert t.budget_fen is not None
    assert t.over_budget is not None
    use = BudgetUse(budget_fen=t.budget_fen, rule=t.over_budget, untouched_fen=untouched_fen)
    frame = frame.with_columns(
        pl.min_horizontal("held_fen", "stacked_fen").clip(lower_bound=0).alias("_keep")
    ).with_columns((pl.col("stacked_fen") - pl.col("_keep")).alias("_over"))
    use.held_before_fen = int(frame["held_fen"].clip(lower_bound=0).sum()) + untouched_fen
    use.kept_fen = int(frame["_keep"].sum())
    use.remaining_fen = max(0, t.budget_fen - use.kept_fen - untouched_fen)
    use.new_claims_fen = total_over = int(frame["_over"].sum())
    remaining = use.remaining_fen
    if total_over <= remaining:
        paid = pl.col("_over")
        note = pl.when(pl.col("_over") > 0).then(pl.lit("within")).otherwise(pl.lit(None))
    elif t.over_budget == "refuse":
        use.outcome = "refused"
        use.refused_fen = total_over - remaining
        paid = pl.lit(0, dtype=pl.Int64)
        note = pl.when(pl.col("_over") > 0).then(pl.lit("refused")).otherwise(pl.lit(None))
    elif t.over_budget == "pro_rata":
        use.outcome = "pro_rata"
        frame = frame.with_columns(_largest_remainder(pl.col("_over"), remaining, total_over))
        leftover = remaining - int(frame["_floor"].sum())
        order = frame.select(
            pl.int_range(pl.len()).alias("_i"), "_remainder", "_over", "entity"
        ).sort(["_remainder", "_over", "entity"], descending=[True, True, False])
        bonus = order.head(leftover).select("_i", pl.lit(1, dtype=pl.Int64).alias("_bonus"))
        frame = (
            frame.with_row_index("_i")
            .with_columns(pl.col("_i").cast(pl.Int64))
            .join(bonus, on="_i", how="left")
            .drop("_i")
        )
        paid = pl.col("_floor") + pl.col("_bonus").fill_null(0)
        note = pl.when(pl.col("_over") > 0).then(pl.lit("pro_rata")).otherwise(pl.lit(None))
    else:
        use.outcome = "rank"
        frame = frame.with_row_index("_i").sort(
            ["rank", "entity"], descending=[True, False], nulls_last=True
        )
        before = pl.col("_over").cum_sum() - pl.col("_over")
        frame = (
            frame.with_columns(
                pl.min_horizontal(pl.col("_over"), (pl.lit(remaining) - before).clip(lower_bound=0))
                .cast(pl.Int64)
                .alias("_ranked")
            )
            .sort("_i")
            .drop("_i")
        )
        paid = pl.col("_ranked")
        note = (
            pl.when(pl.col("_over") == 0)
            .then(pl.lit(None))
            .when(pl.col("_ranked") == pl.col("_over"))
            .then(pl.lit("rank:paid"))
            .when(pl.col("_ranked") > 0)
            .then(pl.lit("rank:partial"))
            .otherwise(pl.lit("rank:unpaid"))
        )
    frame = frame.with_columns(
        (pl.col("_keep") + paid).cast(pl.Int64).alias("amount_fen"), note.alias("budget")
    )
    use.new_paid_fen = int(frame["amount_fen"].sum()) - use.kept_fen
    scratch = [c for c in frame.columns if c.startswith("_")]
    return frame.drop(scratch), use


def _held_now(held: pl.DataFrame | None) -> pl.DataFrame:
    """Per entity of one (policy, period): what it holds, and the payee holding most of it."""
    if held is None:
        return pl.DataFrame(
            schema={"entity": pl.String, "held_fen": pl.Int64, "held_payee": pl.String}
        )
    return held.group_by("entity").agg(
        pl.col("net_fen").sum().alias("held_fen"),
        pl.col("payee").get(pl.col("net_fen").arg_max()).alias("held_payee"),
    )


def allocate(
    decisions: pl.DataFrame,
    terms: list[Terms],
    held: pl.DataFrame,
    *,
    groups: dict[str, str] | None = None,
    once: dict[str, tuple[dt.date, dt.date]] | None = None,
) -> Allocation:
    """The desired amount of every key this run decides.

    `decisions`: policy_id, period, target, entity_id, eligible, amount_fen,
    payee, rank (rows of the evaluate step's table: at least every eligible row and
    the row of every key `held` holds; a held key without a row is not decided).
    `terms`: the terms of every policy in it.  `held`: what the ledger holds,
    columns policy_id, benefit_period, entity, payee, net_fen, for these policies
    and every other policy of their groups.  `groups` and `once` name the group
    and the validity of policies that are not in `terms` (expired ones still block
    their group).

    The result has a row for every key with an amount > 0 and for every key the
    ledger holds that this run decided (its amount may now be 0: a reversal).
    """
    by_id = {t.policy_id: t for t in terms}
    all_groups = {**(groups or {}), **{t.policy_id: t.group for t in terms}}
    all_once = {
        **(once or {}),
        **{t.policy_id: (t.start, t.end) for t in terms if t.period == "once"},
    }
    base = decisions.select(
        "policy_id",
        pl.col("period").alias("benefit_period"),
        "target",
        pl.col("entity_id").alias("entity"),
        "payee",
        pl.when(pl.col("eligible")).then(pl.col("amount_fen")).otherwise(0).alias("claim_fen"),
        "rank",
    )
    stacking = _stack(
        base.filter(pl.col("policy_id").is_in([t.policy_id for t in terms if t.group])),
        held,
        by_id,
        all_groups,
        all_once,
    )
    parts = base.partition_by("policy_id", as_dict=True)
    by_policy = stacking.partition_by("policy_id", as_dict=True)
    held_by_key = held.partition_by("policy_id", "benefit_period", as_dict=True)
    out: list[pl.DataFrame] = []
    report: dict[str, PolicyAllocation] = {}
    for t in sorted(terms, key=lambda x: x.policy_id):
        rows = parts.get((t.policy_id,), base.clear())
        outcome = by_policy.get((t.policy_id,))
        if outcome is not None:
            rows = rows.join(outcome.drop("policy_id"), on="entity", how="left")
        else:
            rows = rows.with_columns(pl.lit(None, pl.String).alias("stacking"))
        held_now = _held_now(held_by_key.get((t.policy_id, t.period)))
        rows = (
            rows.with_columns(
                pl.when(pl.col("stacking").is_null() | pl.col("stacking").is_in(["won", "alone"]))
                .then(pl.col("claim_fen"))
                .otherwise(0)
                .alias("stacked_fen")
            )
            .join(held_now, on="entity", how="left")
            .with_columns(pl.col("held_fen").fill_null(0))
        )
        if t.decide == "once":  # granted on an earlier night: stands, whatever tonight says
            granted = pl.col("held_fen") > 0
            rows = rows.with_columns(
                pl.when(granted)
                .then(pl.col("held_fen"))
                .otherwise("stacked_fen")
                .alias("stacked_fen"),
                pl.when(granted).then(pl.lit("decided")).otherwise("stacking").alias("stacking"),
            )
        rep = PolicyAllocation(
            t.policy_id,
            t.period,
            evaluated=rows.height,
            eligible=int((rows["claim_fen"] > 0).sum()),
            claimed_fen=int(rows["claim_fen"].sum()),
            lost_stacking=int((rows["claim_fen"] > rows["stacked_fen"]).sum()),
        )
        if t.budget_fen is not None:
            untouched = held_now.join(rows.select("entity"), on="entity", how="anti")
            rows, rep.budget = _apply_budget(
                rows, t, int(untouched["held_fen"].clip(lower_bound=0).sum())
            )
        else:
            rows = rows.with_columns(
                pl.col("stacked_fen").alias("amount_fen"), pl.lit(None, pl.String).alias("budget")
            )
        rows = rows.filter((pl.col("amount_fen") > 0) | (pl.col("held_fen") != 0))
        rep.entitled = int((rows["amount_fen"] > 0).sum())
        rep.entitled_fen = int(rows["amount_fen"].sum())
        report[t.policy_id] = rep
        out.append(
            rows.sort("entity").select(
                "policy_id",
                "benefit_period",
                "target",
                "entity",
                pl.coalesce("payee", "held_payee", "entity").alias("payee"),
                "claim_fen",
                "held_fen",
                "amount_fen",
                pl.col("stacking"),
                pl.col("budget"),
            )
        )
    # Policies in id order (the loop's), each by entity.
    frame = pl.concat(out) if out else pl.DataFrame(schema=ALLOCATED_SCHEMA)
    return Allocation(frame.cast(ALLOCATED_SCHEMA), report)  # type: ignore[arg-type]


def allocate_policies(
    claims: pl.DataFrame,
    policies: list[CheckedPolicy],
    others: list[CheckedPolicy],
    as_of: dt.date,
    held: pl.DataFrame,
) -> Allocation:
    """The night's allocation as `disburse run` makes it: `claims` (the decision table's rows,
    see `allocate`) of the `policies` active on `as_of`, against what the ledger `held`;
    `others` are the inactive policies of their stacking groups (their payouts still block)."""
    once_of = {p.id: (p.spec.valid.from_, p.spec.valid.until or FOREVER[1]) for p in others}
    return allocate(
        claims,
        [Terms.of(p, as_of) for p in policies],
        held,
        groups={p.id: p.spec.group or NO_GROUP for p in others},
        once=once_of,
    )


def allocate_back_pay(
    claims: pl.DataFrame,
    policies: list[CheckedPolicy],
    others: list[CheckedPolicy],
    known: pl.DataFrame,
) -> Allocation:
    """The back-pay of past benefit periods (`back_pay`): `claims` are the decision table's
    eligible rows of each past period, with the day it was decided as of (column
    `as_of`); `known` every key the ledger ever held (net 0 included: what an earlier run
    reversed stays decided).

    A past period is paid once and never decided again: only keys the ledger never held
    are claimed, allocated as that period's night would have allocated them (stacking
    against what the group holds, the period's budget counting what it already paid),
    and granted.  Nothing the ledger holds is adjusted or reversed here.  The outcome
    of each is reported as `<policy>@<period>`."""
    keys = ["policy_id", "period", "entity_id"]
    held = known.filter(pl.col("net_fen") != 0)
    ever = known.select(
        "policy_id", pl.col("benefit_period").alias("period"), pl.col("entity").alias("entity_id")
    ).unique()
    fresh = claims.filter(pl.col("eligible")).join(ever, on=keys, how="anti")
    frames: list[pl.DataFrame] = []
    report: dict[str, PolicyAllocation] = {}
    by_id = {p.id: p for p in policies}
    for (as_of,), part in sorted(fresh.partition_by("as_of", as_dict=True).items()):
        mine = [by_id[str(pid)] for pid in sorted(part["policy_id"].unique())]
        groups = {p.spec.group for p in mine if p.spec.group}
        rest = [p for p in [*policies, *others] if p.spec.group in groups and p not in mine]
        out = allocate_policies(part.drop("as_of"), mine, rest, as_of, held)
        frames.append(out.entitlements)
        for rep in out.policies.values():
            report[f"{rep.policy_id}@{rep.benefit_period}"] = rep
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=ALLOCATED_SCHEMA)
    return Allocation(frame, report)


def entitlements(allocation: Allocation, policies: list[CheckedPolicy]) -> pl.DataFrame:
    """The frame `ledgers.post.post_entitlements` posts: the allocation with each policy
    file's sha256 and the decision (claim, stacking, budget) as compact JSON."""
    sha = {p.id: p.sha256 for p in policies}
    decision = pl.struct(
        pl.col("claim_fen").alias("claim_fen"),
        pl.col("stacking"),
        pl.col("budget"),
    ).struct.json_encode()
    return allocation.entitlements.with_columns(
        pl.col("policy_id").replace_strict(sha, return_dtype=pl.String).alias("policy_sha256"),
        decision.alias("decision"),
    )
