"""Evaluation split by ranges of the entity key: the tasks a distributed engine schedules.

An entity kind's wide frame (`eligibility.wide_plans`) is computed bucket by bucket: a
bucket is a range of the kind's surrogate keys, and its frame is the batch's own feature
plan run over the rows its entities' features read, exactly as the event path decides a
few entities (`jobs.events.scope`): the entities' own rows and, relation by relation
forwards along the relations the kind's policies follow (`relations_read`), their
related entities' rows.  No task reads a whole source, and none holds the city:

1. **split** (one task per piece of a source's stored rows): each row, numbered, goes to
   the partition of every entity it names, per surrogate-key column (`part_of`: a range
   of keys of that column's kind), one file per (column, partition, piece).  Only the
   columns the plans read are kept (`columns_read`), and a source is split once a night.
2. **reach** (one task per relation followed and partition, step by step): the pairs
   (entity, bucket) a bucket reaches, joined partition by partition with the relation's
   rows split by their `from` key, sent to the partitions of the entities they reach;
   then per partition the pairs not reached before, the next step's frontier.
3. **gather** (one task per source, column and partition): the rows naming an entity a
   bucket reaches from another range, joined partition by partition, sent to that
   bucket.  A bucket's own rows stay where they were split.
4. **evaluate** (one task per bucket): the wide plan over the bucket's own and gathered
   rows (a row once; a source that names no entity, whole), its own entities kept,
   streamed to the bucket's part file.

A pair (entity, bucket) and a row move only between partitions of the same key; the
shuffles are files under one work folder, which every worker must see.  The parts,
read in bucket order, hold the entities in key order, as the whole plan's wide frame
does (it is sorted by key).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from eligibility import CheckedPolicy, Naming, PolicySet, wide_plans
from jobs.catalogue import Catalogue
from jobs.events.scope import MAX_STEPS, Step, followed, relations_read
from jobs.progress import peak_rss_mb
from jobs.staged import scan_staged, staged_file, staged_links, stored_rows

ROW = "__row"  # a source row's number as stored: the same row reached twice is one row
BUCKET = "__bucket"
PAIR = {"sk": pl.Int64, BUCKET: pl.Int32}
ROWS_PER_PIECE = 4_000_000  # stored rows a split task reads

Ranges = dict[str, tuple[int, int]]  # entity kind -> lowest and highest surrogate key
Mapper = Callable[[Callable[..., Any], Sequence[dict[str, Any]]], list[Any]]


def part_of(column: str, kind: str, ranges: Ranges, parts: int) -> pl.Expr:
    """The partition of each key of `kind` in `column`: `parts` equal ranges of its keys,
    in key order (a key outside the range, in the nearest)."""
    lo, hi = ranges.get(kind, (0, 0))
    width = hi - lo + 1
    at = (pl.col(column).cast(pl.Int64) - lo) * parts // width
    return at.clip(0, parts - 1).cast(pl.Int32)


def key_ranges(staged: Path, pset: PolicySet, kinds: set[str]) -> Ranges:
    """Per entity kind: its lowest and highest surrogate key in its entity source."""
    out: Ranges = {}
    for kind in sorted(kinds):
        sk = Naming.sk(kind)
        lo, hi = (
            scan_staged(staged_file(staged, pset.catalogue.entity_source(kind)))
            .select(pl.col(sk).min().alias("lo"), pl.col(sk).max().alias("hi"))
            .collect()
            .row(0)
        )
        out[kind] = (int(lo or 0), int(hi or 0))
    return out


def _mib(folder: Path) -> str:
    """The size of the files under `folder`, in MiB (for the progress log)."""
    size = sum(f.stat().st_size for f in folder.rglob("*.parquet")) if folder.is_dir() else 0
    return f"{size / 2**20:,.0f}"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _read(folder: Path, schema: dict[str, Any] | None = None) -> pl.LazyFrame:
    """Every part file of `folder`, or none (an empty frame of `schema`)."""
    files = _files(folder)
    if files:
        return pl.scan_parquet(files)
    return pl.LazyFrame(schema=schema or PAIR)


def _write(frame: pl.DataFrame | pl.LazyFrame, folder: Path, name: str) -> Path:
    """`frame` as `folder/<name>.parquet`, written whole under a name of its own then
    renamed (a task run twice, even at once, leaves one whole file); a lazy frame
    streamed."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp, out = folder / f".{name}.{uuid.uuid4().hex}.tmp", folder / f"{name}.parquet"
    if isinstance(frame, pl.LazyFrame):
        frame.sink_parquet(tmp, engine="streaming")
    else:
        frame.write_parquet(tmp)
    tmp.replace(out)
    return out


def _write_parts(frame: pl.DataFrame, by: str, folder: Path, name: str) -> None:
    """`frame` split by the partition column `by`, each part `folder/p=<part>/<name>.parquet`."""
    for (part,), rows in frame.partition_by(by, as_dict=True, include_key=False).items():
        _write(rows, folder / f"p={part}", name)


# --- the tasks (each a plain function of files, run wherever the engine runs it) -----------


def split(
    staged: str,
    source: str,
    keep: list[str],
    columns: dict[str, str],
    ranges: Ranges,
    parts: int,
    rows: tuple[int, int],
    out: str,
) -> int:
    """Task: stored rows `rows` of `source`, numbered, sent to the partition of every entity
    they name, per surrogate-key column (`columns`: column -> kind).  Returns the rows read."""
    frame = scan_staged(staged_file(Path(staged), source), rows, ROW).select(ROW, *keep).collect()
    for column, kind in columns.items():
        named = frame.filter(pl.col(column).is_not_null()).with_columns(
            part_of(column, kind, ranges, parts).alias("__part")
        )
        _write_parts(named, "__part", Path(out) / source / column, f"{rows[0]:012d}")
    return frame.height


def targets(
    split_dir: str, source: str, kind: str, ranges: Ranges, parts: int, part: int, out: str
) -> int:
    """Task: the pairs (entity, its own bucket) of one partition of an entity kind, from its
    entity source's split rows: the bucket of an entity is its partition."""
    sk = Naming.sk(kind)
    pairs = (
        _read(Path(split_dir) / source / sk / f"p={part}", {sk: pl.Int64})
        .select(pl.col(sk).cast(pl.Int64).alias("sk"))
        .unique()
        .with_columns(part_of("sk", kind, ranges, parts).alias(BUCKET))
        .collect()
    )
    _write(pairs, Path(out) / f"p={part}", "pairs")
    return pairs.height


def follow(
    split_dir: str, step: Step, frontier: str, ranges: Ranges, parts: int, part: int, out: str
) -> int:
    """Task: the pairs (related entity, bucket) one relation reaches from one partition of a
    frontier, sent to the related entities' partitions."""
    have = _read(Path(frontier) / f"p={part}").collect()
    if have.height == 0:
        return 0
    links = _read(
        Path(split_dir) / step.source / step.from_key / f"p={part}",
        {step.from_key: pl.Int64, step.to_key: pl.Int64},
    ).select(pl.col(step.from_key).cast(pl.Int64), pl.col(step.to_key).cast(pl.Int64))
    found = (
        links.join(have.lazy(), left_on=step.from_key, right_on="sk")
        .select(pl.col(step.to_key).alias("sk"), BUCKET)
        .drop_nulls()
        .unique()
        .with_columns(part_of("sk", step.to, ranges, parts).alias("__part"))
        .collect()
    )
    _write_parts(found, "__part", Path(out), f"{step.source}-{step.from_key}-{part}")
    return found.height


def merge(reached: str, known: str, frontier: str, step: int, part: int) -> int:
    """Task: of the pairs one step reached in a partition, those not reached before: the
    next frontier's part, and added to what is known."""
    new = _read(Path(reached) / f"p={part}").unique()
    before = _read(Path(known) / f"p={part}")
    fresh = new.join(before, on=["sk", BUCKET], how="anti").collect()
    if fresh.height:
        _write(fresh, Path(frontier) / f"p={part}", "pairs")
        _write(fresh, Path(known) / f"p={part}", f"pairs-{step}")
    return fresh.height


def gather(
    split_dir: str, source: str, column: str, known: str, own: bool, part: int, out: str
) -> int:
    """Task: the rows of one partition of a source, by one of its key columns, that name an
    entity some bucket reaches, sent to each such bucket.  `own`: the column holds the
    key of the buckets' own kind, whose rows in its own partition the bucket reads where
    they were split (`evaluate_bucket`): those are not sent again."""
    pairs = _read(Path(known) / f"p={part}").collect()
    if own:
        pairs = pairs.filter(pl.col(BUCKET) != part)
    rows = _files(Path(split_dir) / source / column / f"p={part}")
    if pairs.height == 0 or not rows:
        return 0
    lf = pl.scan_parquet(rows)
    key = pl.col("sk").cast(lf.collect_schema()[column])
    found = lf.join(pairs.lazy().with_columns(key), left_on=column, right_on="sk").collect()
    _write_parts(found, BUCKET, Path(out) / source, f"{column}-{part}")
    return found.height


def evaluate_bucket(
    staged: str,
    split_dir: str,
    gathered: str,
    linked: dict[str, list[str]],
    several: list[str],
    kept: dict[str, list[str]],
    pset: PolicySet,
    policies: list[CheckedPolicy],
    kind: str,
    as_of: dt.date,
    counted: pl.DataFrame | None,
    ranges: Ranges,
    parts: int,
    bucket: int,
    out: str,
) -> tuple[int, float]:
    """Task: the wide frame of one bucket's entities, streamed to its part file, over the
    rows they reach: their own rows where they were split, and the rows gathered for
    them (`linked`: per source that names entities, its columns holding the key of
    `kind`; any other source is read whole; `several`: those that name entities in more
    than one column; `kept`: the columns split).  A row reached twice is read once, and rows in
    the order stored, as the whole plan reads them (a first or last among rows of one
    period keeps that order).  Returns the part's rows and the worker's peak memory in
    MiB."""

    def scan(name: str) -> pl.LazyFrame:
        whole = scan_staged(staged_file(Path(staged), name))
        if name not in linked:
            return whole
        files = _files(Path(gathered) / name / f"p={bucket}")
        for column in linked[name]:
            files += _files(Path(split_dir) / name / column / f"p={bucket}")
        if not files:
            return whole.clear()
        rows = pl.scan_parquet(files)
        if name in several:  # reached through two of its columns: once
            rows = rows.unique(ROW)
        if len(files) > 1:  # in the order stored, as the whole plan reads them
            rows = rows.sort(ROW)
        return rows.select(c for c in whole.collect_schema().names() if c in kept[name])

    sk = Naming.sk(kind)
    lazy_counted = None if counted is None else counted.lazy()
    plans = wide_plans(scan, policies, pset.catalogue, as_of, lazy_counted)
    mine = plans[kind].filter(part_of(sk, kind, ranges, parts) == bucket)
    part = _write(mine, Path(out), f"part-{bucket:05d}")
    return stored_rows(part), peak_rss_mb()


# --- the job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partitioned:
    """Where a partitioned evaluation keeps its files, and how finely it splits."""

    work: Path  # every worker must see it
    parts: int
    rows_per_piece: int = ROWS_PER_PIECE


def columns_read(
    staged: Path,
    pset: PolicySet,
    policies: list[CheckedPolicy],
    as_of: dt.date,
    counted: pl.LazyFrame | None,
) -> dict[str, set[str]]:
    """Per source the wide plans of `policies` read, the columns they read: the plans run
    over empty sources that note what Polars' optimiser asks of each."""
    read: dict[str, set[str]] = {}

    def scan(name: str) -> pl.LazyFrame:
        schema = scan_staged(staged_file(staged, name)).collect_schema()
        read.setdefault(name, set())

        def rows(
            with_columns: list[str] | None, _p: Any, _n: Any, _b: Any
        ) -> Iterator[pl.DataFrame]:
            read[name].update(schema.names() if with_columns is None else with_columns)
            yield from ()

        return register_io_source(rows, schema=schema)

    for plan in wide_plans(scan, policies, pset.catalogue, as_of, counted).values():
        plan.collect()
    return read


class PartitionedJob:
    """The wide frames of one night's staged sources, evaluated part by part by the tasks
    `run` maps.  A source is split once, for every kind and day that reads it."""

    def __init__(
        self,
        run: Mapper,
        layout: Partitioned,
        staged: Path,
        catalogue: Catalogue,
        pset: PolicySet,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.run, self.layout, self.staged, self.pset, self.log = run, layout, staged, pset, log
        self.links = staged_links(catalogue)
        # Reached entities of every kind may be named: the ranges of all of them.
        self.ranges = key_ranges(staged, pset, set(pset.catalogue.entities()))
        self.split_dir = layout.work / "split"
        self.split_done: dict[str, set[str]] = {}  # source -> the columns split

    def _split(self, wanted: dict[str, set[str]]) -> None:
        """Split each source of `wanted` with its key columns and the columns named (again
        if a source was split without some of them)."""
        todo = {
            source: sorted(columns | set(self.links[source]) | self.split_done.get(source, set()))
            for source, columns in wanted.items()
            if not columns <= self.split_done.get(source, set())
        }
        tasks = []
        for source, keep in todo.items():
            total = stored_rows(staged_file(self.staged, source))
            step = self.layout.rows_per_piece
            for start in range(0, max(total, 1), step):
                tasks.append(
                    {
                        "staged": str(self.staged),
                        "source": source,
                        "keep": keep,
                        "columns": self.links[source],
                        "ranges": self.ranges,
                        "parts": self.layout.parts,
                        "rows": (start, min(step, total - start)),
                        "out": str(self.split_dir),
                    }
                )
        if tasks:
            rows = sum(self.run(split, tasks))
            self.log(
                f"{rows:,} rows of {len(todo)} sources split into {self.layout.parts} parts "
                f"({_mib(self.split_dir)} MiB written)"
            )
        self.split_done.update({source: set(keep) for source, keep in todo.items()})

    def wide(
        self,
        policies: list[CheckedPolicy],
        as_of: dt.date,
        counted: pl.LazyFrame | None,
        name: str,
    ) -> dict[str, list[Path]]:
        """Per entity kind with an active policy: the parts of its wide frame (as
        `wide_plans` computes it whole), in bucket order, under the work folder's `name`."""
        kinds = sorted({p.target for p in policies})
        counted_frame = None if counted is None else counted.collect()
        reads: dict[str, dict[str, set[str]]] = {}  # kind -> linked source -> columns
        for kind in kinds:
            mine = [p for p in policies if p.target == kind]
            found = columns_read(self.staged, self.pset, mine, as_of, counted)
            reads[kind] = {s: c for s, c in sorted(found.items()) if self.links.get(s)}
        wanted: dict[str, set[str]] = {}
        for linked in reads.values():
            for source, columns in linked.items():
                wanted.setdefault(source, set()).update(columns)
        self._split(wanted)
        out: dict[str, list[Path]] = {}
        for kind in kinds:
            mine = [p for p in policies if p.target == kind]
            base = self.layout.work / name / kind
            known = self._reach(kind, mine, as_of, base)
            gathered = base / "gathered"
            rows = sum(
                self.run(
                    gather,
                    [
                        {
                            "split_dir": str(self.split_dir),
                            "source": source,
                            "column": column,
                            "known": str(known / self.links[source][column]),
                            "own": self.links[source][column] == kind,
                            "part": j,
                            "out": str(gathered),
                        }
                        for source in reads[kind]
                        for column in self.links[source]
                        for j in range(self.layout.parts)
                    ],
                )
            )
            self.log(
                f"{kind}: {rows:,} rows gathered for {self.layout.parts} parts "
                f"({_mib(gathered)} MiB written)"
            )
            wide = base / "wide"
            done = self.run(
                evaluate_bucket,
                [
                    {
                        "staged": str(self.staged),
                        "split_dir": str(self.split_dir),
                        "gathered": str(gathered),
                        "linked": {
                            s: [c for c, k in self.links[s].items() if k == kind]
                            for s in reads[kind]
                        },
                        "several": [s for s in reads[kind] if len(self.links[s]) > 1],
                        "kept": {s: sorted(self.split_done[s]) for s in reads[kind]},
                        "pset": self.pset,
                        "policies": mine,
                        "kind": kind,
                        "as_of": as_of,
                        "counted": counted_frame,
                        "ranges": self.ranges,
                        "parts": self.layout.parts,
                        "bucket": b,
                        "out": str(wide),
                    }
                    for b in range(self.layout.parts)
                ],
            )
            self.log(
                f"{kind}: {sum(r for r, _ in done):,} entities evaluated in {len(done)} parts "
                f"(workers' peak memory so far {max(m for _, m in done):,.0f} MiB)"
            )
            out[kind] = [wide / f"part-{b:05d}.parquet" for b in range(self.layout.parts)]
        return out

    def _reach(self, kind: str, mine: list[CheckedPolicy], as_of: dt.date, base: Path) -> Path:
        """The pairs (entity, bucket) each bucket of `kind` reaches, per kind under the
        folder returned."""
        parts, split_dir = self.layout.parts, str(self.split_dir)
        known = base / "known"
        self.run(
            targets,
            [
                {
                    "split_dir": split_dir,
                    "source": self.pset.catalogue.entity_source(kind),
                    "kind": kind,
                    "ranges": self.ranges,
                    "parts": parts,
                    "part": j,
                    "out": str(known / kind),
                }
                for j in range(parts)
            ],
        )
        frontier = {kind: known / kind}
        # Two relations may follow the same link (the employees, the hired): once is enough.
        steps = list(
            dict.fromkeys(
                followed(self.pset.catalogue, relations_read(self.pset.catalogue, mine, as_of))
            )
        )
        for n in range(MAX_STEPS):
            reached = base / f"reached-{n}"
            self.run(
                follow,
                [
                    {
                        "split_dir": split_dir,
                        "step": step,
                        "frontier": str(frontier[step.from_]),
                        "ranges": self.ranges,
                        "parts": parts,
                        "part": j,
                        "out": str(reached / step.to),
                    }
                    for step in steps
                    if step.from_ in frontier
                    for j in range(parts)
                ],
            )
            next_frontier: dict[str, Path] = {}
            for to in sorted({s.to for s in steps if s.from_ in frontier}):
                fresh = sum(
                    self.run(
                        merge,
                        [
                            {
                                "reached": str(reached / to),
                                "known": str(known / to),
                                "frontier": str(base / f"frontier-{n}" / to),
                                "step": n,
                                "part": j,
                            }
                            for j in range(parts)
                        ],
                    )
                )
                if fresh:
                    next_frontier[to] = base / f"frontier-{n}" / to
            if not next_frontier:
                break
            frontier = next_frontier
        return known
