"""Validation of one source file against the catalogue, as Polars expressions.

Every rule is a boolean expression over a whole column; a row's fate is the
first rule it fails, in the catalogue's column order.  No row loop anywhere:
the whole file is one lazy plan, collected once on the streaming engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from common.identifiers import (
    CODE_FIELD,
    ID_MALFORMED,
    ID_WRONG_CHECK,
    STATUS_FIELD,
    identifier_expr,
)
from jobs.catalogue import INT64_MAX, Catalogue, Column, Source
from jobs.staged import scan_staged

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
    "integer_out_of_range": "the whole number does not fit in 64 bits (beyond ±9,223,372,036,854,775,807)",
    "below_minimum": "the value is below the allowed minimum",
    "above_maximum": "the value is above the allowed maximum",
    "money_out_of_range": "the amount is beyond the column's bound (max_fen): no single row can be that much",
    "not_allowed_value": "the value is not one of the allowed values",
    "pattern_mismatch": "the value does not have the required form",
    "malformed_identifier": "the identifier has the wrong length or characters",
    "wrong_check_character": "the identifier's check character is wrong (GB 32100-2015 / GB 11643-1999)",
    "date_out_of_order": "the date is before the date it must follow",
    "duplicate_key": "another row has the same key; neither is used until one is corrected",
    "unknown_enterprise": "no accepted enterprise has this credit code",
    "unknown_person": "no accepted person has this identity number",
}


OUT_OF_RANGE = "integer_out_of_range"
WHOLE_NUMBER = r"^[+-]?[0-9]+$"


def quarantine_rules(catalogue: Catalogue) -> list[str]:
    """Every rule a row can be quarantined under: the validator's own and each list's."""
    entities = {f"unknown_{e}" for e in catalogue.entity_sources}
    lists = {ref.rule for ref in catalogue.lists.values()}
    return [*RULE_TEXT, *sorted((entities | lists) - set(RULE_TEXT))]


def rule_text(rule: str) -> str:
    """What a quarantine rule means, in a sentence."""
    if rule in RULE_TEXT:
        return RULE_TEXT[rule]
    if rule.startswith("unknown_"):
        return f"no accepted {rule.removeprefix('unknown_')} has this key"
    return rule.replace("_", " ")


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


def _present(name: str, dtype: pl.DataType) -> pl.Expr:
    """Whether the (already trimmed) value is there: not null, and not empty text."""
    if _is_text(dtype):  # cast to trimmed String by the plan's first step
        return (pl.col(name).str.len_bytes() > 0).fill_null(False)
    return pl.col(name).is_not_null()


def _is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.String or dtype == pl.Null or isinstance(dtype, pl.Categorical | pl.Enum)


def _typed(name: str, col: Column, dtype: pl.DataType) -> pl.Expr:
    """The column converted to the catalogue type; null where it cannot be.

    Text columns arrive trimmed (`validation_plan`'s first step), so an empty value
    is a missing one and parses to null."""
    raw = pl.col(name)
    if _is_text(dtype):
        if col.type == "string":
            return pl.when(raw.str.len_bytes() > 0).then(raw)
        if col.type == "int":
            return raw.cast(pl.Int64, strict=False)
        if col.type == "bool":
            table = {"true": True, "false": False, "1": True, "0": False}
            return raw.str.to_lowercase().replace_strict(
                table, default=None, return_dtype=pl.Boolean
            )
        if col.type == "date":
            return raw.str.to_date("%Y-%m-%d", strict=False)
        # month: exactly YYYY-MM
        ok = raw.str.contains(r"^[0-9]{4}-[0-9]{2}$")
        return pl.when(ok).then((raw + "-01").str.to_date("%Y-%m-%d", strict=False))
    if col.type == "int":
        # Null where the value does not fit (an unsigned 64-bit value above the signed
        # range): quarantined as integer_out_of_range, not a failure of the whole file.
        return raw.cast(pl.Int64, strict=False)
    if col.type == "bool":
        return raw
    as_date = raw.dt.date() if isinstance(dtype, pl.Datetime) else raw
    return as_date.dt.month_start() if col.type == "month" else as_date


def taken_columns(source: Source, schema: pl.Schema, changed: set[str]) -> dict[str, str]:
    """The columns whose staged values are the delivered ones as they are (`_typed` only
    casts them), and the type each is read as (`jobs.staged.READ_AS`): text that validation
    did not change (`changed`: trimmed, or empty read as missing), whole numbers, booleans
    and dates already of their type.  Text parsed as another type, and datetimes, are not."""
    taken: dict[str, str] = {}
    for name, col in source.columns.items():
        dtype = schema[name]
        if _is_text(dtype):
            if col.type == "string" and name not in changed:
                taken[name] = "String"
        elif col.type == "int" and dtype.is_integer():
            taken[name] = "Int64"
        elif col.type == "bool" and dtype == pl.Boolean:
            taken[name] = "Boolean"
        elif col.type == "date" and dtype == pl.Date:
            taken[name] = "Date"
    return taken


def present_column(name: str) -> str:
    """Whether a value was there (not empty), during validation."""
    return f"_present_{name}"


def parsed_columns(source: Source, schema: pl.Schema) -> list[str]:
    """The columns delivered as text and parsed as another type (int, bool, date, month)."""
    return [n for n, c in source.columns.items() if c.type in PARSE_RULE and _is_text(schema[n])]


def _changed(name: str) -> pl.Expr:
    """Whether trimming changed the value, or empty text is read as missing (a text column,
    before its trimmed values replace the delivered ones)."""
    raw = pl.col(name).cast(pl.String).str.len_bytes()
    return ((raw != pl.col(_trimmed(name)).str.len_bytes()) | (raw == 0)).fill_null(False)


def _trimmed(name: str) -> str:
    """A text column's trimmed values, during validation (`validation_plan`)."""
    return f"_trimmed_{name}"


def changed_column(name: str) -> str:
    """Whether validation changed a text value, during validation (`validation_plan`)."""
    return f"_changed_{name}"


def ident(name: str) -> str:
    """The struct column of an identifier's status and code, during validation."""
    return f"_id_{name}"


def code_column(name: str) -> str:
    """The integer code of a valid resident identity number, kept in the scratch file."""
    return f"_code_{name}"


def _checks(name: str, col: Column, catalogue: Catalogue) -> list[tuple[str, pl.Expr]]:
    """(rule, failing-row expression) for the value rules, on the typed column."""
    v = pl.col(name)
    out: list[tuple[str, pl.Expr]] = []
    if col.min is not None:
        out.append(("below_minimum", v < col.min))
    if col.max is not None:
        out.append(("above_maximum", v > col.max))
    if (bound := col.money_bound) is not None:
        # Not abs(): the absolute value of the smallest Int64 is itself, negative.
        out.append(("money_out_of_range", (v > bound) | (v < -bound)))
    if col.allowed is not None:
        out.append(("not_allowed_value", ~v.is_in(list(col.allowed))))
    if col.pattern is not None:
        out.append(("pattern_mismatch", ~v.str.contains(col.pattern)))
    if col.check is not None:
        status = pl.col(ident(name)).struct.field(STATUS_FIELD)
        out.append(("malformed_identifier", status == ID_MALFORMED))
        out.append(("wrong_check_character", status == ID_WRONG_CHECK))
    if col.in_list is not None:
        ref = catalogue.lists[col.in_list]
        out.append((ref.rule, ~v.is_in(list(ref.values))))
    if col.not_before is not None:
        out.append(("date_out_of_order", v < pl.col(col.not_before)))
    return out


@dataclass(frozen=True)
class EntityKeys:
    """An entity source's accepted identifiers and their surrogate keys, for references.

    `staged`: the entity's staged file, holding `column` and `sk`.  `codes`: for
    identity numbers, their integer codes and keys (`_code`, `_sk`), sorted by code, so
    that references find them by 8-byte integers rather than 18-byte text
    (`merge_lookup`)."""

    staged: Path
    column: str
    sk: str
    codes: pl.DataFrame | None = None
    # Entities not in the staged file that references may name too (`column`, `_sk`):
    # those registered by events since the night (`jobs.events.stage`).
    extra: pl.DataFrame | None = None
    # The staged file's `column` and `_sk`, when the caller holds them in memory, sorted
    # by `column` (`lookup` finds identifiers in it by binary search).
    known: pl.DataFrame | None = None

    def table(self) -> pl.LazyFrame:
        """Identifier -> surrogate key, for a join on the text."""
        staged = (
            scan_staged(self.staged).select(self.column, pl.col(self.sk).alias("_sk"))
            if self.known is None
            else self.known.lazy()
        )
        if self.extra is None:
            return staged
        return pl.concat([staged, self.extra.lazy().select(self.column, "_sk")]).unique(
            self.column, keep="last", maintain_order=True
        )

    def lookup(self, values: pl.Series) -> pl.LazyFrame:
        """`table()` for `values` alone (those it holds): a few events' references found
        without reading every identifier.  With `known` held in memory, by binary search
        in it (its order is checked, not trusted); else by a semi-join."""
        wanted = values.drop_nulls().unique().sort().cast(pl.String).rename(self.column)
        known = self.known
        if known is None or not known.get_column(self.column).is_sorted():
            return self.table().join(wanted.to_frame().lazy(), on=self.column, how="semi")
        ids = known.get_column(self.column)
        at = ids.search_sorted(wanted, side="left").cast(pl.Int64)
        inside = at < known.height
        found = known.gather(at.filter(inside)).filter(pl.col(self.column) == wanted.filter(inside))
        if self.extra is None:
            return found.lazy()
        named = self.extra.select(self.column, "_sk").filter(pl.col(self.column).is_in(wanted))
        return (
            pl.concat([found, named]).unique(self.column, keep="last", maintain_order=True).lazy()
        )


@dataclass(frozen=True)
class Unknown:
    """A reference whose key was not found: its surrogate-key column and failure code."""

    sk: str
    code: int


def validation_plan(
    lf: pl.LazyFrame,
    source: Source,
    schema: pl.Schema,
    catalogue: Catalogue,
    labels: Labels,
    *,
    changes: bool = False,
) -> pl.LazyFrame:
    """The typed columns, the row number and the first failing rule, for one source.

    `schema` is the file's own schema (already checked with `accepts`).  The
    `_present_<column>` flags of text parsed as another type stay in the output, for
    ingest to find a required column none of whose values parse (the wrong column), and so
    do the integer codes of identity numbers (`_code_<column>`).  Value rules apply only where a value is
    present, so a missing optional value is never quarantined, and a required one
    fails `missing_required` and nothing else.  References (`attach_references`)
    and duplicate keys (`duplicate_keys`) are found over the validated rows.

    With `changes`, each text column of type string has a flag `_changed_<column>`:
    whether validation changed the delivered value (trimmed it, or read empty text as
    missing), so that ingest knows which columns it can read from the delivery as they are.
    """
    names = list(source.columns)
    lf = lf.select(names).with_row_index(ROW, offset=1)
    # Trim every text value once; every later expression reads the trimmed text.
    text = [n for n in names if _is_text(schema[n])]
    lf = lf.with_columns(
        pl.col(n).cast(pl.String).str.strip_chars().alias(_trimmed(n)) for n in text
    )
    flags = [n for n in text if changes and source.columns[n].type == "string"]
    if flags:  # by the lengths alone: trimming only ever shortens a value
        lf = lf.with_columns(_changed(n).alias(changed_column(n)) for n in flags)
    lf = lf.drop(text).rename({_trimmed(n): n for n in text})
    lf = lf.select(ROW, *names, *(changed_column(n) for n in flags))
    stage: list[pl.Expr] = []
    failures: list[pl.Expr] = []
    for name, col in source.columns.items():
        dtype = schema[name]
        stage.append(_present(name, dtype).alias(present_column(name)))
        stage.append(_typed(name, col, dtype).alias(name))
        if col.check is not None:
            stage.append(identifier_expr(pl.col(name), col.check).alias(ident(name)))
        present, typed = pl.col(present_column(name)), pl.col(name)
        if col.required:
            failures.append(_fail_when(~present, labels.code(name, "missing_required")))
        unparsed = present & typed.is_null()
        if col.type == "int":
            # A whole number too large for 64 bits, as text or in an unsigned column.
            whole = pl.lit(True)
            if _is_text(dtype):
                stage.append(pl.col(name).str.contains(WHOLE_NUMBER).alias(_whole(name)))
                whole = pl.col(_whole(name))
            failures.append(_fail_when(unparsed & whole, labels.code(name, OUT_OF_RANGE)))
        if col.type in PARSE_RULE and _is_text(dtype):
            failures.append(_fail_when(unparsed, labels.code(name, PARSE_RULE[col.type])))
        for rule, bad in _checks(name, col, catalogue):
            failures.append(_fail_when(typed.is_not_null() & bad, labels.code(name, rule)))
    checked = [n for n, c in source.columns.items() if c.check is not None]
    lf = lf.with_columns(stage).with_columns(
        pl.coalesce(failures).alias(FAIL),
        *(
            pl.col(ident(n)).struct.field(CODE_FIELD).alias(code_column(n))
            for n in checked
            if source.columns[n].check != "uscc"
        ),
    )
    parsed = parsed_columns(source, schema)
    wholes = [
        _whole(n) for n, c in source.columns.items() if c.type == "int" and _is_text(schema[n])
    ]
    lf = lf.drop(
        [ident(n) for n in checked] + [present_column(n) for n in names if n not in parsed] + wholes
    )
    return lf


def _whole(name: str) -> str:
    """Whether the text of an int column is written as a whole number, during validation."""
    return f"_whole_{name}"


def attach_references(
    lf: pl.LazyFrame | pl.DataFrame,
    source: Source,
    catalogue: Catalogue,
    labels: Labels,
    keys: dict[str, EntityKeys],
) -> tuple[pl.LazyFrame, list[Unknown]]:
    """`lf` with the surrogate-key column of each reference (null where the key is unknown).

    Identity numbers are found by their integer codes (in a frame in memory, by
    `merge_lookup`; in a streamed plan, by a hash join), other identifiers by their
    text.  A key not found is a failure only after duplicates are marked
    (`final_failures`); the returned `Unknown`s say which columns to check."""
    unknown: list[Unknown] = []
    for name, col in source.columns.items():
        for ref in col.references:
            target = catalogue.sources[ref.source]
            sk = catalogue.sk_column(ref)
            entity = keys[ref.source]
            by_code = entity.codes is not None and col.check in (
                "resident_id",
                "uscc_or_resident_id",
            )
            if by_code and isinstance(lf, pl.DataFrame):
                assert entity.codes is not None
                found = merge_lookup(lf.get_column(code_column(name)), entity.codes)
                lf = lf.with_columns(found.alias(sk))
            else:
                if by_code:
                    assert entity.codes is not None
                    on = code_column(name)
                    lookup = entity.codes.lazy().rename({"_code": on, "_sk": sk})
                else:
                    on = name
                    ids = (  # a frame in memory: its identifiers alone
                        entity.lookup(lf.get_column(name))
                        if isinstance(lf, pl.DataFrame)
                        else entity.table()
                    )
                    lookup = ids.rename({entity.column: name, "_sk": sk})
                if isinstance(lf, pl.DataFrame):
                    # Only the key column goes through the join, and its result is attached:
                    # joining the whole frame would gather every column again.
                    # The entity's identifiers are unique, so the left join keeps the rows.
                    found = (
                        lf.lazy()
                        .select(on)
                        .join(lookup, on=on, how="left", maintain_order="left")
                        .select(sk)
                        .collect()
                        .to_series()
                    )
                    lf = lf.with_columns(found)
                else:
                    lf = lf.join(lookup, on=on, how="left", maintain_order="left")
            if ref.on_missing == "quarantine":
                unknown.append(Unknown(sk, labels.code(name, f"unknown_{target.entity}")))
    return lf.lazy(), unknown


def merge_lookup(codes: pl.Series, table: pl.DataFrame) -> pl.Series:
    """The `_sk` of each code in `table` (`_code`, `_sk`: codes unique and ascending), null
    for a null code or one the table lacks; Int32, in the order of `codes`.

    A merge instead of a hash join: the codes are sorted, matched against the table in one
    pass (`join_asof`, then kept only where the code is equal), and put back in their rows'
    order.  A hash join rebuilds a table of ten million persons for every reference and
    probes it at random; this is 2.2 times as fast for a city's 9.6 million family
    relations (two references each).
    """
    keyed = codes.cast(pl.Int64).fill_null(0)  # valid codes are >= 1, so 0 matches nothing
    order = keyed.arg_sort()
    probe = keyed.gather(order).alias("_code").to_frame().set_sorted("_code")
    matched = probe.join_asof(
        table.select("_code", pl.col("_code").alias("_at"), "_sk").set_sorted("_code"),
        on="_code",
        strategy="backward",
        check_sortedness=False,
    )
    hit = matched.select(
        pl.when(pl.col("_at") == pl.col("_code")).then(pl.col("_sk")).fill_null(0)
    ).to_series()
    out = np.empty(len(codes), dtype=np.int32)
    out[order.to_numpy()] = hit.to_numpy()
    sks = pl.Series(codes.name, out)
    return pl.select(pl.when(sks > 0).then(sks)).to_series().alias(codes.name)


def final_failures(
    validated: pl.LazyFrame,
    duplicates: pl.DataFrame,
    source: Source,
    labels: Labels,
    unknown: list[Unknown],
) -> pl.LazyFrame:
    """`validated` with duplicate keys, then unknown references, failing rows that were valid."""
    lf = mark_duplicates(validated, duplicates, source, labels)
    for ref in unknown:
        missing = pl.col(FAIL).is_null() & pl.col(ref.sk).is_null()
        code = pl.lit(ref.code, dtype=pl.UInt16)
        lf = lf.with_columns(pl.when(missing).then(code).otherwise(pl.col(FAIL)).alias(FAIL))
    return lf


def dedup_key(source: Source) -> list[str]:
    """The columns duplicates are found on: the key, identity numbers by their integer codes
    (a valid row's number always has one, and it is one-to-one with the text)."""
    return [
        code_column(k) if source.columns[k].check in ("resident_id",) else k for k in source.key
    ]


def duplicate_keys(validated: pl.LazyFrame, source: Source) -> pl.DataFrame:
    """The keys held by more than one otherwise valid row (usually none).

    A 64-bit hash of the key per row (a few bytes, where the keys themselves may be
    18-character identifiers) is sorted, and a hash equal to its neighbour repeats
    (sorting the hashes is faster than grouping them; Polars sorts them, faster than
    numpy: docs/benchmarks.md, "Ingest").  Only the rows whose hash repeats are grouped again by
    the key itself, so hash collisions never mark a row.
    """
    key = dedup_key(source)
    ok = validated.filter(pl.col(FAIL).is_null())
    hashed = pl.struct(key).hash().alias("_h")
    ordered = ok.select(hashed).collect(engine="streaming").to_series().sort().to_numpy()
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    suspects = pl.DataFrame({"_h": repeated}, schema={"_h": pl.UInt64})
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
    key = dedup_key(source)
    code = labels.code("+".join(source.key), "duplicate_key")
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


def sum_bound(col: Column) -> int | None:
    """The largest absolute value an accepted value of an int column can have: its money
    bound, or the larger of |min| and |max| when both are declared; None if unbounded."""
    if col.money_bound is not None:
        return col.money_bound
    if col.type == "int" and col.min is not None and col.max is not None:
        return max(abs(col.min), abs(col.max))
    return None


def sum_problem(staged: pl.LazyFrame, source: Source, catalogue: Catalogue) -> str | None:
    """Why some sum of an int column over one entity's rows could pass the 64-bit range, or
    None (always, for the shipped catalogue).

    Features add a column over an entity's rows in a window, in 64 bits
    (eligibility's Polars backend), where an overflow would wrap silently: premiums
    near the 64-bit maximum once added up to 12.00 yuan.  Every accepted value of a
    bounded column lies within ±`sum_bound` (money_out_of_range, below_minimum,
    above_maximum), so if an entity has at most `n` rows, each of its sums lies within
    ±n x bound.  `n` is bounded without grouping where possible: by the rows of the
    file, then by the key (rows of one entity differ in the other key columns, so
    there are at most as many as those columns' distinct combinations: 24 months for
    a monthly source, against the 92,233 that the largest money bound allows).  Only if
    that is not enough, or a column is unbounded, are the values of each entity added
    up, in 128 bits, by absolute value (which bounds the sum over any window).
    """
    ints = {n: sum_bound(c) for n, c in source.columns.items() if c.type == "int"}
    refs = {
        (n, catalogue.sk_column(ref)): catalogue.sources[ref.source].entity
        for n, c in source.columns.items()
        for ref in c.references
    }
    if not ints or not refs:
        return None  # nothing is summed per entity (an entity's own row is one row)
    rows = int(staged.select(pl.len()).collect().item())
    for (column, sk), entity in sorted(refs.items()):
        others = [k for k in source.key if k != column]
        if column in source.key:
            distinct = staged.select(pl.col(k).n_unique() for k in others).collect().row(0)
            per_entity = min(rows, math.prod(int(d) for d in distinct))
        else:
            counts = staged.drop_nulls(sk).group_by(sk).len().select(pl.col("len").max())
            per_entity = int(counts.collect().item() or 0)
        loose = [n for n, b in ints.items() if b is None or per_entity * b > INT64_MAX]
        if not loose:
            continue
        totals = (
            staged.drop_nulls(sk)
            .group_by(sk)
            .agg(pl.col(n).cast(pl.Int128).abs().sum() for n in loose)
            .select(pl.col(n).max() for n in loose)
            .collect()
            .row(0)
        )
        for name, total in zip(loose, totals, strict=True):
            if total is not None and total > INT64_MAX:
                bound = ints[name]
                within = f"each row is within ±{bound:,}" if bound else "the column has no bound"
                return (
                    f"column {name!r}: the values of one {entity} add up to {total:,}, beyond "
                    f"the {INT64_MAX:,} that features add up exactly ({within}, and one "
                    f"{entity} has up to {per_entity:,} rows)"
                )
    return None
