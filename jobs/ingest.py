"""Ingest: read every source file, validate it, stage the accepted rows for the
run, quarantine the rest with the rule they failed, and record what was read.

Guarantees:
* rows = accepted + quarantined, per source, always (checked before anything is kept);
* a missing file, a missing column or a wrong type stops the ingest before
  anything is written, with one message naming the source, the file and the column;
* every enterprise and person gets an integer surrogate key (`enterprise_sk`,
  `person_sk`), dense and ordered by its identifier, and every reference to
  them carries it, so later joins never touch the 18-character strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import polars as pl
from sqlalchemy import Engine, insert, update

from jobs.catalogue import Catalogue, Source
from jobs.errors import JobError
from jobs.faults import checkpoint
from jobs.validate import (
    FAIL,
    PARSE_RULE,
    ROW,
    Labels,
    accepts,
    duplicate_keys,
    mark_duplicates,
    validation_plan,
)
from ledgers.db import bulk_insert
from ledgers.runs import start_run
from ledgers.schema import QuarantinedRow, Run, SourceSnapshot

FORMATS = {".parquet": "parquet", ".csv": "csv"}
# Staged files are written once and read by every later step of the run: LZ4
# decompresses about twice as fast as zstd, and they need not be small.
STAGED_COMPRESSION: Final = "lz4"


@dataclass
class SourceReport:
    """What ingest did with one source file."""

    file: str
    format: str
    sha256: str
    rows: int
    accepted: int
    quarantined: int
    by_rule: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class IngestResult:
    """The outcome of one ingest: the run it recorded and a report per source."""

    run_id: int
    as_of: dt.date
    staged_dir: str
    sources: dict[str, SourceReport]

    def to_json(self) -> dict[str, object]:
        """The `--json` shape: {"run_id", "as_of", "sources": {NAME: {rows, accepted, ...}}}."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "staged_dir": self.staged_dir,
            "sources": {name: asdict(rep) for name, rep in self.sources.items()},
        }


def locate_sources(data_dir: Path, catalogue: Catalogue) -> dict[str, tuple[Path, str]]:
    """The file of every catalogue source in `data_dir`: `<name>.parquet` or `<name>.csv`."""
    if not data_dir.is_dir():
        raise JobError(
            f"data folder {str(data_dir)!r} does not exist",
            fix="give --data the folder that holds the source files (see `disburse sources`)",
        )
    found: dict[str, tuple[Path, str]] = {}
    problems = []
    for name in catalogue.ordered():
        candidates = [(data_dir / f"{name}{ext}", fmt) for ext, fmt in FORMATS.items()]
        present = [(p, f) for p, f in candidates if p.is_file()]
        if not present:
            problems.append(f"source {name!r}: no file {name}.parquet or {name}.csv in {data_dir}")
        elif len(present) > 1:
            problems.append(
                f"source {name!r}: both {name}.parquet and {name}.csv in {data_dir}; "
                "keep only the one to read"
            )
        else:
            found[name] = present[0]
    if problems:
        raise JobError(
            "\n".join(problems),
            fix="deliver one file per source; `disburse sources` lists them with their columns",
        )
    return found


def _scan(path: Path, fmt: str) -> pl.LazyFrame:
    if fmt == "csv":
        # Everything as text: each value is parsed and, if bad, quarantined by its rule.
        return pl.scan_csv(path, infer_schema=False)
    return pl.scan_parquet(path)


def read_schema(name: str, path: Path, fmt: str, source: Source) -> pl.Schema:
    """The file's schema, checked against the catalogue (missing columns, wrong types)."""
    try:
        schema = _scan(path, fmt).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JobError(
            f"source {name!r} ({path}): cannot be read as {fmt}: {first}",
            fix=f"re-export the file as {fmt}",
        ) from None
    problems = []
    for col_name, col in source.columns.items():
        if col_name not in schema:
            problems.append(f"source {name!r} ({path}): column {col_name!r} is missing")
        elif not accepts(col.type, schema[col_name]):
            problems.append(
                f"source {name!r} ({path}): column {col_name!r} has type {schema[col_name]}, "
                f"expected {col.type}"
            )
    if problems:
        raise JobError(
            "\n".join(problems),
            fix="the columns and types each source must have are listed by `disburse sources`",
        )
    return schema


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _attach_references(
    df: pl.LazyFrame,
    source: Source,
    catalogue: Catalogue,
    keys: dict[str, pl.DataFrame],
    labels: Labels,
) -> pl.LazyFrame:
    """Join each reference's surrogate key; quarantine unknown ones unless on_missing is keep."""
    for col_name, col in source.columns.items():
        for ref in col.references:
            target = catalogue.sources[ref.source]
            sk = catalogue.sk_column(ref)
            lookup = keys[ref.source].rename({target.entity_column: col_name, "_sk": sk})
            df = df.join(lookup.lazy(), on=col_name, how="left", maintain_order="left")
            if ref.on_missing == "quarantine":
                unknown = pl.col(FAIL).is_null() & pl.col(sk).is_null()
                code = pl.lit(labels.code(col_name, f"unknown_{target.entity}"), dtype=pl.UInt16)
                df = df.with_columns(
                    pl.when(unknown).then(code).otherwise(pl.col(FAIL)).alias(FAIL)
                )
    return df


def _unreadable(scan: pl.LazyFrame, source: Source, schema: pl.Schema) -> list[str]:
    """Text columns with values none of which parse as the column's type: the wrong column."""
    parsed = [
        n for n, c in source.columns.items() if c.type in PARSE_RULE and schema[n] == pl.String
    ]
    if not parsed:
        return []
    stats = scan.select(
        *[pl.col(f"_present_{n}").sum().alias(f"p:{n}") for n in parsed],
        *[(pl.col(f"_present_{n}") & pl.col(n).is_null()).sum().alias(f"u:{n}") for n in parsed],
    ).collect(engine="streaming")
    return [n for n in parsed if 0 < stats[f"p:{n}"].item() == stats[f"u:{n}"].item()]


def _outcome(scan: pl.LazyFrame, labels: Labels) -> tuple[int, pl.DataFrame]:
    """Rows, and the failed rows as (row number, "column\trule")."""
    rows = int(scan.select(pl.len()).collect().item())
    failed = (
        scan.filter(pl.col(FAIL).is_not_null())
        .select(ROW, labels.decode(pl.col(FAIL)).alias(FAIL))
        .collect(engine="streaming")
    )
    return rows, failed


def _quarantine_rows(path: Path, fmt: str, source: Source, failed: pl.DataFrame) -> pl.DataFrame:
    """The failed rows as they were in the file (as JSON), with the failing column's value."""
    names = list(source.columns)
    raw = (
        _scan(path, fmt)
        .select(names)
        .with_row_index(ROW, offset=1)
        .join(failed.lazy().select(ROW, FAIL), on=ROW, how="inner")
        .with_columns([pl.col(n).cast(pl.String) for n in names])
        .collect(engine="streaming")
        .sort(ROW)
    )
    parts = pl.col(FAIL).str.split_exact("\t", 1)
    key_label = "+".join(source.key)
    key_value = pl.concat_str([pl.col(k) for k in source.key], separator="+")
    value = pl.coalesce(
        [pl.when(pl.col("column_name") == n).then(pl.col(n)) for n in names]
        + [pl.when(pl.col("column_name") == key_label).then(key_value)]
    )
    return raw.with_columns(
        parts.struct.field("field_0").alias("column_name"),
        parts.struct.field("field_1").alias("rule"),
        pl.struct(names).struct.json_encode().alias("row_json"),
    ).select(pl.col(ROW).alias("row_no"), "column_name", "rule", value.alias("value"), "row_json")


def ingest(
    data_dir: Path,
    as_of: dt.date,
    *,
    engine: Engine,
    store: Path,
    catalogue: Catalogue,
    progress: Callable[[str], None] | None = None,
    run_id: int | None = None,
    digests: dict[str, str] | None = None,
) -> IngestResult:
    """Validate every source in `data_dir`, stage accepted rows, record the run and quarantine.

    Nothing is written (no staged file, no database row) unless every file could
    be read with every column of the right type.  With `run_id` (a nightly run's
    row, state "started"), the ingest is recorded on that run instead of a new one;
    its staged files, snapshots, quarantine and state "ingested" appear together.
    `digests`: the files' sha256 if the caller has already read them.
    """
    say = progress or (lambda _msg: None)
    files = locate_sources(data_dir, catalogue)
    schemas = {
        name: read_schema(name, path, fmt, catalogue.sources[name])
        for name, (path, fmt) in files.items()
    }
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(store / f".ingest-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir()
    try:
        reports, quarantined = _validate_all(files, schemas, catalogue, tmp, say, digests)
        return _record(engine, data_dir, as_of, store, tmp, reports, quarantined, run_id, catalogue)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stage(
    data_dir: Path,
    out_dir: Path,
    *,
    catalogue: Catalogue,
    progress: Callable[[str], None] | None = None,
) -> dict[str, SourceReport]:
    """Validate and stage every source into `out_dir`, recording nothing anywhere else.

    For simulations: the same checks and the same staged files as an ingest,
    without a run row or a quarantine table.
    """
    say = progress or (lambda _msg: None)
    files = locate_sources(data_dir, catalogue)
    schemas = {
        name: read_schema(name, path, fmt, catalogue.sources[name])
        for name, (path, fmt) in files.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    reports, _ = _validate_all(files, schemas, catalogue, out_dir, say)
    return reports


def _validate_all(
    files: dict[str, tuple[Path, str]],
    schemas: dict[str, pl.Schema],
    catalogue: Catalogue,
    tmp: Path,
    say: Callable[[str], None],
    digests: dict[str, str] | None = None,
) -> tuple[dict[str, SourceReport], dict[str, pl.DataFrame]]:
    keys: dict[str, pl.DataFrame] = {}
    reports: dict[str, SourceReport] = {}
    quarantined: dict[str, pl.DataFrame] = {}
    for name in catalogue.ordered():
        started = time.perf_counter()
        path, fmt = files[name]
        source = catalogue.sources[name]
        say(f"ingest {name}: validating {path.name}")
        digest = (digests or {}).get(name) or sha256_file(path)
        labels = Labels()
        plan = validation_plan(_scan(path, fmt), source, schemas[name], catalogue, labels)
        # Streamed to scratch files and read back in the passes below: memory stays
        # bounded by the engine's batches and the key lookups, not by the file.
        validated = tmp / f".{name}.validated.parquet"
        plan.sink_parquet(validated, compression="lz4", engine="streaming")
        scan = pl.scan_parquet(validated)
        bad_columns = _unreadable(scan, source, schemas[name])
        if bad_columns:
            raise JobError(
                "\n".join(
                    f"source {name!r} ({path}): column {c!r} holds no value readable as "
                    f"{source.columns[c].type}"
                    for c in bad_columns
                ),
                fix="check the column order and the export settings of that file",
            )
        duplicates = duplicate_keys(scan, source)
        has_references = any(col.references for col in source.columns.values())
        if duplicates.height or has_references:
            checked = tmp / f".{name}.checked.parquet"
            full = _attach_references(
                mark_duplicates(scan, duplicates, source, labels), source, catalogue, keys, labels
            )
            full.sink_parquet(checked, compression="lz4", engine="streaming")
            validated.unlink()
            validated, scan = checked, pl.scan_parquet(checked)
        rows, failed = _outcome(scan, labels)
        accepted = scan.filter(pl.col(FAIL).is_null()).drop(
            [FAIL, *(f"_present_{n}" for n in source.columns)]
        )
        if source.entity is not None:
            # Dense keys in identifier order: the rank of each (unique) identifier, from
            # the identifier column alone; the rows keep their file order.
            sk = f"{source.entity}_sk"
            ids = accepted.select(source.entity_column).collect(engine="streaming")
            keys[name] = ids.with_columns(
                pl.col(source.entity_column).rank("ordinal").cast(pl.Int32).alias("_sk")
            )
            # The keys are in the accepted rows' order: attached side by side, no join.
            accepted = pl.concat(
                [accepted, keys[name].select(pl.col("_sk").alias(sk)).lazy()], how="horizontal"
            )
        staged = tmp / f"{name}.parquet"
        accepted.drop(ROW).sink_parquet(staged, compression=STAGED_COMPRESSION, engine="streaming")
        validated.unlink()
        n_accepted = pl.scan_parquet(staged).select(pl.len()).collect().item()
        if n_accepted + failed.height != rows:  # pragma: no cover - a broken invariant
            raise AssertionError(f"{name}: {rows} rows != {n_accepted} + {failed.height}")
        q = _quarantine_rows(path, fmt, source, failed) if failed.height else None
        if q is not None:
            quarantined[name] = q
        by_rule = dict(sorted(q.group_by("rule").len().iter_rows())) if q is not None else {}
        reports[name] = SourceReport(
            file=str(path),
            format=fmt,
            sha256=digest,
            rows=rows,
            accepted=n_accepted,
            quarantined=failed.height,
            by_rule=by_rule,
            seconds=round(time.perf_counter() - started, 3),
        )
        say(f"ingest {name}: {rows} rows, {n_accepted} accepted, {failed.height} quarantined")
    return reports, quarantined


def _record(
    engine: Engine,
    data_dir: Path,
    as_of: dt.date,
    store: Path,
    tmp: Path,
    reports: dict[str, SourceReport],
    quarantined: dict[str, pl.DataFrame],
    run_id: int | None,
    catalogue: Catalogue,
) -> IngestResult:
    now = dt.datetime.now(dt.UTC)
    own_run = run_id is None
    if run_id is None:
        with engine.begin() as conn:
            run_id = start_run(
                conn,
                kind="ingest",
                as_of=as_of,
                data_dir=data_dir.resolve(),
                store_dir=store.resolve(),
                started_at=now,
            )
    final = staged_dir(store, run_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    checkpoint("ingest:staged")
    cols = ["run_id", "source", "row_no", "column_name", "rule", "value", "row_json"]
    with engine.begin() as conn:
        for name, q in quarantined.items():
            rows = ((run_id, name, r[0], r[1], r[2], r[3], r[4]) for r in q.iter_rows())
            bulk_insert(conn, QuarantinedRow.__table__, cols, rows)  # type: ignore[arg-type]
        conn.execute(
            insert(SourceSnapshot),
            [
                {
                    "run_id": run_id,
                    "source": name,
                    "file": rep.file,
                    "format": rep.format,
                    "sha256": rep.sha256,
                    "rows": rep.rows,
                    "accepted": rep.accepted,
                    "quarantined": rep.quarantined,
                    "staged_file": str(final / f"{name}.parquet"),
                }
                for name, rep in reports.items()
            ],
        )
        done = {"finished_at": dt.datetime.now(dt.UTC)} if own_run else {}
        conn.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(state="ingested", catalogue_sha256=catalogue.fingerprint(), **done)
        )
    return IngestResult(run_id, as_of, str(final), reports)


def staged_dir(store: Path, run_id: int) -> Path:
    """Where a run's accepted rows are staged: <store>/runs/<run_id>/sources."""
    return store / "runs" / str(run_id) / "sources"


def quarantine_summary(result: IngestResult) -> str:
    """A plain-text table of the per-source counts, for people."""
    lines = [f"{'source':<26}{'rows':>12}{'accepted':>12}{'quarantined':>13}  sha256"]
    for name, rep in result.sources.items():
        lines.append(
            f"{name:<26}{rep.rows:>12,}{rep.accepted:>12,}{rep.quarantined:>13,}  {rep.sha256[:12]}"
        )
        for rule, n in rep.by_rule.items():
            lines.append(f"{'':<4}{rule:<34}{n:>12,}")
    return "\n".join(lines)


__all__ = ["IngestResult", "SourceReport", "ingest", "locate_sources", "quarantine_summary"]
