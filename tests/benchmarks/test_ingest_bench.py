"""Ingest throughput: validation, staging and quarantine of a whole city, rows per second.

The baseline in the same process is a plain Polars read of the same files
(parquet -> memory, no validation), so the ratio says what validation costs.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from jobs.catalogue import load_source_catalogue
from jobs.ingest import ingest
from ledgers.db import open_engine
from tests.benchmarks.conftest import city_size, synth_city


@pytest.mark.benchmark(group="ingest")
def test_ingest_city(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enterprises, persons = city_size()
    data = synth_city(enterprises, persons)
    cat = load_source_catalogue()
    rows = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in data.glob("*.parquet"))

    started = time.perf_counter()
    for p in sorted(data.glob("*.parquet")):
        pl.read_parquet(p)
    baseline = time.perf_counter() - started

    timings: list[float] = []

    def run() -> None:
        store = tmp_path / "store"
        shutil.rmtree(store, ignore_errors=True)
        started = time.perf_counter()
        with open_engine(f"sqlite:///{tmp_path / 'bench.db'}", init=True) as engine:
            ingest(data, dt.date(2026, 1, 1), engine=engine, store=store, catalogue=cat)
        timings.append(time.perf_counter() - started)

    benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = min(timings)
    benchmark.extra_info.update(
        {
            "enterprises": enterprises,
            "persons": persons,
            "rows": rows,
            "rows_per_second": round(rows / seconds),
            "plain_read_seconds": round(baseline, 3),
            "ratio_to_plain_read": round(seconds / baseline, 2),
        }
    )
