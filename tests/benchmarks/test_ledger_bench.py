"""Posting entitlements against a raw bulk load of the same rows, on PostgreSQL and SQLite.

Run with `pytest -n 0 --benchmark-enable --benchmark-only tests/benchmarks/test_ledger_bench.py`: N = 20,000
entitlements, or 1,000,000 with DISBURSE_BENCH_FULL=1; DISBURSE_BENCH_ROUNDS rounds
(default 3).  Each round, in this process, on fresh databases with the schema:

* raw: the exact rows a post writes (transfers with their hash chain, and the
  entitlement keys) loaded into an empty ledger's own indexed tables as fast as
  the backend allows: binary COPY of the transfers and COPY of CSV written by
  Polars for the keys (PostgreSQL), one executemany in one transaction (SQLite);
* raw 0012: the same transfers as the ledger stored them before migration 0013
  (digests and the policy sha256 as hex text on every row, about 550 bytes of CSV
  a row) loaded the same way as CSV into an empty ledger at revision 0012: the
  format issue 21.5 asked posting to beat by 1.2x;
* post (the benchmark's measured target): `post_entitlements` of the N
  entitlements into another empty ledger: read, delta, hash chain, chunks,
  checks, commits;
* re-post: the same N again; nothing is new and nothing is written.

`extra_info` carries medians over the rounds and the issues' goals: post at
>= 80% of raw rows/s, at >= 1.2x the rows/s of raw 0012, re-post >= 3x faster than
the first post.  The raw load is
reported for the transfers alone and for transfers + keys (everything a post
writes); both ratios are printed.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from sqlalchemy import Engine

from common.identifiers import ascii_rows_to_series, uscc_bytes
from ledgers.audit import verify
from ledgers.chain import CHAIN_FIELDS, GENESIS, STORED_FIELDS, with_hashes
from ledgers.db import init_schema, open_engine
from ledgers.frames import executemany, write_frame
from ledgers.plan import plan_transfers
from ledgers.post import post_entitlements, validate_entitlements
from ledgers.runs import start_run
from ledgers.write import KEY_COLUMNS, copy_transfers, stored_rows
from tests.keys import KEY

N = 1_000_000 if os.environ.get("DISBURSE_BENCH_FULL") == "1" else 20_000
ROUNDS = int(os.environ.get("DISBURSE_BENCH_ROUNDS", "3"))


def entitlements(n: int) -> pl.DataFrame:
    """`n` enterprises entitled under one policy: valid credit codes, realistic decisions."""
    i = np.arange(n, dtype=np.int64)
    first17 = np.zeros((n, 17), dtype=np.int64)
    first17[:, :8] = [9, 1, 3, 3, 0, 1, 0, 6]
    for pos in range(9):  # the organisation code body: i in decimal, 9 digits
        first17[:, 16 - pos] = (i // 10**pos) % 10
    codes = ascii_rows_to_series("entity", uscc_bytes(first17))
    premium = pl.Series("premium", (i * 7919) % 5_000_000 + 10_000)
    return pl.DataFrame({"entity": codes, "premium": premium}).select(
        pl.lit("job-stabilisation-refund").alias("policy_id"),
        pl.lit("2026").alias("benefit_period"),
        "entity",
        pl.col("entity").alias("payee"),
        (pl.col("premium") * 9 // 10).alias("amount_fen"),
        pl.lit("3f" * 32).alias("policy_sha256"),
        pl.concat_str(
            [
                pl.lit('{"f":{"unemployment_premium_paid":'),
                pl.col("premium").cast(pl.String),
                pl.lit(
                    ',"headcount_start":20,"headcount_end":20,"size_class":"small"},"c":[1,1,1,1]}'
                ),
            ]
        ).alias("decision"),
    )


def rows_a_post_writes(
    frame: pl.DataFrame, run_id: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The transfers (chained from genesis) and keys a post of `frame` into an empty ledger
    writes: the transfers as stored, as stored before migration 0013, the keys, and the
    policy versions the stored rows name."""
    plan = plan_transfers(validate_entitlements(frame), {}, lambda payees: pl.DataFrame())
    transfers = plan.transfers.with_columns(
        transfer_id=pl.int_range(1, plan.transfers.height + 1, dtype=pl.Int64),
        run_id=pl.lit(run_id, pl.Int64),
    ).select(CHAIN_FIELDS)
    chained = with_hashes(transfers, GENESIS, KEY)
    versions = (
        chained.select("policy_id", "policy_sha256")
        .unique(maintain_order=True)
        .with_row_index("policy_version_id", offset=1)
        .with_columns(pl.col("policy_version_id").cast(pl.Int32))
    )
    before_0013 = chained.select(*STORED_FIELDS, "prev_hash", "hash")
    keys = chained.filter(pl.col("kind") == "grant").select(KEY_COLUMNS)
    return stored_rows(chained, versions), before_0013, keys, versions


def show_extra_info(benchmark: Any) -> None:
    """Print a timed benchmark's extra_info, one figure a line (with -s)."""
    if not benchmark.disabled:
        print()
        for k, v in benchmark.extra_info.items():
            print(f"  {k:<36}{v}")


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"
        return
    from tests.conftest import _pg_database

    databases = _pg_database()
    url = next(databases)
    try:
        yield url
    finally:
        databases.close()


def raw_load(engine: Engine, table: str, frame: pl.DataFrame, binary: bool = False) -> float:
    """Seconds to load `frame` into `table` in one transaction, the fastest plain way
    (`binary`: the stored transfers, by binary COPY on PostgreSQL)."""
    start = time.perf_counter()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql" and binary:
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur:
                copy_transfers(cur, table, frame)
        elif conn.dialect.name == "postgresql":
            buf = io.BytesIO()
            frame.write_csv(buf, include_header=False)
            data = buf.getbuffer()
            raw = conn.connection.driver_connection
            cols = ", ".join(frame.columns)
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp,
            ):
                for at in range(0, len(data), 1 << 20):
                    cp.write(data[at : at + (1 << 20)])
        else:
            marks = ", ".join("?" * frame.width)
            sql = f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({marks})"
            executemany(conn, sql, frame.iter_rows())
    return time.perf_counter() - start


def new_run(engine: Engine) -> int:
    with engine.begin() as conn:
        return start_run(conn, kind="bench", as_of=dt.date(2026, 1, 1))


def settle(engine: Engine) -> None:
    """Flush what the previous step left behind, so that it is not billed to the next."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("CHECKPOINT")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize(
    ("backend", "pg_staging"),
    [("sqlite", False), ("postgresql", False), ("postgresql", True)],
    ids=["sqlite", "postgresql-copy", "postgresql-staged"],
)
def test_post_entitlements(benchmark: Any, backend: str, pg_staging: bool, tmp_path: Path) -> None:
    # Under --benchmark-disable (the normal test run) one tiny round checks the machinery.
    if benchmark.disabled and backend != "sqlite":
        pytest.skip("timed only with --benchmark-only; SQLite runs the smoke round")
    n, rounds = (2_000, 1) if benchmark.disabled else (N, ROUNDS)
    frame = entitlements(n)
    transfers, before_0013, keys, versions = rows_a_post_writes(frame, run_id=1)
    post_s: list[float] = []
    raw_s: list[float] = []
    raw_keys_s: list[float] = []
    raw_0012_s: list[float] = []
    repost_s: list[float] = []
    verify_s: list[float] = []
    stack: list[Any] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # The raw loads, each into an empty ledger of its own: as stored before migration
        # 0013 (transfers and keys), and as stored now.
        with fresh_database(backend, tmp_path) as url, open_engine(url) as engine:
            init_schema(engine, "0012")
            assert new_run(engine) == 1
            settle(engine)
            load = raw_load(engine, "transfers", before_0013)
            settle(engine)
            raw_0012_s.append(load + raw_load(engine, "entitlement_keys", keys))
        with fresh_database(backend, tmp_path) as url, open_engine(url, init=True) as engine:
            assert new_run(engine) == 1
            with engine.begin() as conn:
                write_frame(conn, "policy_versions", versions.rename({"policy_sha256": "sha256"}))
            settle(engine)
            raw_s.append(raw_load(engine, "transfers", transfers, binary=True))
            settle(engine)
            raw_keys_s.append(raw_load(engine, "entitlement_keys", keys))
        # The post's empty ledger, kept open for the target and the teardown.
        db = fresh_database(backend, tmp_path)
        url = db.__enter__()
        eng = open_engine(url, init=True)
        engine = eng.__enter__()
        stack.extend([db, eng])
        run = new_run(engine)
        settle(engine)
        return (engine, frame, run), {"pg_staging": pg_staging}

    def teardown(engine: Engine, *_: Any, **__: Any) -> None:
        settle(engine)
        start = time.perf_counter()
        again = post_entitlements(engine, frame, new_run(engine), key=KEY)
        repost_s.append(time.perf_counter() - start)
        assert again.transfers == 0
        assert again.unchanged == n
        if not verify_s:
            start = time.perf_counter()
            assert verify(engine, key=KEY).ok
            verify_s.append(time.perf_counter() - start)
        while stack:
            stack.pop().__exit__(None, None, None)

    def target(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = post_entitlements(*args, **kwargs, key=KEY)
        post_s.append(time.perf_counter() - start)
        assert result.granted == n
        return result

    if benchmark.disabled:  # pedantic would run the setup but skip the teardown
        args, kwargs = setup()
        benchmark.pedantic(target, args=args, kwargs=kwargs)
        teardown(*args)
    else:
        benchmark.pedantic(target, setup=setup, teardown=teardown, rounds=rounds, iterations=1)
    post = statistics.median(post_s)
    raw = statistics.median(raw_s)
    raw_all = statistics.median([a + b for a, b in zip(raw_s, raw_keys_s, strict=True)])
    raw_0012 = statistics.median(raw_0012_s)
    # Each round's own ratio (its raw loads and its post ran back to back).
    per_round = sorted(a / b for a, b in zip(raw_0012_s, post_s, strict=True))
    repost = statistics.median(repost_s)
    benchmark.extra_info.update(
        {
            "backend": backend + ("-staged" if pg_staging else ""),
            "rows": n,
            "rounds": rounds,
            "post_s": round(post, 2),
            "post_rows_per_s": round(n / post),
            "raw_transfers_s": round(raw, 2),
            "raw_transfers_rows_per_s": round(n / raw),
            "raw_transfers_and_keys_s": round(raw_all, 2),
            "raw_transfers_and_keys_rows_per_s": round(n / raw_all),
            "post_vs_raw_transfers": round(raw / post, 3),
            "post_vs_raw_transfers_and_keys": round(raw_all / post, 3),
            "raw_0012_transfers_and_keys_s": round(raw_0012, 2),
            "post_vs_raw_0012": round(raw_0012 / post, 3),
            "post_vs_raw_0012_per_round_median": round(statistics.median(per_round), 3),
            "post_vs_raw_0012_per_round_spread": [round(per_round[0], 3), round(per_round[-1], 3)],
            "repost_s": round(repost, 2),
            "repost_speedup": round(post / repost, 2),
            "verify_s": round(verify_s[0], 2),
            "all_post_s": [round(x, 2) for x in post_s],
            "all_raw_transfers_s": [round(x, 2) for x in raw_s],
            "all_raw_keys_s": [round(x, 2) for x in raw_keys_s],
            "all_raw_0012_s": [round(x, 2) for x in raw_0012_s],
            "all_repost_s": [round(x, 2) for x in repost_s],
        }
    )
    show_extra_info(benchmark)
