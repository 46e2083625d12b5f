"""Which engine computes the features and evaluates the policies of a run.

* `polars` (the default): the wide plans in this process, streamed.
* `dask`: the same plans per range of the entity key (`jobs.partitioned`), as tasks on a
  Dask distributed cluster: the scheduler at `address`, or a cluster of this machine's
  cores started for the run.  Every worker must import this package (the same version)
  and see the run's store (a shared file system across machines).

Only the features and the evaluation fan out.  Ingest, allocation and posting stay in
the one process that holds the run lock; the parts come back as Parquet files, read in
key order.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from eligibility import CheckedPolicy, PolicySet
from jobs.catalogue import Catalogue
from jobs.errors import JobError
from jobs.evaluate import wide_plans
from jobs.partitioned import Mapper, Partitioned, PartitionedJob

ENGINES = ("polars", "dask")


@dataclass(frozen=True)
class EngineChoice:
    """`disburse run --engine NAME [--scheduler ADDRESS] [--partitions N]`."""

    name: str = "polars"
    address: str | None = None  # a Dask scheduler; none: a local cluster for the run
    partitions: int | None = None  # ranges of the entity key; none: twice the workers

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise JobError(f"unknown engine {self.name!r}", fix=f"use one of: {', '.join(ENGINES)}")
        if self.partitions is not None and self.partitions < 1:
            raise JobError("--partitions must be at least 1", fix="give a positive number")


@contextmanager
def dask_client(choice: EngineChoice) -> Iterator[Any]:
    """A client of the Dask scheduler `choice` names, or of a cluster of this machine's
    cores (one worker process a core) started for the block."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if choice.address is not None:
        try:
            client = Client(choice.address, timeout=30)  # type: ignore[no-untyped-call]
        except OSError as e:
            raise JobError(
                f"cannot reach the Dask scheduler at {choice.address}: {e}",
                fix="start it (`dask scheduler`) and its workers, or leave out --scheduler",
            ) from e
        with client:
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


@contextmanager
def dask_mapper(choice: EngineChoice) -> Iterator[tuple[Mapper, int]]:
    """A function that runs tasks on the Dask cluster of `choice` and returns their
    results in order, and the cluster's worker threads."""
    with dask_client(choice) as client:

        def run(fn: Callable[..., Any], tasks: Sequence[dict[str, Any]]) -> list[Any]:
            futures = [client.submit(fn, pure=False, **kw) for kw in tasks]
            return list(client.gather(futures))

        yield run, sum(client.nthreads().values()) or 1


class Evaluator:
    """Computes wide frames on one engine, as often as needed: the cluster (if any) is
    started once, and each night's sources are split once (`evaluator`)."""

    def __init__(
        self,
        choice: EngineChoice,
        work: Path,
        run: Mapper | None = None,
        threads: int = 1,
    ) -> None:
        self.choice, self.work, self._run, self._threads = choice, work, run, threads
        self._jobs: dict[Path, PartitionedJob] = {}

    def wide(
        self,
        staged: Path,
        catalogue: Catalogue,
        pset: PolicySet,
        policies: list[CheckedPolicy],
        as_of: dt.date,
        counted: pl.LazyFrame | None,
        name: str,
        log: Callable[[str], None] = lambda _: None,
    ) -> dict[str, pl.LazyFrame]:
        """Per entity kind with an active policy: its wide frame (`eligibility.wide_plans`).
        The dask engine's parts are files under the work folder's `name`, read in key
        order while the evaluator is open."""
        if self._run is None:
            return wide_plans(staged, policies, pset, as_of, counted)
        job = self._jobs.get(staged)
        if job is None:
            layout = Partitioned(self.work, self.choice.partitions or 2 * self._threads)
            job = self._jobs[staged] = PartitionedJob(
                self._run, layout, staged, catalogue, pset, log
            )
        parts = job.wide(policies, as_of, counted, name)
        return {kind: pl.scan_parquet(files) for kind, files in parts.items()}


@contextmanager
def evaluator(choice: EngineChoice, work: Path) -> Iterator[Evaluator]:
    """An evaluator on the engine `choice` names, for the block; its files under `work`
    (none left after)."""
    if choice.name == "polars":
        yield Evaluator(choice, work)
        return
    shutil.rmtree(work, ignore_errors=True)
    try:
        with dask_mapper(choice) as (run, threads):
            yield Evaluator(choice, work, run, threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
