"""Which entities an event affects, and which rows their features read.

The data an event path decides on is the last staged night with the events since laid
over it (`jobs.events.overlay`).  An event touches the entities its row names (its
surrogate-key columns, `jobs.staged.staged_links`); the entities whose decisions may
change are those and, relation by relation backwards, the entities related to them
(`affected`: a person's new month of insurance changes the decision of the enterprise
that hired them, a parent's of the child).  To decide those, their features read their
own rows and, relation by relation forwards, their related entities' rows (`reach`);
`scoped` restricts every source to those rows, so the same feature plan as the batch's
runs over a few rows instead of the city.
"""

from __future__ import annotations

from collections import defaultdict

import polars as pl

from eligibility import CheckedCatalogue, Scan
from jobs.catalogue import Catalogue
from jobs.events.stage import EVENT
from jobs.staged import staged_links

Keys = dict[str, pl.Series]  # entity kind -> surrogate keys (unique, Int32)
MAX_STEPS = 8  # relations are followed at most this deep (family trees end sooner)


PAIRS = {"sk": pl.Int64, EVENT: pl.Int64}  # an entity, and an event that affects it


def touched(
    catalogue: Catalogue, events: dict[str, pl.DataFrame], replaced: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Per entity kind, the entities each event names (`sk`, `event_id`): the surrogate
    keys on its row, and on the row it replaced or removed (`Overlay.lay`)."""
    links = staged_links(catalogue)
    parts: dict[str, list[pl.DataFrame]] = defaultdict(list)
    for name, ev in events.items():
        for column, kind in links[name].items():
            for frame in (ev, replaced.get(name)):
                if frame is not None and column in frame.columns:
                    parts[kind].append(
                        frame.select(pl.col(column).cast(pl.Int64).alias("sk"), EVENT).drop_nulls()
                    )
    return {k: pl.concat(v).unique().sort(EVENT, "sk") for k, v in parts.items()}


def affected_by(
    cat: CheckedCatalogue, sources: dict[str, pl.LazyFrame], named: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Per entity kind, the entities whose features may read what each event changed
    (`sk`, `event_id`): those it names, and every entity related to one of those,
    relation by relation backwards (a person's employer, a child's guardian's child)."""
    pairs = {k: v.select(list(PAIRS)).cast(PAIRS) for k, v in named.items()}  # type: ignore[arg-type]
    for _ in range(MAX_STEPS):
        grew = False
        for rel in cat.spec.relations.values():
            if rel.source is None or rel.from_key is None or rel.to_key is None:
                continue  # followed through the relations it goes `via`
            have = pairs.get(rel.to)
            if have is None or have.height == 0:
                continue
            found = (
                sources[rel.source]
                .select(pl.col(rel.to_key).cast(pl.Int64), pl.col(rel.from_key).cast(pl.Int64))
                .join(have.lazy(), left_on=rel.to_key, right_on="sk")
                .select(pl.col(rel.from_key).alias("sk"), EVENT)
                .drop_nulls()
                .unique()
                .collect()
            )
            before = pairs.get(rel.from_, pl.DataFrame(schema=PAIRS))
            merged = pl.concat([before, found]).unique()
            if merged.height > before.height:
                pairs[rel.from_] = merged
                grew = True
        if not grew:
            break
    return {k: v.sort(EVENT, "sk") for k, v in pairs.items()}


def _step(
    cat: CheckedCatalogue, sources: dict[str, pl.LazyFrame], keys: dict[str, set[int]], back: bool
) -> bool:
    """Follow every relation read from a source one step (forwards, or backwards when
    `back`), adding what it reaches to `keys`; whether anything was added."""
    grew = False
    for rel in cat.spec.relations.values():
        if rel.source is None or rel.from_key is None or rel.to_key is None:
            continue  # followed through the relations it goes `via`
        start, end = (rel.to, rel.from_) if back else (rel.from_, rel.to)
        on, get = (rel.to_key, rel.from_key) if back else (rel.from_key, rel.to_key)
        have = keys.get(start)
        if not have:
            continue
        found = (
            sources[rel.source]
            .filter(pl.col(on).is_in(sorted(have)))
            .select(pl.col(get).drop_nulls().unique())
            .collect()
            .to_series()
            .to_list()
        )
        new = set(found) - keys.setdefault(end, set())
        if new:
            keys[end] |= new
            grew = True
    return grew


def _closure(
    cat: CheckedCatalogue, sources: dict[str, pl.LazyFrame], start: dict[str, set[int]], back: bool
) -> dict[str, set[int]]:
    keys = {k: set(v) for k, v in start.items()}
    for _ in range(MAX_STEPS):
        if not _step(cat, sources, keys, back):
            break
    return keys


def reach(
    cat: CheckedCatalogue, sources: dict[str, pl.LazyFrame], targets: dict[str, set[int]]
) -> dict[str, set[int]]:
    """The entities whose rows the targets' features read: the targets and, relation by
    relation forwards, the entities related to them."""
    return _closure(cat, sources, targets, back=False)


def scoped(
    catalogue: Catalogue, sources: dict[str, pl.LazyFrame], keys: dict[str, set[int]]
) -> Scan:
    """A scan of `sources` restricted to the rows that name an entity of `keys` (a source
    that names no entity, whole)."""
    links = staged_links(catalogue)
    frames = {k: sorted(v) for k, v in keys.items()}

    def scan(name: str) -> pl.LazyFrame:
        lf = sources[name]
        named = links.get(name, {})
        if not named:
            return lf
        hit = [pl.col(c).is_in(frames.get(kind, [])) for c, kind in named.items()]
        return lf.filter(pl.any_horizontal(hit))

    return scan
