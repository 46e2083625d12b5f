"""How fast, and in how much memory, a pain.001 of n payments is written and validated.

Not a timed test (timings on a shared machine make flaky tests): run it by hand,

    python -c "from pathlib import Path; from jobs.bankfiles.bench import bench_pain001; \\
               print(bench_pain001(1_000_000, Path('/tmp')))"

Peak memory is sampled from /proc/self/statm (Linux) every 20 ms while the file is
written and validated, and reported as growth over the resident size before it started
(the instructions frame itself is built before).  Flat memory shows as a growth that
does not follow n.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import polars as pl

from jobs.bankfiles.instructions import PaymentHeader
from jobs.bankfiles.pain001 import write_pain001
from jobs.bankfiles.pain002 import read_pain002
from jobs.bankfiles.simulate import simulate_bank_reply

T = TypeVar("T")

_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杭州某某科技有限公司", "赵磊", "孙丽"]


def sample_instructions(n: int) -> pl.DataFrame:
    """n made-up payments (deterministic, built by Polars expressions, no Python loop)."""
    i = pl.int_range(0, n, dtype=pl.Int64, eager=False)
    return pl.select(
        end_to_end_id=pl.format("B{}", i.cast(pl.String).str.zfill(10)),
        amount_fen=(i * 7919) % 10_000_000 + 1,
        creditor_name=pl.lit(pl.Series(_NAMES)).gather(i % len(_NAMES)),
        creditor_account=pl.format("6222{}", i.cast(pl.String).str.zfill(15)),
        creditor_bank_code=pl.format("1023310{}", (i % 100_000).cast(pl.String).str.zfill(5)),
        remittance=pl.lit("失业保险稳岗返还 2026年度"),
    )


def sample_header(msg_id: str = "BENCH-1") -> PaymentHeader:
    """A header for the made-up batch."""
    return PaymentHeader(
        msg_id=msg_id,
        created_at=datetime(2026, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=8))),
        initiating_party_name="某市人力资源和社会保障局",
        debtor_name="某市财政局",
        debtor_account="1202000000000001",
        debtor_bank_code="102331000001",
        execution_on=date(2026, 5, 6),
    )


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measured(work: Callable[[], T]) -> tuple[T, float, float]:
    """(what `work` returned, its seconds, the peak resident memory growth in MB meanwhile,
    sampled every 20 ms)."""
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = work()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    peak = max(peak, _rss_bytes())
    return result, seconds, (peak - before) / 2**20


def bench_pain001(n: int, folder: Path) -> dict[str, float | int | str]:
    """Write and validate a pain.001 of n payments in `folder`; return seconds, rows per
    second, peak resident memory growth (MB) while doing it, and the file's size."""
    instructions = sample_instructions(n)
    target = Path(folder) / f"bench-pain001-{n}.xml"
    written, seconds, growth = measured(
        lambda: write_pain001(instructions, sample_header(), target)
    )
    size = target.stat().st_size
    target.unlink()
    return {
        "n": n,
        "seconds": round(seconds, 2),
        "rows_per_second": round(n / seconds),
        "peak_rss_growth_mb": round(growth, 1),
        "file_mb": round(size / 2**20, 1),
        "sha256": written.sha256,
    }


def bench_pain002(n: int, folder: Path) -> dict[str, float | int | str]:
    """Read and validate a bank's pain.002 reply to n payments (2% returned): seconds, rows
    per second, peak resident memory growth (MB), the file's size.  The reply is written
    first by `simulate_bank_reply`, untimed."""
    instructions = sample_instructions(n)
    target = Path(folder) / f"bench-pain002-{n}.xml"
    simulate_bank_reply(instructions, sample_header(), seed=1, return_rate=0.02, xml_target=target)
    report, seconds, growth = measured(lambda: read_pain002(target))
    size = target.stat().st_size
    target.unlink()
    return {
        "n": n,
        "seconds": round(seconds, 2),
        "rows_per_second": round(n / seconds),
        "peak_rss_growth_mb": round(growth, 1),
        "file_mb": round(size / 2**20, 1),
        "statuses": report.statuses.height,
    }
