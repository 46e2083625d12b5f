"""What the staged sources of a run look like: their columns and rule-language types,
which columns hold which entity's surrogate key, and how to read them.

A staged source is `<name>.parquet` in the run's staged folder.  It is either every
accepted row with every column (a CSV delivery, whose text is parsed once), or a *view*
of a Parquet delivery that is not rewritten:

* `<name>.delivered.parquet`: the delivered file's bytes, copied and pinned by their
  sha256 (the snapshot's);
* `<name>.parquet`: a narrow file, row for row with the delivery, holding only what
  validation worked out: surrogate keys, values parsed or trimmed, and `_accepted` if
  some rows were quarantined.  Its Parquet metadata (`VIEW_KEY`) names the delivered
  file, the columns read from it as they are (with the type each is read as) and the
  staged column order.

`scan_staged` reads either as the same frame: accepted rows, staged columns, staged
types.  Every reader of staged sources goes through it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import polars as pl

from eligibility import SOURCE_TYPES, Naming, Type
from jobs.catalogue import Catalogue

VIEW_KEY: Final = "disburse.staged_view"
ACCEPTED: Final = "_accepted"  # in a view's narrow file: whether the delivered row is staged
DELIVERED_SUFFIX: Final = ".delivered.parquet"
# The types a delivered column is read as, by name (what a view's metadata records).
READ_AS: Final[dict[str, pl.DataType]] = {
    "String": pl.String(),
    "Int64": pl.Int64(),
    "Boolean": pl.Boolean(),
    "Date": pl.Date(),
}


@dataclass(frozen=True)
class View:
    """How a staged source reads a delivered file (see the module's docstring)."""

    delivered: str  # file name, in the staged folder
    sha256: str
    taken: dict[str, str]  # delivered column -> the READ_AS type it is read as
    order: list[str]  # the staged columns, in order

    def metadata(self) -> dict[str, str]:
        """The narrow file's Parquet key-value metadata."""
        return {VIEW_KEY: json.dumps(asdict(self), sort_keys=True)}


def staged_file(folder: Path, name: str) -> Path:
    """A staged source's file (the whole of it, or a view's narrow file)."""
    return folder / f"{name}.parquet"


def view_of(path: Path) -> View | None:
    """The view a staged file describes, or None if it holds every staged column itself."""
    text = pl.read_parquet_metadata(path).get(VIEW_KEY)
    return None if text is None else View(**json.loads(text))


def scan_staged(
    path: Path, rows: tuple[int, int] | None = None, row_index: str | None = None
) -> pl.LazyFrame:
    """A staged source's accepted rows with its staged columns, whichever way it is kept.

    A view is the delivered file's taken columns beside the narrow file, row for row
    (a horizontal concatenation: each side reads only the columns asked for), less the
    rows not accepted.  `rows` (offset, length): only those rows of the files as stored
    (`stored_rows` counts them), accepted or not, so that a source is read in pieces
    without reading the rows before each; `row_index`: a column of that name numbering
    the stored rows (the same row, the same number, in every piece)."""

    def read(file: Path) -> pl.LazyFrame:
        lf = pl.scan_parquet(file)
        if row_index is not None:
            lf = lf.with_row_index(row_index)
        return lf if rows is None else lf.slice(*rows)

    view = view_of(path)
    if view is None:
        return read(path)
    delivered = pl.scan_parquet(path.parent / view.delivered)
    if rows is not None:
        delivered = delivered.slice(*rows)
    taken = delivered.select(
        # Not strict: a value beyond Int64 is in a quarantined row, filtered out below.
        pl.col(c).cast(READ_AS[t], strict=False)
        for c, t in view.taken.items()
    )
    frame = pl.concat([taken, read(path)], how="horizontal")
    order = view.order if row_index is None else [row_index, *view.order]
    return frame.filter(pl.col(ACCEPTED)).select(order)


def stored_rows(path: Path) -> int:
    """The rows a staged source's file holds, accepted or not (from its Parquet footer)."""
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def sql_relation(path: Path) -> str:
    """A staged source as a relation of DuckDB's SQL (for the bench's DuckDB baselines):
    the same rows and columns as `scan_staged`."""

    def quoted(p: Path) -> str:
        return "'" + str(p.resolve()).replace("'", "''") + "'"

    view = view_of(path)
    if view is None:
        return f"read_parquet({quoted(path)})"
    types = {"String": "VARCHAR", "Int64": "BIGINT", "Boolean": "BOOLEAN", "Date": "DATE"}
    picked = {c: f'n."{c}"' for c in view.order}
    picked.update({c: f'TRY_CAST(d."{c}" AS {types[t]})' for c, t in view.taken.items()})
    columns = ", ".join(f'{picked[c]} AS "{c}"' for c in view.order)
    return (
        f"(SELECT {columns} FROM read_parquet({quoted(path.parent / view.delivered)}) AS d "
        f"POSITIONAL JOIN read_parquet({quoted(path)}) AS n WHERE n.{ACCEPTED})"
    )


def staged_files(path: Path) -> list[Path]:
    """Every file a staged source is kept in: its own, and a view's delivered copy."""
    view = view_of(path) if path.is_file() else None
    return [path] if view is None else [path, path.parent / view.delivered]


def is_staged(path: Path) -> bool:
    """Whether a staged source's files are all there (a kept run's, to be reused)."""
    return path.is_file() and all(f.is_file() for f in staged_files(path))


def staged_columns(catalogue: Catalogue) -> dict[str, dict[str, Type]]:
    """Per source: every staged column (catalogue columns and surrogate keys) and its type."""
    out: dict[str, dict[str, Type]] = {}
    for name, source in catalogue.sources.items():
        cols: dict[str, Type] = {c: SOURCE_TYPES[col.type] for c, col in source.columns.items()}
        if source.entity is not None:
            cols[Naming.sk(source.entity)] = "count"
        for col in source.columns.values():
            for ref in col.references:
                cols[catalogue.sk_column(ref)] = "count"
        out[name] = cols
    return out


def staged_links(catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """Per source: each surrogate-key column and the entity kind whose key it holds (an
    entity source's own key; one per reference to an entity source)."""
    out: dict[str, dict[str, str]] = {}
    for name, source in catalogue.sources.items():
        links: dict[str, str] = {}
        if source.entity is not None:
            links[Naming.sk(source.entity)] = source.entity
        for col in source.columns.values():
            for ref in col.references:
                entity = catalogue.sources[ref.source].entity
                if entity is not None:
                    links[catalogue.sk_column(ref)] = entity
        out[name] = links
    return out
