"""`disburse events serve` killed (SIGKILL) at each point of a batch, then served again:
every event has one outcome, and the ledger holds what an uninterrupted serve posts."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from jobs.catalogue import load_source_catalogue
from ledgers.schema import EventOutcome, Transfer
from tests.db.test_run import disburse, drop_db, fresh_db, runs
from tests.unit.test_event_decisions import AS_OF, _events, _raw

POINTS = ["events:staged", "events:decided", "events:posted", "events:recorded"]


def _event_file(city: Path, out: Path) -> Path:
    catalogue = load_source_catalogue()
    events = _events(_raw(city, catalogue), catalogue, seed=5)
    made = sorted(
        (row["event_id"], name, row)
        for name, frame in events.items()
        for row in frame.iter_rows(named=True)
    )
    with out.open("w", encoding="utf-8") as f:
        for _id, name, row in made:
            values = {k: v for k, v in row.items() if k not in ("event_id", "op")}
            f.write(json.dumps({"source": name, "op": row["op"], "row": values}) + "\n")
    return out


def _state(db: str) -> tuple[Counter[tuple], list[tuple]]:
    """The entitlement transfers as (kind, key, amount), counted, and every outcome."""
    engine = create_engine(db)
    t = Transfer.__table__
    try:
        with engine.connect() as conn:
            moves = Counter(
                tuple(r)
                for r in conn.execute(
                    select(t.c.kind, t.c.policy_id, t.c.benefit_period, t.c.entity, t.c.amount_fen)
                )
            )
            outcomes = [
                tuple(r)
                for r in conn.execute(
                    select(EventOutcome.event_id, EventOutcome.outcome, EventOutcome.rule).order_by(
                        EventOutcome.event_id
                    )
                )
            ]
    finally:
        engine.dispose()
    return moves, outcomes


SERVE = ("events", "serve", "--as-of", AS_OF.isoformat(), "--until-idle", "--batch", "30")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every point under CI=true or with --all-kill-points; locally the one after posting."""
    if "point" not in metafunc.fixturenames:
        return
    every = os.environ.get("CI") == "true" or metafunc.config.getoption("--all-kill-points")
    skip = pytest.mark.skip(reason="locally one kill point; CI=true or --all-kill-points: all")
    metafunc.parametrize(
        "point",
        [pytest.param(p, marks=() if every or p == "events:posted" else skip) for p in POINTS],
        ids=POINTS,
    )


def _served(city: Path, events: Path, db: str, store: Path, kill_at: str | None) -> tuple:
    """A night, the events added and served (killed at `kill_at` first, then again):
    the ledger's state; checks that no run is left open and a last serve does nothing."""
    disburse("run", "--data", str(city), "--as-of", AS_OF.isoformat(), "--quiet", db=db,
             store=store)  # fmt: skip
    disburse("events", "add", str(events), db=db)
    if kill_at is not None:
        killed = disburse(*SERVE, db=db, store=store, env={"DISBURSE_KILL_AT": kill_at},
                          check=False)  # fmt: skip
        assert killed.returncode == -9, killed.stderr
    disburse(*SERVE, db=db, store=store)
    state = _state(db)
    assert not [r for r in runs(db) if r[2] not in ("completed", "failed")]
    again = disburse(*SERVE, "--json", db=db, store=store)
    assert json.loads(again.stdout)["transfers"] == 0  # nothing left, nothing new
    drop_db(db)
    return state


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, tuple]:
    """The uninterrupted serve's state, by database kind: made once per module."""
    return {}


def test_killed_serve_then_served_again_equals_an_uninterrupted_one(
    clean_city: Path,
    db_url: str,
    tmp_path: Path,
    point: str,
    uninterrupted: dict[str, tuple],
) -> None:
    events = _event_file(clean_city, tmp_path / "events.jsonl")
    kind = db_url.split(":")[0]
    if kind not in uninterrupted:
        clean = _served(clean_city, events, fresh_db(db_url, "clean"), tmp_path / "clean", None)
        moves, outcomes = clean
        assert sum(moves.values()) > 0
        assert len(outcomes) == len(events.read_text(encoding="utf-8").splitlines())
        uninterrupted[kind] = clean
    db = fresh_db(db_url, f"killed-{point.replace(':', '-')}")
    assert _served(clean_city, events, db, tmp_path / "killed", point) == uninterrupted[kind]
