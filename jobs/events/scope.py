"""Which entities an event affects, and which rows their features read.

The data an event path decides on is the last staged night with the events since laid
over it (`jobs.events.overlay`).  An event touches the entities its row names (its
surrogate-key columns, `jobs.staged.staged_links`); the entities whose decisions may
change are those and, relation by relation backwards, the entities related to them
(`affected`: a person's new month of insurance changes the decision of the enterprise
that hired them, a parent's of the child).  To decide those, their features read their
own rows and, relation by relation forwards, their related entities' rows (`reach`);
`scoped` restricts every source to those rows, so the same feature plan as the batch's
runs over a few rows instead of the city.  Every step finds rows through the overlay's
indexes (`Overlay.naming`), reading only the rows of the entities it follows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from eligibility import CheckedCatalogue, CheckedPolicy, Scan
from eligibility.plan import needs
from jobs.catalogue import Catalogue
from jobs.events.overlay import Overlay, sorted_unique
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


def relations_read(
    cat: CheckedCatalogue, policies: list[CheckedPolicy], as_of: dt.date
) -> dict[str, set[str]]:
    """Per entity kind, the relations read from sources that the features of `policies`
    follow from an entity of that kind (`eligibility.plan.needs`: their aggregates and
    relation features, a member's as well as an owner's; a relation that goes `via`
    others, each of those from the kind it starts at).  A relation no feature follows
    changes no decision, and is not followed here either."""
    out: dict[str, set[str]] = defaultdict(set)
    for kind, need in needs(policies, cat, as_of).items():
        names = {a.node.relation for a in need.aggregates.values()}
        for name, _window in need.features:
            agg = cat.relation_features.get(f"{kind}.{name}")
            if agg is not None:
                names.add(agg.relation)
        for name in names:
            at = kind
            for step in cat.steps(name):
                out[at].add(step)
                at = cat.relation(step).to
    return out


@dataclass(frozen=True)
class Step:
    """A relation read from a source: from an entity of kind `from_` (its key in column
    `from_key` of `source`) to one of kind `to` (in `to_key`)."""

    from_: str
    to: str
    source: str
    from_key: str
    to_key: str


def followed(cat: CheckedCatalogue, follow: dict[str, set[str]]) -> list[Step]:
    """The relations read from sources that `follow` names, from the kind it names them."""
    out = []
    for name, rel in cat.spec.relations.items():
        if name not in follow.get(rel.from_, set()):
            continue
        if rel.source is not None and rel.from_key is not None and rel.to_key is not None:
            out.append(Step(rel.from_, rel.to, rel.source, rel.from_key, rel.to_key))
    return out


def affected_by(
    cat: CheckedCatalogue,
    overlay: Overlay,
    named: dict[str, pl.DataFrame],
    follow: dict[str, set[str]],
) -> dict[str, pl.DataFrame]:
    """Per entity kind, the entities whose features may read what each event changed
    (`sk`, `event_id`): those it names, and every entity related to one of those,
    relation by relation backwards (a person's employer, a child's guardian's child),
    along the relations features follow (`relations_read`)."""
    pairs = {k: v.select(list(PAIRS)).cast(PAIRS) for k, v in named.items()}  # type: ignore[arg-type]
    for _ in range(MAX_STEPS):
        grew = False
        for rel in followed(cat, follow):
            have = pairs.get(rel.to)
            if have is None or have.height == 0:
                continue
            found = (
                overlay.naming(rel.source, {rel.to_key: have.get_column("sk")})
                .select(pl.col(rel.to_key).cast(pl.Int64), pl.col(rel.from_key).cast(pl.Int64))
                .join(have, left_on=rel.to_key, right_on="sk")
                .select(pl.col(rel.from_key).alias("sk"), EVENT)
                .drop_nulls()
                .unique()
            )
            before = pairs.get(rel.from_, pl.DataFrame(schema=PAIRS))
            merged = pl.concat([before, found]).unique()
            if merged.height > before.height:
                pairs[rel.from_] = merged
                grew = True
        if not grew:
            break
    return {k: v.sort(EVENT, "sk") for k, v in pairs.items()}


def reach(
    cat: CheckedCatalogue,
    overlay: Overlay,
    targets: dict[str, set[int]],
    follow: dict[str, set[str]],
) -> dict[str, np.ndarray]:
    """The entities whose rows the targets' features read (sorted surrogate keys per
    kind): the targets and, relation by relation forwards along the relations features
    follow (`relations_read`), the entities related to them.  Each step follows only
    the entities the step before reached first."""
    keys = {
        k: sorted_unique(np.fromiter(v, dtype=np.int64, count=len(v))) for k, v in targets.items()
    }
    frontier = dict(keys)
    for _ in range(MAX_STEPS):
        reached: dict[str, list[np.ndarray]] = defaultdict(list)
        for rel in followed(cat, follow):
            have = frontier.get(rel.from_)
            if have is None or len(have) == 0:
                continue
            found = overlay.naming(rel.source, {rel.from_key: have})
            reached[rel.to].append(found.get_column(rel.to_key).drop_nulls().to_numpy())
        frontier = {}
        for kind, parts in reached.items():
            before = keys.get(kind, np.empty(0, dtype=np.int64))
            found_here = sorted_unique(np.concatenate(parts).astype(np.int64))
            new = found_here[~np.isin(found_here, before, assume_unique=True)]
            if len(new):
                frontier[kind] = new
                keys[kind] = np.sort(np.concatenate([before, new]))
        if not frontier:
            break
    return keys


def scoped(catalogue: Catalogue, overlay: Overlay, keys: dict[str, np.ndarray]) -> Scan:
    """A scan of the overlay's sources restricted to the rows that name an entity of
    `keys` (a source that names no entity, whole); each found when the plan first reads
    it, so that a source no feature reads is never gathered."""
    links = staged_links(catalogue)
    rows: dict[str, pl.DataFrame] = {}

    def scan(name: str) -> pl.LazyFrame:
        if name not in rows:
            named = links.get(name, {})
            none = np.empty(0, dtype=np.int64)
            rows[name] = (
                overlay.naming(name, {c: keys.get(kind, none) for c, kind in named.items()})
                if named
                else overlay.frame(name)
            )
        return rows[name].lazy()

    return scan
