"""A task that fails on the dask or spark engine reaches the person as our own error, not
as the cluster's: its exception's class and message, which task it was, and its
worker's traceback only as the cause (`--debug`); an OS error as itself (a full shared
disk is a fault from outside: the run stays open); a worker lost (killed for its memory)
as a ClusterFault, which leaves the run open too.  No Java stack and no py4j text."""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Iterator

import dask
import distributed  # noqa: F401  (its settings in dask.config, before a test sets one of them)
import pytest

from jobs.engines import EngineChoice, WorkerTraceback, dask_mapper, spark_mapper
from jobs.errors import JobError
from jobs.faults import ClusterFault, FileFault, outside_fault
from jobs.partitioned import Mapper


def double(part: int) -> int:
    return 2 * part


def breaks_on_two(part: int) -> int:
    if part >= 2:
        raise ValueError(f"no row {part} in the bucket")
    return part


def disk_full(part: int) -> int:
    raise OSError(errno.ENOSPC, "No space left on device", f"/shared/work/p={part}/x.parquet")


def not_shared(part: int) -> int:
    open(f"/nowhere/shared/work/p={part}/x.parquet", "rb")  # noqa: SIM115
    return part


def refuses(part: int) -> int:
    raise JobError(f"range {part} names no entity", fix="split again")


def dies(part: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return part


@pytest.fixture(scope="module", params=["dask", "spark"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Mapper]:
    choice = EngineChoice(request.param)
    mapper = dask_mapper if choice.name == "dask" else spark_mapper
    if choice.name == "spark":  # its workers cannot import this test module: send it along
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Dask retries a task whose worker died on a fresh worker, three times by default.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        mapper(choice) as (run, _threads),
    ):
        yield run


def test_results_come_back_in_order(cluster: Mapper) -> None:
    assert cluster(double, [{"part": p} for p in range(5)]) == [0, 2, 4, 6, 8]


def test_a_tasks_error_names_the_task_and_its_error(cluster: Mapper) -> None:
    with pytest.raises(JobError) as caught:
        cluster(breaks_on_two, [{"part": p} for p in range(4)])
    error = caught.value
    assert error.message.startswith("the breaks_on_two(part=2) task on ")
    assert error.message.endswith("failed (and 1 more of 4): ValueError: no row 2 in the bucket")
    assert "--debug" in error.fix
    text = error.render().lower()
    assert "java" not in text
    assert "py4j" not in text
    assert "traceback" not in text
    cause = error.__cause__
    assert isinstance(cause, WorkerTraceback)
    assert "in breaks_on_two" in str(cause)
    assert "ValueError" in str(cause)


def test_our_own_error_keeps_its_fix(cluster: Mapper) -> None:
    with pytest.raises(JobError) as caught:
        cluster(refuses, [{"part": 7}])
    assert caught.value.message.endswith("JobError: range 7 names no entity")
    assert caught.value.fix == "split again"


def test_a_full_shared_disk_is_a_fault_from_outside(cluster: Mapper) -> None:
    with pytest.raises(OSError, match="No space left on device") as caught:
        cluster(disk_full, [{"part": 3}])
    fault = outside_fault(caught.value)
    assert isinstance(fault, FileFault)
    assert fault.kind == "disk-full"
    assert "/shared/work/p=3" in fault.what


def test_a_missing_file_says_the_store_must_be_shared(cluster: Mapper) -> None:
    with pytest.raises(JobError) as caught:
        cluster(not_shared, [{"part": 2}])
    error = caught.value
    assert "FileNotFoundError: [Errno 2] No such file or directory" in error.message
    assert "/nowhere/shared/work/p=2/x.parquet" in error.message
    assert outside_fault(error) is None  # not a fault from outside: the run ends failed
    assert "every worker must see --store at the same path" in error.fix


def test_a_lost_worker_is_a_cluster_fault(cluster: Mapper) -> None:
    with pytest.raises(ClusterFault) as caught:
        cluster(dies, [{"part": 0}])
    fault = caught.value
    assert outside_fault(fault) is fault
    assert "could not finish the dies tasks" in fault.what
    text = fault.render().lower()
    assert "py4j" not in text
    assert "\n\tat " not in text
    assert "then run the same command again" in fault.fix
    assert "give more --partitions (smaller ranges)" in fault.fix
    # The cluster goes on serving after it lost the worker.
    assert cluster(double, [{"part": 4}]) == [8]
