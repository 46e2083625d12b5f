"""Event files for `disburse events add`: JSON lines, or a CSV or Parquet file of one source.

- `.jsonl`: one event per line, `{"source": "employment", "op": "upsert", "row": {...}}`
  (`op` defaults to upsert).
- `.csv` / `.parquet`: rows of one source (`--source`), its columns by name, with an
  optional `op` column.  A CSV is read as text, as a nightly delivery is.

A file is read whole before anything is added: a line that is not an event refuses
the file, with its line number, and nothing is added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from common.errors import did_you_mean
from jobs.catalogue import Catalogue
from jobs.errors import JobError

FORMATS = (".jsonl", ".csv", ".parquet")


def _cell(v: Any) -> Any:
    """A value as JSON holds it: dates and months as text, numbers and booleans as they are."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def read_events(
    path: Path, catalogue: Catalogue, source: str | None = None, op: str = "upsert"
) -> list[tuple[str, str, str]]:
    """The events in `path` as (source, op, row_json), in file order."""
    if not path.is_file():
        raise JobError(f"{path}: no such file", fix="give the path of an event file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise JobError(
            f"{path}: not an event file ({', '.join(FORMATS)})",
            fix="write the events as JSON lines, or one source's rows as CSV or Parquet",
        )
    if suffix == ".jsonl":
        return _jsonl(path, catalogue)
    if source is None:
        raise JobError(
            f"{path}: a {suffix} file holds rows of one source; say which",
            fix="give --source, e.g. --source employment (`disburse sources` lists them)",
        )
    _known(source, catalogue, str(path))
    try:
        frame = pl.read_csv(path, infer_schema=False) if suffix == ".csv" else pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
        raise JobError(
            f"{path}: cannot be read as {suffix[1:]}: {str(e).splitlines()[0]}",
            fix="check the file (a CSV must be UTF-8 text with a header row)",
        ) from None
    columns = [c for c in frame.columns if c in catalogue.sources[source].columns]
    unknown = sorted(set(frame.columns) - set(columns) - {"op"})
    if unknown:
        raise JobError(
            f"{path}: columns {', '.join(unknown)} are not columns of source {source!r}",
            fix=did_you_mean(unknown[0], sorted(catalogue.sources[source].columns), "its columns"),
        )
    out = []
    for row in frame.iter_rows(named=True):
        row_op = row.get("op") or op
        values = {c: _cell(row[c]) for c in columns}
        out.append((source, str(row_op), json.dumps(values, ensure_ascii=False)))
    return out


def _known(source: str, catalogue: Catalogue, where: str) -> None:
    if source not in catalogue.sources:
        raise JobError(
            f"{where}: no source {source!r} in the catalogue",
            fix=did_you_mean(source, sorted(catalogue.sources), "the sources"),
        )


def _jsonl(path: Path, catalogue: Catalogue) -> list[tuple[str, str, str]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise JobError(
            f"{path}: not UTF-8 text", fix="write the events as UTF-8 JSON lines"
        ) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as e:
            raise JobError(
                f"{path}:{n}: not a JSON object: {e}; nothing was added",
                fix='one event per line: {"source": "...", "op": "upsert", "row": {...}}',
            ) from None
        if not isinstance(event, dict) or not isinstance(event.get("row"), dict):
            raise JobError(
                f'{path}:{n}: an event needs "source" and "row" (an object); nothing was added',
                fix='one event per line: {"source": "...", "op": "upsert", "row": {...}}',
            )
        source = str(event.get("source"))
        _known(source, catalogue, f"{path}:{n}")
        row = {k: _cell(v) for k, v in event["row"].items()}
        out.append((source, str(event.get("op", "upsert")), json.dumps(row, ensure_ascii=False)))
    return out
