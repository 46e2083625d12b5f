"""Simulation before launch: reach, cost and reasons of each policy, and what a new version changes.

Nothing is written to any ledger or run table: the sources are validated and
staged into a temporary folder, evaluated, summarised and forgotten.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from eligibility import PolicySet, load_policy
from jobs.catalogue import Catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
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


def entity_segments(staged: Path, as_of: dt.date) -> dict[str, pl.DataFrame]:
    """Region and segment (size class, or age band) of every entity, by surrogate key."""
    ent = pl.read_parquet(
        staged / "enterprises.parquet", columns=["enterprise_sk", "region_code", "size_class"]
    ).select(
        pl.lit("enterprise").alias("target"),
        pl.col("enterprise_sk").alias("entity_sk"),
        "region_code",
        pl.col("size_class").fill_null("unclassified").alias("segment"),
    )
    per = pl.read_parquet(
        staged / "persons.parquet", columns=["person_sk", "region_code", "birth_on"]
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
        pl.col("person_sk").alias("entity_sk"),
        "region_code",
        band.alias("segment"),
    )
    return {"enterprise": ent, "person": per}


def _summary(
    results: pl.DataFrame, pset: PolicySet, segments: dict[str, pl.DataFrame]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in pset.policies:
        rows = results.filter(pl.col("policy_id") == policy.id)
        if rows.height == 0:
            continue
        seg = segments[policy.target]
        rows = rows.join(seg.drop("target"), on="entity_sk", how="left")
        paid = rows.filter(pl.col("eligible"))
        total = int(paid["amount_fen"].sum())
        budget = policy.spec.budget
        budget_fen = int(budget.total_yuan * 100) if budget else None

        def dist(col: str, frame: pl.DataFrame = paid) -> dict[str, dict[str, int]]:
            g = (
                frame.group_by(pl.col(col).fill_null("unknown"))
                .agg(pl.len().alias("eligible"), pl.col("amount_fen").sum())
                .sort(col)
            )
            return {
                str(r[col]): {"eligible": int(r["eligible"]), "amount_fen": int(r["amount_fen"])}
                for r in g.iter_rows(named=True)
            }

        reasons = (
            rows.filter(~pl.col("eligible"))
            .group_by("reason")
            .len()
            .sort(["len", "reason"], descending=[True, False])
            .head(5)
        )
        out[policy.id] = {
            "title": policy.spec.title,
            "period": rows["period"][0],
            "evaluated": rows.height,
            "eligible": paid.height,
            "amount_fen": total,
            "budget_fen": budget_fen,
            "budget_use": round(total / budget_fen, 4) if budget_fen else None,
            "over_budget": budget.over_budget if budget and total > (budget_fen or 0) else None,
            "segment": "size_class" if policy.target == "enterprise" else "age_band",
            "by_region": dist("region_code"),
            "by_segment": dist("segment"),
            "top_reasons": [{"reason": r, "count": int(n)} for r, n in reasons.iter_rows()],
        }
    return out


def _difference(new: pl.DataFrame, old: pl.DataFrame, unmask: bool) -> dict[str, Any]:
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
    show = (lambda s: s) if unmask else mask_id
    return {
        "old_eligible": int(old["eligible"].sum()),
        "old_amount_fen": int(old.filter(pl.col("eligible"))["amount_fen"].sum()),
        "newly_eligible": int((delta["eligible"] & ~delta["eligible_old"]).sum()),
        "no_longer_eligible": int((~delta["eligible"] & delta["eligible_old"]).sum()),
        "gainers": gainers.height,
        "gained_fen": int(gainers["change_fen"].sum()),
        "losers": losers.height,
        "lost_fen": int(losers["change_fen"].sum()),
        "amount_change_fen": int(delta["change_fen"].sum()),
        "largest_changes": [
            {
                "entity": show(r["entity_id"]),
                "old_fen": r["amount_fen_old"],
                "new_fen": r["amount_fen"],
            }
            for r in largest.iter_rows(named=True)
        ],
    }


def simulate(
    data_dir: Path,
    as_of: dt.date,
    *,
    pset: PolicySet,
    catalogue: Catalogue,
    only: str | None = None,
    against: Path | None = None,
    unmask: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per policy: reach, cost, budget use, distributions, reasons; and the change against an old version."""
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="disburse-sim-") as tmp:
        staged = Path(tmp)
        reports = stage(data_dir, staged, catalogue=catalogue, progress=say)
        say("evaluating policies")
        results = evaluate(staged, pset, as_of, only)
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
                summary[old_policy.id]["against"] = _difference(new, old, unmask)
    return {
        "as_of": as_of.isoformat(),
        "sources": {
            n: {"rows": r.rows, "accepted": r.accepted, "quarantined": r.quarantined}
            for n, r in reports.items()
        },
        "policies": summary,
    }


def yuan(fen: int | None) -> str:
    """Fen as yuan with thousands separators: 1,234.56."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def render(report: dict[str, Any]) -> str:
    """The simulation as plain text for people."""
    lines = [f"simulation as of {report['as_of']} (nothing written to any ledger)"]
    for pid, s in report["policies"].items():
        lines.append("")
        lines.append(f"{pid}  {s['title']}  period {s['period']}")
        budget = (
            f"  budget {yuan(s['budget_fen'])} yuan, use {s['budget_use']:.1%}"
            if s["budget_fen"]
            else ""
        )
        lines.append(
            f"  eligible {s['eligible']:,} of {s['evaluated']:,}; total {yuan(s['amount_fen'])} yuan{budget}"
        )
        if s["over_budget"]:
            lines.append(f"  over budget: the rule is {s['over_budget']}")
        lines.append(
            "  by region:  "
            + "; ".join(
                f"{k} {v['eligible']:,} / {yuan(v['amount_fen'])}"
                for k, v in s["by_region"].items()
            )
        )
        lines.append(
            f"  by {s['segment']}: "
            + "; ".join(
                f"{k} {v['eligible']:,} / {yuan(v['amount_fen'])}"
                for k, v in s["by_segment"].items()
            )
        )
        lines.append(
            "  not eligible, first failing condition: "
            + "; ".join(f"{r['reason']} {r['count']:,}" for r in s["top_reasons"])
        )
        if "against" in s:
            a = s["against"]
            lines.append(
                f"  against the old version: eligible {a['old_eligible']:,} -> {s['eligible']:,}, "
                f"total {yuan(a['old_amount_fen'])} -> {yuan(s['amount_fen'])} yuan"
            )
            lines.append(
                f"    {a['gainers']:,} gain {yuan(a['gained_fen'])}; {a['losers']:,} lose {yuan(-a['lost_fen'])}; "
                f"{a['newly_eligible']:,} newly eligible, {a['no_longer_eligible']:,} no longer"
            )
    return "\n".join(lines)
