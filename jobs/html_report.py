"""`disburse report`: one self-contained HTML page of a run, for a finance lead at a glance.

Everything comes from what the run recorded: the ledger (totals per policy and
benefit period as they stand after the run), the run's row (allocation and
budget use, phase timings), its claims, archive and allocation (who is
entitled, reasons for ineligibility), its staged registry files (region, size
class, birth date) and its quarantine.  The page needs no network: the style is
inline and the charts are inline SVG.  Every figure in a table also carries its
exact value in fen in a `data-fen` attribute, so a test can check the page
against the ledger.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, func, select

from jobs.errors import JobError
from jobs.explain import archived_decisions
from jobs.ingest import staged_dir
from jobs.simulate import AGE_BANDS, entity_segments, yuan
from ledgers.audit import summary as ledger_summary
from ledgers.schema import QuarantinedRow, Run

BAND_ORDER = {label: i for i, (_lo, _hi, label) in enumerate(AGE_BANDS)}
PALETTE = ("#2f6fb0", "#d9822b", "#3a9d5d", "#b5443b", "#7a5aa6", "#8c6d46", "#c75a9c", "#5f7b8a")


def build_report(engine: Engine, run_id: int) -> dict[str, Any]:
    """The figures of the report: plain data (what `--json` would print)."""
    cols = Run.__table__
    with engine.connect() as conn:
        run = conn.execute(select(cols).where(Run.run_id == run_id)).first()
        if run is None or run.kind != "nightly":
            raise JobError(
                f"run {run_id} is not a nightly run",
                fix="give the id of a `disburse run` (see `disburse ledger summary` or the runs table)",
            )
        if run.state != "completed":
            raise JobError(
                f"run {run_id} is {run.state}, not completed",
                fix="finish it first: run the same `disburse run` command again",
            )
        quarantine = conn.execute(
            select(QuarantinedRow.source, QuarantinedRow.rule, func.count())
            .where(QuarantinedRow.run_id == run_id)
            .group_by(QuarantinedRow.source, QuarantinedRow.rule)
            .order_by(func.count().desc(), QuarantinedRow.source, QuarantinedRow.rule)
        ).all()
    ledger = [
        {k: r[k] for k in ("policy_id", "benefit_period", "count", "amount_fen")}
        for r in ledger_summary(engine, up_to_run=run_id).rows.iter_rows(named=True)
    ]
    summary = json.loads(run.summary_json or "{}")
    timings = json.loads(run.timings_json or "{}")
    decisions = archived_decisions(run)
    allocation = pl.read_parquet(run.allocation_file)
    reasons = (
        decisions.filter(~pl.col("eligible"))
        .group_by("policy_id", "reason")
        .agg(pl.len().alias("count"))
        .sort(["policy_id", "count", "reason"], descending=[False, True, False])
        .collect()
    )
    # The entitled keys' surrogate keys, from the run's claims (every entitled key is one).
    paid = (
        allocation.filter(pl.col("amount_fen") > 0)
        .lazy()
        .join(
            pl.scan_parquet(run.decisions_file).select(
                "policy_id", pl.col("entity_id").alias("entity"), "entity_sk"
            ),
            on=["policy_id", "entity"],
            how="left",
        )
        .collect(engine="streaming")
    )
    segments = entity_segments(staged_dir(Path(run.store_dir), run_id), run.as_of)
    dist: dict[str, dict[str, list[dict[str, Any]]]] = {"region": {}, "segment": {}}
    for target, seg in segments.items():
        mine = paid.filter(pl.col("target") == target).join(
            seg.drop("target"), on="entity_sk", how="left"
        )
        for by, col in (("region", "region_code"), ("segment", "segment")):
            g = (
                mine.group_by(pl.col(col).fill_null("unknown").alias("key"))
                .agg(pl.len().alias("count"), pl.col("amount_fen").sum())
                .with_columns(pl.col("key").replace_strict(BAND_ORDER, default=99).alias("_o"))
                .sort(["_o", "key"])
                .drop("_o")
            )
            dist[by][target] = g.to_dicts()
    return {
        "run_id": run_id,
        "as_of": run.as_of.isoformat(),
        "state": run.state,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "ledger": ledger,
        "policies": summary.get("policies", {}),
        "sources": summary.get("sources", {}),
        "reasons": reasons.to_dicts(),
        "distribution": dist,
        "quarantine": [{"source": s, "rule": r, "count": int(n)} for s, r, n in quarantine],
        "timings": timings,
    }


# --- rendering ------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def bar_chart(title: str, items: list[tuple[str, float, str]], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: (label, value, shown text) per bar."""
    if not items:
        return f'<figure class="chart"><figcaption>{_e(title)}</figcaption><p class="none">nothing to show</p></figure>'
    bar_h, gap, label_w, width = 20, 6, 190, 640
    top = 8
    height = top + len(items) * (bar_h + gap) + 4
    biggest = max((v for _, v, _ in items), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">'
    ]
    for i, (label, value, shown) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = max(1.0, (width - label_w - 150) * value / biggest) if value > 0 else 0
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" font-size="12">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" font-size="12">{_e(shown)}{_e(unit)}</text>'
        )
    parts.append("</svg>")
    return f'<figure class="chart"><figcaption>{_e(title)}</figcaption>{"".join(parts)}</figure>'


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde5;padding-bottom:4px}
.meta{color:#586272;font-size:13px} table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e6e9ee;text-align:left} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:14px 0}.card{background:#f3f6fa;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.warn{color:#b5443b;font-weight:600} figure.chart{margin:10px 0}
figcaption{font-size:13px;color:#586272;margin-bottom:4px}.none{color:#8a93a0;font-size:13px}
"""


def render_html(r: dict[str, Any]) -> str:
    """The report as one HTML document (no external resources)."""
    ledger = r["ledger"]
    total_fen = sum(x["amount_fen"] for x in ledger)
    total_n = sum(x["count"] for x in ledger)
    rows_in = sum(s["rows"] for s in r["sources"].values())
    quarantined = sum(s["quarantined"] for s in r["sources"].values())
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>disburse run {r['run_id']} as of {_e(r['as_of'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Nightly run {r['run_id']} as of {_e(r['as_of'])}</h1>",
        f'<p class="meta">state {_e(r["state"])}; started {_e(r["started_at"])}, finished {_e(r["finished_at"])}</p>',
        '<div class="cards">',
        f'<div class="card">entitled<b id="total-count" data-count="{total_n}">{total_n:,}</b>keys in the ledger</div>',
        f'<div class="card">amount<b id="total-amount" data-fen="{total_fen}">{_e(yuan(total_fen))}</b>yuan</div>',
        f'<div class="card">source rows<b>{rows_in:,}</b>{quarantined:,} quarantined</div>',
        "</div>",
        "<h2>Totals per policy and benefit period (the ledger after this run)</h2>",
        '<table id="ledger"><tr><th>policy</th><th>period</th><th class="n">entitled</th><th class="n">amount (yuan)</th></tr>',
    ]
    for x in ledger:
        out.append(
            f'<tr data-policy="{_e(x["policy_id"])}" data-period="{_e(x["benefit_period"])}">'
            f"<td>{_e(x['policy_id'])}</td><td>{_e(x['benefit_period'])}</td>"
            f'<td class="n" data-count="{x["count"]}">{x["count"]:,}</td>'
            f'<td class="n" data-fen="{x["amount_fen"]}">{_e(yuan(x["amount_fen"]))}</td></tr>'
        )
    out.append(
        f'<tr><th>total</th><th></th><th class="n">{total_n:,}</th><th class="n">{_e(yuan(total_fen))}</th></tr></table>'
    )
    out.append(
        bar_chart(
            "Amount per policy (yuan)",
            [
                (f"{x['policy_id']} {x['benefit_period']}", x["amount_fen"], yuan(x["amount_fen"]))
                for x in ledger
            ],
        )
    )
    out.append("<h2>Budget use</h2>")
    budgets = [(pid, p) for pid, p in r["policies"].items() if p.get("budget")]
    if not budgets:
        out.append('<p class="none">no policy of this run has a budget</p>')
    else:
        out.append(
            '<table id="budgets"><tr><th>policy</th><th>rule</th><th class="n">budget</th>'
            '<th class="n">entitled</th><th class="n">use</th><th>outcome</th></tr>'
        )
        chart = []
        for pid, p in budgets:
            b = p["budget"]
            used = p["entitled_fen"]
            share = used / b["budget_fen"] if b["budget_fen"] else 0
            outcome = {
                "refused": f'<span class="warn">refused: claims exceed the budget left by {_e(yuan(b["refused_fen"]))} yuan</span>',
                "pro_rata": "claims scaled pro rata",
                "rank": "claims paid by rank until spent",
            }.get(b["outcome"], "within budget")
            out.append(
                f"<tr><td>{_e(pid)}</td><td>{_e(b['rule'])}</td>"
                f'<td class="n" data-fen="{b["budget_fen"]}">{_e(yuan(b["budget_fen"]))}</td>'
                f'<td class="n" data-fen="{used}">{_e(yuan(used))}</td>'
                f'<td class="n">{share:.1%}</td><td>{outcome}</td></tr>'
            )
            chart.append((pid, share * 100, f"{share:.1%}"))
        out.append("</table>")
        out.append(bar_chart("Share of each budget used (%)", chart))
    out.append("<h2>Who is paid: by region and by size class or age band</h2>")
    for by, title in (("region", "region"), ("segment", "size class / age band")):
        for target, groups in r["distribution"][by].items():
            out.append(
                bar_chart(
                    f"{target}s entitled, amount by {title} (yuan)",
                    [
                        (g["key"], g["amount_fen"], f"{yuan(g['amount_fen'])} ({g['count']:,})")
                        for g in groups
                    ],
                )
            )
    out.append("<h2>Top reasons for ineligibility (first failing condition)</h2>")
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for x in r["reasons"]:
        by_policy.setdefault(x["policy_id"], []).append(x)
    for pid, items in by_policy.items():
        out.append(
            bar_chart(
                f"{pid}: entities not eligible, by reason",
                [(x["reason"] or "unknown", x["count"], f"{x['count']:,}") for x in items[:6]],
            )
        )
    out.append("<h2>Quarantined source rows, by reason</h2>")
    if not r["quarantine"]:
        out.append('<p class="none">no row was quarantined</p>')
    else:
        out.append(
            '<table id="quarantine"><tr><th>source</th><th>rule</th><th class="n">rows</th></tr>'
        )
        for q in r["quarantine"]:
            out.append(
                f'<tr><td>{_e(q["source"])}</td><td>{_e(q["rule"])}</td><td class="n">{q["count"]:,}</td></tr>'
            )
        out.append("</table>")
        out.append(
            bar_chart(
                "Quarantined rows by source and rule",
                [
                    (f"{q['source']}: {q['rule']}", q["count"], f"{q['count']:,}")
                    for q in r["quarantine"][:12]
                ],
            )
        )
    out.append("<h2>Phase timings</h2>")
    phases = [(n, t) for n, t in r["timings"].items()]
    out.append(
        bar_chart(
            "Seconds per phase",
            [
                (
                    n,
                    t["seconds"],
                    f"{t['seconds']:.2f} s" + (" (reused)" if t.get("skipped") else ""),
                )
                for n, t in phases
            ],
        )
    )
    out.append(
        f'<p class="meta">made by disburse on {dt.date.today().isoformat()} from the ledger and '
        "the run's record; amounts are exact to the fen.</p></body></html>"
    )
    return "\n".join(out) + "\n"
