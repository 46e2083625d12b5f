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
import errno
import logging
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from common.errors import DisburseError
from eligibility import CheckedPolicy, PolicySet
from jobs.catalogue import Catalogue
from jobs.errors import JobError
from jobs.evaluate import wide_plans
from jobs.faults import ClusterFault, checkpoint, file_fault, os_error
from jobs.partitioned import Mapper, Partitioned, PartitionedJob

ENGINES = ("polars", "dask", "spark")
# What to do when a worker was lost for its memory (the README says how much a range needs).
SMALLER = "give more --partitions (smaller ranges) or workers with more memory"


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
            dashboard_address=":0",  # any free port: two runs on one machine do not clash
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
    from distributed.scheduler import KilledWorker

    with dask_client(choice) as client:

        def run(fn: Callable[..., Any], tasks: Sequence[dict[str, Any]]) -> list[Any]:
            task, night = Guarded(fn), uuid.uuid4().hex[:8]
            futures = [
                client.submit(task, key=f"{fn.__name__}-{i}-{night}", pure=False, **kw)
                for i, kw in enumerate(tasks)
            ]
            try:
                done = list(client.gather(futures))
            except Exception as e:  # a task's own error comes back as TaskFailed
                client.cancel(futures)  # the stage's other tasks: not left running
                said = _first_line(e).split(". ", 1)[0].rstrip(".")
                if isinstance(e, KilledWorker):
                    tries = e.allowed_failures + 1
                    times = "once" if tries == 1 else f"on {tries} workers in turn"
                    said = f"the worker running task {e.task} died (tried {times})"
                if "different environments" in str(e) or _missing_module(e):
                    raise JobError(
                        f"the Dask cluster cannot read the {fn.__name__} tasks: {said}",
                        fix="install this package, the same version, in the Python of the "
                        "scheduler and of every worker",
                    ) from e
                raise ClusterFault(
                    f"the Dask cluster could not finish the {fn.__name__} tasks: {said}",
                    f"a worker lost mid-task most often ran out of memory: {SMALLER}; the "
                    "Dask workers' logs say why",
                ) from e
            return checked("dask", fn, done)

        yield run, sum(client.nthreads().values()) or 1


@contextmanager
def spark_mapper(choice: EngineChoice) -> Iterator[tuple[Mapper, int]]:
    """A function that runs tasks on Spark (the master of `choice`, else `local[*]`), one
    Spark task each, and returns their results in order; and the cluster's cores.

    The JVM's output (its log at warnings and above, and what the Python workers print)
    goes to `spark_log()`, not to this process's terminal; the errors quote it."""
    try:
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway
    except ImportError as e:
        raise JobError(
            "the spark engine needs PySpark", fix="pip install 'disburse[spark]' (and Java 17+)"
        ) from e
    # The Python workers are this interpreter, which imports this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if choice.address is None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log = spark_log()
    config = log.with_suffix(".log4j2.properties")
    config.write_text(
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.stderr.ref = stderr\n"
        "appender.stderr.type = Console\n"
        "appender.stderr.name = stderr\n"
        "appender.stderr.target = SYSTEM_ERR\n"
        "appender.stderr.layout.type = PatternLayout\n"
        "appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n\n"
        # A shell's logger, set: Spark then keeps this level (else it sets WARN, and says so).
        "logger.repl.name = org.apache.spark.repl.Main\n"
        "logger.repl.level = warn\n"
    )
    os.environ.setdefault(
        "PYSPARK_SUBMIT_ARGS",
        f"--driver-java-options -Dlog4j2.configurationFile={config} pyspark-shell",
    )
    master = choice.address or "local[*]"
    _find_java(master)
    conf = (
        SparkConf()
        .setMaster(master)
        .setAppName("disburse")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.python.worker.reuse", "true")
    )
    try:
        with log.open("ab") as out:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})  # type: ignore[no-untyped-call]
        try:
            context = SparkContext(conf=conf, gateway=gateway)
        except BaseException:
            _end_jvm(SparkContext, gateway)
            raise
    except Exception as e:  # Java missing, the master unreachable
        raise JobError(
            f"cannot start Spark ({master}): {_reason(e)}{_last_words(log)}",
            fix=f"{JAVA_FIX}, or check --scheduler",
        ) from e
    try:
        _await_executors(context, master)
    except BaseException:
        _end_spark(context, gateway)
        raise
    try:

        def run(fn: Callable[..., Any], tasks: Sequence[dict[str, Any]]) -> list[Any]:
            if not tasks:
                return []
            task = Guarded(fn)
            numbered = context.parallelize(list(enumerate(tasks)), len(tasks))
            try:
                done = numbered.map(lambda item: (item[0], task(**item[1]))).collect()
            except pickle.PicklingError:
                raise  # a bug of ours, not the cluster's
            except Exception as e:  # a task's own error comes back as TaskFailed
                raise ClusterFault(
                    f"Spark could not finish the {fn.__name__} tasks: {_spark_reason(e)}",
                    f"a worker lost mid-task most often ran out of memory: {SMALLER}; "
                    f"Spark's log ({log}) and its executors' logs say why",
                ) from e
            return checked("spark", fn, [result for _, result in sorted(done, key=lambda r: r[0])])

        yield run, context.defaultParallelism
    except BaseException:
        _end_spark(context, gateway)  # the log stays, for the error that names it
        raise
    _end_spark(context, gateway)
    log.unlink(missing_ok=True)
    config.unlink(missing_ok=True)


EXECUTORS_WAIT = 60.0  # seconds for a cluster's first executor to join


def _await_executors(context: Any, master: str) -> None:
    """Wait until an executor of a Spark cluster (not `local`) has joined the application;
    raise a JobError if none does in EXECUTORS_WAIT seconds (the master unreachable,
    or without workers).  Without this the first tasks would wait, then find the
    context stopped."""
    if master.startswith("local"):
        return
    deadline = time.monotonic() + EXECUTORS_WAIT
    while time.monotonic() < deadline and not context._jsc.sc().isStopped():
        if len(context.statusTracker().getExecutorInfos()) > 1:  # the driver is one
            return
        time.sleep(0.25)
    raise JobError(
        f"cannot reach the Spark master at {master}, or no worker of it joined "
        f"within {EXECUTORS_WAIT:.0f} s",
        fix="start the master and its workers (README: One machine or a cluster), or leave "
        "out --scheduler to run on this machine's cores",
    )


def _end_spark(context: Any, gateway: Any) -> None:
    """Stop the Spark context and its JVM.  PySpark keeps one JVM a process, started once
    and kept: the next run would inherit this one's environment and log file."""
    context.stop()
    _end_jvm(type(context), gateway)


def _end_jvm(spark_context: Any, gateway: Any) -> None:
    """End the JVM behind `gateway`, and forget it (`spark_context`: PySpark's SparkContext
    class, which keeps it for the process)."""
    gateway.shutdown()
    gateway.proc.stdin.close()  # the JVM ends when its input closes
    gateway.proc.wait(timeout=60)
    spark_context._gateway = None
    spark_context._jvm = None


JAVA_FIX = "install Java 17 or later (Debian: openjdk-17-jre-headless) or set JAVA_HOME"


def _find_java(master: str) -> None:
    """Raise a JobError if there is no Java where Spark's launcher looks: $JAVA_HOME/bin/java
    if JAVA_HOME is set, else `java` on the PATH (the driver's JVM runs here, whatever
    the master)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None:
        raise JobError(f"cannot start Spark ({master}): no java on the PATH", fix=JAVA_FIX)
    if not os.access(java, os.X_OK):
        raise JobError(
            f"cannot start Spark ({master}): no java at {java} (JAVA_HOME={home})", fix=JAVA_FIX
        )


def spark_log() -> Path:
    """Where this process's Spark JVM writes its output."""
    return Path(tempfile.gettempdir()) / f"disburse-spark-{os.getpid()}.log"


def _last_words(log: Path) -> str:
    """What the JVM (or its launcher) said before it ended, as a clause: the first line
    that names Java, else its last line; nothing if it said nothing."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    if not lines:
        return ""
    said = next((line for line in lines if "java" in line.lower()), lines[-1])
    return f"; it said: {said} (all of it in {log})"


def _missing_module(e: BaseException) -> bool:
    """Whether a module that could not be imported is behind `e`."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _reason(e: BaseException) -> str:
    """An error's first line without PySpark's `[ERROR_CLASS]` and final stop."""
    return re.sub(r"^\[[A-Z_]+\] ", "", _first_line(e)).rstrip(".")


def _spark_reason(e: BaseException) -> str:
    """The reason in a Java error from Spark, without the Java stack (py4j's message opens
    with the call that failed, then the Java exception's lines)."""
    for line in str(e).splitlines():
        line = line.strip().removeprefix(": ")
        if "Exception: " in line and not line.startswith("at "):
            # The innermost exception's first sentence (Spark's own advice follows it).
            reason = line.rsplit("Exception: ", 1)[1].split(". ", 1)[0].rstrip(".")
            return reason if len(reason) <= 300 else reason[:297] + "..."
    return _first_line(e)


# --- a task's failure, brought back to the run ----------------------------------------------

_DESCRIBED = ("source", "kind", "part", "bucket")


@dataclass(frozen=True)
class TaskFailed:
    """What a task raised on its worker, returned as data: the exception's own class may
    not unpickle where the run is, and Spark would wrap it in a Java error."""

    task: str  # the task's function and the arguments that say which one it was
    error: str  # the exception's class
    message: str
    fix: str  # a DisburseError's own fix
    errno: int | None  # an OS error's number and file: a fault from outside
    filename: str | None
    trace: str  # the worker's traceback

    @classmethod
    def of(cls, fn: Callable[..., Any], kw: dict[str, Any], e: Exception) -> TaskFailed:
        which = ", ".join(f"{k}={kw[k]!r}" for k in _DESCRIBED if k in kw)
        found = os_error(e)
        return cls(
            task=f"{fn.__name__}({which})",
            error=type(e).__name__,
            message=e.message if isinstance(e, DisburseError) else (str(e).strip() or "-"),
            fix=e.fix if isinstance(e, DisburseError) else "",
            errno=found[0] if found else None,
            filename=found[1] if found else None,
            trace="".join(traceback.format_exception(e)),
        )


class WorkerTraceback(Exception):
    """The traceback of a task's error on its worker (the cause `--debug` shows)."""


class Guarded:
    """A task that returns its error as a TaskFailed instead of raising it; it passes
    `checkpoint("engine:<task>")` first (a crash test's kill of a worker)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, **kw: Any) -> Any:
        checkpoint(f"engine:{self.fn.__name__}")
        try:
            return self.fn(**kw)
        except Exception as e:
            return TaskFailed.of(self.fn, kw, e)


def checked(engine: str, fn: Callable[..., Any], results: list[Any]) -> list[Any]:
    """`results` if no task failed; else the first failure raised as the run's error: an
    OS error from outside as itself (a full disk on the shared folder is a fault, and
    the run stays open), any other as a JobError naming the task, its worker's
    traceback as the cause (a missing file: the store not shared, most likely)."""
    failed = [r for r in results if isinstance(r, TaskFailed)]
    if not failed:
        return results
    first = failed[0]
    cause = WorkerTraceback(first.trace)
    fix = first.fix or "this is a fault of the engine: report it with the output of --debug"
    if first.errno is not None:
        error = OSError(first.errno, os.strerror(first.errno), first.filename)
        if file_fault(error) is not None:
            raise error from cause
        if first.errno == errno.ENOENT:  # the classic sign of a folder not shared
            fix = (
                "every worker must see --store at the same path (a shared file system): "
                "check that the workers see the folder the error names"
            )
    others = f" (and {len(failed) - 1} more of {len(results)})" if len(failed) > 1 else ""
    raise JobError(
        f"the {first.task} task on {engine} failed{others}: {first.error}: {first.message}",
        fix=fix,
    ) from cause


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
