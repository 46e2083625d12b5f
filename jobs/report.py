"""A finished run's summary as plain text, for finance reading the terminal or the log."""

from __future__ import annotations

from typing import Any

from jobs.simulate import yuan


def _budget_line(b: dict[str, Any]) -> str:
    line = (
        f"    budget {yuan(b['budget_fen'])} ({b['rule']}): held before {yuan(b['held_before_fen'])}, "
        f"new claims {yuan(b['new_claims_fen'])}, paid {yuan(b['new_paid_fen'])}"
    )
    if b["outcome"] == "refused":
        line += (
            f"\n    REFUSED: the new claims exceed the budget left ({yuan(b['remaining_fen'])}) "
            f"by {yuan(b['refused_fen'])} yuan; nothing new was paid. Raise the budget or change the policy."
        )
    elif b["outcome"] in ("pro_rata", "rank"):
        line += f"\n    over budget: claims cut by {b['outcome']} to the {yuan(b['remaining_fen'])} left"
    return line


def render_run(out: dict[str, Any]) -> str:
    """The `disburse run` outcome as lines of text."""
    lines = [f"run {out['run_id']} as of {out['as_of']}: {out['state']}"]
    if out.get("resumed"):
        lines.append(f"  finished interrupted run(s): {', '.join(map(str, out['resumed']))}")
    if out.get("abandoned"):
        lines.append(
            f"  abandoned undecided run(s) (nothing had been posted): {', '.join(map(str, out['abandoned']))}"
        )
    sources = out.get("sources", {})
    if sources:
        rows = sum(s["rows"] for s in sources.values())
        quarantined = sum(s["quarantined"] for s in sources.values())
        lines.append(f"  sources: {rows:,} rows, {quarantined:,} quarantined")
    lines.append("")
    lines.append(
        f"  {'policy':<30}{'period':>8}{'eligible':>11}{'entitled':>11}{'amount (yuan)':>20}{'transfers':>11}"
    )
    for pid, p in out.get("policies", {}).items():
        transfers = sum(v["transfers"] for v in p.get("posted", {}).values())
        lines.append(
            f"  {pid:<30}{p.get('benefit_period', ''):>8}{p.get('eligible', 0):>11,}"
            f"{p.get('entitled', 0):>11,}{yuan(p.get('entitled_fen', 0)):>20}{transfers:>11,}"
        )
        if p.get("lost_stacking"):
            lines.append(f"    {p['lost_stacking']:,} claims lost to another policy of the group")
        if p.get("budget"):
            lines.append(_budget_line(p["budget"]))
        for kind, v in p.get("posted", {}).items():
            lines.append(f"    posted {kind}: {v['transfers']:,} for {yuan(v['amount_fen'])} yuan")
    totals = out.get("totals", {})
    lines.append("")
    lines.append(
        f"  total: {totals.get('entitled', 0):,} entitlements, {yuan(totals.get('entitled_fen', 0))} yuan; "
        f"{totals.get('transfers', 0):,} transfers posted by this run"
    )
    phases = out.get("phases", {})
    if phases:
        lines.append(
            "  phases: "
            + "; ".join(f"{n} {p['seconds']:.1f} s" for n, p in phases.items())
            + f"; peak memory {out.get('peak_rss_mb', 0):,.0f} MiB"
        )
    return "\n".join(lines)
