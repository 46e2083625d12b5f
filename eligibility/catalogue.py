"""The feature catalogue (policies/features.yaml), loaded and checked against the sources.

Every feature and relation must read a source and columns that the source catalogue
delivers, with the declared types; every `where` is a typed condition on the source's
rows.  All problems of the file are reported together.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import ValidationError

from common.errors import Code, Problem, ProblemsError, did_you_mean
from common.yamlsrc import Loc, Located, load_yaml_file, schema_problems
from eligibility import ast as A
from eligibility.checked import CheckedCatalogue, Scope, Typed
from eligibility.schema import FeatureCatalogue, FeatureDef
from eligibility.typecheck import Checker, source_scope
from eligibility.types import NUMERIC, Type


def file_problems(located: Located, exc: ValidationError) -> list[Problem]:
    """A policy file's or the feature catalogue's schema errors, positioned."""
    return schema_problems(
        located,
        exc,
        codes=(Code.UNKNOWN_KEY, Code.MISSING_KEY, Code.BAD_VALUE),
        unknown_key_fix=lambda _loc: (
            "check the spelling; the keys of a policy file are described in docs/policies.md"
        ),
        format_hint="see docs/policies.md for the format",
    )


def sha256_text(text: str) -> str:
    """The sha256 of a file's text, as recorded by runs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_feature_catalogue(
    path: Path,
    source_columns: dict[str, dict[str, Type]],
    source_keys: dict[str, tuple[str, ...]] | None = None,
) -> CheckedCatalogue:
    """Load policies/features.yaml, checking it against the staged source columns (and keys)."""
    located = load_yaml_file(path)
    try:
        spec = FeatureCatalogue.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(file_problems(located, exc)) from None
    cat = CheckedCatalogue(
        spec, located.file, sha256_text(located.text), source_columns, Typed(), {}, {}
    )
    cat.source_keys = dict(source_keys or {})
    checker = Checker(located, cat)
    cat.typed = checker.typed
    _check_sources(checker, cat)
    _check_relations(checker, cat)
    for entity, features in spec.features.items():
        for name, fdef in features.items():
            rel = spec.relations.get(name)
            if rel is not None and rel.from_ == entity:
                checker.problem_at(
                    ("features", entity, name),
                    Code.NAME_CLASH,
                    f"{name!r} is both a feature of an {entity} and a relation from it"
                    if entity == "enterprise"
                    else f"{name!r} is both a feature of a {entity} and a relation from it",
                    "give them different names: a worked example could not say which it gives",
                )
            if fdef.source is not None:
                _check_source_feature(checker, cat, entity, name, fdef)
            else:
                _check_relation_feature(checker, cat, entity, name, fdef)
    checker.raise_problems()
    return cat


def _need_source(checker: Checker, cat: CheckedCatalogue, loc: Loc, source: str) -> bool:
    if source not in cat.source_columns:
        checker.problem_at(
            loc,
            Code.UNKNOWN_SOURCE,
            f"unknown source {source!r}",
            did_you_mean(source, list(cat.source_columns), "sources"),
        )
        return False
    return True


def _need_column(
    checker: Checker, cat: CheckedCatalogue, loc: Loc, source: str, column: str
) -> bool:
    if column not in cat.source_columns[source]:
        checker.problem_at(
            loc,
            Code.UNKNOWN_COLUMN,
            f"source {source!r} has no column {column!r}",
            did_you_mean(column, list(cat.source_columns[source]), "its columns"),
        )
        return False
    return True


def _check_sources(checker: Checker, cat: CheckedCatalogue) -> None:
    for ent, edef in cat.spec.entities.items():
        _need_source(checker, cat, ("entities", ent, "source"), edef.source)
    for src, t in cat.spec.timed.items():
        if _need_source(checker, cat, ("timed", src), src):
            _need_column(checker, cat, ("timed", src, "column"), src, t.column)


def _check_relations(checker: Checker, cat: CheckedCatalogue) -> None:
    for rname, rel in cat.spec.relations.items():
        loc: Loc = ("relations", rname)
        if not _need_source(checker, cat, (*loc, "source"), rel.source):
            continue
        for key in ("from_key", "to_key"):
            _need_column(checker, cat, (*loc, key), rel.source, getattr(rel, key))
        for attr, col in rel.attributes.items():
            _need_column(checker, cat, (*loc, "attributes", attr), rel.source, col)
        if rel.during is not None:
            _need_column(checker, cat, (*loc, "during"), rel.source, rel.during)
        if rel.where is not None:
            _where(
                checker, cat, loc, rel.source, rel.where, f"relation:{rname}", "a relation's where"
            )


def _where(
    checker: Checker, cat: CheckedCatalogue, loc: Loc, source: str, text: str, key: str, what: str
) -> None:
    """A `where` on a source's rows: a condition on its columns, kept under `key`."""
    node = checker.parse((*loc, "where"), text)
    if node is not None:
        checker.expect(node, source_scope(source, cat.source_columns), {"bool"}, what)
        cat.where[key] = node


def _check_source_feature(
    checker: Checker, cat: CheckedCatalogue, entity: str, fname: str, fdef: FeatureDef
) -> None:
    loc: Loc = ("features", entity, fname)
    assert fdef.source is not None
    if not _need_source(checker, cat, (*loc, "source"), fdef.source):
        return
    if fdef.window is not None and fdef.window.anchor is not None:
        _check_anchor(checker, cat, entity, fname, fdef)
    if fdef.window is not None and fdef.source not in cat.spec.timed:
        checker.problem_at(
            (*loc, "window"),
            Code.BAD_VALUE,
            f"feature {fname!r} reads {fdef.source}, which has no months: a look-back has no meaning",
            "give window: only to features of a source listed under timed:",
        )
    if fdef.column is not None and _need_column(
        checker, cat, (*loc, "column"), fdef.source, fdef.column
    ):
        col_type = cat.source_columns[fdef.source][fdef.column]
        want: Type = "count" if fdef.type == "money" else fdef.type
        if fdef.agg in ("count", "count_distinct", "months"):
            want = "count"
        if fdef.agg == "mean":
            want = col_type if col_type in NUMERIC else want
        if (
            col_type != want
            and not (fdef.agg == "mean" and fdef.type == "number")
            and not (fdef.type == "bool" and fdef.agg in ("count",))
        ):
            checker.problem_at(
                (*loc, "type"),
                Code.TYPE_MISMATCH,
                f"feature {fname!r} is declared {fdef.type} but column {fdef.source}.{fdef.column} is {col_type}",
                "declare the type the column holds, or choose an aggregation that gives it",
            )
    if fdef.where is not None:
        _where(checker, cat, loc, fdef.source, fdef.where, f"{entity}.{fname}", "a feature's where")


def _check_anchor(
    checker: Checker, cat: CheckedCatalogue, entity: str, fname: str, fdef: FeatureDef
) -> None:
    """An anchored window: on a date of the entity's own record, over a monthly source, for
    an aggregation that does not name the window's first or last month."""
    assert fdef.window is not None
    loc: Loc = ("features", entity, fname, "window", "anchor")
    anchor = cat.features_of(entity).get(fdef.window.anchor or "")
    own = cat.entity_source(entity)
    timed = cat.spec.timed.get(fdef.source or "")
    if (
        anchor is None
        or anchor.type != "date"
        or anchor.source != own
        or anchor.agg not in (None, "value")
    ):
        checker.problem_at(
            loc,
            Code.BAD_VALUE,
            f"feature {fname!r} is anchored on {fdef.window.anchor!r}, which is no date of the "
            f"{entity}'s own record",
            f"anchor on a date feature read from {own} (agg: value)",
        )
    elif timed is None or timed.unit != "month" or fdef.agg in ("at_start", "at_end"):
        checker.problem_at(
            loc,
            Code.BAD_VALUE,
            f"feature {fname!r}: an anchored window counts months of a monthly source, and not "
            "at_start or at_end",
            "anchor a sum, count, months, min, max, first or last over a monthly source",
        )


def _check_relation_feature(
    checker: Checker, cat: CheckedCatalogue, entity: str, fname: str, fdef: FeatureDef
) -> None:
    loc: Loc = ("features", entity, fname)
    assert fdef.relation is not None
    if fdef.window is not None:
        checker.problem_at(
            (*loc, "window"),
            Code.BAD_VALUE,
            f"feature {fname!r} aggregates a relation: its window is the relation's `during`",
            "leave out window:",
        )
    if fdef.relation not in cat.spec.relations:
        checker.problem_at(
            (*loc, "relation"),
            Code.UNKNOWN_RELATION,
            f"unknown relation {fdef.relation!r}",
            did_you_mean(fdef.relation, list(cat.spec.relations), "relations"),
        )
        return
    func = fdef.agg or "count"
    body_text = fdef.where if func in ("count", "any", "all") else fdef.body
    body = (
        checker.parse((*loc, "where" if fdef.where else "body"), body_text) if body_text else None
    )
    located = checker.located
    span = A.Span(located.file, *located.at(loc), f"{func}({fdef.relation})")
    agg = A.Aggregate(func, fdef.relation, body, span)  # type: ignore[arg-type]
    agg_type = checker.check(agg, Scope(entity, {}, "", relations_from=entity))
    if agg_type is not None and agg_type != fdef.type:
        checker.problem_at(
            (*loc, "type"),
            Code.TYPE_MISMATCH,
            f"feature {fname!r} is declared {fdef.type} but {func}() gives {agg_type}",
            f"declare type: {agg_type}",
        )
    cat.relation_features[f"{entity}.{fname}"] = agg
