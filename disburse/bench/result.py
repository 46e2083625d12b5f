"""What `disburse bench` reports: typed, as JSON (`--json`) and as plain text.

`BenchResult.to_json()` is the report's stable shape, the one scripts read;
`to_text()` is the same figures for people, one line per run and per phase.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from disburse.bench.events import DurableSpeed, EndToEnd
from jobs.progress import PhaseTiming


@dataclass(frozen=True)
class Population:
    """The synthetic city benchmarked, and whether it came from the cache."""

    enterprises: int
    persons: int
    months: int
    seed: int
    source_rows: int
    synth_seconds: float | None  # None: taken from the cache
    cached: bool

    def to_json(self) -> dict[str, Any]:
        """The population as plain data."""
        return asdict(self)


@dataclass(frozen=True)
class RunTimes:
    """One nightly run of the benchmark: wall seconds, per-phase timings, what it wrote."""

    run_id: int
    seconds: float
    phases: dict[str, PhaseTiming]
    transfers: int
    entitled: int
    peak_rss_mb: float
    # The peak of this process and its descendants together (a cluster's workers).
    tree_peak_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The run as plain data."""
        return {
            "run_id": self.run_id,
            "seconds": self.seconds,
            "phases": {name: t.to_json() for name, t in self.phases.items()},
            "transfers": self.transfers,
            "entitled": self.entitled,
            "peak_rss_mb": self.peak_rss_mb,
            "tree_peak_mb": self.tree_peak_mb,
        }

    def to_text(self, label: str) -> list[str]:
        """The run's line and one line per phase."""
        lines = [
            f"{label.replace('_', ' ')}: {self.seconds:.1f} s, {self.transfers:,} transfers, "
            f"peak {self.peak_rss_mb:,.0f} MiB"
            + (
                ""
                if self.tree_peak_mb is None
                else f" (with its workers: {self.tree_peak_mb:,.0f} MiB)"
            )
        ]
        for name, timing in self.phases.items():
            # From the JSON form, so the text shows the figures `--json` prints, rounded alike.
            p: dict[str, Any] = timing.to_json()
            note = f"  ({p['skipped']})" if p.get("skipped") else ""
            rate = "" if p.get("skipped") else f"{p['rows_per_second']:>14,.0f}/s"
            lines.append(f"  {name:<9}{p['seconds']:>8.2f} s {p['rows']:>14,} rows {rate}{note}")
        return lines


@dataclass(frozen=True)
class Step:
    """One step of the finance day through the ledger: seconds, rows, peak memory growth."""

    seconds: float
    rows: int
    peak_rss_growth_mb: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "rows": self.rows,
            "rows_per_second": round(self.rows / self.seconds) if self.seconds else None,
            "peak_rss_growth_mb": self.peak_rss_growth_mb,
        }

    def to_text(self, label: str) -> str:
        rate = f"{self.rows / self.seconds:>14,.0f}/s" if self.seconds else ""
        return (
            f"  {label:<9}{self.seconds:>8.2f} s {self.rows:>14,} rows {rate}"
            f"  (memory +{self.peak_rss_growth_mb:,.0f} MiB)"
        )


@dataclass(frozen=True)
class FinanceDay:
    """After the first night, the finance day through the ledger: the notice published,
    the payment file of everything due exported (instructions recorded and posted, the
    pain.001 written and validated), the bank's simulated reply (2% returned) imported."""

    publish: Step  # rows: entitlements published
    export: Step  # rows: instructions
    reply: Step  # rows: statuses applied
    settled_fen: int
    returned: int

    def to_json(self) -> dict[str, Any]:
        return {
            "publish": self.publish.to_json(),
            "export": self.export.to_json(),
            "import": self.reply.to_json(),
            "settled_fen": self.settled_fen,
            "returned": self.returned,
        }

    def to_text(self) -> list[str]:
        return [
            "finance day (the first night's grants, through the ledger):",
            self.publish.to_text("publish"),
            self.export.to_text("export"),
            self.reply.to_text("import"),
        ]


@dataclass(frozen=True)
class EvalRound:
    """One round of the evaluation comparison: each engine's seconds, run in turn."""

    compiled_s: float
    polars_s: float
    duckdb_s: float | None = None


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


@dataclass(frozen=True)
class Evaluation:
    """The compiled evaluation timed against the same policies written by hand.

    The engines run in turn within each round, in an order that changes from round
    to round, after a warm-up call of each that is discarded (`rounds` holds the
    rest).  `baseline_ratio` is the median over the rounds of compiled / hand-written
    Polars, `duckdb_ratio` of compiled / hand-written DuckDB SQL, each with its
    spread; the seconds are medians.  The DuckDB figures are None when duckdb is not
    installed, and `duckdb_note` says so.
    """

    policies: list[str]
    rows: int
    rounds: list[EvalRound]
    same_results_polars: bool
    same_results_duckdb: bool | None = None
    duckdb_note: str | None = None

    def _ratios(self, engine: str) -> list[float]:
        return [r.compiled_s / getattr(r, engine) for r in self.rounds if getattr(r, engine)]

    @property
    def compiled_seconds(self) -> float:
        """The compiled evaluation's median seconds."""
        return round(statistics.median(r.compiled_s for r in self.rounds), 3)

    @property
    def handwritten_polars_seconds(self) -> float:
        """The hand-written Polars' median seconds."""
        return round(statistics.median(r.polars_s for r in self.rounds), 3)

    @property
    def baseline_ratio(self) -> float:
        """The median over the rounds of compiled / hand-written Polars."""
        return round(statistics.median(self._ratios("polars_s")), 3)

    @property
    def duckdb_ratio(self) -> float | None:
        """The median over the rounds of compiled / DuckDB, if DuckDB ran."""
        ratios = self._ratios("duckdb_s")
        return round(statistics.median(ratios), 3) if ratios else None

    def to_json(self) -> dict[str, Any]:
        """The comparison as plain data; without DuckDB, only its null ratio and the note."""
        out: dict[str, Any] = {
            "policies": self.policies,
            "rows": self.rows,
            "rounds": [asdict(r) for r in self.rounds],
            "compiled_seconds": self.compiled_seconds,
            "handwritten_polars_seconds": self.handwritten_polars_seconds,
            "baseline_ratio": self.baseline_ratio,
            "baseline_ratio_spread": _spread(self._ratios("polars_s")),
            "same_results_polars": self.same_results_polars,
        }
        if self.duckdb_ratio is None:
            out["duckdb_ratio"] = None
            out["duckdb_note"] = self.duckdb_note
        else:
            out["handwritten_duckdb_seconds"] = round(
                statistics.median(r.duckdb_s for r in self.rounds if r.duckdb_s), 3
            )
            out["duckdb_ratio"] = self.duckdb_ratio
            out["duckdb_ratio_spread"] = _spread(self._ratios("duckdb_s"))
            out["same_results_duckdb"] = self.same_results_duckdb
        return out

    def to_text(self) -> list[str]:
        """Every round, then the medians, the ratios with their spread, and whether the
        engines gave the same rows."""
        duck = self.duckdb_ratio is not None
        lines = [
            f"evaluation of {len(self.policies)} policies, {self.rows:,} rows, "
            f"{len(self.rounds)} rounds after a warm-up (engines in turn, order rotating):"
        ]
        for k, r in enumerate(self.rounds, 1):
            lines.append(
                f"  round {k}: compiled {r.compiled_s:.3f} s, hand-written Polars "
                f"{r.polars_s:.3f} s" + (f", DuckDB {r.duckdb_s:.3f} s" if r.duckdb_s else "")
            )
        p = _spread(self._ratios("polars_s"))
        lines.append(
            f"  compiled / hand-written Polars: {p['median']:.2f} (rounds {p['min']:.2f} to "
            f"{p['max']:.2f}); same rows: {_yes(self.same_results_polars)}"
        )
        if duck:
            d = _spread(self._ratios("duckdb_s"))
            lines.append(
                f"  compiled / DuckDB: {d['median']:.2f} (rounds {d['min']:.2f} to "
                f"{d['max']:.2f}); same rows: {_yes(self.same_results_duckdb)}"
            )
        else:
            lines.append(f"  DuckDB: {self.duckdb_note}")
        return lines


def _yes(flag: bool | None) -> str:
    return "yes" if flag else "NO"


@dataclass(frozen=True)
class Machine:
    """Where the benchmark ran: a busy or small machine reads differently."""

    cpus: int | None
    memory_gib: float | None
    load_before: tuple[float, float, float]  # 1, 5 and 15-minute load averages
    load_after: tuple[float, float, float]
    python: str
    versions: dict[str, str | None]  # the libraries that do the work

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return asdict(self)

    def to_text(self) -> str:
        """One line."""
        libs = ", ".join(f"{k} {v or '-'}" for k, v in self.versions.items())
        mem = f"{self.memory_gib:.0f} GiB" if self.memory_gib else "memory unknown"
        return (
            f"machine: {self.cpus} CPUs, {mem}, load {self.load_before[0]:.2f} before and "
            f"{self.load_after[0]:.2f} after (1 min); Python {self.python}; {libs}"
        )


# The comparison's keys when it was skipped (--no-baselines).
NOT_COMPARED: dict[str, Any] = {
    "baseline_ratio": None,
    "duckdb_ratio": None,
    "baselines": "not compared (--no-baselines)",
}


@dataclass(frozen=True)
class BenchResult:
    """The whole benchmark: the city, the database, two nightly runs and the evaluation."""

    population: Population
    database: str  # postgresql | sqlite
    engine: str  # what evaluated in the runs (`disburse run --engine`)
    active_policies: list[str]
    first_run: RunTimes
    second_run: RunTimes
    evaluation: Evaluation | None  # None: --no-baselines
    peak_rss_mb: float
    machine: Machine
    finance: FinanceDay | None = None  # with --finance-day
    events: DurableSpeed | None = None  # with --events N
    events_end_to_end: EndToEnd | None = None  # with --events N

    def to_json(self) -> dict[str, Any]:
        """The report `disburse bench --json` prints (the evaluation's fields at the top level)."""
        return {
            "population": self.population.to_json(),
            "database": self.database,
            "engine": self.engine,
            "active_policies": self.active_policies,
            "first_run": self.first_run.to_json(),
            "second_run": self.second_run.to_json(),
            **(self.evaluation.to_json() if self.evaluation is not None else NOT_COMPARED),
            "peak_rss_mb": self.peak_rss_mb,
            "cpus": self.machine.cpus,
            "machine": self.machine.to_json(),
            "finance_day": None if self.finance is None else self.finance.to_json(),
            "events": None if self.events is None else self.events.to_json(),
            "events_end_to_end": (
                None if self.events_end_to_end is None else self.events_end_to_end.to_json()
            ),
        }

    def to_text(self) -> str:
        """The report for people: the city, each run with its phases, the evaluation."""
        pop = self.population
        lines = [
            f"{pop.enterprises:,} enterprises, {pop.persons:,} persons, {pop.months} months: "
            f"{pop.source_rows:,} source rows on {self.database}; the runs evaluated by "
            f"{self.engine}",
            self.machine.to_text(),
            *self.first_run.to_text("first_run"),
            *self.second_run.to_text("second_run"),
            *(
                self.evaluation.to_text()
                if self.evaluation is not None
                else ["evaluation: not compared with the hand-written baselines (--no-baselines)"]
            ),
            *([] if self.finance is None else self.finance.to_text()),
            *([] if self.events is None else self.events.to_text()),
            *([] if self.events_end_to_end is None else self.events_end_to_end.to_text()),
        ]
        return "\n".join(lines) + "\n"
