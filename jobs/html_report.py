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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, func, select

from common.money import format_yuan
from jobs.catalogue import Catalogue
from jobs.catalogue_dir import source_catalogue
from jobs.errors import JobError
from jobs.explain import archived_decisions
from jobs.ingest import staged_dir
from jobs.settings import Settings
from jobs.simulate import AGE_BANDS, entity_segments
from jobs.summary import PolicySummary, RunSummary, SourceCount, changes_of
from ledgers import runs
from ledgers.audit import summary as ledger_summary
from ledgers.db import open_engine, require_ledger
from ledgers.runs import RunState
from ledgers.schema import QuarantinedRow

BAND_ORDER = {label: i for i, (_lo, _hi, label) in enumerate(AGE_BANDS)}
PALETTE = ("#2f6fb0", "#d9822b", "#3a9d5d", "#b5443b", "#7a5aa6", "#8c6d46", "#c75a9c", "#5f7b8a")


@dataclass(frozen=True)
class LedgerTotal:
    """What the ledger holds for one policy and benefit period after the run."""

    policy_id: str
    benefit_period: str
    count: int
    amount_fen: int


@dataclass(frozen=True)
class ReasonCount:
    """How many entities a policy refused for one reason (its first failing condition)."""

    policy_id: str
    reason: str | None
    count: int


@dataclass(frozen=True)
class Group:
    """Entitled keys of one region, size class or age band, and their amount."""

    key: str
    count: int
    amount_fen: int


@dataclass(frozen=True)
class QuarantineCount:
    """Rows of a source quarantined for one rule."""

    source: str
    rule: str
    count: int


@dataclass(frozen=True)
class RecordedTiming:
    """One phase's timing as the run recorded it."""

    seconds: float
    rows: int
    rows_per_second: float | None
    peak_rss_mb: float
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As recorded."""
        out: dict[str, Any] = {
            "seconds": self.seconds,
            "rows": self.rows,
            "rows_per_second": self.rows_per_second,
            "peak_rss_mb": self.peak_rss_mb,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass(frozen=True)
class RunReport:
    """The figures of `disburse report` for one completed nightly run."""

    run_id: int
    as_of: dt.date
    state: RunState
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    ledger: Sequence[LedgerTotal]
    policies: Mapping[str, PolicySummary]
    sources: Mapping[str, SourceCount]
    reasons: Sequence[ReasonCount]
    # "region" or "segment" -> entity kind -> groups
    distribution: Mapping[str, Mapping[str, Sequence[Group]]]
    quarantine: Sequence[QuarantineCount]
    timings: Mapping[str, RecordedTiming]

    def to_json(self) -> dict[str, Any]:
        """What `disburse report --json` prints."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "state": self.state.value,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "ledger": [_fields(x) for x in self.ledger],
            "policies": {pid: p.to_json() for pid, p in self.policies.items()},
            "sources": {name: s.to_json() for name, s in self.sources.items()},
            "reasons": [_fields(x) for x in self.reasons],
            "distribution": {
                by: {target: [_fields(g) for g in groups] for target, groups in per.items()}
                for by, per in self.distribution.items()
            },
            "quarantine": [_fields(q) for q in self.quarantine],
            "timings": {name: t.to_json() for name, t in self.timings.items()},
        }

    def to_html(self) -> str:
        """The report as one HTML document."""
        return render_html(self)


def _fields(item: Any) -> dict[str, Any]:
    return dict(item.__dict__)


def build_report(engine: Engine, run_id: int, *, sources: Catalogue | None = None) -> RunReport:
    """The figures of the report of a completed nightly run (its archived feature catalogue
    read against the source catalogue `sources`, default the shipped one)."""
    run = runs.get_run(engine, run_id)
    if run is None or run.kind != runs.NIGHTLY:
        raise JobError(
            f"run {run_id} is not a nightly run",
            fix="give the id of a `disburse run` (see `disburse ledger summary` or the runs table)",
        )
    if run.state is not RunState.COMPLETED:
        raise JobError(
            f"run {run_id} is {run.state}, not completed",
            fix="finish it first: run the same `disburse run` command again",
        )
    # A completed nightly run recorded every one of them.
    assert run.allocation is not None
    assert run.claims is not None
    assert run.store_dir is not None
    with engine.connect() as conn:
        quarantine = conn.execute(
            select(QuarantinedRow.source, QuarantinedRow.rule, func.count())
            .where(QuarantinedRow.run_id == run_id)
            .group_by(QuarantinedRow.source, QuarantinedRow.rule)
            .order_by(func.count().desc(), QuarantinedRow.source, QuarantinedRow.rule)
        ).all()
    ledger = [
        LedgerTotal(r["policy_id"], r["benefit_period"], r["count"], r["amount_fen"])
        for r in ledger_summary(engine, up_to_run=run_id).rows.iter_rows(named=True)
    ]
    summary = RunSummary.from_json(run.summary) if run.summary is not None else None
    decisions = archived_decisions(run, sources=sources)
    allocation = pl.read_parquet(run.allocation.path)
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
            pl.scan_parquet(run.claims.path).select(
                "policy_id", pl.col("entity_id").alias("entity"), "entity_sk"
            ),
            on=["policy_id", "entity"],
            how="left",
        )
        .collect(engine="streaming")
    )
    segments = entity_segments(staged_dir(Path(run.store_dir), run_id), run.as_of)
    dist: dict[str, dict[str, list[Group]]] = {"region": {}, "segment": {}}
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
            dist[by][target] = [Group(**r) for r in g.iter_rows(named=True)]
    return RunReport(
        run_id=run_id,
        as_of=run.as_of,
        state=run.state,
        started_at=run.started_at,
        finished_at=run.finished_at,
        ledger=ledger,
        policies=summary.policies if summary is not None else {},
        sources=summary.sources if summary is not None else {},
        reasons=[ReasonCount(**r) for r in reasons.iter_rows(named=True)],
        distribution=dist,
        quarantine=[QuarantineCount(s, r, int(n)) for s, r, n in quarantine],
        timings={name: RecordedTiming(**t) for name, t in run.timings.items()},
    )


def write_report(
    settings: Settings, run_id: int, out: Path, *, catalogue_dir: Path | str | None = None
) -> RunReport:
    """`disburse report`: the report of a run in the ledger of `settings`, written to `out`
    as one self-contained HTML page; its figures.  The source catalogue is that of
    `catalogue_dir` (--catalogue; see `jobs.catalogue_dir`): the one the run used."""
    sources = source_catalogue(catalogue_dir)
    with open_engine(settings.db_url) as engine:
        with engine.connect() as conn:
            require_ledger(conn)
        report = build_report(engine, run_id, sources=sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.to_html(), encoding="utf-8")
    return report


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


def render_html(r: RunReport) -> str:
    """The report as one HTML document (no external resources)."""
    ledger = r.ledger
    total_fen = sum(x.amount_fen for x in ledger)
    total_n = sum(x.count for x in ledger)
    rows_in = sum(s.rows for s in r.sources.values())
    quarantined = sum(s.quarantined for s in r.sources.values())
    as_of = r.as_of.isoformat()
    started = r.started_at.isoformat() if r.started_at else None
    finished = r.finished_at.isoformat() if r.finished_at else None
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>disburse run {r.run_id} as of {_e(as_of)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Nightly run {r.run_id} as of {_e(as_of)}</h1>",
        f'<p class="meta">state {_e(r.state.value)}; started {_e(started)}, finished {_e(finished)}</p>',
        '<div class="cards">',
        f'<div class="card">entitled<b id="total-count" data-count="{total_n}">{total_n:,}</b>keys in the ledger</div>',
        f'<div class="card">amount<b id="total-amount" data-fen="{total_fen}">{_e(format_yuan(total_fen))}</b>yuan</div>',
        f'<div class="card">source rows<b>{rows_in:,}</b>{quarantined:,} quarantined</div>',
        "</div>",
        "<h2>Totals per policy and benefit period (the ledger after this run)</h2>",
        '<table id="ledger"><tr><th>policy</th><th>period</th><th class="n">entitled</th><th class="n">amount (yuan)</th></tr>',
    ]
    for x in ledger:
        out.append(
            f'<tr data-policy="{_e(x.policy_id)}" data-period="{_e(x.benefit_period)}">'
            f"<td>{_e(x.policy_id)}</td><td>{_e(x.benefit_period)}</td>"
            f'<td class="n" data-count="{x.count}">{x.count:,}</td>'
            f'<td class="n" data-fen="{x.amount_fen}">{_e(format_yuan(x.amount_fen))}</td></tr>'
        )
    out.append(
        f'<tr><th>total</th><th></th><th class="n">{total_n:,}</th><th class="n">{_e(format_yuan(total_fen))}</th></tr></table>'
    )
    out.append(
        bar_chart(
            "Amount per policy (yuan)",
            [
                (f"{x.policy_id} {x.benefit_period}", x.amount_fen, format_yuan(x.amount_fen))
                for x in ledger
            ],
        )
    )
    changes = changes_of(r.policies)
    out.append("<h2>What changed tonight (to sign off)</h2>")
    if not changes:
        out.append('<p class="none">this run posted no change: the ledger already held it all</p>')
    else:
        out.append(
            '<table id="changes"><tr><th>change</th><th class="n">transfers</th>'
            '<th class="n">amount (yuan)</th></tr>'
        )
        for kind, (n, fen) in changes.items():
            shown = ("-" if fen < 0 else "+") + format_yuan(abs(fen))
            out.append(
                f'<tr data-kind="{_e(kind)}"><td>{_e(kind)}s</td><td class="n">{n:,}</td>'
                f'<td class="n" data-fen="{fen}">{_e(shown)}</td></tr>'
            )
        net = sum(fen for _n, fen in changes.values())
        out.append(
            f'<tr><th>net</th><th></th><th class="n" data-fen="{net}">'
            f"{_e(('-' if net < 0 else '+') + format_yuan(abs(net)))}</th></tr></table>"
        )
    out.append("<h2>Budget use</h2>")
    budgets = [
        (pid, p.allocation, p.allocation.budget)
        for pid, p in r.policies.items()
        if p.allocation is not None and p.allocation.budget is not None
    ]
    if not budgets:
        out.append('<p class="none">no policy of this run has a budget</p>')
    else:
        out.append(
            '<table id="budgets"><tr><th>policy</th><th>rule</th><th class="n">budget</th>'
            '<th class="n">entitled</th><th class="n">use</th><th>outcome</th></tr>'
        )
        chart: list[tuple[str, float, str]] = []
        for pid, a, b in budgets:
            used = a.entitled_fen
            share = used / b.budget_fen if b.budget_fen else 0
            outcome = {
                "refused": f'<span class="warn">refused: claims exceed the budget left by {_e(format_yuan(b.refused_fen))} yuan</span>',
                "pro_rata": "claims scaled pro rata",
                "rank": "claims paid by rank until spent",
            }.get(b.outcome, "within budget")
            out.append(
                f"<tr><td>{_e(pid)}</td><td>{_e(b.rule)}</td>"
                f'<td class="n" data-fen="{b.budget_fen}">{_e(format_yuan(b.budget_fen))}</td>'
                f'<td class="n" data-fen="{used}">{_e(format_yuan(used))}</td>'
                f'<td class="n">{share:.1%}</td><td>{outcome}</td></tr>'
            )
            chart.append((pid, share * 100, f"{share:.1%}"))
        out.append("</table>")
        out.append(bar_chart("Share of each budget used (%)", chart))
    out.append("<h2>Who is paid: by region and by size class or age band</h2>")
    for by, title in (("region", "region"), ("segment", "size class / age band")):
        for target, groups in r.distribution[by].items():
            out.append(
                bar_chart(
                    f"{target}s entitled, amount by {title} (yuan)",
                    [
                        (g.key, g.amount_fen, f"{format_yuan(g.amount_fen)} ({g.count:,})")
                        for g in groups
                    ],
                )
            )
    out.append("<h2>Top reasons for ineligibility (first failing condition)</h2>")
    by_policy: dict[str, list[ReasonCount]] = {}
    for reason in r.reasons:
        by_policy.setdefault(reason.policy_id, []).append(reason)
    for pid, items in by_policy.items():
        out.append(
            bar_chart(
                f"{pid}: entities not eligible, by reason",
                [(i.reason or "unknown", i.count, f"{i.count:,}") for i in items[:6]],
            )
        )
    out.append("<h2>Quarantined source rows, by reason</h2>")
    if not r.quarantine:
        out.append('<p class="none">no row was quarantined</p>')
    else:
        out.append(
            '<table id="quarantine"><tr><th>source</th><th>rule</th><th class="n">rows</th></tr>'
        )
        for q in r.quarantine:
            out.append(
                f'<tr><td>{_e(q.source)}</td><td>{_e(q.rule)}</td><td class="n">{q.count:,}</td></tr>'
            )
        out.append("</table>")
        out.append(
            bar_chart(
                "Quarantined rows by source and rule",
                [(f"{q.source}: {q.rule}", q.count, f"{q.count:,}") for q in r.quarantine[:12]],
            )
        )
    out.append("<h2>Phase timings</h2>")
    out.append(
        bar_chart(
            "Seconds per phase",
            [
                (n, t.seconds, f"{t.seconds:.2f} s" + (" (reused)" if t.skipped else ""))
                for n, t in r.timings.items()
            ],
        )
    )
    out.append(
        f'<p class="meta">made by disburse on {dt.date.today().isoformat()} from the ledger and '
        "the run's record; amounts are exact to the fen.</p></body></html>"
    )
    return "\n".join(out) + "\n"
