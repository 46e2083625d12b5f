"""`disburse bench`'s report: its JSON shape and its text, and the batch kept free of it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from disburse.bench.events import DurableRound, DurableSpeed, EndToEnd, Latency
from disburse.bench.result import (
    BenchResult,
    EvalRound,
    Evaluation,
    FinanceDay,
    Machine,
    Population,
    RunTimes,
    Step,
)
from jobs.progress import PhaseTiming

ROOT = Path(__file__).resolve().parents[2]


def result(evaluation: Evaluation) -> BenchResult:
    """A report as a 300-enterprise benchmark on SQLite gives it."""
    first = RunTimes(
        run_id=1,
        seconds=0.412,
        phases={
            "ingest": PhaseTiming(seconds=0.2387, rows=11_772, peak_rss_mb=180.5),
            "post": PhaseTiming(seconds=0.0219, rows=243, peak_rss_mb=204.0),
        },
        transfers=243,
        entitled=243,
        peak_rss_mb=204.2,
    )
    second = RunTimes(
        run_id=2,
        seconds=0.118,
        phases={
            "ingest": PhaseTiming(
                seconds=0.0123, rows=11_772, peak_rss_mb=204.5, skipped="sources unchanged"
            ),
            # Printed as --json rounds it (1.235 s), then to two places: 1.24, not 1.23.
            "post": PhaseTiming(seconds=1.2349, rows=243, peak_rss_mb=205.0),
        },
        transfers=0,
        entitled=243,
        peak_rss_mb=205.0,
    )
    return BenchResult(
        population=Population(300, 1500, 12, 1, 11_772, None, True),
        database="sqlite",
        engine="polars",
        active_policies=["a", "b"],
        first_run=first,
        second_run=second,
        evaluation=evaluation,
        peak_rss_mb=205.1,
        machine=MACHINE,
    )


MACHINE = Machine(
    cpus=2,
    memory_gib=24.0,
    load_before=(0.1, 0.2, 0.3),
    load_after=(1.5, 0.5, 0.3),
    python="3.11.7",
    versions={"polars": "1.20.0", "duckdb": None},
)


POLARS = Evaluation(
    policies=["a", "b"],
    rows=4800,
    rounds=[EvalRound(0.031, 0.021), EvalRound(0.030, 0.025), EvalRound(0.036, 0.020)],
    same_results_polars=True,
)
WITH_DUCKDB = dataclasses.replace(
    POLARS,
    rounds=[
        EvalRound(0.031, 0.021, 0.231),
        EvalRound(0.030, 0.025, 0.200),
        EvalRound(0.036, 0.020, 0.240),
    ],
    same_results_duckdb=True,
)
WITHOUT_DUCKDB = dataclasses.replace(POLARS, duckdb_note="duckdb is not installed")


def test_json_has_the_evaluation_at_the_top_level_and_phases_as_plain_data() -> None:
    out = result(WITH_DUCKDB).to_json()
    assert sorted(out) == [
        "active_policies", "baseline_ratio", "baseline_ratio_spread", "compiled_seconds",
        "cpus", "database", "duckdb_ratio", "duckdb_ratio_spread", "engine", "events",
        "events_end_to_end", "finance_day", "first_run", "handwritten_duckdb_seconds",
        "handwritten_polars_seconds", "machine", "peak_rss_mb", "policies", "population",
        "rounds", "rows", "same_results_duckdb", "same_results_polars", "second_run",
    ]  # fmt: skip
    # Medians of the rounds' own ratios (1.476, 1.2, 1.8), not a ratio of medians.
    assert out["baseline_ratio"] == 1.476
    assert out["baseline_ratio_spread"] == {"median": 1.476, "min": 1.2, "max": 1.8}
    assert out["compiled_seconds"] == 0.031
    assert out["duckdb_ratio"] == 0.15
    assert out["rounds"][1] == {"compiled_s": 0.030, "polars_s": 0.025, "duckdb_s": 0.200}
    assert out["machine"]["load_after"] == (1.5, 0.5, 0.3)
    assert out["population"] == {
        "enterprises": 300, "persons": 1500, "months": 12, "seed": 1,
        "source_rows": 11_772, "synth_seconds": None, "cached": True,
    }  # fmt: skip
    assert out["first_run"]["phases"]["ingest"] == {
        "seconds": 0.239, "rows": 11_772, "rows_per_second": 49317.1, "peak_rss_mb": 180.5,
    }  # fmt: skip
    assert out["second_run"]["phases"]["ingest"]["skipped"] == "sources unchanged"
    assert out["second_run"]["phases"]["ingest"]["rows_per_second"] is None
    assert out["finance_day"] is None  # only with --finance-day
    assert out["events"] is None  # only with --events N
    assert out["events_end_to_end"] is None


FINANCE = FinanceDay(
    publish=Step(0.5, 1_000, 12.0),
    export=Step(2.0, 1_000, 40.4),
    reply=Step(0.25, 1_000, 0.0),
    settled_fen=123_456,
    returned=20,
)


def test_the_finance_day_as_json_and_as_lines() -> None:
    out = dataclasses.replace(result(WITH_DUCKDB), finance=FINANCE)
    assert out.to_json()["finance_day"] == {
        "publish": {"seconds": 0.5, "rows": 1000, "rows_per_second": 2000, "peak_rss_growth_mb": 12.0},
        "export": {"seconds": 2.0, "rows": 1000, "rows_per_second": 500, "peak_rss_growth_mb": 40.4},
        "import": {"seconds": 0.25, "rows": 1000, "rows_per_second": 4000, "peak_rss_growth_mb": 0.0},
        "settled_fen": 123_456,
        "returned": 20,
    }  # fmt: skip
    assert out.to_text().splitlines()[-4:] == [
        "finance day (the first night's grants, through the ledger):",
        "  publish      0.50 s          1,000 rows          2,000/s  (memory +12 MiB)",
        "  export       2.00 s          1,000 rows            500/s  (memory +40 MiB)",
        "  import       0.25 s          1,000 rows          4,000/s  (memory +0 MiB)",
    ]


def test_json_without_duckdb_has_a_null_ratio_and_the_note_only() -> None:
    out = result(WITHOUT_DUCKDB).to_json()
    assert out["duckdb_ratio"] is None
    assert out["duckdb_note"] == "duckdb is not installed"
    assert "handwritten_duckdb_seconds" not in out
    assert "same_results_duckdb" not in out
    assert "duckdb_note" not in result(WITH_DUCKDB).to_json()


ROUNDS = [
    "  round 1: compiled 0.031 s, hand-written Polars 0.021 s, DuckDB 0.231 s",
    "  round 2: compiled 0.030 s, hand-written Polars 0.025 s, DuckDB 0.200 s",
    "  round 3: compiled 0.036 s, hand-written Polars 0.020 s, DuckDB 0.240 s",
]


@pytest.mark.parametrize(
    ("evaluation", "last_lines"),
    [
        (
            WITH_DUCKDB,
            [
                *ROUNDS,
                "  compiled / hand-written Polars: 1.48 (rounds 1.20 to 1.80); same rows: yes",
                "  compiled / DuckDB: 0.15 (rounds 0.13 to 0.15); same rows: yes",
            ],
        ),
        (
            dataclasses.replace(WITHOUT_DUCKDB, same_results_polars=False),
            [
                *(line.rsplit(", DuckDB", 1)[0] for line in ROUNDS),
                "  compiled / hand-written Polars: 1.48 (rounds 1.20 to 1.80); same rows: NO",
                "  DuckDB: duckdb is not installed",
            ],
        ),
    ],
    ids=["with-duckdb", "without-duckdb"],
)
def test_text_is_one_line_per_run_phase_and_round(
    evaluation: Evaluation, last_lines: list[str]
) -> None:
    assert result(evaluation).to_text() == "\n".join(
        [
            "300 enterprises, 1,500 persons, 12 months: 11,772 source rows on sqlite; the runs "
            "evaluated by polars",
            "machine: 2 CPUs, 24 GiB, load 0.10 before and 1.50 after (1 min); "
            "Python 3.11.7; polars 1.20.0, duckdb -",
            "first run: 0.4 s, 243 transfers, peak 204 MiB",
            "  ingest       0.24 s         11,772 rows         49,317/s",
            "  post         0.02 s            243 rows         11,096/s",
            "second run: 0.1 s, 0 transfers, peak 205 MiB",
            "  ingest       0.01 s         11,772 rows   (sources unchanged)",
            "  post         1.24 s            243 rows            197/s",
            "evaluation of 2 policies, 4,800 rows, 3 rounds after a warm-up (engines in "
            "turn, order rotating):",
            *last_lines,
            "",
        ]
    )


def test_the_batch_imports_neither_duckdb_nor_the_benchmark() -> None:
    # A fresh interpreter: the test session itself has imported both.
    code = (
        "import importlib, pkgutil, sys, jobs\n"
        "for m in pkgutil.iter_modules(jobs.__path__):\n"
        "    importlib.import_module(f'jobs.{m.name}')\n"
        "print(sorted(n for n in sys.modules if n == 'duckdb' or n.startswith('disburse.bench')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


EVENTS = DurableSpeed(
    decisions=1_000,
    policies={"a": 3, "b": 5},
    rounds=[DurableRound(0.01, 0.02, 0.04, 0.002), DurableRound(0.01, 0.025, 0.03, 0.003)],
    agree=True,
)


def test_the_durable_rules_figures_as_json_and_as_lines() -> None:
    out = dataclasses.replace(result(WITH_DUCKDB), events=EVENTS)
    data = out.to_json()["events"]
    assert data["match_per_s"] == round(1_000 / 0.0225)
    assert data["with_facts_per_s"] == round(1_000 / 0.0325)
    assert data["frame_per_s"] == round(1_000 / 0.0025)
    assert data["ratio_to_reference"] == pytest.approx(
        {"median": (0.75 + 35 / 30) / 2, "min": 0.75, "max": 35 / 30}
    )
    assert data["agree"] is True
    assert out.to_text().splitlines()[-6:] == [
        "durable-rules decisions (1,000 per round, 2 rounds after a warm-up, medians):",
        "  matching alone:            44,444 decisions/s",
        "  exact facts + match:       30,769 decisions/s",
        "  on a frame (events):      400,000 decisions/s",
        "  reference interpreter:     28,571 decisions/s",
        "  time / reference: 0.96 (rounds 0.75 to 1.17); same results as the reference: yes",
    ]


END_TO_END = EndToEnd(
    database="postgresql",
    events=4_000,
    batch=2_000,
    insert_per_s=20_000,
    start_seconds=2.25,
    serve_seconds=1.6,
    batches=2,
    decided=3_990,
    quarantined=10,
    keys=1_400,
    transfers=300,
    latency=Latency(1_000, 5_000, 1_001, 602.2, 911.4, 939.8, 14),
)


def test_the_end_to_end_event_figures_as_json_and_as_lines() -> None:
    out = dataclasses.replace(result(WITH_DUCKDB), events_end_to_end=END_TO_END)
    data = out.to_json()["events_end_to_end"]
    assert data["events_per_s"] == 2_500
    assert data["latency"]["p99_ms"] == 911.4
    assert out.to_text().splitlines()[-4:] == [
        "events end to end on postgresql (4,000 events, batches of 2,000):",
        "  inserted into the inbox:     20,000 events/s",
        "  served into the ledger:       2,500 events/s (2 batches; 3,990 decided, 10 "
        "quarantined; 1,400 keys, 300 transfers), the serve running: its start (the night "
        "read and indexed, 100 events decided) took 2.25 s",
        "  latency at 1,000 events/s offered (5,000 events, 1,001/s achieved, 14 batches): "
        "p50 602.2 ms, p99 911.4 ms, max 939.8 ms",
    ]


def test_the_bench_compares_decision_tables_by_a_digest_of_their_rows_in_order() -> None:
    import polars as pl

    from disburse.bench.pipeline import _digest

    table = pl.DataFrame({"policy_id": ["a", "a", "b"], "amount_fen": [1, 2, None]})
    assert _digest(table) == _digest(table.clone())
    assert _digest(table)[0] == 3
    for other in (
        table.reverse(),  # the same rows in another order
        table.with_columns(pl.col("amount_fen").cast(pl.Int32)),  # another type
        table.with_columns(pl.col("amount_fen").fill_null(0)),  # a value
        table.head(2),
    ):
        assert _digest(table) != _digest(other)
