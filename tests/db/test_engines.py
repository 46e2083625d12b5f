"""The dask and spark engines (`disburse run --engine dask|spark`) give what the polars
engine gives: the same wide archive (every feature, condition and amount, in the same
order), the same claims, and the same ledger row by row, hashes included; on SQLite and
PostgreSQL, on a cluster of this machine's cores, with the key split into as many ranges
as the engine picks and into more than there are workers; and when a worker is killed
while it evaluates (as the OOM killer would), the run stops open, says so without the
cluster's stack, and the same command again finishes it with that same ledger."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dask
import distributed  # noqa: F401  (its settings in dask.config, before a test sets one of them)
import polars as pl
import pytest
from sqlalchemy import Engine, select

from jobs.catalogue import load_source_catalogue
from jobs.engines import EngineChoice
from jobs.policies import features_path, load_policies
from jobs.run import RunFault, RunRequest, run_nightly_on
from ledgers.db import open_engine
from ledgers.keys import key_file
from ledgers.runs import RunState, get_run
from ledgers.schema import EntitlementKey, Transfer

AS_OF = dt.date(2026, 6, 30)


def night(engine: Engine, data: Path, store: Path, choice: EngineChoice) -> int:
    cat = load_source_catalogue()
    request = RunRequest(data, AS_OF, store, features_path(None), engine=choice)
    return run_nightly_on(engine, request, catalogue=cat, pset=load_policies(cat)).run_id


def table(engine: Engine, t: type) -> pl.DataFrame:
    cols = t.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).order_by(*cols)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=[c.name for c in cols], orient="row")


def killed_night(engine: Engine, data: Path, store: Path, choice: EngineChoice) -> int:
    """A night whose first evaluation task kills its worker: the run stops, open."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISBURSE_KILL_AT", "engine:evaluate_bucket")
        # Dask would try the task on a fresh worker three times, each killed in turn.
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            pytest.raises(RunFault) as caught,
        ):
            night(engine, data, store, choice)
    error = caught.value
    assert "could not finish the evaluate_bucket tasks" in error.message
    assert "stopped while writing the decision files" in error.message
    assert "nothing was posted" in error.message
    assert "py4j" not in error.render().lower()
    assert "\tat " not in error.render()
    run_id = error.message.split()[1]
    assert get_run(engine, int(run_id)).state is RunState.INGESTED
    return int(run_id)


@pytest.mark.parametrize(
    ("name", "partitions", "kill"),
    [("dask", None, False), ("dask", 5, True), ("spark", 3, True)],
)
def test_a_cluster_engine_writes_the_ledger_the_polars_engine_writes(
    city: Path,
    db_url: str,
    other_db_url: str,
    tmp_path: Path,
    name: str,
    partitions: int | None,
    kill: bool,
) -> None:
    store_polars, store_dask = tmp_path / "polars", tmp_path / "dask"
    with open_engine(db_url, init=True) as engine:
        first = night(engine, city, store_polars, EngineChoice())
        polars_ledger = {t.__name__: table(engine, t) for t in (Transfer, EntitlementKey)}
        polars_run = get_run(engine, first)
    # A second ledger under the same key: the personal digests, and so the hashes, agree.
    store_dask.mkdir()
    shutil.copyfile(key_file(store_polars), key_file(store_dask))
    with open_engine(other_db_url, init=True) as engine:
        choice = EngineChoice(name, partitions=partitions)
        stopped = killed_night(engine, city, store_dask, choice) if kill else None
        second = night(engine, city, store_dask, choice)
        assert stopped in (None, second)
        dask_ledger = {t.__name__: table(engine, t) for t in (Transfer, EntitlementKey)}
        dask_run = get_run(engine, second)
    assert polars_ledger["Transfer"].height > 600
    for name, frame in polars_ledger.items():
        assert dask_ledger[name].equals(frame), name
    assert polars_run.archive is not None
    assert dask_run.archive is not None
    for kind, wide in polars_run.archive.features.items():
        a = pl.read_parquet(wide.path)
        b = pl.read_parquet(dask_run.archive.features[kind].path)
        assert b.equals(a), kind
    assert pl.read_parquet(dask_run.claims.path).equals(pl.read_parquet(polars_run.claims.path))
    # The partitioned files are gone once the archive is written.
    assert not list((store_dask / "runs").rglob("partitioned*"))
