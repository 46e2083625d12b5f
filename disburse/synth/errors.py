"""Injecting bad rows that ingest must quarantine, each breaking exactly one rule.

Which rules a source can break is read from the catalogue (a `check` column
can get a wrong check character, an `int` column with `min` a value below it,
and so on), so a new column gets its share of errors without code changes.

Each injected row breaks one rule and only that one:

* values are altered in columns outside the source's key, so that a bad value
  never also makes a duplicate or an unknown key; wrong check characters are
  the exception (the key stays unique, as the first 17 characters are), and
  only in entity sources or columns whose references are `on_missing: keep`,
  so that no row becomes an unknown enterprise or person as well;
* in the entity sources (enterprises, persons) only rows no other source
  refers to are touched: a quarantined entity would otherwise turn the rows
  that name it into unknown references;
* a duplicate is a copy of a row appended to the file; by the catalogue's
  rule both copies fail `duplicate_key`, and the manifest names the original
  as `duplicate_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from common.identifiers import USCC_ALPHABET, resident_id_valid_expr, uscc_valid_expr
from disburse.synth._context import IntArray
from jobs.catalogue import Catalogue, Source

WRONG_CHECK = "wrong_check_character"
BELOW_MINIMUM = "below_minimum"
DUPLICATE_KEY = "duplicate_key"
UNPARSEABLE_DATE = "unparseable_date"
MISSING_REQUIRED = "missing_required"
RESIDENT_CHECK_ALPHABET = "0123456789X"


@dataclass(frozen=True, slots=True)
class Injection:
    """One bad row as the manifest records it."""

    source: str
    row: int
    rule: str
    column: str
    duplicate_of: int | None = None

    def as_dict(self) -> dict[str, object]:
        """The manifest entry; `duplicate_of` only for duplicates."""
        out: dict[str, object] = {
            "source": self.source,
            "row": self.row,
            "rule": self.rule,
            "column": self.column,
        }
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        return out


def slots(catalogue: Catalogue, name: str) -> dict[str, list[str]]:
    """The rules rows of a source can be made to break, each with the columns to break it in."""
    source = catalogue.sources[name]
    key = set(source.key)
    out: dict[str, list[str]] = {}

    def add(kind: str, column: str) -> None:
        out.setdefault(kind, []).append(column)

    for col_name, col in source.columns.items():
        if col.check is not None:
            harmless = all(ref.on_missing == "keep" for ref in col.references)
            if harmless or (source.entity is not None and col_name == source.entity_column):
                add(WRONG_CHECK, col_name)
        if col_name in key:
            continue
        if col.type == "int" and col.min is not None:
            add(BELOW_MINIMUM, col_name)
        if col.in_list is not None and _outsiders(catalogue, col.in_list):
            add(catalogue.lists[col.in_list].rule, col_name)
        if col.type == "date":
            add(UNPARSEABLE_DATE, col_name)
        if col.required:
            add(MISSING_REQUIRED, col_name)
    if source.key:
        add(DUPLICATE_KEY, ",".join(source.key))
    return out


def _outsiders(catalogue: Catalogue, list_name: str) -> list[str]:
    """Codes that look like the list's codes but are not in it.

    For six-digit division codes: other codes of the same prefectures, such as
    330103 and 330104 (Xiacheng and Jianggan, merged away in 2021).
    """
    values = catalogue.lists[list_name].values
    if not all(len(v) == 6 and v.isdigit() for v in values):
        return []
    prefixes = sorted({v[:4] for v in values})
    return [c for c in (f"{p}{k:02d}" for p in prefixes for k in range(1, 100)) if c not in values]


def _stochastic_round(rng: np.random.Generator, x: float) -> int:
    whole = int(np.floor(x))
    return whole + int(rng.random() < x - whole)


def inject(
    catalogue: Catalogue,
    frames: Mapping[str, pl.DataFrame],
    eligible: Mapping[str, IntArray | None],
    rate: float,
    rng: np.random.Generator,
) -> tuple[dict[str, pl.DataFrame], list[Injection]]:
    """Bad rows in about `rate` of each source's rows, each rule it can break at least once.

    `eligible[source]` lists the rows that may be altered or duplicated (None:
    all).  Returns the new frames and the manifest entries, row numbers being
    those of the returned frames.  Each source is planned on its own, so
    sources can be generated, spoiled and written one at a time.
    """
    out: dict[str, pl.DataFrame] = dict(frames)
    injections: list[Injection] = []
    if rate <= 0:
        return out, injections
    for name, frame in frames.items():
        rows = eligible.get(name)
        capacity = frame.height if rows is None else rows.shape[0]
        kinds = slots(catalogue, name)
        if not kinds or capacity == 0:
            continue
        kind_names = sorted(kinds)
        k = min(max(len(kind_names), _stochastic_round(rng, rate * frame.height)), capacity)
        # Every kind once, then kinds at random; a tiny source takes a random few.
        sequence = np.concatenate(
            [rng.permutation(len(kind_names)), rng.integers(0, len(kind_names), k)]
        )[:k]
        plan = []
        for kind_index in sequence.tolist():
            columns = kinds[kind_names[kind_index]]
            plan.append((kind_names[kind_index], columns[int(rng.integers(0, len(columns)))]))
        out[name], found = _inject_source(catalogue, name, frame, rows, plan, rng)
        injections.extend(found)
    injections.sort(key=lambda i: (i.source, i.row))
    return out, injections


def _inject_source(
    catalogue: Catalogue,
    name: str,
    frame: pl.DataFrame,
    eligible: IntArray | None,
    plan: list[tuple[str, str]],
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, list[Injection]]:
    source = catalogue.sources[name]
    pool_size = frame.height if eligible is None else eligible.shape[0]
    chosen = rng.choice(pool_size, size=len(plan), replace=False)
    rows = chosen if eligible is None else eligible[chosen]
    rows = np.asarray(rows, dtype=np.int64)
    kinds = np.array([k for k, _ in plan])
    columns = np.array([c for _, c in plan])

    altered = frame
    records: list[tuple[int, str, str]] = []  # (row, rule, column)
    for kind, column in sorted(set(plan)):
        if kind == DUPLICATE_KEY:
            continue
        at = rows[(kinds == kind) & (columns == column)]
        values = altered.get_column(column).gather(pl.Series(at, dtype=pl.UInt32))
        bad = _bad_values(catalogue, source, kind, column, values, rng)
        altered = altered.with_columns(altered.get_column(column).scatter(at, bad))
        records.extend((int(r), kind, column) for r in at.tolist())

    # Duplicates are appended, as a delivery that repeats records would have them.
    duplicates = rows[kinds == DUPLICATE_KEY]
    n = altered.height
    if duplicates.shape[0]:
        copies = altered.gather(pl.Series(duplicates, dtype=pl.UInt32))
        altered = pl.concat([altered, copies], rechunk=False)

    found = [Injection(name, r, rule, col) for r, rule, col in records]
    key = ",".join(source.key)
    found.extend(
        Injection(name, n + j, DUPLICATE_KEY, key, int(r))
        for j, r in enumerate(duplicates.tolist())
    )
    return altered, found


def _bad_values(
    catalogue: Catalogue,
    source: Source,
    kind: str,
    column: str,
    values: pl.Series,
    rng: np.random.Generator,
) -> pl.Series:
    col = source.columns[column]
    k = len(values)
    if kind == MISSING_REQUIRED:
        return pl.Series(column, [None] * k, dtype=values.dtype)
    if kind == BELOW_MINIMUM:
        assert col.min is not None
        v = values.to_numpy()
        # A sign error: the amount or count, negated (-1 for zero).
        return pl.Series(column, col.min - np.maximum(v - col.min, 1), dtype=values.dtype)
    if kind == UNPARSEABLE_DATE:
        return _unparseable_dates(values, rng)
    if kind == WRONG_CHECK:
        assert col.check is not None
        return _wrong_check(values, col.check)
    # An in_list rule: a code of the same shape that is not in the list.
    assert col.in_list is not None
    outsiders = _outsiders(catalogue, col.in_list)
    return pl.Series(column, outsiders, dtype=pl.String).gather(
        pl.Series(rng.integers(0, len(outsiders), k), dtype=pl.UInt32)
    )


def _unparseable_dates(values: pl.Series, rng: np.random.Generator) -> pl.Series:
    """Dates a person might type: 30 February, or day/month/year."""
    frame = pl.DataFrame({"v": values, "form": rng.integers(0, 2, len(values))})
    text = pl.col("v").fill_null("2025-01-01")
    return frame.select(
        pl.when(pl.col("form") == 0)
        .then(pl.concat_str(text.str.slice(0, 4), pl.lit("-02-30")))
        .otherwise(
            pl.concat_str(
                text.str.slice(8, 2),
                pl.lit("/"),
                text.str.slice(5, 2),
                pl.lit("/"),
                text.str.slice(0, 4),
            )
        )
        .alias(values.name)
    ).to_series()


def _wrong_check(values: pl.Series, check: str) -> pl.Series:
    """The same identifiers with another check character that fails every applicable check.

    The replacement is taken from the identifier's own alphabet (digits and X
    for identity numbers), so the value keeps its length and shape and fails
    on the check character alone.  For `uscc_or_resident_id`, a digit-only
    code must fail both checks, so replacements are tried until one does.
    """
    v = pl.col("v")
    if check == "resident_id":
        resident = pl.lit(True)
    elif check == "uscc":
        resident = pl.lit(False)
    else:
        resident = resident_id_valid_expr(v)
    frame = pl.DataFrame({"v": values}).with_columns(resident.alias("resident"))
    uscc_pos = {c: i for i, c in enumerate(USCC_ALPHABET)}
    res_pos = {c: i for i, c in enumerate(RESIDENT_CHECK_ALPHABET)}
    last = v.str.slice(17, 1)
    frame = frame.with_columns(
        last.replace_strict(uscc_pos, default=0, return_dtype=pl.Int64).alias("u"),
        last.replace_strict(res_pos, default=0, return_dtype=pl.Int64).alias("r"),
        pl.lit(None, dtype=pl.String).alias("out"),
    )
    for offset in range(1, len(USCC_ALPHABET)):
        u_char = ((pl.col("u") + offset) % len(USCC_ALPHABET)).replace_strict(
            dict(enumerate(USCC_ALPHABET)), return_dtype=pl.String
        )
        r_char = ((pl.col("r") + offset) % len(RESIDENT_CHECK_ALPHABET)).replace_strict(
            dict(enumerate(RESIDENT_CHECK_ALPHABET)), return_dtype=pl.String
        )
        candidate = pl.concat_str(
            v.str.slice(0, 17), pl.when(pl.col("resident")).then(r_char).otherwise(u_char)
        )
        fails = ~uscc_valid_expr(candidate) & ~resident_id_valid_expr(candidate)
        frame = frame.with_columns(
            pl.when(pl.col("out").is_null() & fails)
            .then(candidate)
            .otherwise(pl.col("out"))
            .alias("out")
        )
        if frame.get_column("out").null_count() == 0:
            break
    return frame.get_column("out").alias(values.name)
