"""The inbox's outcomes, written in one statement (COPY on PostgreSQL), read back as
they were recorded: text with commas, quotes and line breaks, an empty text apart
from none."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
from sqlalchemy import Engine

from ledgers import inbox, runs
from ledgers.runs import EVENTS


def test_outcomes_come_back_as_recorded(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = inbox.add_events(
            conn, [("persons", "upsert", json.dumps({"person_id": str(i)})) for i in range(4)]
        )
    run = runs.start_run(
        engine,
        kind=EVENTS,
        as_of=dt.date(2026, 3, 15),
        store_dir=None,
        host="h",
        pid=1,
        policies=[],
    )
    recorded = pl.DataFrame(
        {
            "event_id": ids,
            "outcome": ["decided", "quarantined", "quarantined", "quarantined"],
            "run_id": [run] * 4,
            "base_run_id": [None, 7, 7, 7],
            "column_name": [None, "birth_on", "", "name"],
            "rule": [None, "unparseable_date", "missing_required", 'bad, "odd" rule'],
            "reason": [None, "a date, as YYYY-MM-DD", "", 'two\nlines, "quoted"'],
        },
        schema=inbox.OUTCOME_SCHEMA,
    )
    with engine.begin() as conn:
        assert inbox.record_outcomes(conn, recorded) == 4
    with engine.connect() as conn:
        back = inbox.outcomes(conn, ids)
        assert inbox.pending(conn, 10).height == 0
    assert back.select(list(inbox.OUTCOME_SCHEMA)).equals(recorded)
