"""The dask and spark engines' partitioned evaluation (`jobs.partitioned`) gives the polars engine's
wide frames and decision table, row for row and in the same order, on random
populations: synthetic cities of random size, seed and share of broken rows, split into
a random number of key ranges, on a random day (one whose back-pay or windows differ).

One cluster of each (this machine's cores) serves every example.  Each example stages its
own city, so the examples are few; the end-to-end ledger comparison is
tests/db/test_engines.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disburse.synth import generate
from eligibility import decisions_of_wide
from jobs.catalogue import load_source_catalogue
from jobs.engines import EngineChoice, dask_mapper, spark_mapper
from jobs.evaluate import wide_plans
from jobs.ingest import stage
from jobs.partitioned import Mapper, Partitioned, PartitionedJob
from jobs.policies import load_policies

CATALOGUE = load_source_catalogue()
PSET = load_policies(CATALOGUE)
DAYS = [dt.date(2025, 12, 31), dt.date(2026, 3, 15), dt.date(2026, 6, 30)]


@pytest.fixture(scope="module", params=["dask", "spark"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Mapper]:
    choice = EngineChoice(request.param)
    mapper = dask_mapper if choice.name == "dask" else spark_mapper
    with mapper(choice) as (run, _threads):
        yield run


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    enterprises=st.integers(5, 120),
    persons_each=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    errors=st.sampled_from([0.0, 0.03]),
    parts=st.integers(1, 9),
    as_of=st.sampled_from(DAYS),
)
def test_partitioned_evaluation_equals_the_whole(
    cluster: Mapper,
    enterprises: int,
    persons_each: int,
    seed: int,
    errors: float,
    parts: int,
    as_of: dt.date,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="engines-"))
    try:
        generate(
            root / "data",
            enterprises=enterprises,
            persons=enterprises * persons_each,
            seed=seed,
            errors=errors,
            as_of=dt.date(2026, 7, 1),
            months=18,
        )
        staged = root / "staged"
        stage(root / "data", staged, catalogue=CATALOGUE)
        policies = PSET.active(as_of)
        whole = {k: v.collect() for k, v in wide_plans(staged, policies, PSET, as_of).items()}
        job = PartitionedJob(cluster, Partitioned(root / "work", parts), staged, CATALOGUE, PSET)
        got = {
            k: pl.read_parquet(files) for k, files in job.wide(policies, as_of, None, "x").items()
        }
        assert set(got) == set(whole)
        for kind, frame in whole.items():
            assert got[kind].equals(frame), kind
        assert (
            decisions_of_wide({k: v.lazy() for k, v in got.items()}, policies, as_of)
            .collect()
            .equals(
                decisions_of_wide(
                    {k: v.lazy() for k, v in whole.items()}, policies, as_of
                ).collect()
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
