"""The compiled policies against the same policies written by hand, timed in one process.

Issue 3, item 9: the compiled plan of the six shipped enterprise policies
(`jobs.evaluate.evaluate`) against a hand-written Polars pipeline and
hand-written DuckDB SQL computing the same decision table
(`disburse.bench.baselines`), on the same staged data, in the same run.  The goal:
compiled at most 1.15 times the hand-written Polars, and no slower than DuckDB.

Off by default (`--benchmark-disable`); run with

    .venv/bin/pytest -n 0 --benchmark-enable --benchmark-only tests/benchmarks/test_policy_bench.py

Small by default (20,000 enterprises, 40,000 persons); DISBURSE_BENCH_FULL=1
runs the issue's size (1,000,000 enterprises, 2,000,000 persons, 24 months
of tax and social security of which each assessed window reads 12).  The
synthetic city is generated and staged once per size under
$DISBURSE_BENCH_CACHE (default <tmp>/disburse-bench-cache), in a folder named
by the parameters and the generator's fingerprint; delete it to regenerate.
DISBURSE_BENCH_ROUNDS sets the rounds (default 3); DISBURSE_BENCH_MEMORY=0 skips
the peak-memory runs (one extra run per engine, each in a fresh process).

`benchmark.extra_info` holds entities per second, CPU seconds (the machine
may be shared: CPU time is steadier than wall time), peak memory, and in
`test_compiled_against_handwritten` the ratios compiled / hand-written Polars
and compiled / DuckDB from rounds that run the three engines in turn.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from disburse.bench.baselines import POLICY_IDS, handwritten_duckdb, handwritten_polars
from disburse.synth import generate, generator_fingerprint
from eligibility import PolicySet
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import stage
from jobs.policies import load_policies

FULL = os.environ.get("DISBURSE_BENCH_FULL") == "1"
ENTERPRISES = 1_000_000 if FULL else 20_000
PERSONS = 2_000_000 if FULL else 40_000
SEED = 1
AS_OF = dt.date(2026, 4, 1)  # all six enterprise policies active; data through 2026-03
ROUNDS = int(os.environ.get("DISBURSE_BENCH_ROUNDS", "3"))
MEASURE_MEMORY = os.environ.get("DISBURSE_BENCH_MEMORY", "1") != "0"
GOAL_RATIO = 1.15
ENGINES = ("compiled", "handwritten_polars", "handwritten_duckdb")

Engine = Callable[[], pl.DataFrame]


def cache_root() -> Path:
    """Where generated and staged cities are kept between runs (as tests/benchmarks/conftest.py)."""
    env = os.environ.get("DISBURSE_BENCH_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "disburse-bench-cache"


def staged_city(enterprises: int, persons: int, seed: int, as_of: dt.date) -> Path:
    """The staged sources of a synthetic city, generated and staged on first use only."""
    key = f"e{enterprises}-p{persons}-s{seed}-{as_of.isoformat()}"
    home = cache_root() / f"{key}-g{generator_fingerprint()[:12]}"
    if (home / "staged" / ".complete").is_file():
        return home / "staged"
    # Build beside the cache entry and move it in whole: an interrupted run leaves no half city.
    work = home.with_name(f"{home.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    generate(work / "source", enterprises=enterprises, persons=persons, seed=seed, as_of=as_of)
    stage(work / "source", work / "staged", catalogue=load_source_catalogue())
    (work / "staged" / ".complete").write_text("generated and staged\n", encoding="utf-8")
    shutil.rmtree(home, ignore_errors=True)
    os.replace(work, home)
    return home / "staged"


@pytest.fixture(scope="module")
def staged_dir() -> Path:
    """The benchmark city, staged."""
    return staged_city(ENTERPRISES, PERSONS, SEED, AS_OF)


@pytest.fixture(scope="module")
def enterprise_policies() -> PolicySet:
    """The six shipped enterprise policies the baselines write by hand (not those added
    since, such as stay-at-post-grant, which the worked examples check instead)."""
    pset = load_policies(load_source_catalogue())
    return PolicySet(pset.catalogue, [p for p in pset.policies if p.id in POLICY_IDS])


@pytest.fixture(scope="module")
def engines(staged_dir: Path, enterprise_policies: PolicySet) -> dict[str, Engine]:
    """Each engine as a function of nothing, returning the sorted decision table."""
    pytest.importorskip("duckdb")
    return {
        "compiled": lambda: evaluate(staged_dir, enterprise_policies, AS_OF),
        "handwritten_polars": lambda: handwritten_polars(staged_dir, AS_OF),
        "handwritten_duckdb": lambda: handwritten_duckdb(staged_dir, AS_OF),
    }


_PEAK = """
import datetime as dt, json, sys
from pathlib import Path

def high_water_kib():
    # VmHWM is this process's own peak; ru_maxrss would include the forking parent's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

staged, engine = Path(sys.argv[1]), sys.argv[2]
as_of = dt.date.fromisoformat(sys.argv[3])
if engine == "compiled":
    from eligibility import PolicySet
    from jobs.catalogue import load_source_catalogue
    from jobs.evaluate import evaluate
    from jobs.policies import load_policies
    from disburse.bench.baselines import POLICY_IDS
    pset = load_policies(load_source_catalogue())
    mine = PolicySet(pset.catalogue, [p for p in pset.policies if p.id in POLICY_IDS])
    before = high_water_kib()
    evaluate(staged, mine, as_of)
else:
    import disburse.bench.baselines as b
    if engine == "handwritten_duckdb":
        import duckdb
    before = high_water_kib()
    getattr(b, engine)(staged, as_of)
print(json.dumps({"before_kib": before, "peak_kib": high_water_kib()}))
"""


def peak_memory_mb(staged: Path, engine: str) -> dict[str, float]:
    """Peak resident memory of one run of `engine` in a fresh process (MiB), and before it."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(staged), engine, AS_OF.isoformat()],
        check=True,
        capture_output=True,
        text=True,
    )
    kib = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "peak_rss_mb": round(kib["peak_kib"] / 1024, 1),
        "rss_after_imports_mb": round(kib["before_kib"] / 1024, 1),
    }


def _common_info() -> dict[str, Any]:
    return {
        "enterprises": ENTERPRISES,
        "persons": PERSONS,
        "as_of": AS_OF.isoformat(),
        "policies": 6,
        "polars": pl.__version__,
        "duckdb": version("duckdb"),
        "threads": pl.thread_pool_size(),
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_evaluate(
    benchmark: Any, engines: dict[str, Engine], staged_dir: Path, engine: str
) -> None:
    """One engine on its own: seconds, entities per second, CPU seconds, peak memory."""
    run = engines[engine]
    cpu: list[float] = []

    def timed() -> pl.DataFrame:
        started = time.process_time()
        out = run()
        cpu.append(time.process_time() - started)
        return out

    result = benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert result.height == 6 * ENTERPRISES
    if benchmark.disabled:  # a plain test run: one smoke run, no statistics
        return
    best = benchmark.stats.stats.min
    info = benchmark.extra_info
    info.update(_common_info())
    info["engine"] = engine
    info["entities_per_s"] = round(ENTERPRISES / best)
    info["decisions_per_s"] = round(result.height / best)
    info["cpu_s_min"] = round(min(cpu[1:] or cpu), 3)
    if MEASURE_MEMORY:
        info.update(peak_memory_mb(staged_dir, engine))


def test_compiled_against_handwritten(benchmark: Any, engines: dict[str, Engine]) -> None:
    """The three engines in turn, each round in a new order; the ratios of their best times.

    The rounds interleave the engines so that a change of load on a shared
    machine touches all three alike.  The first round also checks that the
    three decision tables are identical: the work compared is the same.
    """
    wall: dict[str, list[float]] = {e: [] for e in ENGINES}
    cpu: dict[str, list[float]] = {e: [] for e in ENGINES}
    outputs: dict[str, pl.DataFrame] = {}
    turn = [0]

    def one_round() -> None:
        k = turn[0]
        turn[0] += 1
        order = ENGINES[k % 3 :] + ENGINES[: k % 3]
        for engine in order:
            w, c = time.perf_counter(), time.process_time()
            out = engines[engine]()
            wall[engine].append(time.perf_counter() - w)
            cpu[engine].append(time.process_time() - c)
            if k == 0:
                outputs[engine] = out
        if k == 0:
            assert_frame_equal(outputs["handwritten_polars"], outputs["compiled"])
            assert_frame_equal(outputs["handwritten_duckdb"], outputs["compiled"])
            outputs.clear()

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    # The first round reads the files cold for whichever engine goes first: leave it out.
    best = {e: min(wall[e][1:] or wall[e]) for e in ENGINES}
    best_cpu = {e: min(cpu[e][1:] or cpu[e]) for e in ENGINES}
    info = benchmark.extra_info
    info.update(_common_info())
    for e in ENGINES:
        info[f"{e}_s"] = round(best[e], 3)
        info[f"{e}_cpu_s"] = round(best_cpu[e], 3)
        info[f"{e}_entities_per_s"] = round(ENTERPRISES / best[e])
    ratio = best["compiled"] / best["handwritten_polars"]
    info["ratio_compiled_to_handwritten_polars"] = round(ratio, 3)
    info["ratio_compiled_to_duckdb"] = round(best["compiled"] / best["handwritten_duckdb"], 3)
    info["cpu_ratio_compiled_to_handwritten_polars"] = round(
        best_cpu["compiled"] / best_cpu["handwritten_polars"], 3
    )
    info["cpu_ratio_compiled_to_duckdb"] = round(
        best_cpu["compiled"] / best_cpu["handwritten_duckdb"], 3
    )
    info["goal_ratio"] = GOAL_RATIO
    info["goal_met"] = ratio <= GOAL_RATIO and best["compiled"] <= best["handwritten_duckdb"]
