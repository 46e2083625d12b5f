"""Events validated as a nightly delivery is: the same catalogue rules, the same references.

An event is one delivered row of a catalogue source (a month of social security, an
employment spell, a birth, a registration, a credit-list entry) with an operation:
`upsert` (the row is new, or replaces the row of the same key) or `remove` (the row of
that key is gone: a credit-list entry lifted).  Its values come as text, as a CSV
delivery's do, and go through the source's validation plan (`jobs.validate`); a row
that fails a rule is quarantined with the rule's reason, never dropped.

References find the entities of the last staged night, and those registered by earlier
events (`EntityKeys.extra`); a registered entity that the night did not know gets a
surrogate key past the night's largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import polars.selectors as cs

from eligibility import Naming
from jobs.catalogue import Catalogue, Source
from jobs.validate import (
    FAIL,
    ROW,
    EntityKeys,
    Labels,
    attach_references,
    duplicate_keys,
    final_failures,
    quarantine_rules,
    rule_text,
    validation_plan,
)

EVENT = "event_id"  # the inbox id of the event a staged row came from
OP = "op"
Op = Literal["upsert", "remove"]


@dataclass(frozen=True)
class StagedEvents:
    """One source's events, validated: the accepted rows in the staged form (typed
    columns and surrogate keys, with `event_id` and `op`), and the quarantined ones."""

    source: str
    accepted: pl.DataFrame
    quarantined: pl.DataFrame  # event_id, column, rule, reason


QUARANTINE_SCHEMA = {EVENT: pl.Int64, "column": pl.String, "rule": pl.String, "reason": pl.String}


def entity_keys(
    staged_dir: Path,
    catalogue: Catalogue,
    registered: dict[str, pl.DataFrame] | None = None,
    known: dict[str, pl.DataFrame] | None = None,
) -> dict[str, EntityKeys]:
    """Where references find each entity: the staged night's file (or `known`: its
    identifiers and `_sk` held in memory), and the entities that events registered since
    (`registered`: per entity source, its id column and `_sk`)."""
    out = {}
    for name, source in catalogue.sources.items():
        if source.entity is None:
            continue
        out[name] = EntityKeys(
            staged_dir / f"{name}.parquet",
            source.entity_column,
            Naming.sk(source.entity),
            extra=(registered or {}).get(name),
            known=(known or {}).get(name),
        )
    return out


# The rules of events alone (a delivery's are `jobs.validate.RULE_TEXT`).
EVENT_RULES = {
    "unknown_operation": "the event's op is neither upsert nor remove",
    "entity_removed": "an entity is not removed by an event: deliver its record with the "
    "status it has now (deregistered, deceased)",
}


def _refused(rows: pl.DataFrame, column: str, rule: str) -> pl.DataFrame:
    return rows.select(
        EVENT,
        pl.lit(column).alias("column"),
        pl.lit(rule).alias("rule"),
        pl.lit(EVENT_RULES[rule]).alias("reason"),
    )


def _key_only(source: Source) -> Source:
    """The source as a removal is checked against: its key columns, required."""
    cols = {k: source.columns[k].model_copy(update={"required": True}) for k in source.key}
    return source.model_copy(update={"columns": cols})


def stage_events(
    name: str,
    rows: pl.DataFrame,
    catalogue: Catalogue,
    keys: dict[str, EntityKeys],
    next_sk: int | None = None,
) -> StagedEvents:
    """Validate `rows` (`event_id`, `op`, and the source's columns as text) of source
    `name`.  `next_sk`: for an entity source, the surrogate key the first entity not yet
    known gets (the staged night's largest + 1, or past those events registered)."""
    source = catalogue.sources[name]
    parts, bad = [], []
    unknown_op = rows.filter(~pl.col(OP).is_in(["upsert", "remove"]) | pl.col(OP).is_null())
    if unknown_op.height:
        bad.append(_refused(unknown_op, OP, "unknown_operation"))
    for op in ("upsert", "remove"):
        of_op = rows.filter(pl.col(OP) == op).sort(EVENT)
        if of_op.height and op == "remove" and source.entity is not None:
            bad.append(_refused(of_op, source.entity_column, "entity_removed"))
        elif of_op.height:
            checked = source if op == "upsert" else _key_only(source)
            ok, failed = _validate(of_op, checked, catalogue, keys)
            parts.append(ok.with_columns(pl.lit(op).alias(OP)))
            bad.append(failed)
    accepted = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    if source.entity is not None and parts:
        accepted = _with_entity_sk(accepted, source, keys[name], next_sk)
    quarantined = (pl.concat(bad) if bad else pl.DataFrame(schema=QUARANTINE_SCHEMA)).sort(EVENT)
    return StagedEvents(name, accepted, quarantined)


def _validate(
    rows: pl.DataFrame, source: Source, catalogue: Catalogue, keys: dict[str, EntityKeys]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    names = list(source.columns)
    text = rows.with_columns(
        *(pl.lit(None, dtype=pl.String).alias(n) for n in names if n not in rows.columns)
    ).with_columns(pl.col(n).cast(pl.String) for n in names)
    labels = Labels()
    schema = pl.Schema(dict.fromkeys(names, pl.String))
    validated = validation_plan(text.lazy(), source, schema, catalogue, labels).collect()
    # Two events of one key in a batch are not duplicates: the later one replaces the
    # earlier (`jobs.events.scope`), so only references are checked after the rules.
    nothing = duplicate_keys(validated.lazy().head(0), source)
    with_refs, unknown = attach_references(validated, source, catalogue, labels, keys)
    final = final_failures(with_refs, nothing, source, labels, unknown).collect()
    events = text.get_column(EVENT)
    final = final.with_columns(events.gather(final.get_column(ROW) - 1).alias(EVENT))
    failed = final.filter(pl.col(FAIL).is_not_null())
    parts = labels.decode(pl.col(FAIL)).str.split_exact("\t", 1)
    quarantined = failed.select(
        EVENT,
        parts.struct.field("field_0").alias("column"),
        parts.struct.field("field_1").alias("rule"),
    )
    reasons = {r: rule_text(r) for r in quarantine_rules(catalogue)}
    quarantined = quarantined.with_columns(
        pl.col("rule").replace_strict(reasons, default=None, return_dtype=pl.String).alias("reason")
    )
    accepted = final.filter(pl.col(FAIL).is_null()).drop(
        FAIL, ROW, cs.starts_with("_present_"), cs.starts_with("_code_")
    )
    return accepted, quarantined


def _with_entity_sk(
    accepted: pl.DataFrame, source: Source, keys: EntityKeys, next_sk: int | None
) -> pl.DataFrame:
    """The entity's surrogate key on each row: the one it is known by, else a new one past
    `next_sk`, in order of the first event that names it."""
    column, sk = source.entity_column, keys.sk
    known = accepted.select(column).join(
        keys.lookup(accepted.get_column(column)).rename({"_sk": sk}).collect(),
        on=column,
        how="left",
        maintain_order="left",
    )
    new = known.filter(pl.col(sk).is_null()).select(column).unique(maintain_order=True)
    start = next_sk if next_sk is not None else 1
    fresh = new.with_columns(pl.int_range(start, start + new.height, dtype=pl.Int32).alias(sk))
    table = pl.concat([known.drop_nulls(sk).unique(column).cast({sk: pl.Int32}), fresh])
    return accepted.join(table, on=column, how="left", maintain_order="left")
