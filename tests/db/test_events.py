"""The event path end to end, on SQLite and PostgreSQL: a night, a day of events served,
then the next night over the same data.

Ledger A: night 1 over the city, the day's events served, night 2 over the city's
files with the accepted events applied.  Ledger B: the two nights alone.  Every
event gets an outcome; night 2 posts nothing for the keys the events posted; A and B
hold the same net amount for every key.  Serving again posts nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, insert, text

from eligibility import PolicySet
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.events import serve as serve_module
from jobs.events.overlay import stage_all
from jobs.events.serve import RECENT_SECONDS, WHOLE_INBOX_SECONDS, EventServer, parse_events
from jobs.events.stage import StagedEvents
from jobs.explain import explain
from jobs.faults import PAUSE_ENV
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers import inbox
from ledgers.db import open_engine
from ledgers.holdings import read_held
from ledgers.keys import key_file, posting_key
from ledgers.schema import InboxEvent
from tests.unit.test_event_decisions import AS_OF, _delivered, _events, _raw

POLICIES = Path(__file__).resolve().parents[2] / "policies"  # some say events: true


def _lines(events: dict[str, pl.DataFrame]) -> list[tuple[str, str, str]]:
    """The events as inbox rows, in the order they were made (a registration before its
    months)."""
    made = sorted(
        (row["event_id"], name, row)
        for name, frame in events.items()
        for row in frame.iter_rows(named=True)
    )
    return [
        (
            name,
            str(row["op"]),
            json.dumps({k: v for k, v in row.items() if k not in ("event_id", "op")}),
        )
        for _id, name, row in made
    ]


def _until_stopped(pid: int) -> None:
    """Wait until process `pid` has stopped itself (SIGSTOP at a pause point)."""
    deadline = time.monotonic() + 300
    while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T":
        assert time.monotonic() < deadline, "the night never reached its pause point"
        time.sleep(0.05)


def _server(
    engine: Engine, store: Path, catalogue: Catalogue, pset: PolicySet, batch: int = 500
) -> EventServer:
    return EventServer(
        engine,
        store=store,
        catalogue=catalogue,
        pset=pset,
        key=posting_key(engine, key_file(store)),
        as_of=AS_OF,
        batch=batch,
    )


def _staged(
    lines: list[tuple[str, str, str]], ids: list[int], store: Path, catalogue: Catalogue
) -> dict[str, StagedEvents]:
    """The inbox's events staged against the first night alone."""
    frames, _bad = parse_events(
        pl.DataFrame(
            {
                "event_id": ids,
                "source": [s for s, _o, _r in lines],
                "op": [o for _s, o, _r in lines],
                "row_json": [r for _s, _o, r in lines],
            }
        ),
        catalogue,
    )
    return stage_all(frames, _night_dir(store), catalogue)


def _nights_alone(tmp_path: Path, city: Path, delivered: Path) -> pl.DataFrame:
    """The net per key of night 1 over `city` and night 2 over `delivered`, no events."""
    alone = tmp_path / "alone"
    alone.mkdir()
    with open_engine(f"sqlite:///{alone / 'ledger.db'}", init=True) as engine:
        _night(engine, city, alone / "store", POLICIES)
        _night(engine, delivered, alone / "store", POLICIES)
        return _held(engine)


def _night(engine: Engine, data: Path, store: Path, policies: Path) -> int:
    cat = load_source_catalogue()
    return run_nightly_on(
        engine,
        RunRequest(data, AS_OF, store, features_path(None)),
        catalogue=cat,
        pset=load_policies(cat, [policies]),
    ).run_id


def _held(engine: Engine) -> pl.DataFrame:
    with engine.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text("SELECT DISTINCT policy_id FROM transfers WHERE policy_id IS NOT NULL")
            )
        ]
        held = read_held(conn, sorted(ids))
    return (
        held.group_by("policy_id", "benefit_period", "entity")
        .agg(pl.col("net_fen").sum())
        .filter(pl.col("net_fen") != 0)
        .sort("policy_id", "benefit_period", "entity")
    )


def _keys_posted(engine: Engine, run_id: int) -> set[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT policy_id, benefit_period, entity FROM transfers "
                "WHERE run_id = :r AND policy_id IS NOT NULL"
            ),
            {"r": run_id},
        ).all()
    return {(str(a), str(b), str(c)) for a, b, c in rows}


def test_a_day_of_events_then_the_night_agree_with_the_nights_alone(
    db_url: str, city: Path, tmp_path: Path
) -> None:
    catalogue = load_source_catalogue()
    policies = POLICIES
    pset = load_policies(catalogue, [policies])
    raw = _raw(city, catalogue)
    events = _events(raw, catalogue, seed=3)
    lines = _lines(events)

    store = tmp_path / "store"
    with open_engine(db_url, init=True) as engine:
        _night(engine, city, store, policies)
        with engine.begin() as conn:
            ids = inbox.add_events(conn, lines)
        assert ids == list(range(ids[0], ids[0] + len(lines)))
        server = _server(engine, store, catalogue, pset, batch=25)
        totals = server.serve(until_idle=True)
        with engine.connect() as conn:
            counts = inbox.counts(conn)
            outcomes = inbox.outcomes(conn, ids)
        assert counts["pending"] == 0
        assert totals.decided + totals.quarantined == len(lines)
        assert outcomes.height == len(lines)  # none lost, each once
        assert totals.transfers > 0
        assert totals.run_id is not None
        assert server.run_id is None  # the serve's run is complete: serving again starts another
        by_events = _keys_posted(engine, totals.run_id)

        # Explain names the events that decided a key, their rows masked.
        with engine.connect() as conn:
            policy_id, entity = conn.execute(
                text(
                    "SELECT policy_id, entity FROM transfers WHERE run_id = :r "
                    "AND policy_id IS NOT NULL ORDER BY transfer_id LIMIT 1"
                ),
                {"r": totals.run_id},
            ).one()
        told = explain(engine, policy_id, entity, sources=catalogue)
        assert told.by_events
        assert told.by_events[0].events
        words = told.to_text()
        assert "decided by events" in words
        assert f"event #{told.by_events[0].events[0].event_id} (" in words
        assert entity not in words  # masked
        shown = explain(engine, policy_id, entity, sources=catalogue, unmask=True).to_text()
        assert entity in shown

        # Served again: nothing is pending, nothing is posted.
        again = _server(engine, store, catalogue, pset).serve(until_idle=True)
        assert again.events == 0

        # The night after, over the same data: nothing more for the keys events posted.
        decided = outcomes.filter(pl.col("outcome") == "decided")["event_id"].to_list()
        staged = _staged(lines, ids, store, catalogue)
        for s in staged.values():
            extra = set(s.accepted["event_id"].to_list()) - set(decided)
            assert not extra, (
                outcomes.filter(pl.col("event_id").is_in(sorted(extra)))
                .select("event_id", "rule", "reason", "source", "row_json")
                .to_dicts()[:2]
            )
        delivered = tmp_path / "delivered"
        _delivered(raw, events, staged, catalogue, delivered)
        night2 = _night(engine, delivered, store, policies)
        assert not (_keys_posted(engine, night2) & by_events)
        with_events = _held(engine)
    assert with_events.equals(_nights_alone(tmp_path, city, delivered))


def _night_dir(store: Path) -> Path:
    """The staged folder of the first night (run 1) in `store`."""
    from jobs.ingest import staged_dir

    return staged_dir(store, 1)


def test_the_end_to_end_bench_serves_every_event_and_times_each(
    db_url: str, clean_city: Path, tmp_path: Path
) -> None:
    from disburse.bench.events import events_end_to_end

    catalogue = load_source_catalogue()
    pset = load_policies(catalogue, [POLICIES])
    store = tmp_path / "store"
    with open_engine(db_url, init=True) as engine:
        _night(engine, clean_city, store, POLICIES)
    got = events_end_to_end(
        db_url,
        store,
        clean_city,
        catalogue=catalogue,
        pset=pset,
        as_of=AS_OF,
        count=300,
        batch=100,
        offered_per_s=200,
        offered_seconds=0.5,
        poll_seconds=0.01,
    )
    assert got.decided + got.quarantined == 300
    assert got.batches == 3
    assert got.decided > 250  # a synthetic day is mostly valid
    assert got.keys > 0
    lat = got.latency
    assert lat is not None
    assert lat.events == 100
    assert 0 < lat.p50_ms <= lat.p99_ms <= lat.max_ms
    with open_engine(db_url) as engine, engine.connect() as conn:
        assert inbox.counts(conn)["pending"] == 0


def test_a_night_run_while_events_are_served_leaves_the_ledger_of_the_nights_alone(
    db_url: str, city: Path, tmp_path: Path
) -> None:
    """Night 2 (over the data with the events applied) runs in another process and is
    paused holding the run lock, evaluated but not posted: the serve waits for it; let
    go, the night posts and the serve decides the rest over the new night.  Every key
    ends at the net of the two nights alone."""
    catalogue = load_source_catalogue()
    pset = load_policies(catalogue, [POLICIES])
    raw = _raw(city, catalogue)
    events = _events(raw, catalogue, seed=5)
    lines = _lines(events)
    store = tmp_path / "store"
    with open_engine(db_url, init=True) as engine:
        _night(engine, city, store, POLICIES)
        with engine.begin() as conn:
            inbox.add_events(conn, lines)
        staged = _staged(lines, list(range(1, len(lines) + 1)), store, catalogue)
        delivered = tmp_path / "delivered"
        _delivered(raw, events, staged, catalogue, delivered)
        server = _server(engine, store, catalogue, pset, batch=2)
        server.once()  # the serve is open before the night starts
        env = {**os.environ, PAUSE_ENV: "run:evaluated"}  # holding the lock, before posting
        night = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "disburse.cli",
                "run",
                "--data",
                str(delivered),
                "--as-of",
                AS_OF.isoformat(),
                "--db",
                db_url,
                "--store",
                str(store),
                "--policies",
                str(POLICIES),
                "--quiet",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        _until_stopped(night.pid)
        with engine.connect() as conn:
            before = inbox.counts(conn)
        serving = threading.Thread(target=lambda: server.serve(until_idle=True))
        serving.start()
        time.sleep(2)
        with engine.connect() as conn:
            assert inbox.counts(conn) == before  # the serve waits for the night's lock
        assert serving.is_alive()
        os.kill(night.pid, signal.SIGCONT)
        _out, err = night.communicate(timeout=600)
        serving.join(timeout=600)
        assert night.returncode == 0, err
        with engine.connect() as conn:
            assert inbox.counts(conn)["pending"] == 0
            bases = {
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT DISTINCT base_run_id FROM event_outcomes WHERE outcome = 'decided'"
                    )
                )
            }
        with_events = _held(engine)
    assert with_events.equals(_nights_alone(tmp_path, city, delivered)), bases


def test_an_event_committed_late_under_a_lower_id_is_still_taken(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serve reads on from the last event it took, but an event whose transaction began
    first and committed after (a lower id, arriving later) is taken too: from the recent
    events whenever reading on finds nothing and every second, from the whole inbox
    every minute."""
    monkeypatch.setattr(serve_module, "RECENT_IDS", 10)
    catalogue = load_source_catalogue()
    server = _server(engine, tmp_path, catalogue, load_policies(catalogue, [POLICIES]))
    now = dt.datetime.now(dt.UTC)
    run = server._run([])

    def arrive(*ids: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert(InboxEvent),
                [
                    {
                        "event_id": i,
                        "source": "persons",
                        "op": "upsert",
                        "row_json": "{}",
                        "received_at": now,
                    }
                    for i in ids
                ],
            )

    def taken() -> list[int]:
        with engine.connect() as conn:
            ids = server._pending(conn).get_column("event_id").to_list()
        with engine.begin() as conn:
            inbox.record_outcomes(
                conn,
                pl.DataFrame(
                    {"event_id": ids, "outcome": ["quarantined"] * len(ids), "run_id": run},
                    schema_overrides={"event_id": pl.Int64, "run_id": pl.Int64},
                ).with_columns(
                    pl.lit(None, dtype=t).alias(c)
                    for c, t in inbox.OUTCOME_SCHEMA.items()
                    if c not in ("event_id", "outcome", "run_id")
                ),
            )
        server._taken = max([*ids, server._taken or 0])
        return ids

    arrive(30, 31)
    assert taken() == [30, 31]  # the first read: the whole inbox
    arrive(25, 32)  # 25 committed late: 32 is read on from 31 first
    assert taken() == [32]
    assert taken() == [25]  # reading on found nothing: the recent events
    arrive(27, 33)
    assert taken() == [33]
    server._recent_at -= RECENT_SECONDS  # a second went by
    assert taken() == [27]
    arrive(3, 34)  # 3 is far behind the last taken: not among the recent events
    assert taken() == [34]
    assert taken() == []
    server._whole_at -= WHOLE_INBOX_SECONDS  # a minute went by
    assert taken() == [3]
    assert taken() == []
