"""Spark starts without a word on the terminal (its JVM's output goes to a log file of
its own), and when it cannot start (no Java), the error says why and what to install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.engines import EngineChoice, spark_log, spark_mapper
from jobs.errors import JobError


def test_spark_starts_and_stops_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    with spark_mapper(EngineChoice("spark")) as (run, cores):
        assert run(divmod, [{}][:0]) == []
        assert cores == os.cpu_count()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert not spark_log().exists()  # a run that went well leaves no log behind


@pytest.mark.parametrize("where", ["JAVA_HOME", "PATH"])
def test_spark_without_java_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    if where == "JAVA_HOME":
        monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # no bin/java there
    else:
        monkeypatch.delenv("JAVA_HOME", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JobError) as caught, spark_mapper(EngineChoice("spark")):
        pass
    error = caught.value
    said = f"no java at {tmp_path}/bin/java" if where == "JAVA_HOME" else "no java on the PATH"
    assert error.message == f"cannot start Spark (local[*]): {said}" + (
        f" (JAVA_HOME={tmp_path})" if where == "JAVA_HOME" else ""
    )
    assert "Java 17" in error.fix
    assert "JAVA_HOME" in error.fix
    # Spark starts once Java is found again.
    monkeypatch.undo()
    with spark_mapper(EngineChoice("spark")) as (_run, cores):
        assert cores >= 1
