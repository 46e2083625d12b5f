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
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
import polars.selectors as cs
import pyarrow as pa
from sqlalchemy import Connection, Engine, insert

from common.errors import Code
from eligibility import Naming
from jobs.catalogue import Catalogue, Source
from jobs.errors import JobError
from jobs.faults import checkpoint
from jobs.filecheck import unreadable
from jobs.progress import Progress, Silent
from jobs.staged import ACCEPTED, DELIVERED_SUFFIX, View, scan_staged
from jobs.validate import (
    FAIL,
    ROW,
    EntityKeys,
    Labels,
    Unknown,
    accepts,
    attach_references,
    changed_column,
    code_column,
    duplicate_keys,
    final_failures,
    parsed_columns,
    present_column,
    sum_problem,
    taken_columns,
    validation_plan,
)
from ledgers.db import bulk_insert
from ledgers.runs import mark_ingested, start_run
from ledgers.schema import QuarantinedRow, SourceSnapshot

FORMATS = {".parquet": "parquet", ".csv": "csv"}
# Staged files are written once and read by every later step of the run: LZ4
# decompresses about twice as fast as zstd, and they need not be small.
STAGED_COMPRESSION: Final = "lz4"
DEFAULT_MEMORY_ROWS: Final = 40_000_000
DEFAULT_INGEST_WORKERS: Final = 2


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
    with readable(name, path, fmt):
        schema = _scan(path, fmt).collect_schema()
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


@contextmanager
def readable(name: str, path: Path, fmt: str) -> Iterator[None]:
    """Turn a failure to read the source file in the block into the error a person reads:
    where the file is wrong (the line of a CSV, the column of a Parquet file) and the fix."""
    try:
        yield
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        error = unreadable(name, path, fmt, exc)
        if error is None:
            raise
        raise error from None


def sha256_file(path: Path, copy_to: Path | None = None) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (and written to `copy_to`)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh, copy_to.open("wb") if copy_to else nullcontext() as out:
        while block := fh.read(1 << 20):
            digest.update(block)
            if out is not None:
                out.write(block)
    return digest.hexdigest()


def copy_pinned(path: Path, to: Path, sha256: str) -> None:
    """Copy a delivered file, checking that the copy has the bytes `sha256` names (those the
    run recorded): a file replaced since it was hashed is not staged under the old digest."""
    if sha256_file(path, copy_to=to) != sha256:
        raise JobError(
            f"{path} changed while it was being read",
            fix="let the delivery finish writing its files, then run again",
        )


def sha256_files(files: dict[str, tuple[Path, str]]) -> dict[str, str]:
    """sha256 of every source file, hashed in parallel (hashlib releases the GIL on blocks)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {name: pool.submit(sha256_file, path) for name, (path, _fmt) in files.items()}
        return {name: f.result() for name, f in futures.items()}


def _counts(
    scan: pl.LazyFrame, source: Source, schema: pl.Schema
) -> tuple[int, list[str], set[str]]:
    """Rows; the required text columns with values none of which parse as the column's
    type (the wrong column); and the text columns whose values validation changed
    (`_changed_<column>`, where the plan has it), in one read of the validated rows.

    Only required columns: a bad value in an optional column quarantines its row, even if
    it is the column's only value (a delivery is not refused for one optional date)."""
    parsed = [n for n in parsed_columns(source, schema) if source.columns[n].required]
    flagged = [n for n in source.columns if changed_column(n) in scan.collect_schema()]
    stats = scan.select(
        pl.len().alias("rows"),
        *[pl.col(present_column(n)).sum().alias(f"p:{n}") for n in parsed],
        *[(pl.col(present_column(n)) & pl.col(n).is_null()).sum().alias(f"u:{n}") for n in parsed],
        *[pl.col(changed_column(n)).any().alias(f"c:{n}") for n in flagged],
    ).collect(engine="streaming")
    bad = [n for n in parsed if 0 < stats[f"p:{n}"].item() == stats[f"u:{n}"].item()]
    changed = {n for n in flagged if stats[f"c:{n}"].item()}
    return int(stats["rows"].item()), bad, changed


def _failed(scan: pl.LazyFrame, labels: Labels) -> pl.DataFrame:
    """The failed rows as (row number, "column\trule")."""
    return (
        scan.filter(pl.col(FAIL).is_not_null())
        .select(ROW, labels.decode(pl.col(FAIL)).alias(FAIL))
        .collect(engine="streaming")
    )


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
        # JSON writes a NUL byte as \u0000, which any text column holds.
        pl.struct(names).struct.json_encode().alias("row_json"),
    ).select(
        pl.col(ROW).alias("row_no"),
        "column_name",
        "rule",
        storable_text(value).alias("value"),
        "row_json",
    )


def storable_text(value: pl.Expr) -> pl.Expr:
    """`value` as any database's text column can hold it: PostgreSQL's text cannot hold a NUL
    byte (the COPY of a quarantined row would fail), so a NUL is written as the four
    characters \\x00, as a person reading the quarantine would write it."""
    return value.str.replace_all("\x00", "\\x00", literal=True)


def ingest(
    data_dir: Path,
    as_of: dt.date,
    *,
    engine: Engine,
    store: Path,
    catalogue: Catalogue,
    progress: Progress | None = None,
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
    files = locate_sources(data_dir, catalogue)
    say = _reporter(progress, len(files))
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
    progress: Progress | None = None,
) -> dict[str, SourceReport]:
    """Validate and stage every source into `out_dir`, recording nothing anywhere else.

    For simulations: the same checks and the same staged files as an ingest,
    without a run row or a quarantine table.
    """
    files = locate_sources(data_dir, catalogue)
    say = _reporter(progress, len(files))
    schemas = {
        name: read_schema(name, path, fmt, catalogue.sources[name])
        for name, (path, fmt) in files.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    reports, _ = _validate_all(files, schemas, catalogue, out_dir, say)
    return reports


def _reporter(progress: Progress | None, sources: int) -> Callable[[str], None]:
    """The "ingest" phase's status line for each thing a source's validation says; a
    source is done when its counts are said."""
    phase = (progress or Silent()).phase("ingest", total=sources)

    def say(message: str) -> None:
        phase.status(message)
        if "accepted" in message:
            phase.advance()

    return say


def _validate_all(
    files: dict[str, tuple[Path, str]],
    schemas: dict[str, pl.Schema],
    catalogue: Catalogue,
    tmp: Path,
    say: Callable[[str], None],
    digests: dict[str, str] | None = None,
) -> tuple[dict[str, SourceReport], dict[str, pl.DataFrame]]:
    """Validate and stage every source, up to `ingest_workers()` at a time.

    A source starts once the entity sources it references are staged (their keys
    are what its references find), the largest first.  The sources validated in memory
    at once hold at most `memory_rows()` rows between them: a source starts beside
    another only if both fit, and one too large for memory alone is streamed, alone.
    Much of a source's validation runs on one core (the identifier kernels hold the GIL,
    Parquet pages are written in order), so two sources side by side use the idle part
    of the second core, for more memory at the peak (docs/benchmarks.md, "Ingest").
    """
    digests = digests or sha256_files(files)
    rows = {name: _rows(name, path, fmt) for name, (path, fmt) in files.items()}
    budget = memory_rows()
    alone = {name for name, n in rows.items() if n > budget}

    def fits(name: str, busy: list[str]) -> bool:
        together = [name, *busy]
        return not busy or (
            not (set(together) & alone) and sum(rows[n] for n in together) <= budget
        )

    keys: dict[str, EntityKeys] = {}
    done: dict[str, tuple[SourceReport, pl.DataFrame | None]] = {}

    def one(name: str) -> tuple[SourceReport, pl.DataFrame | None, EntityKeys | None]:
        path, fmt = files[name]
        with readable(name, path, fmt):
            return _validate_one(
                name,
                path,
                fmt,
                schemas[name],
                digests[name],
                catalogue,
                keys,
                tmp,
                say,
                in_memory=name not in alone,
            )

    graph = catalogue.schedule()
    graph.prepare()
    ready: list[str] = []
    running: dict[Future[tuple[SourceReport, pl.DataFrame | None, EntityKeys | None]], str] = {}
    failure: BaseException | None = None
    workers = ingest_workers()
    with ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
        while graph.is_active():
            ready.extend(graph.get_ready())
            ready.sort(key=lambda n: (-rows[n], n))
            while failure is None and len(running) < workers:
                busy = list(running.values())
                pick = next((n for n in ready if fits(n, busy)), None)
                if pick is None:
                    break
                ready.remove(pick)
                running[pool.submit(one, pick)] = pick
            if not running:
                break  # a source failed and the others have finished
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f]):
                name = running.pop(future)
                exc = future.exception()
                if exc is not None:
                    failure = failure or exc
                    continue
                report, quarantine, entity_keys = future.result()
                if entity_keys is not None:
                    keys[name] = entity_keys
                done[name] = (report, quarantine)
                graph.done(name)
    if failure is not None:
        raise failure
    reports = {name: done[name][0] for name in catalogue.ordered()}
    quarantined = {name: q for name in catalogue.ordered() if (q := done[name][1]) is not None}
    return reports, quarantined


def _validate_one(
    name: str,
    path: Path,
    fmt: str,
    schema: pl.Schema,
    digest: str,
    catalogue: Catalogue,
    keys: dict[str, EntityKeys],
    tmp: Path,
    say: Callable[[str], None],
    *,
    in_memory: bool,
) -> tuple[SourceReport, pl.DataFrame | None, EntityKeys | None]:
    """Validate one source and stage its accepted rows in `tmp`: its report, its
    quarantined rows (if any) and, for an entity source, where references find it."""
    started = time.perf_counter()
    source = catalogue.sources[name]
    say(f"{name}: validating {path.name}")
    # A Parquet delivery is not rewritten: its copy, pinned by the digest, is what is
    # validated and what the staged view reads (`jobs.staged`).
    as_view = fmt == "parquet"
    read = tmp / f"{name}{DELIVERED_SUFFIX}" if as_view else path
    if as_view:
        copy_pinned(path, read, digest)
    labels = Labels()
    plan = validation_plan(_scan(read, fmt), source, schema, catalogue, labels, changes=as_view)
    scratch = tmp / f".{name}.validated.parquet"
    validated, unknown = _validate_source(
        plan, source, catalogue, labels, keys, scratch, in_memory=in_memory
    )
    rows, bad_columns, changed = _counts(validated, source, schema)
    if bad_columns:
        raise JobError(
            "\n".join(
                f"source {name!r} ({path}): column {c!r} holds no value readable as "
                f"{source.columns[c].type}"
                for c in bad_columns
            ),
            fix="check the column order and the export settings of that file",
        )
    duplicates = duplicate_keys(validated, source)
    if in_memory:  # the references are found once, on the validated frame
        validated, unknown = attach_references(validated.collect(), source, catalogue, labels, keys)
    final = final_failures(validated, duplicates, source, labels, unknown)
    if in_memory:  # read twice below: the failed rows, then the accepted ones
        final = final.collect().lazy()
    failed = _failed(final, labels)
    final = final.drop(cs.starts_with("_present_", "_changed_"))
    accepted = final.filter(pl.col(FAIL).is_null()).drop(FAIL, ROW)
    staged = tmp / f"{name}.parquet"
    entity_keys, dense = None, None
    if source.entity is not None:
        entity_keys, dense = _entity_keys(accepted, source, staged)
    if as_view:
        view = View(read.name, digest, taken_columns(source, schema, changed), order=[])
        _write_view(final, dense, view, staged)
    else:
        if dense is not None:
            accepted = pl.concat([accepted, dense.lazy()], how="horizontal")
        accepted.drop(cs.starts_with("_code_")).sink_parquet(
            staged, compression=STAGED_COMPRESSION, engine="streaming"
        )
    scratch.unlink(missing_ok=True)
    sums = sum_problem(scan_staged(staged), source, catalogue)
    if sums is not None:
        raise JobError(
            f"source {name!r} ({path}): {sums}",
            fix="check those values; if rows of that size are real, bound the column in "
            "policies/sources.yaml (max_fen, or min and max) by what one row can truly be",
            code=Code.DATA_SUM_RANGE,
        )
    n_accepted = scan_staged(staged).select(pl.len()).collect().item()
    if n_accepted + failed.height != rows:  # pragma: no cover - a broken invariant
        raise AssertionError(f"{name}: {rows} rows != {n_accepted} + {failed.height}")
    q = _quarantine_rows(read, fmt, source, failed) if failed.height else None
    by_rule = dict(sorted(q.group_by("rule").len().iter_rows())) if q is not None else {}
    report = SourceReport(
        file=str(path),
        format=fmt,
        sha256=digest,
        rows=rows,
        accepted=n_accepted,
        quarantined=failed.height,
        by_rule=by_rule,
        seconds=round(time.perf_counter() - started, 3),
    )
    say(f"{name}: {rows} rows, {n_accepted} accepted, {failed.height} quarantined")
    return report, q, entity_keys


def _write_view(final: pl.LazyFrame, dense: pl.DataFrame | None, view: View, to: Path) -> None:
    """A view's narrow file: for every delivered row (`final`, in the file's order), whether
    it is accepted, and the staged columns the view does not take from the delivery (the
    surrogate keys, values parsed or trimmed).  `dense`: an entity source's own surrogate
    keys, one per accepted row.  The metadata records `view` with the staged columns' order."""
    columns = [
        c
        for c in final.collect_schema().names()
        if c not in (FAIL, ROW) and not c.startswith("_code_")
    ]
    narrow = final.select(
        *(c for c in columns if c not in view.taken), pl.col(FAIL).is_null().alias(ACCEPTED)
    )
    if dense is not None:
        keys = dense.to_series()
        at = final.select(pl.arg_where(pl.col(FAIL).is_null())).collect().to_series()
        rows = final.select(pl.len()).collect().item()
        if len(at) < rows:  # spread over the delivered rows: null where not accepted
            keys = pl.repeat(None, rows, dtype=keys.dtype, eager=True).scatter(at, keys)
        narrow = pl.concat(
            [narrow, keys.alias(dense.columns[0]).to_frame().lazy()], how="horizontal"
        )
        columns.append(dense.columns[0])
    metadata = replace(view, order=columns).metadata()
    narrow.sink_parquet(to, compression=STAGED_COMPRESSION, metadata=metadata, engine="streaming")


def ingest_workers() -> int:
    """Sources validated side by side ($DISBURSE_INGEST_WORKERS; default 2: the
    validation of one source leaves about a core idle, and each worker may hold one
    source of up to `memory_rows()` rows in memory)."""
    value = os.environ.get("DISBURSE_INGEST_WORKERS", "")
    try:
        workers = int(value) if value.strip() else DEFAULT_INGEST_WORKERS
    except ValueError:
        workers = 0
    if workers < 1:
        raise JobError(
            f"DISBURSE_INGEST_WORKERS={value!r} is not a positive whole number",
            fix="set it to 1 (one source at a time) or 2, or unset it",
        )
    return workers


def memory_rows() -> int:
    """The rows the sources validated in memory at once may hold between them; a larger
    source is streamed through a scratch file, alone ($DISBURSE_INGEST_MEMORY_ROWS;
    default 40 million rows: at 1M enterprises with 24 months of monthly sources, whose
    largest have 19M rows, ingest peaks at 3.9 GB with two workers, against 3.4 GB
    streaming those two, and takes 37.5 s instead of 41-43 s; at 3M enterprises and 30M
    persons, whose six largest sources have 21-30M rows, 87.6 s and 5.8 GB against
    106.5 s and 4.1 GB with those six streamed, or 73.8 s and 8.2 GB with no bound on two
    sources side by side)."""
    value = os.environ.get("DISBURSE_INGEST_MEMORY_ROWS", "")
    try:
        return int(value) if value.strip() else DEFAULT_MEMORY_ROWS
    except ValueError:
        raise JobError(
            f"DISBURSE_INGEST_MEMORY_ROWS={value!r} is not a whole number",
            fix="set it to a row count, e.g. 20000000, or unset it",
        ) from None


def _rows(name: str, path: Path, fmt: str) -> int:
    """Rows of a source file: from the Parquet footer, or by counting a CSV's lines."""
    with readable(name, path, fmt):
        return int(_scan(path, fmt).select(pl.len()).collect().item())


def _validate_source(
    plan: pl.LazyFrame,
    source: Source,
    catalogue: Catalogue,
    labels: Labels,
    keys: dict[str, EntityKeys],
    scratch: Path,
    *,
    in_memory: bool,
) -> tuple[pl.LazyFrame, list[Unknown]]:
    """The validated rows: a frame in memory, or for a large source streamed to `scratch`
    with the references joined on the way (whose `Unknown`s come back with it)."""
    if in_memory:
        return plan.collect(engine="streaming").lazy(), []
    streamed, unknown = attach_references(plan, source, catalogue, labels, keys)
    streamed.sink_parquet(scratch, compression="lz4", engine="streaming")
    return pl.scan_parquet(scratch), unknown


def _entity_keys(
    accepted: pl.LazyFrame, source: Source, staged: Path
) -> tuple[EntityKeys, pl.DataFrame]:
    """Where references find this entity, and the surrogate key of each accepted row in the
    rows' order: the rank of its identifier (unique among accepted rows), by the integer
    code of an identity number, which sorts as the text does."""
    column = source.entity_column
    assert source.entity is not None
    sk = Naming.sk(source.entity)
    if source.columns[column].check == "resident_id":
        codes = accepted.select(pl.col(code_column(column))).collect(engine="streaming")
        code = codes.to_series()
        # One sort gives both: the codes in order (for references) and each row's rank.
        order = code.arg_sort()
        ranks = np.empty(len(code), dtype=np.int32)
        ranks[order.to_numpy()] = np.arange(1, len(code) + 1, dtype=np.int32)
        table = pl.DataFrame(
            {
                "_code": code.gather(order),
                "_sk": pl.int_range(1, len(code) + 1, dtype=pl.Int32, eager=True),
            }
        )
        return EntityKeys(staged, column, sk, table), pl.DataFrame({sk: ranks})
    ids = accepted.select(column).collect(engine="streaming")
    dense = ids.select(pl.col(column).rank("ordinal").cast(pl.Int32).alias(sk))
    return EntityKeys(staged, column, sk), dense


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
    """Move the staged files into place and record the run, its snapshots and quarantine in
    one transaction; if that transaction fails, the staged files go too (nothing half-written).

    An ingest of its own (`run_id` None) inserts its run row in that same transaction, so a
    failed ingest leaves no run row at all; a nightly run's row is marked failed by the run."""
    now = dt.datetime.now(dt.UTC)
    own_run = run_id is None
    final: Path | None = None
    try:
        with engine.begin() as conn:
            if run_id is None:
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
            _insert_records(conn, run_id, final, reports, quarantined)
            mark_ingested(conn, run_id, catalogue_sha256=catalogue.fingerprint(), finished=own_run)
    except BaseException:
        if final is not None and final.exists():
            shutil.rmtree(final)
        raise
    return IngestResult(run_id, as_of, str(final), reports)


def _insert_records(
    conn: Connection,
    run_id: int,
    final: Path,
    reports: dict[str, SourceReport],
    quarantined: dict[str, pl.DataFrame],
) -> None:
    """The quarantined rows and one snapshot row per source, on the caller's transaction."""
    cols = ["run_id", "source", "row_no", "column_name", "rule", "value", "row_json"]
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
