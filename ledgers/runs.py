"""Run rows: every ingest, post or nightly batch starts by recording itself here."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Connection, insert

from ledgers.schema import Run


def start_run(
    conn: Connection,
    *,
    kind: str,
    as_of: dt.date,
    data_dir: Path | str = "",
    store_dir: Path | str | None = None,
    state: str = "started",
    started_at: dt.datetime | None = None,
) -> int:
    """Insert a run row and return its id (the caller's transaction commits it)."""
    return int(
        conn.execute(
            insert(Run)
            .values(
                kind=kind,
                as_of=as_of,
                state=state,
                data_dir=str(data_dir),
                store_dir=None if store_dir is None else str(store_dir),
                started_at=started_at or dt.datetime.now(dt.UTC),
            )
            .returning(Run.run_id)
        ).scalar_one()
    )
