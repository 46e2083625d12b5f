"""Validation of one source file against the catalogue, as Polars expressions.

Every rule is a boolean expression over a whole column; a row's fate is the
first rule it fails, in the catalogue's column order.  No row loop anywhere:
the whole file is one lazy plan, collected once on the streaming engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from jobs.catalogue import Catalogue, Column, Source
from jobs.identifiers import resident_id_valid_fast, uscc_valid_fast

ROW = "_row"  # 1-based position of the row among the file's data rows
FAIL = "_fail"  # code of the first failing rule (an index into Labels), null when accepted


class Labels:
    """Rule labels "column\trule" by integer code, so that the plan carries small integers
    rather than a string per row (strings only for the few quarantined rows)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def code(self, column: str, rule: str) -> int:
        label = f"{column}\t{rule}"
        if label not in self.names:
            self.names.append(label)
        return self.names.index(label) + 1

    def decode(self, expr: pl.Expr) -> pl.Expr:
        """The "column\trule" text of a code column."""
        table = {i + 1: name for i, name in enumerate(self.names)}
        return expr.replace_strict(table, default=None, return_dtype=pl.String)


USCC_SHAPE = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
RESIDENT_SHAPE = r"^[0-9]{17}[0-9X]$"

PARSE_RULE = {
    "int": "not_an_integer",
    "bool": "not_a_boolean",
    "date": "unparseable_date",
    "month": "unparseable_month",
}

# What each quarantine rule means, for the people who fix the files.
RULE_TEXT = {
    "missing_required": "a required value is empty",
    "not_an_integer": "the value is not a whole number",
    "not_a_boolean": "the value is not true or false",
    "unparseable_date": "the value is not a date written YYYY-MM-DD",
    "unparseable_month": "the value is not a month written YYYY-MM",
    "below_minimum": "the value is below the allowed minimum",
    "above_maximum": "the value is above the allowed maximum",
    "not_allowed_value": "the value is not one of the allowed values",
    "pattern_mismatch": "the value does not have the required form",
    "malformed_identifier": "the identifier has the wrong length or characters",
    "wrong_check_character": "the identifier's check character is wrong (GB 32100-2015 / GB 11643-1999)",
    "date_out_of_order": "the date is before the date it must follow",
    "duplicate_key": "another row has the same key; neither is used until one is corrected",
    "unknown_enterprise": "no accepted enterprise has this credit code",
    "unknown_person": "no accepted person has this identity number",
}


@dataclass(frozen=True)
class TypeProblem:
    """A column whose stored type cannot hold the catalogue's type."""

    column: str
    found: str
    expected: str


def accepts(expected: str, dtype: pl.DataType) -> bool:
    """Whether a file column of `dtype` can be read as the catalogue type `expected`."""
    if dtype == pl.Null or dtype == pl.String:
        return True  # text is parsed row by row; a bad value is quarantined, not fatal
    if expected == "string":
        return isinstance(dtype, pl.Categorical | pl.Enum)
    if expected == "int":
        return dtype.is_integer()
    if expected == "bool":
        return dtype == pl.Boolean
    if expected in ("date", "month"):
        return dtype == pl.Date or isinstance(dtype, pl.Datetime)
    return False


def _text(name: str) -> pl.Expr:
    """The raw value as trimmed text, empty text counted as missing."""
    s = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def _typed(name: str, col: Column, dtype: pl.DataType) -> pl.Expr:
    """The raw column converted to the catalogue type; null where it cannot be."""
    raw = pl.col(name)
    if col.type == "string":
        return _text(name)
    if dtype == pl.String or dtype == pl.Null:
        s = _text(name)
        if col.type == "int":
            return s.cast(pl.Int64, strict=False)
        if col.type == "bool":
            table = {"true": True, "false": False, "1": True, "0": False}
            return s.str.to_lowercase().replace_strict(table, default=None, return_dtype=pl.Boolean)
        if col.type == "date":
            return s.str.to_date("%Y-%m-%d", strict=False)
        # month: exactly YYYY-MM
        ok = s.str.contains(r"^[0-9]{4}-[0-9]{2}$")
        return pl.when(ok).then((s + "-01").str.to_date("%Y-%m-%d", strict=False))
    if col.type == "int":
        return raw.cast(pl.Int64)
    if col.type == "bool":
        return raw
    as_date = raw.dt.date() if isinstance(dtype, pl.Datetime) else raw
    return as_date.dt.month_start() if col.type == "month" else as_date


def _present(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return _text(name).is_not_null()
    return pl.col(name).is_not_null()


def _checks(name: str, col: Column, catalogue: Catalogue) -> list[tuple[str, pl.Expr]]:
    """(rule, failing-row expression) for the value rules, on the typed column."""
    v = pl.col(name)
    out: list[tuple[str, pl.Expr]] = []
    if col.min is not None:
        out.append(("below_minimum", v < col.min))
    if col.max is not None:
        out.append(("above_maximum", v > col.max))
    if col.allowed is not None:
        out.append(("not_allowed_value", ~v.is_in(list(col.allowed))))
    if col.pattern is not None:
        out.append(("pattern_mismatch", ~v.str.contains(col.pattern)))
    if col.check == "uscc":
        out.append(("malformed_identifier", ~v.str.contains(USCC_SHAPE)))
        out.append(("wrong_check_character", ~uscc_valid_fast(v)))
    elif col.check == "resident_id":
        out.append(("malformed_identifier", ~v.str.contains(RESIDENT_SHAPE)))
        out.append(("wrong_check_character", ~resident_id_valid_fast(v)))
    elif col.check == "uscc_or_resident_id":
        shaped = v.str.contains(USCC_SHAPE) | v.str.contains(RESIDENT_SHAPE)
        out.append(("malformed_identifier", ~shaped))
        out.append(("wrong_check_character", ~(uscc_valid_fast(v) | resident_id_valid_fast(v))))
    if col.in_list is not None:
        ref = catalogue.lists[col.in_list]
        out.append((ref.rule, ~v.is_in(list(ref.values))))
    if col.not_before is not None:
        out.append(("date_out_of_order", v < pl.col(col.not_before)))
    return out


def validation_plan(
    lf: pl.LazyFrame, source: Source, schema: pl.Schema, catalogue: Catalogue, labels: Labels
) -> pl.LazyFrame:
    """The typed columns, the row number and the first failing rule, for one source.

    `schema` is the file's own schema (already checked with `accepts`).  The
    `_present_<column>` flags stay in the output, for ingest to find a column none
    of whose values parse (the wrong column).  Value
    rules apply only where a value is present, so a missing optional value is
    never quarantined, and a required one fails `missing_required` and nothing else.
    Duplicate keys are found afterwards, over the validated rows (`duplicate_keys`,
    `mark_duplicates`): a window over the whole file would hold it all in memory.
    """
    names = list(source.columns)
    lf = lf.select(names).with_row_index(ROW, offset=1)
    stage_a: list[pl.Expr] = []
    failures: list[pl.Expr] = []
    for name, col in source.columns.items():
        dtype = schema[name]
        stage_a.append(_present(name, dtype).alias(f"_present_{name}"))
        stage_a.append(_typed(name, col, dtype).alias(name))
        present, typed = pl.col(f"_present_{name}"), pl.col(name)
        if col.required:
            failures.append(_fail_when(~present, labels.code(name, "missing_required")))
        if col.type in PARSE_RULE and (dtype == pl.String or dtype == pl.Null):
            code = labels.code(name, PARSE_RULE[col.type])
            failures.append(_fail_when(present & typed.is_null(), code))
        for rule, bad in _checks(name, col, catalogue):
            failures.append(_fail_when(typed.is_not_null() & bad, labels.code(name, rule)))
    return lf.with_columns(stage_a).with_columns(pl.coalesce(failures).alias(FAIL))


def duplicate_keys(validated: pl.LazyFrame, source: Source) -> pl.DataFrame:
    """The keys held by more than one otherwise valid row (usually none).

    Grouped by a 64-bit hash of the key first (a few bytes a row, where the keys
    themselves are 18-character identifiers), and only the rows whose hash repeats
    are grouped again by the key itself, so hash collisions never mark a row.
    """
    key = list(source.key)
    ok = validated.filter(pl.col(FAIL).is_null())
    hashed = pl.struct(key).hash().alias("_h")
    suspects = (
        ok.select(hashed)
        .group_by("_h")
        .agg(pl.len().alias("_n"))
        .filter(pl.col("_n") > 1)
        .select("_h")
        .collect(engine="streaming")
    )
    if suspects.height == 0:
        return ok.select(key).head(0).collect()
    return (
        ok.select(*key, hashed)
        .join(suspects.lazy(), on="_h", how="semi")
        .group_by(key)
        .agg(pl.len().alias("_n"))
        .filter(pl.col("_n") > 1)
        .select(key)
        .collect(engine="streaming")
    )


def mark_duplicates(
    validated: pl.LazyFrame, duplicates: pl.DataFrame, source: Source, labels: Labels
) -> pl.LazyFrame:
    """`validated` with the rows of `duplicates`' keys failing duplicate_key (if still valid)."""
    if duplicates.height == 0:
        return validated
    key = list(source.key)
    code = labels.code("+".join(key), "duplicate_key")
    flagged = duplicates.lazy().with_columns(pl.lit(True).alias("_dup"))
    return (
        validated.join(flagged, on=key, how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col(FAIL).is_null() & pl.col("_dup").fill_null(False))
            .then(pl.lit(code, dtype=pl.UInt16))
            .otherwise(pl.col(FAIL))
            .alias(FAIL)
        )
        .drop("_dup")
    )


def _fail_when(cond: pl.Expr, code: int) -> pl.Expr:
    return pl.when(cond.fill_null(False)).then(pl.lit(code, dtype=pl.UInt16))
