"""`--scheduler ADDRESS`: the dask and spark engines run their tasks on a cluster started
apart from the run, as an operator starts one (README, "One machine or a cluster"):
`dask scheduler` and `dask worker` processes; a Spark standalone master and worker.
One that cannot be reached, or has no worker, is a clear error within seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobs.engines
from jobs.engines import EngineChoice, dask_client, dask_mapper, spark_mapper
from jobs.errors import JobError

BIN = Path(sys.executable).parent


def spark_class() -> str:
    """Spark's launcher in the PySpark package (SPARK_HOME set for it, in `started`)."""
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} ended: {process.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


def started(*command: str, log: Path) -> subprocess.Popen[bytes]:
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent)}
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=out, start_new_session=True, cwd=log.parent, env=env
        )


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def double(part: int) -> int:  # a function the cluster cannot import
    return 2 * part


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "dask.log"
    scheduler = started(
        str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
        "--dashboard-address", ":0", log=log,
    )  # fmt: skip
    listening(port, scheduler)
    address = f"tcp://127.0.0.1:{port}"
    worker = started(
        str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
        "--no-dashboard", log=log,
    )  # fmt: skip
    try:
        yield address
    finally:
        stop(worker, scheduler)


@pytest.fixture
def spark_master(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    master = started(
        spark_class(), "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port()),
        log=tmp_path / "master.log",
    )  # fmt: skip
    try:
        listening(port, master)
        yield f"spark://127.0.0.1:{port}"
    finally:
        stop(master)


def test_dask_runs_the_tasks_on_a_scheduler_it_is_given(dask_cluster: str) -> None:
    with dask_client(EngineChoice("dask", address=dask_cluster)) as client:
        client.wait_for_workers(2, timeout=60)  # the worker processes joining
    with dask_mapper(EngineChoice("dask", address=dask_cluster)) as (run, threads):
        assert threads == 2
        # dict: a function every Python the cluster runs has.
        assert run(dict, [{"part": p} for p in range(6)]) == [{"part": p} for p in range(6)]
        # One it cannot import: this test module.
        with pytest.raises(JobError) as caught:
            run(double, [{"part": 1}])
        assert caught.value.message.startswith("the Dask cluster cannot read the double tasks")
        assert "same version" in caught.value.fix


def test_an_unreachable_dask_scheduler_is_a_clear_error() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(JobError) as caught, dask_mapper(EngineChoice("dask", address=address)):
        pass
    assert caught.value.message.startswith(f"cannot reach the Dask scheduler at {address}")
    assert "dask scheduler" in caught.value.fix


def test_spark_runs_the_tasks_on_a_master_it_is_given(spark_master: str, tmp_path: Path) -> None:
    worker = started(
        spark_class(), "org.apache.spark.deploy.worker.Worker", spark_master,
        "--host", "127.0.0.1", "--cores", "2", "--memory", "1g",
        "--webui-port", str(free_port()), log=tmp_path / "worker.log",
    )  # fmt: skip
    try:
        with spark_mapper(EngineChoice("spark", address=spark_master)) as (run, cores):
            assert cores == 2
            assert run(dict, [{"part": p} for p in range(5)]) == [{"part": p} for p in range(5)]
    finally:
        stop(worker)


def test_a_spark_master_without_workers_is_a_clear_error(
    spark_master: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.engines, "EXECUTORS_WAIT", 3.0)
    with (
        pytest.raises(JobError) as caught,
        spark_mapper(EngineChoice("spark", address=spark_master)),
    ):
        pass
    assert caught.value.message == (
        f"cannot reach the Spark master at {spark_master}, or no worker of it joined within 3 s"
    )
    # The JVM was ended with the error: Spark starts again in this process.
    with spark_mapper(EngineChoice("spark")) as (run, _cores):
        assert run(dict, [{"part": 1}]) == [{"part": 1}]
