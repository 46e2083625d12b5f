"""What `disburse explain` says of a key an event decided: the events, with their rows.

A transfer posted by an events run carries, in its decision, the ids of the events
that affected the entity (`jobs.events.serve`); this reads them back from the inbox
with their source and row, personal data masked unless asked (`pii` in the source
catalogue).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from jobs.catalogue import Catalogue
from ledgers import inbox
from ledgers.masking import mask_account, mask_id, mask_name
from ledgers.schema import Run

MASKS = {"id": mask_id, "account": mask_account, "name": mask_name}


@dataclass(frozen=True)
class ExplainedEvent:
    """One event: its id, source, operation and row (masked unless asked)."""

    event_id: int
    source: str
    op: str
    row: dict[str, Any]

    def to_text(self) -> str:
        values = ", ".join(f"{k}: {v}" for k, v in self.row.items() if v is not None)
        return f"event #{self.event_id} ({self.source}, {self.op}): {values}"


@dataclass(frozen=True)
class EventDecision:
    """A transfer an events run posted, and the events that decided it."""

    transfer_id: int
    run_id: int
    events: tuple[ExplainedEvent, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "run_id": self.run_id,
            "events": [e.__dict__ for e in self.events],
        }


def _masked(row: dict[str, Any], source: str, catalogue: Catalogue, unmask: bool) -> dict[str, Any]:
    if unmask or source not in catalogue.sources:
        return row
    cols = catalogue.sources[source].columns
    out = {}
    for k, v in row.items():
        pii = cols[k].pii if k in cols else None
        out[k] = MASKS[pii](None if v is None else str(v)) if pii is not None else v
    return out


def event_decisions(
    engine: Engine,
    transfers: Sequence[tuple[int, int, str | None]],
    catalogue: Catalogue,
    *,
    unmask: bool = False,
) -> list[EventDecision]:
    """For each (transfer_id, run_id, decision JSON) posted by an events run, the events
    its decision names, oldest first."""
    run_ids = sorted({r for _t, r, _d in transfers})
    with engine.connect() as conn:
        kinds = dict(
            conn.execute(select(Run.run_id, Run.kind).where(Run.run_id.in_(run_ids))).all()
        )
        wanted: list[tuple[int, int, list[int]]] = []
        for transfer_id, run_id, decision in transfers:
            if kinds.get(run_id) != "events" or not decision:
                continue
            ids = json.loads(decision).get("events") or []
            wanted.append((transfer_id, run_id, [int(i) for i in ids]))
        every = sorted({i for _t, _r, ids in wanted for i in ids})
        found = inbox.outcomes(conn, every) if every else None
    rows = {} if found is None else {r["event_id"]: r for r in found.iter_rows(named=True)}
    out = []
    for transfer_id, run_id, ids in wanted:
        events = tuple(
            ExplainedEvent(
                i,
                rows[i]["source"],
                rows[i]["op"],
                _masked(json.loads(rows[i]["row_json"]), rows[i]["source"], catalogue, unmask),
            )
            for i in ids
            if i in rows
        )
        out.append(EventDecision(transfer_id, run_id, events))
    return out
