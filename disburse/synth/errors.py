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
  as `duplicate_of`;
* a key column is altered only where the new value fails a rule of its own
  (a year above the maximum, a malformed identifier) or names an entity that
  does not exist (an unknown enterprise or person: the identifier reissued
  for a division of the city's prefecture outside its list, such as 330103,
  under which the generator issues no identifier),
  each row to a value no other row has;
* a text value in an int or bool column (not a number, a number beyond 64
  bits, "是" for true) turns that column of the file into text, as a bureau
  exporting it as text would deliver it; its other values stay readable.

Every rule the validator has can be injected (`RULES`); a test holds the two
lists equal, so a new rule comes with its injection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from common.identifiers import (
    USCC_ALPHABET,
    ascii_rows_to_series,
    resident_id_bytes,
    resident_id_valid_expr,
    uscc_bytes,
    uscc_valid_expr,
)
from disburse.synth._context import IntArray, SynthError, city_list
from jobs.catalogue import Catalogue, Column, Source

WRONG_CHECK = "wrong_check_character"
MALFORMED_ID = "malformed_identifier"
BELOW_MINIMUM = "below_minimum"
ABOVE_MAXIMUM = "above_maximum"
MONEY_OUT_OF_RANGE = "money_out_of_range"
NOT_AN_INTEGER = "not_an_integer"
INTEGER_OUT_OF_RANGE = "integer_out_of_range"
NOT_A_BOOLEAN = "not_a_boolean"
DUPLICATE_KEY = "duplicate_key"
UNPARSEABLE_DATE = "unparseable_date"
UNPARSEABLE_MONTH = "unparseable_month"
MISSING_REQUIRED = "missing_required"
NOT_ALLOWED = "not_allowed_value"
PATTERN_MISMATCH = "pattern_mismatch"
OUT_OF_ORDER = "date_out_of_order"
UNKNOWN = "unknown_"  # + the entity: unknown_enterprise, unknown_person
RESIDENT_CHECK_ALPHABET = "0123456789X"
_USCC_VALUES = np.zeros(256, dtype=np.int64)  # byte -> credit-code character value
_USCC_VALUES[np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(USCC_ALPHABET))
# Kinds whose bad value is text in a column the file would otherwise hold typed.
AS_TEXT = frozenset({NOT_AN_INTEGER, INTEGER_OUT_OF_RANGE, NOT_A_BOOLEAN})


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
                add(MALFORMED_ID, col_name)
        for ref in col.references:
            target = catalogue.sources[ref.source]
            reissuable = col.check in ("uscc", "resident_id") and _city_outsiders(catalogue)
            if ref.on_missing == "quarantine" and (
                reissuable or _numbered(catalogue, col, ref.source)
            ):
                add(f"{UNKNOWN}{target.entity}", col_name)
        if col.type == "int" and col.max is not None:
            add(ABOVE_MAXIMUM, col_name)  # shifted past the maximum, each value distinct
        if col_name in key:
            continue
        if col.type == "int":
            add(NOT_AN_INTEGER, col_name)
            add(INTEGER_OUT_OF_RANGE, col_name)
            if col.min is not None:
                add(BELOW_MINIMUM, col_name)
            if col.money_bound is not None:
                add(MONEY_OUT_OF_RANGE, col_name)
        if col.type == "bool":
            add(NOT_A_BOOLEAN, col_name)
        if col.allowed is not None:
            add(NOT_ALLOWED, col_name)
        if col.pattern is not None and not any(
            r.on_missing == "quarantine" for r in col.references
        ):
            add(PATTERN_MISMATCH, col_name)  # (a reference of another form names no entity)
        if col.in_list is not None and _outsiders(catalogue, col.in_list):
            add(catalogue.lists[col.in_list].rule, col_name)
        if col.type == "date":
            add(UNPARSEABLE_DATE, col_name)
        if col.type == "month":
            add(UNPARSEABLE_MONTH, col_name)
        if col.not_before is not None:
            add(OUT_OF_ORDER, col_name)
        if col.required:
            add(MISSING_REQUIRED, col_name)
    if source.key:
        add(DUPLICATE_KEY, ",".join(source.key))
    return out


def injectable(catalogue: Catalogue) -> set[str]:
    """Every rule some row of some source can be made to break."""
    return {kind for name in catalogue.sources for kind in slots(catalogue, name)}


def _numbered(catalogue: Catalogue, col: Column, entity_source: str) -> bool:
    """Whether a reference is to an entity numbered by a pattern the reference shares (a
    household's H and ten digits), so that a longer number of that form names none."""
    target = catalogue.sources[entity_source]
    key = target.columns[target.entity_column]
    return col.check is None and col.pattern is not None and col.pattern == key.pattern


def _city_outsiders(catalogue: Catalogue) -> list[str]:
    """Divisions of the city's prefectures that are not the city's own (`_outsiders` of
    its list): no identifier the generator issues carries one, so an identifier reissued
    under one names nobody."""
    name = city_list(catalogue)
    return _outsiders(catalogue, name) if name is not None and name in catalogue.lists else []


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

    # A column that gets a text value is written as text, all of its values.
    as_text = sorted({c for k, c in plan if k in AS_TEXT})
    altered = frame.with_columns(pl.col(c).cast(pl.String) for c in as_text)
    records: list[tuple[int, str, str]] = []  # (row, rule, column)
    for kind, column in sorted(set(plan)):
        if kind == DUPLICATE_KEY:
            continue
        at = rows[(kinds == kind) & (columns == column)]
        where = pl.Series(at, dtype=pl.UInt32)
        values = frame.get_column(column).gather(where)
        bad = _bad_values(catalogue, source, kind, column, values, rng, frame[where])
        target = altered.get_column(column)
        altered = altered.with_columns(target.scatter(at, bad.cast(target.dtype)))
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
    rows: pl.DataFrame,
) -> pl.Series:
    """The bad values of `column` for the `rows` chosen to break `kind`."""
    col = source.columns[column]
    k = len(values)
    if kind == MISSING_REQUIRED:
        return pl.Series(column, [None] * k, dtype=values.dtype)
    if kind == BELOW_MINIMUM:
        assert col.min is not None
        v = values.to_numpy()
        # A sign error: the amount or count, negated (-1 for zero).
        return pl.Series(column, col.min - np.maximum(v - col.min, 1), dtype=values.dtype)
    if kind == ABOVE_MAXIMUM:
        assert col.max is not None
        # A typing slip past the maximum (2025 -> 2126 for a year up to 2100), distinct
        # values staying distinct, so that a key stays unique.
        low = col.min if col.min is not None else int(values.min())  # type: ignore[arg-type]
        return values - low + col.max + 1
    if kind == MONEY_OUT_OF_RANGE:
        # Near the 64-bit maximum, where sums once wrapped: far beyond any row's bound.
        return values + 2**62
    if kind == NOT_AN_INTEGER:
        # Amounts written with a decimal comma or a thousands separator.
        text = values.cast(pl.String)
        return pl.select(pl.concat_str(text, pl.lit(",5"))).to_series().alias(column)
    if kind == INTEGER_OUT_OF_RANGE:
        return pl.Series(column, ["99999999999999999999"] * k, dtype=pl.String)
    if kind == NOT_A_BOOLEAN:
        return pl.Series(column, ["是"] * k, dtype=pl.String)  # "yes", in Chinese
    if kind == NOT_ALLOWED:
        assert col.allowed is not None
        return _not_allowed(values, col.allowed)
    if kind == PATTERN_MISMATCH:
        assert col.pattern is not None
        return _mismatched(values, col.pattern)
    if kind == UNPARSEABLE_DATE:
        return _unparseable_dates(values, rng)
    if kind == UNPARSEABLE_MONTH:
        return _unparseable_months(rows, col.not_before or column)
    if kind == OUT_OF_ORDER:
        assert col.not_before is not None
        return _before(rows.get_column(col.not_before), col.type).alias(column)
    if kind == WRONG_CHECK:
        assert col.check is not None
        return _wrong_check(values, col.check)
    if kind == MALFORMED_ID:
        return values.str.slice(0, 17)  # the check character lost in a copy
    entity_sources = {
        f"{UNKNOWN}{catalogue.sources[r.source].entity}": r.source for r in col.references
    }
    if kind in entity_sources and col.check is None:
        # A number no entity has: two more digits than any the synthesiser issues.
        assert col.pattern is not None
        out = pl.select(
            pl.concat_str(values.str.slice(0, 1), pl.lit("99"), values.str.slice(1))
        ).to_series()
        assert out.str.contains(col.pattern).all()
        return out.alias(column)
    if kind in entity_sources:
        assert col.check is not None
        return _reissued(values, col.check, _city_outsiders(catalogue))
    # An in_list rule: a code of the same shape that is not in the list.
    assert col.in_list is not None
    outsiders = _outsiders(catalogue, col.in_list)
    return pl.Series(column, outsiders, dtype=pl.String).gather(
        pl.Series(rng.integers(0, len(outsiders), k), dtype=pl.UInt32)
    )


def _not_allowed(values: pl.Series, allowed: tuple[str, ...]) -> pl.Series:
    """The value in capitals ("ACTIVE" for "active"), or "unknown" if that is allowed too."""
    upper = values.str.to_uppercase()
    out = pl.select(
        pl.when(upper.is_in(list(allowed)).not_()).then(upper).otherwise(pl.lit("unknown"))
    ).to_series()
    assert not out.is_in(list(allowed)).any()
    return out.alias(values.name)


def _mismatched(values: pl.Series, pattern: str) -> pl.Series:
    """The value with a dash after its first character ("C-3911", "6-2220..."), which none
    of the catalogue's patterns allow; "#" where the pattern would still match."""
    text = values.fill_null("0")
    dashed = pl.select(
        pl.concat_str(text.str.slice(0, 1), pl.lit("-"), text.str.slice(1))
    ).to_series()
    out = pl.select(
        pl.when(dashed.str.contains(pattern)).then(pl.lit("#")).otherwise(dashed)
    ).to_series()
    assert not out.str.contains(pattern).any()
    return out.alias(values.name)


def _unparseable_months(rows: pl.DataFrame, like: str) -> pl.Series:
    """Months written another way: "2025/06", taken from the month the row starts in."""
    month = rows.get_column(like).fill_null("2025-01")
    return pl.select(month.str.replace("-", "/", literal=True)).to_series()


def _before(other: pl.Series, kind: str) -> pl.Series:
    """The day (date) or month (month) before each value of `other` (YYYY-MM-DD / YYYY-MM)."""
    if kind == "date":
        day = other.str.to_date("%Y-%m-%d") - dt.timedelta(days=1)
        return day.dt.strftime("%Y-%m-%d")
    month = (other + "-01").str.to_date("%Y-%m-%d").dt.offset_by("-1mo")
    return month.dt.strftime("%Y-%m")


def _reissued(values: pl.Series, check: str, outsiders: list[str]) -> pl.Series:
    """The same identifiers issued under a division no identifier has (each division the
    values carry to its own outsider, so distinct values stay distinct), with a valid
    check character: well-formed, and no entity has them."""
    at = 2 if check == "uscc" else 0  # a credit code's division follows its two type digits
    division = values.str.slice(at, 6)
    carried = division.unique().sort().to_list()
    if len(carried) > len(outsiders):
        raise SynthError(
            f"cannot reissue identifiers of {len(carried)} divisions under only"
            f" {len(outsiders)} unused codes of the city's prefectures"
        )
    region = division.replace_strict(dict(zip(carried, outsiders, strict=False)))
    first17 = pl.select(
        pl.concat_str(values.str.slice(0, at), region, values.str.slice(at + 6, 17 - at - 6))
    ).to_series()
    raw = np.frombuffer(first17.str.join("").item().encode("ascii"), dtype=np.uint8)
    chars = raw.reshape(len(values), 17)
    if check == "uscc":
        rows = uscc_bytes(_USCC_VALUES[chars])
    else:
        rows = resident_id_bytes(chars.astype(np.int64) - ord("0"))
    return ascii_rows_to_series(values.name, rows)


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
