"""Which engine computes the features and evaluates the policies of a run.

* `polars` (the default): the wide plans in this process, streamed.
* `dask`: the same plans per range of the entity key (`jobs.partitioned`), as tasks on a
  Dask distributed cluster: the scheduler at `address`, or a cluster of this machine's
  cores started for the run.
* `spark`: the same tasks on Apache Spark (PySpark): the master at `address`, or
  `local[*]` (Java 17 or later on the PATH or at $JAVA_HOME).  Spark schedules them as
  one stage each; each task runs the same native Polars as the other engines.

Every worker must import this package (the same version) and see the run's store (a
shared file system across machines): the shuffles between the tasks are files there.

Only the features and the evaluation fan out.  Ingest, allocation and posting stay in
the one process that holds the run lock; the parts come back as Parquet files, read in
key order.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
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

ENGINES = ("polars", "dask", "spark")


@dataclass(frozen=True)
class EngineChoice:
    """`disburse run --engine NAME [--scheduler ADDRESS] [--partitions N]`."""

    name: str = "polars"
    address: str | None = None  # a Dask scheduler or Spark master; none: this machine
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

    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    if choice.address is not None:
        try:
            client = Client(choice.address, timeout=10)  # type: ignore[no-untyped-call]
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
            # A worker that loses the scheduler while the cluster closes logs a traceback;
            # a task's failure reaches the client as its exception.
            silence_logs=logging.CRITICAL,
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


@contextmanager
def spark_mapper(choice: EngineChoice) -> Iterator[tuple[Mapper, int]]:
    """A function that runs tasks on Spark (the master of `choice`, else `local[*]`), one
    Spark task each, and returns their results in order; and the cluster's cores."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise JobError(
            "the spark engine needs PySpark", fix="pip install 'disburse[spark]' (and Java 17+)"
        ) from e
    # The Python workers are this interpreter, which imports this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if choice.address is None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # The JVM's own log: errors only, from its start (else it prints its warnings).
    quiet = Path(tempfile.gettempdir()) / "disburse-spark-log4j2.properties"
    quiet.write_text(
        "rootLogger.level = error\n"
        "rootLogger.appenderRef.stderr.ref = stderr\n"
        "appender.stderr.type = Console\n"
        "appender.stderr.name = stderr\n"
        "appender.stderr.target = SYSTEM_ERR\n"
        "appender.stderr.layout.type = PatternLayout\n"
        "appender.stderr.layout.pattern = spark: %p %c{1}: %m%n\n"
    )
    os.environ.setdefault(
        "PYSPARK_SUBMIT_ARGS",
        f"--driver-java-options -Dlog4j2.configurationFile={quiet} pyspark-shell",
    )
    try:
        spark = (
            SparkSession.builder.master(choice.address or "local[*]")
            .appName("disburse")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.python.worker.reuse", "true")
            .getOrCreate()
        )
    except Exception as e:  # Java missing, the master unreachable: py4j says which
        raise JobError(
            f"cannot start Spark ({choice.address or 'local[*]'}): {_first_line(e)}",
            fix="install Java 17 or later (Debian: openjdk-17-jre-headless), or check --scheduler",
        ) from e
    spark.sparkContext.setLogLevel("ERROR")
    context = spark.sparkContext
    try:

        def run(fn: Callable[..., Any], tasks: Sequence[dict[str, Any]]) -> list[Any]:
            if not tasks:
                return []
            numbered = context.parallelize(list(enumerate(tasks)), len(tasks))
            done = numbered.map(lambda item: (item[0], fn(**item[1]))).collect()
            return [result for _, result in sorted(done, key=lambda r: r[0])]

        yield run, context.defaultParallelism
    finally:
        spark.stop()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Evaluator:
    """Computes wide frames on one engine, as often as needed: the cluster (if any) is
    started once, and each night's sources are split once (`evaluator`)."""

    def __init__(
        self,
        choice: EngineChoice,
        catalogue: Catalogue,
        work: Path,
        run: Mapper | None = None,
        threads: int = 1,
    ) -> None:
        self.choice, self.catalogue, self.work = choice, catalogue, work
        self._run, self._threads = run, threads
        self._jobs: dict[Path, PartitionedJob] = {}

    def wide(
        self,
        staged: Path,
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
                self._run, layout, staged, self.catalogue, pset, log
            )
        parts = job.wide(policies, as_of, counted, name)
        return {kind: pl.scan_parquet(files) for kind, files in parts.items()}


@contextmanager
def evaluator(choice: EngineChoice, catalogue: Catalogue, work: Path) -> Iterator[Evaluator]:
    """An evaluator on the engine `choice` names, for the block, over sources described by
    `catalogue`; its files under `work` (none left after)."""
    if choice.name == "polars":
        yield Evaluator(choice, catalogue, work)
        return
    shutil.rmtree(work, ignore_errors=True)
    mapper = dask_mapper if choice.name == "dask" else spark_mapper
    try:
        with mapper(choice) as (run, threads):
            yield Evaluator(choice, catalogue, work, run, threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
