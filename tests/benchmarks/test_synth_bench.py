"""How fast `disburse synth` writes a population.

    .venv/bin/pytest tests/benchmarks/test_synth_bench.py --benchmark-enable --benchmark-only
    DISBURSE_BENCH_FULL=1 .venv/bin/pytest tests/benchmarks/test_synth_bench.py \
        --benchmark-enable --benchmark-only --benchmark-json=synth.json

(`--benchmark-enable` overrides the `--benchmark-disable` of the project's
addopts.)  The small size runs by default; DISBURSE_BENCH_FULL=1 adds the
city-sized run (1M enterprises, 10M persons) that the design targets on a
2-core machine.  Rows per second are reported in `extra_info`: overall, and per
source as the rows of that source over the time from the previous source until
this one was handed to the (background) writer.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from disburse.synth import generate
from jobs.catalogue import load_source_catalogue

SIZES = [pytest.param(2_000, 20_000, id="2k-enterprises-20k-persons")]
if os.environ.get("DISBURSE_BENCH_FULL") == "1":
    SIZES.append(pytest.param(1_000_000, 10_000_000, id="1M-enterprises-10M-persons"))


@pytest.mark.parametrize(("enterprises", "persons"), SIZES)
def test_generate(benchmark: Any, tmp_path: Path, enterprises: int, persons: int) -> None:
    catalogue = load_source_catalogue()
    marks: list[tuple[str, float]] = []

    def run() -> tuple[dict[str, Any], float]:
        marks.clear()
        start = time.perf_counter()
        marks.append(("", start))
        manifest = generate(
            tmp_path / "out",
            enterprises=enterprises,
            persons=persons,
            seed=1,
            errors=0.001,
            catalogue=catalogue,
            progress=lambda message: marks.append((message.split(":")[0], time.perf_counter())),
        )
        return manifest, time.perf_counter() - start

    manifest, seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    rows = manifest["rows"]
    total = sum(rows.values())
    benchmark.extra_info["seconds"] = round(seconds, 2)
    benchmark.extra_info["rows"] = total
    benchmark.extra_info["rows_per_second"] = round(total / seconds)
    benchmark.extra_info["bytes"] = sum(p.stat().st_size for p in (tmp_path / "out").iterdir())
    per_source = {}
    for (_, before), (name, after) in itertools.pairwise(marks):
        per_source[name] = {
            "rows": rows[name],
            "rows_per_second": round(rows[name] / max(after - before, 1e-9)),
        }
    benchmark.extra_info["sources"] = per_source
    assert set(rows) == set(catalogue.sources)
    assert manifest["injected"]
