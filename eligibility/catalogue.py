"""The feature catalogue (policies/features.yaml), loaded and checked against the sources.

Every feature and relation must read a source and columns that the source catalogue
delivers, with the declared types; every `where` is a typed condition on the source's
rows.  All problems of the file are reported together.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import ValidationError

from common.errors import Code, Problem, ProblemsError, article, did_you_mean
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
                    f"{name!r} is both a feature of {article(entity)} and a relation from it",
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
    for ent in cat.spec.features:
        if ent not in cat.spec.entities:
            _unknown_entity(checker, cat, ("features", ent), ent)
    for src, t in cat.spec.timed.items():
        if _need_source(checker, cat, ("timed", src), src):
            _need_column(checker, cat, ("timed", src, "column"), src, t.column)


def _check_relations(checker: Checker, cat: CheckedCatalogue) -> None:
    entities = cat.spec.entities
    for rname, rel in cat.spec.relations.items():
        loc: Loc = ("relations", rname)
        for end in ("from", "to"):
            kind = rel.from_ if end == "from" else rel.to
            if kind not in entities:
                _unknown_entity(checker, cat, (*loc, end), kind)
        if rel.via is not None:
            _check_via(checker, cat, rname)
            continue
        assert rel.source is not None
        assert rel.from_key is not None
        assert rel.to_key is not None
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


def _unknown_entity(checker: Checker, cat: CheckedCatalogue, loc: Loc, kind: str) -> None:
    checker.problem_at(
        loc,
        Code.UNKNOWN_ENTITY,
        f"unknown entity kind {kind!r}",
        did_you_mean(kind, list(cat.spec.entities), "the entities")
        + "; or declare it under entities: with the source that lists them",
    )


def _check_via(checker: Checker, cat: CheckedCatalogue, rname: str) -> None:
    """A relation followed through others: each step known, leading on from the one
    before, from the relation's `from` to its `to`, never back through itself; the
    steps' attributes distinct."""
    rel = cat.spec.relations[rname]
    assert rel.via is not None
    at = rel.from_
    seen_attrs: dict[str, str] = {}
    for i, hop in enumerate(rel.via):
        loc: Loc = ("relations", rname, "via", i)
        step = cat.spec.relations.get(hop)
        if step is None:
            checker.problem_at(
                loc,
                Code.UNKNOWN_RELATION,
                f"relation {rname!r} follows {hop!r}, which is no relation",
                did_you_mean(hop, [r for r in cat.spec.relations if r != rname], "the relations"),
            )
            return
        if _leads_back(cat, hop, rname, set()):
            checker.problem_at(
                loc,
                Code.RELATION_CHAIN,
                f"relation {rname!r} follows {hop!r}, which leads back to {rname!r}",
                "follow relations read from sources, or via relations that do not name this one",
            )
            return
        if step.from_ != at:
            checker.problem_at(
                loc,
                Code.RELATION_CHAIN,
                f"step {i + 1} of {rname!r}, {hop!r}, starts from {article(step.from_)}, where "
                f"the step before leads to {article(at)}",
                "list the relations in the order they are followed, each from where the last one ends",
            )
            return
        for attr in cat.link_columns(hop):
            if attr in seen_attrs:
                checker.problem_at(
                    loc,
                    Code.NAME_CLASH,
                    f"steps {seen_attrs[attr]!r} and {hop!r} of {rname!r} both have the "
                    f"attribute {attr!r}",
                    "rename one of the attributes: a body could not say which it reads",
                )
            seen_attrs[attr] = hop
        at = step.to
    if at != rel.to:
        checker.problem_at(
            ("relations", rname, "to"),
            Code.RELATION_CHAIN,
            f"relation {rname!r} is declared to {article(rel.to)}, and its last step leads to "
            f"{article(at)}",
            f"write to: {at}, or follow relations that end at {article(rel.to)}",
        )


def _leads_back(cat: CheckedCatalogue, hop: str, target: str, seen: set[str]) -> bool:
    """Whether following `hop` reaches `target` (or a circle) through via steps."""
    if hop == target or hop in seen:
        return True
    step = cat.spec.relations.get(hop)
    if step is None or step.via is None:
        return False
    return any(_leads_back(cat, h, target, seen | {hop}) for h in step.via)


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
