"""The nightly run's phases at a small size: a first run, and a second with nothing changed.

The same pipeline `disburse bench` times at city scale.  Each benchmark reports
rows per second per phase and, as its in-process baseline, the ratio of the
second run (nothing changed: staged files and decisions reused, nothing to
post) to the first.  Off by default; run with

    .venv/bin/pytest -n 0 --benchmark-enable --benchmark-only tests/benchmarks/test_run_bench.py
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest

from jobs.catalogue import load_source_catalogue
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers.db import open_engine
from tests.benchmarks.conftest import city_size, synth_city

AS_OF = dt.date(2026, 3, 15)


@pytest.mark.benchmark(group="run")
def test_nightly_run(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enterprises, persons = city_size()
    data = synth_city(enterprises, persons)
    cat = load_source_catalogue()
    pset = load_policies(cat)
    seconds: dict[str, float] = {}
    phases: dict[str, dict] = {}

    def one_round() -> None:
        shutil.rmtree(tmp_path / "store", ignore_errors=True)
        (tmp_path / "bench.db").unlink(missing_ok=True)
        with open_engine(f"sqlite:///{tmp_path / 'bench.db'}", init=True) as engine:
            request = RunRequest(data, AS_OF, tmp_path / "store", features_path(None))
            for label in ("first", "second"):
                started = time.perf_counter()
                outcome = run_nightly_on(engine, request, catalogue=cat, pset=pset)
                seconds[label] = time.perf_counter() - started
                phases[label] = {n: t.to_json() for n, t in outcome.timings.items()}
                assert outcome.state == "completed"
            assert outcome.summary.totals.transfers == 0  # nothing changed

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "enterprises": enterprises,
            "persons": persons,
            "first_run_seconds": round(seconds["first"], 3),
            "second_run_seconds": round(seconds["second"], 3),
            "second_over_first": round(seconds["second"] / seconds["first"], 3),
            "phases": phases,
        }
    )
