"""Simulation before launch: reach, cost and reasons of each policy, and what a new version changes.

Nothing is written to any ledger or run table: the sources are validated and
staged into a temporary folder, evaluated, summarised and forgotten.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from common.money import format_yuan, yuan_to_fen
from eligibility import Naming, PolicySet, load_policy
from jobs.engines import EngineChoice, evaluator
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.policies import load_policy_files
from jobs.progress import Progress, Silent
from jobs.staged import scan_staged, staged_file
from ledgers.masking import mask_id

AGE_BANDS = [
    (0, 3, "0-2"),
    (3, 18, "3-17"),
    (18, 60, "18-59"),
    (60, 80, "60-79"),
    (80, 90, "80-89"),
    (90, 100, "90-99"),
    (100, 1000, "100+"),
]


SEGMENT_OF = {"enterprise": "size_class", "person": "age_band"}  # what entity_segments gives


def entity_segments(staged: Path, as_of: dt.date) -> dict[str, pl.DataFrame]:
    """Region and segment (size class, or age band) of every entity, by surrogate key."""
    ent = (
        scan_staged(staged_file(staged, "enterprises"))
        .select(Naming.sk("enterprise"), "region_code", "size_class")
        .collect()
    ).select(
        pl.lit("enterprise").alias("target"),
        pl.col(Naming.sk("enterprise")).alias("entity_sk"),
        "region_code",
        pl.col("size_class").fill_null("unclassified").alias("segment"),
    )
    per = (
        scan_staged(staged_file(staged, "persons"))
        .select(Naming.sk("person"), "region_code", "birth_on")
        .collect()
    )
    age = (
        pl.lit(as_of.year)
        - pl.col("birth_on").dt.year()
        - (
            (
                pl.col("birth_on").dt.month().cast(pl.Int32) * 100
                + pl.col("birth_on").dt.day().cast(pl.Int32)
            )
            > (as_of.month * 100 + as_of.day)
        ).cast(pl.Int32)
    )
    band = pl.lit(None, dtype=pl.String)
    for lo, hi, label in reversed(AGE_BANDS):
        band = pl.when(age.is_between(lo, hi, closed="left")).then(pl.lit(label)).otherwise(band)
    per = per.select(
        pl.lit("person").alias("target"),
        pl.col(Naming.sk("person")).alias("entity_sk"),
        "region_code",
        band.alias("segment"),
    )
    return {"enterprise": ent, "person": per}


@dataclass(frozen=True)
class Reach:
    """Eligible entities of one region, size class or age band, and their amount."""

    eligible: int
    amount_fen: int

    def to_json(self) -> dict[str, int]:
        """As plain data."""
        return {"eligible": self.eligible, "amount_fen": self.amount_fen}


@dataclass(frozen=True)
class TopReason:
    """How many entities one first failing condition refused."""

    reason: str | None
    count: int

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {"reason": self.reason, "count": self.count}


@dataclass(frozen=True)
class Change:
    """One entity's amount under the old and the new version of a policy."""

    entity: str | None  # masked unless asked
    old_fen: int
    new_fen: int

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {"entity": self.entity, "old_fen": self.old_fen, "new_fen": self.new_fen}


@dataclass(frozen=True)
class Difference:
    """What a new version of a policy changes against the old one."""

    old_eligible: int
    old_amount_fen: int
    newly_eligible: int
    no_longer_eligible: int
    gainers: int
    gained_fen: int
    losers: int
    lost_fen: int
    amount_change_fen: int
    largest_changes: Sequence[Change]

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "old_eligible": self.old_eligible,
            "old_amount_fen": self.old_amount_fen,
            "newly_eligible": self.newly_eligible,
            "no_longer_eligible": self.no_longer_eligible,
            "gainers": self.gainers,
            "gained_fen": self.gained_fen,
            "losers": self.losers,
            "lost_fen": self.lost_fen,
            "amount_change_fen": self.amount_change_fen,
            "largest_changes": [c.to_json() for c in self.largest_changes],
        }


@dataclass(frozen=True)
class PolicySimulation:
    """One policy's reach, cost, budget use, distributions and reasons (and, compared
    with an old version, what changes)."""

    title: str
    period: str
    evaluated: int
    eligible: int
    amount_fen: int
    budget_fen: int | None
    budget_use: float | None
    over_budget: str | None
    segment: str  # "size_class" or "age_band"
    by_region: Mapping[str, Reach]
    by_segment: Mapping[str, Reach]
    top_reasons: Sequence[TopReason]
    against: Difference | None = None

    def to_json(self) -> dict[str, Any]:
        """As plain data ("against" only when compared)."""
        out: dict[str, Any] = {
            "title": self.title,
            "period": self.period,
            "evaluated": self.evaluated,
            "eligible": self.eligible,
            "amount_fen": self.amount_fen,
            "budget_fen": self.budget_fen,
            "budget_use": self.budget_use,
            "over_budget": self.over_budget,
            "segment": self.segment,
            "by_region": {k: v.to_json() for k, v in self.by_region.items()},
            "by_segment": {k: v.to_json() for k, v in self.by_segment.items()},
            "top_reasons": [r.to_json() for r in self.top_reasons],
        }
        if self.against is not None:
            out["against"] = self.against.to_json()
        return out


@dataclass(frozen=True)
class SourceCounts:
    """Rows of one source: read, accepted, quarantined."""

    rows: int
    accepted: int
    quarantined: int

    def to_json(self) -> dict[str, int]:
        """As plain data."""
        return {"rows": self.rows, "accepted": self.accepted, "quarantined": self.quarantined}


@dataclass(frozen=True)
class Simulation:
    """What `disburse simulate` found: per source its counts, per policy its simulation."""

    as_of: dt.date
    sources: Mapping[str, SourceCounts]
    policies: Mapping[str, PolicySimulation]

    def to_json(self) -> dict[str, Any]:
        """What `disburse simulate --json` prints."""
        return {
            "as_of": self.as_of.isoformat(),
            "sources": {n: s.to_json() for n, s in self.sources.items()},
            "policies": {pid: p.to_json() for pid, p in self.policies.items()},
        }

    def to_text(self) -> str:
        """The simulation as plain text for people."""
        return render(self)


def _summary(
    results: pl.DataFrame, pset: PolicySet, segments: dict[str, pl.DataFrame]
) -> dict[str, PolicySimulation]:
    out: dict[str, PolicySimulation] = {}
    for policy in pset.policies:
        rows = results.filter(pl.col("policy_id") == policy.id)
        if rows.height == 0:
            continue
        seg = segments.get(policy.target)
        if seg is None:  # an entity kind with no region or segment of its own (a household)
            rows = rows.with_columns(
                pl.lit(None, dtype=pl.String).alias("region_code"), pl.lit("all").alias("segment")
            )
        else:
            rows = rows.join(seg.drop("target"), on="entity_sk", how="left")
        paid = rows.filter(pl.col("eligible"))
        total = int(paid["amount_fen"].sum())
        budget = policy.spec.budget
        budget_fen = yuan_to_fen(budget.total_yuan) if budget else None

        def dist(col: str, frame: pl.DataFrame = paid) -> dict[str, Reach]:
            g = (
                frame.group_by(pl.col(col).fill_null("unknown"))
                .agg(pl.len().alias("eligible"), pl.col("amount_fen").sum())
                .sort(col)
            )
            return {
                str(r[col]): Reach(int(r["eligible"]), int(r["amount_fen"]))
                for r in g.iter_rows(named=True)
            }

        reasons = (
            rows.filter(~pl.col("eligible"))
            .group_by("reason")
            .len()
            .sort(["len", "reason"], descending=[True, False])
            .head(5)
        )
        out[policy.id] = PolicySimulation(
            title=policy.spec.title,
            period=rows["period"][0],
            evaluated=rows.height,
            eligible=paid.height,
            amount_fen=total,
            budget_fen=budget_fen,
            budget_use=round(total / budget_fen, 4) if budget_fen else None,
            over_budget=budget.over_budget if budget and total > (budget_fen or 0) else None,
            segment=SEGMENT_OF.get(policy.target, "all"),
            by_region=dist("region_code"),
            by_segment=dist("segment"),
            top_reasons=[TopReason(r, int(n)) for r, n in reasons.iter_rows()],
        )
    return out


def _difference(new: pl.DataFrame, old: pl.DataFrame, unmask: bool) -> Difference:
    cols = ["entity_sk", "entity_id", "eligible", "amount_fen"]
    both = new.select(cols).join(old.select(cols), on=["entity_sk", "entity_id"], suffix="_old")
    delta = both.with_columns((pl.col("amount_fen") - pl.col("amount_fen_old")).alias("change_fen"))
    gainers = delta.filter(pl.col("change_fen") > 0)
    losers = delta.filter(pl.col("change_fen") < 0)
    largest = (
        delta.filter(pl.col("change_fen") != 0)
        .sort([pl.col("change_fen").abs(), "entity_id"], descending=[True, False])
        .head(10)
    )
    show: Callable[[str], str | None] = (lambda s: s) if unmask else mask_id
    return Difference(
        old_eligible=int(old["eligible"].sum()),
        old_amount_fen=int(old.filter(pl.col("eligible"))["amount_fen"].sum()),
        newly_eligible=int((delta["eligible"] & ~delta["eligible_old"]).sum()),
        no_longer_eligible=int((~delta["eligible"] & delta["eligible_old"]).sum()),
        gainers=gainers.height,
        gained_fen=int(gainers["change_fen"].sum()),
        losers=losers.height,
        lost_fen=int(losers["change_fen"].sum()),
        amount_change_fen=int(delta["change_fen"].sum()),
        largest_changes=[
            Change(show(r["entity_id"]), r["amount_fen_old"], r["amount_fen"])
            for r in largest.iter_rows(named=True)
        ],
    )


def simulate(
    data_dir: Path,
    as_of: dt.date,
    *,
    policies: list[Path] | None = None,
    catalogue_dir: Path | str | None = None,
    only: str | None = None,
    against: Path | None = None,
    unmask: bool = False,
    evaluate_on: EngineChoice | None = None,
    progress: Progress | None = None,
) -> Simulation:
    """`disburse simulate`: per policy (those in `policies`, files or folders, default the
    shipped ones; or `only` the one with that id) reach, cost, budget use, distributions and
    reasons; and the change against an old version of it (`against`).  The catalogues are
    those of `catalogue_dir` (--catalogue; see `jobs.catalogue_dir`)."""
    loaded = load_policy_files(policies, catalogue_dir)
    catalogue, pset = loaded.sources, loaded.policies
    if only is not None:
        pset.get(only)  # an unknown id is an error that lists the known ones
    say = progress or Silent()
    with tempfile.TemporaryDirectory(prefix="disburse-sim-") as tmp:
        staged = Path(tmp)
        reports = stage(data_dir, staged, catalogue=catalogue, progress=say)
        say.log("evaluating policies")
        with evaluator(evaluate_on or EngineChoice(), catalogue, staged / "partitioned") as on:
            results = evaluate(staged, pset, as_of, only, on)
        summary = _summary(results, pset, entity_segments(staged, as_of))
        if against is not None:
            old_policy = load_policy(against, pset.catalogue)
            target_id = only or old_policy.id
            if target_id != old_policy.id:
                from common.errors import Code, Problem, ProblemsError

                raise ProblemsError(
                    [
                        Problem(
                            str(against),
                            1,
                            1,
                            Code.OTHER_POLICY,
                            f"{against} is policy {old_policy.id!r}, not {target_id!r}",
                            "compare two versions of the same policy",
                        )
                    ]
                )
            old_set = PolicySet(pset.catalogue, [old_policy])
            old = evaluate(staged, old_set, as_of, old_policy.id)
            new = results.filter(pl.col("policy_id") == old_policy.id)
            if old_policy.id in summary:
                summary[old_policy.id] = replace(
                    summary[old_policy.id], against=_difference(new, old, unmask)
                )
    return Simulation(
        as_of=as_of,
        sources={n: SourceCounts(r.rows, r.accepted, r.quarantined) for n, r in reports.items()},
        policies=summary,
    )


def render(report: Simulation) -> str:
    """The simulation as plain text for people."""
    lines = [f"simulation as of {report.as_of.isoformat()} (nothing written to any ledger)"]
    for pid, s in report.policies.items():
        lines.append("")
        lines.append(f"{pid}  {s.title}  period {s.period}")
        budget = (
            f"  budget {format_yuan(s.budget_fen)} yuan, use {s.budget_use or 0:.1%}"
            if s.budget_fen
            else ""
        )
        lines.append(
            f"  eligible {s.eligible:,} of {s.evaluated:,}; total {format_yuan(s.amount_fen)} yuan{budget}"
        )
        if s.over_budget:
            lines.append(f"  over budget: the rule is {s.over_budget}")
        lines.append(
            "  by region:  "
            + "; ".join(
                f"{k} {v.eligible:,} / {format_yuan(v.amount_fen)}" for k, v in s.by_region.items()
            )
        )
        lines.append(
            f"  by {s.segment}: "
            + "; ".join(
                f"{k} {v.eligible:,} / {format_yuan(v.amount_fen)}" for k, v in s.by_segment.items()
            )
        )
        lines.append(
            "  not eligible, first failing condition: "
            + "; ".join(f"{r.reason} {r.count:,}" for r in s.top_reasons)
        )
        a = s.against
        if a is not None:
            lines.append(
                f"  against the old version: eligible {a.old_eligible:,} -> {s.eligible:,}, "
                f"total {format_yuan(a.old_amount_fen)} -> {format_yuan(s.amount_fen)} yuan"
            )
            lines.append(
                f"    {a.gainers:,} gain {format_yuan(a.gained_fen)}; {a.losers:,} lose {format_yuan(-a.lost_fen)}; "
                f"{a.newly_eligible:,} newly eligible, {a.no_longer_eligible:,} no longer"
            )
    return "\n".join(lines)
