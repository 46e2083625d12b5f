"""The staged night with the events decided over it laid on, kept in memory between
batches.

`events serve` decides each batch over the data of the last completed night with every
event since laid over it: a keyed source's row is replaced by an event of the same key,
or removed by a `remove` event.  Rather than read the night and stage every event since
again for each batch, a serve keeps that data in memory (`Overlay`), stages only the
batch's events against it, and lays them on once they are accepted.  An overlay is
built again from the night and the inbox when the night changes, when another serve
decided events over the same night, or after a batch that failed.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from eligibility import Naming
from jobs.catalogue import Catalogue
from jobs.events.stage import EVENT, OP, StagedEvents, entity_keys, stage_events
from jobs.staged import scan_staged, staged_file


class Overlay:
    """The night's staged sources with events laid over them (see the module's docstring).

    `sources`: per catalogue source, its rows now.  `registered`: per entity source, the
    entities events named (`column`, `_sk`), for references.  `laid`: how many events
    are laid over the night."""

    def __init__(self, folder: Path, catalogue: Catalogue, base_run_id: int) -> None:
        self.folder = folder
        self.catalogue = catalogue
        self.base_run_id = base_run_id
        self.sources = {
            name: scan_staged(staged_file(folder, name)).collect() for name in catalogue.sources
        }
        self.registered: dict[str, pl.DataFrame] = {}
        self.next_sk: dict[str, int] = {}
        self.known: dict[str, pl.DataFrame] = {}  # the night's entities: column, _sk
        for name, keys in entity_keys(folder, catalogue).items():
            night = self.sources[name]
            self.known[name] = night.select(keys.column, pl.col(keys.sk).alias("_sk")).sort(
                keys.column
            )
            self.next_sk[name] = int(night.get_column(keys.sk).max() or 0) + 1  # type: ignore[arg-type]
        self.laid = 0

    def scans(self) -> dict[str, pl.LazyFrame]:
        """Every source's rows now, as lazy frames for the feature plans."""
        return {name: frame.lazy() for name, frame in self.sources.items()}

    def stage(self, frames: dict[str, pl.DataFrame]) -> dict[str, StagedEvents]:
        """Validate every source's events (`event_id`, `op`, the columns as text), entity
        sources first, so that a reference finds an entity an earlier event registered;
        a new entity's surrogate key follows the largest known.  Lays nothing."""
        registered = dict(self.registered)
        out: dict[str, StagedEvents] = {}
        for name in self.catalogue.ordered():
            rows = frames.get(name)
            if rows is None:
                continue
            source = self.catalogue.sources[name]
            keys = entity_keys(self.folder, self.catalogue, registered, self.known)
            out[name] = stage_events(name, rows, self.catalogue, keys, self.next_sk.get(name))
            if source.entity is not None and out[name].accepted.height:
                registered[name] = _registered(
                    registered.get(name), out[name].accepted, source.entity_column, keys[name].sk
                )
        return out

    def lay(self, events: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
        """Lay accepted events (staged form, per source) over the sources; per source, the
        rows they replaced or removed, each with the `event_id` of every event of its key."""
        replaced: dict[str, pl.DataFrame] = {}
        for name, ev in events.items():
            if ev.height == 0:
                continue
            source = self.catalogue.sources[name]
            key = list(source.key)
            now = self.sources[name]
            replaced[name] = now.join(ev.select(*key, EVENT), on=key, how="inner", nulls_equal=True)
            last = ev.sort(EVENT).unique(key, keep="last", maintain_order=True)
            kept = now.join(last.select(key), on=key, how="anti", nulls_equal=True)
            upserts = last.filter(pl.col(OP) == "upsert").select(
                (pl.col(c) if c in last.columns else pl.lit(None)).cast(t).alias(c)
                for c, t in now.schema.items()
            )
            self.sources[name] = pl.concat([kept, upserts])
            if source.entity is not None:
                sk = Naming.sk(source.entity)
                self.registered[name] = _registered(
                    self.registered.get(name), ev, source.entity_column, sk
                )
                top = ev.get_column(sk).max()
                if top is not None:
                    self.next_sk[name] = max(self.next_sk[name], int(top) + 1)  # type: ignore[arg-type]
        self.laid += sum(ev.height for ev in events.values())
        return replaced


def _registered(
    before: pl.DataFrame | None, accepted: pl.DataFrame, column: str, sk: str
) -> pl.DataFrame:
    now = accepted.select(column, pl.col(sk).alias("_sk"))
    return now if before is None else pl.concat([before, now])


def stage_all(
    frames: dict[str, pl.DataFrame], night: Path, catalogue: Catalogue
) -> dict[str, StagedEvents]:
    """Validate events against the staged night alone (`Overlay.stage`)."""
    return Overlay(night, catalogue, 0).stage(frames)
