"""The staged night with the events decided over it laid on, kept in memory between
batches.

`events serve` decides each batch over the data of the last completed night with every
event since laid over it: a keyed source's row is replaced by an event of the same key,
or removed by a `remove` event.  Rather than read the night and stage every event since
again for each batch, a serve keeps that data in memory (`Overlay`), stages only the
batch's events against it, and lays them on once they are accepted.  An overlay is
built again from the night and the inbox when the night changes, when another serve
decided events over the same night, or after a batch that failed.

A batch's work is in proportion to the rows its events touch, not to the city: the
night's rows are never copied or scanned again (`SourceRows`).  Each source keeps the
night as read, which of its rows events replaced or removed, and the rows events laid;
the rows that name given entities are found through an index of each surrogate-key
column (sorted keys and the rows they are on), and a row an event replaces through
the entity its key names.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from eligibility import Naming
from jobs.catalogue import Catalogue
from jobs.events.stage import EVENT, OP, StagedEvents, entity_keys, stage_events
from jobs.staged import scan_staged, staged_file, staged_links


class _Index:
    """Where each value of an integer column is: its values sorted (nulls left out) and,
    beside each, the row it is on."""

    def __init__(self, column: pl.Series) -> None:
        order = column.arg_sort(nulls_last=True)
        present = column.len() - column.null_count()
        self.rows = order.head(present).to_numpy().astype(np.int64)
        self.values = column.gather(order.head(present)).to_numpy()

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The rows on which the column holds one of `keys` (sorted, unique)."""
        if keys.dtype != self.values.dtype:  # else numpy converts all the values, each call
            bounds = np.iinfo(self.values.dtype)
            keys = keys[(keys >= bounds.min) & (keys <= bounds.max)].astype(self.values.dtype)
        lo = np.searchsorted(self.values, keys, side="left")
        hi = np.searchsorted(self.values, keys, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        # Each key's run lo..hi-1, one after another.
        firsts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return self.rows[firsts + np.arange(total)]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """`values` sorted, each once (numpy's `unique` hashes, several times slower here)."""
    if len(values) < 2:
        return values
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _keys_array(keys: Iterable[int] | pl.Series | np.ndarray) -> np.ndarray:
    """Keys as a sorted array of unique integers (nulls left out)."""
    if isinstance(keys, np.ndarray):
        return sorted_unique(keys.astype(np.int64, copy=False))
    series = keys if isinstance(keys, pl.Series) else pl.Series(list(keys), dtype=pl.Int64)
    return sorted_unique(series.drop_nulls().cast(pl.Int64).to_numpy())


class SourceRows:
    """One source's rows now (see the module's docstring): `night`, less the rows events
    replaced or removed (`alive`), plus `laid`, the rows events laid (one per key)."""

    def __init__(self, night: pl.DataFrame, links: Iterable[str], key: list[str]) -> None:
        self.night = night
        self.key = key
        self.alive = np.ones(night.height, dtype=bool)
        self.laid = night.head(0)
        self.index = {c: _Index(night.get_column(c)) for c in links}
        self._whole: pl.DataFrame | None = night
        self._nulls: np.ndarray | None = None  # `_unresolved`'s rows

    def frame(self) -> pl.DataFrame:
        """Every row now."""
        if self._whole is None:
            kept = self.night if self.alive.all() else self.night.filter(pl.Series(self.alive))
            self._whole = pl.concat([kept, self.laid])
        return self._whole

    def naming(self, keys: dict[str, Iterable[int] | pl.Series | np.ndarray]) -> pl.DataFrame:
        """The rows on which some column of `keys` holds one of its keys (the night's in
        their order, then those events laid)."""
        wanted = {c: _keys_array(k) for c, k in keys.items()}
        if any(c not in self.index for c in wanted):  # no index: read them all
            hit = [pl.col(c).is_in(pl.Series(k)) for c, k in wanted.items()]
            return self.frame().filter(pl.any_horizontal(hit)) if hit else self.night.head(0)
        return pl.concat([self.night[self._night_rows(wanted)], self._laid_naming(wanted)])

    def _night_rows(self, wanted: dict[str, np.ndarray]) -> np.ndarray:
        found = [self.index[c].rows_of(k) for c, k in wanted.items() if len(k)]
        if not found:
            return np.empty(0, dtype=np.int64)
        # One column's rows are distinct (a row holds one value); several may share rows.
        rows = np.sort(found[0]) if len(found) == 1 else sorted_unique(np.concatenate(found))
        alive: np.ndarray = rows[self.alive[rows]]
        return alive

    def _laid_naming(self, wanted: dict[str, np.ndarray]) -> pl.DataFrame:
        if self.laid.height == 0 or not wanted:
            return self.laid
        return self.laid.filter(
            pl.any_horizontal([pl.col(c).is_in(pl.Series(k)) for c, k in wanted.items()])
        )

    def lay(self, ev: pl.DataFrame, through: list[str]) -> pl.DataFrame:
        """Lay events (staged form, with `event_id` and `op`) on: the rows of their keys
        are replaced (or removed); the rows replaced, each with the `event_id` of every
        event of its key.  `through`: the surrogate-key columns the key's identifier
        resolves to, by which the night's rows of a key are found (none, or one the
        events lack: all read)."""
        key = self.key
        events = ev.select(*key, EVENT)
        if through and all(c in ev.columns for c in through):
            wanted = {c: _keys_array(ev.get_column(c)) for c in through}
            candidates = sorted_unique(
                np.concatenate([self._night_rows(wanted), self._unresolved(through)])
            )
            candidates = candidates[self.alive[candidates]]
        else:
            candidates = np.flatnonzero(self.alive)
        night = (
            self.night[candidates]
            .with_columns(pl.Series("_row", candidates))
            .join(events, on=key, how="inner", nulls_equal=True)
        )
        laid = self.laid.join(events, on=key, how="inner", nulls_equal=True)
        self.alive[night.get_column("_row").unique().to_numpy()] = False
        replaced = pl.concat([night.drop("_row"), laid])
        last = ev.sort(EVENT).unique(key, keep="last", maintain_order=True)
        upserts = last.filter(pl.col(OP) == "upsert").select(
            (pl.col(c) if c in last.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in self.night.schema.items()
        )
        kept = self.laid.join(last.select(key), on=key, how="anti", nulls_equal=True)
        self.laid = pl.concat([kept, upserts])
        self._whole = None
        return replaced

    def _unresolved(self, through: list[str]) -> np.ndarray:
        """The night's rows on which every column of `through` is null (an identifier the
        night did not know): a key's row among them is found only by its key."""
        if self._nulls is None:
            nulls = self.night.select(pl.all_horizontal(pl.col(c).is_null() for c in through))
            self._nulls = np.flatnonzero(nulls.to_series().to_numpy())
        return self._nulls


def key_links(catalogue: Catalogue, name: str) -> list[str]:
    """The surrogate-key columns that the first key column with any resolves to (an
    entity's own identifier, or a reference): a row of a key names those entities."""
    source = catalogue.sources[name]
    for column in source.key:
        links = [catalogue.sk_column(ref) for ref in source.columns[column].references]
        if source.entity is not None and column == source.entity_column:
            links.append(Naming.sk(source.entity))
        if links:
            return links
    return []


class Overlay:
    """The night's staged sources with events laid over them (see the module's docstring).

    `rows`: per catalogue source, its rows now.  `registered`: per entity source, the
    entities events named (`column`, `_sk`), for references.  `laid`: how many events
    are laid over the night."""

    def __init__(self, folder: Path, catalogue: Catalogue, base_run_id: int) -> None:
        self.folder = folder
        self.catalogue = catalogue
        self.base_run_id = base_run_id
        links = staged_links(catalogue)
        self.rows = {
            name: SourceRows(
                scan_staged(staged_file(folder, name)).collect(),
                links.get(name, {}),
                list(source.key),
            )
            for name, source in catalogue.sources.items()
        }
        self.registered: dict[str, pl.DataFrame] = {}
        self.next_sk: dict[str, int] = {}
        self.known: dict[str, pl.DataFrame] = {}  # the night's entities: column, _sk
        for name, keys in entity_keys(folder, catalogue).items():
            night = self.rows[name].night
            self.known[name] = night.select(keys.column, pl.col(keys.sk).alias("_sk")).sort(
                keys.column
            )
            self.next_sk[name] = int(night.get_column(keys.sk).max() or 0) + 1  # type: ignore[arg-type]
        self.laid = 0

    def frame(self, name: str) -> pl.DataFrame:
        """Every row of source `name` now."""
        return self.rows[name].frame()

    def naming(
        self, name: str, keys: dict[str, Iterable[int] | pl.Series | np.ndarray]
    ) -> pl.DataFrame:
        """The rows of source `name` on which some column of `keys` holds one of its keys."""
        return self.rows[name].naming(keys)

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
            replaced[name] = self.rows[name].lay(ev, key_links(self.catalogue, name))
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
