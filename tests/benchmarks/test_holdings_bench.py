"""Reading what the ledger holds: from the holdings snapshot against a scan of the ledger.

Run with `pytest -n 0 --benchmark-enable --benchmark-only tests/benchmarks/test_holdings_bench.py`: N = 20,000
entitlements, or 1,000,000 with DISBURSE_BENCH_FULL=1; DISBURSE_BENCH_ROUNDS rounds
(default 3).  One ledger per backend gets the N grants by one post that keeps a
snapshot; then, in this process, each round times

* scan (the baseline): `holdings(engine, policies)`, every entitlement transfer read;
* snapshot (the measured target): `holdings(engine, policies, folder)`, the
  snapshot's file checked and read, and the (no) transfers after its head.

`extra_info` carries the medians, rows per second and `snapshot_vs_scan` (scan
seconds over snapshot seconds); both reads must give the same frame.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from ledgers.db import open_engine
from ledgers.holdings import HOLDING_KEY, Holdings, holdings
from ledgers.post import post_entitlements
from tests.benchmarks.test_ledger_bench import (
    ROUNDS,
    N,
    entitlements,
    fresh_database,
    new_run,
    settle,
    show_extra_info,
)
from tests.keys import KEY


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_read_holdings(benchmark: Any, backend: str, tmp_path: Path) -> None:
    # Under --benchmark-disable (the normal test run) one tiny round checks the machinery.
    if benchmark.disabled and backend != "sqlite":
        pytest.skip("timed only with --benchmark-only; SQLite runs the smoke round")
    n, rounds = (2_000, 1) if benchmark.disabled else (N, ROUNDS)
    frame = entitlements(n)
    ids = sorted(frame["policy_id"].unique().to_list())
    folder = tmp_path / "holdings"
    order = list(HOLDING_KEY)
    with fresh_database(backend, tmp_path) as url, open_engine(url, init=True) as engine:
        known = holdings(engine, ids, folder)
        post_entitlements(engine, frame, new_run(engine), known=known, keep=folder, key=KEY)
        settle(engine)
        scan_s: list[float] = []
        snap_s: list[float] = []

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            start = time.perf_counter()
            scanned = holdings(engine, ids)
            scan_s.append(time.perf_counter() - start)
            return (scanned,), {}

        def target(scanned: Holdings) -> Holdings:
            start = time.perf_counter()
            kept = holdings(engine, ids, folder)
            snap_s.append(time.perf_counter() - start)
            assert kept.from_snapshot is not None
            assert kept.frame.sort(order).equals(scanned.frame.sort(order))
            return kept

        benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1)
    scan, snap = statistics.median(scan_s), statistics.median(snap_s)
    benchmark.extra_info.update(
        {
            "backend": backend,
            "rows": n,
            "rounds": rounds,
            "scan_s": round(scan, 3),
            "scan_rows_per_s": round(n / scan),
            "snapshot_s": round(snap, 3),
            "snapshot_rows_per_s": round(n / snap),
            "snapshot_vs_scan": round(scan / snap, 2),
        }
    )
    show_extra_info(benchmark)
