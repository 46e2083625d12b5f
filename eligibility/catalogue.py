"""The feature catalogue (policies/features.yaml), loaded and checked against the sources.

Every entity, feature, relation and credit list must read a source and columns that the
source catalogue delivers, with the declared types, keyed by the entity they are about;
every `where` is a typed condition on the source's rows; no two things a policy or a
worked example names share a name.  All problems of the file are reported together,
each at its place in features.yaml.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from common.errors import Code, Problem, ProblemsError, article, did_you_mean
from common.yamlsrc import Loc, Located, load_yaml_file, schema_problems
from eligibility import ast as A
from eligibility.checked import RUN_DATES, CheckedCatalogue, Scope, Typed
from eligibility.schema import FeatureCatalogue, FeatureDef, RelationDef
from eligibility.typecheck import Checker, source_scope
from eligibility.types import NUMERIC, Type

# The entity kinds the credit lists name (their subjects: credit codes, identity numbers).
LISTED_KINDS = ("enterprise", "person")
# listed() reads this source of the source catalogue, with these columns (and the
# surrogate key of the entity it is asked about).
CREDIT_LISTS = "credit_lists"
CREDIT_LIST_COLUMNS: dict[str, Type] = {"list": "text", "listed_on": "date", "removed_on": "date"}
# Keys a worked example gives beside features: the credit lists an entity is on, and a
# related entity's identifier.
CASE_KEYS = ("lists", "id", "accounts")
# The columns an account source gives: the bank (its CNAPS category) and the number.
ACCOUNT_COLUMNS = ("bank_code", "account_no")
# Aggregations over a monthly source's months (the window's first or last, or counting them).
MONTHLY_AGGS = ("at_start", "at_end", "months")


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
    *,
    links: dict[str, dict[str, str]] | None = None,
    entity_sources: dict[str, str] | None = None,
) -> CheckedCatalogue:
    """Load features.yaml, checking it against the staged sources: their columns and types,
    their keys, `links` (per source, which of its columns hold which entity kind's
    surrogate key) and `entity_sources` (the source that defines each entity kind); what
    is not given is not checked."""
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
    _CatalogueCheck(checker, cat, links, entity_sources).run()
    checker.raise_problems()
    return cat


@dataclass
class _CatalogueCheck:
    """One pass over a validated feature catalogue, recording problems in `checker`."""

    checker: Checker
    cat: CheckedCatalogue
    links: dict[str, dict[str, str]] | None  # source -> surrogate-key column -> entity kind
    entity_sources: dict[str, str] | None  # entity kind -> its source (None: not known)
    # What is already reported, so that it is not reported again through what reads it.
    unsure: set[str] = field(default_factory=set)  # entity kinds and `timed:` of unknown source

    @property
    def spec(self) -> FeatureCatalogue:
        return self.cat.spec

    def problem(self, loc: Loc, code: Code, message: str, fix: str) -> None:
        self.checker.problem_at(loc, code, message, fix)

    def run(self) -> None:
        self._entities()
        self._timed()
        broken = self._relations()
        self._lists()
        self._names()
        for entity, features in self.spec.features.items():
            for name, fdef in features.items():
                if fdef.source is not None:
                    self._source_feature(entity, name, fdef)
                elif fdef.relation not in broken:
                    self._relation_feature(entity, name, fdef)

    # --- references into the source catalogue ----------------------------------------

    def need_source(self, loc: Loc, source: str, what: str = "") -> bool:
        if source not in self.cat.source_columns:
            self.problem(
                loc,
                Code.UNKNOWN_SOURCE,
                f"unknown source {source!r}{what}",
                did_you_mean(source, sorted(self.cat.source_columns), "sources"),
            )
            return False
        return True

    def need_column(self, loc: Loc, source: str, column: str, want: Type | None = None) -> bool:
        columns = self.cat.source_columns[source]
        if column not in columns:
            self.problem(
                loc,
                Code.UNKNOWN_COLUMN,
                f"source {source!r} has no column {column!r}",
                did_you_mean(column, sorted(columns), "its columns"),
            )
            return False
        return want is None or self.need_type(loc, source, column, want)

    def need_type(self, loc: Loc, source: str, column: str, want: Type) -> bool:
        got = self.cat.source_columns[source][column]
        if got != want:
            of_kind = sorted(c for c, t in self.cat.source_columns[source].items() if t == want)
            self.problem(
                loc,
                Code.TYPE_MISMATCH,
                f"column {source}.{column} is {got}, where {want} is needed",
                f"give a {want} column of {source}: {', '.join(of_kind)}"
                if of_kind
                else f"{source} has no {want} column: declare one in sources.yaml",
            )
            return False
        return True

    def links_to(self, source: str, column: str, entity: str) -> bool:
        """Whether `column` of `source` holds the surrogate key of `entity` (yes, if unknown)."""
        return self.links is None or self.links.get(source, {}).get(column) == entity

    def keyed_by(self, source: str, entity: str) -> list[str]:
        """The columns of `source` that hold the surrogate key of `entity`."""
        links = (self.links or {}).get(source, {})
        return sorted(c for c, e in links.items() if e == entity)

    def need_link(self, loc: Loc, source: str, entity: str, what: str) -> bool:
        """`source` has `<entity>_sk`, the key `what` is grouped by."""
        sk = f"{entity}_sk"
        if self.links_to(source, sk, entity):
            return True
        own = self.entity_sources.get(entity) if self.entity_sources else None
        self.problem(
            loc,
            Code.NOT_KEYED_BY_ENTITY,
            f"{what} reads {source}, whose rows do not name {article(entity)} (it has no {sk})",
            f"read a source that references {own or 'the ' + entity + ' source'} (references: in "
            "sources.yaml), or add that reference to its identifying column",
        )
        return False

    def _entities(self) -> None:
        for ent, edef in self.spec.entities.items():
            loc: Loc = ("entities", ent, "source")
            if not self.need_source(loc, edef.source):
                self.unsure.add(ent)
                continue
            defining = self.entity_sources.get(ent) if self.entity_sources is not None else None
            if self.entity_sources is not None and defining != edef.source:
                self.unsure.add(ent)
                self.problem(
                    loc,
                    Code.NOT_ENTITY_SOURCE,
                    f"source {edef.source!r} does not define the {ent}s: sources.yaml gives "
                    + (
                        f"entity: {ent} to {defining!r}" if defining else f"no source entity: {ent}"
                    ),
                    f"source: {defining}"
                    if defining
                    else f"mark the {ent}s' source entity: {ent} in sources.yaml",
                )
            self._accounts(ent)
        for ent in self.spec.features:
            if ent not in self.spec.entities:
                self.unknown_entity(("features", ent), ent)
        for rname, rel in self.spec.relations.items():
            for end, kind in (("from", rel.from_), ("to", rel.to)):
                if kind not in self.spec.entities:
                    self.unknown_entity(("relations", rname, end), kind)

    def _accounts(self, ent: str) -> None:
        """Each account a source keyed by the entity, with its bank and number."""
        edef = self.spec.entities[ent]
        if edef.accounts and not edef.payable:
            self.problem(
                ("entities", ent, "accounts"),
                Code.ACCOUNTS_NOT_PAYABLE,
                f"the {ent}s have accounts, but money is not paid to {article(ent)} "
                "(payable: false)",
                f"say payable: true if {ent}s are paid, or leave accounts: out",
            )
        for name, acc in edef.accounts.items():
            loc: Loc = ("entities", ent, "accounts", name, "source")
            if not self.need_source(loc, acc.source, f" for the {name} account"):
                continue
            key = self.cat.source_keys.get(acc.source)
            if key is not None and len(key) != 1:
                self.problem(
                    loc,
                    Code.NOT_KEYED_BY_ENTITY,
                    f"the {name} account reads {acc.source}, keyed by {', '.join(key)}: an "
                    f"account source holds one account per {ent}, keyed by its identifier",
                    f"give {acc.source} key: [the {ent}'s identifier] in sources.yaml",
                )
            elif ent not in self.unsure:
                self.need_link(loc, acc.source, ent, f"the {name} account")
            for column in ACCOUNT_COLUMNS:
                self.need_column(loc, acc.source, column, "text")
            if name in self.cat.features_of(ent):
                self.clash(
                    ("entities", ent, "accounts", name),
                    f"account {name!r} is also a feature of {article(ent)}",
                    "give the account another name: payment: {account: ...} names it",
                )

    def unknown_entity(self, loc: Loc, kind: str) -> None:
        self.unsure.add(kind)
        self.problem(
            loc,
            Code.UNKNOWN_ENTITY,
            f"unknown entity kind {kind!r}",
            did_you_mean(kind, list(self.spec.entities), "the entities")
            + f"; or declare it under entities: with the source that lists the {kind}s",
        )

    def _timed(self) -> None:
        for src, t in self.spec.timed.items():
            if not self.need_source(("timed", src), src):
                self.unsure.add("timed:")
            else:
                # A month is a date (its first day); a year a whole number.
                want: Type = "date" if t.unit == "month" else "count"
                self.need_column(("timed", src, "column"), src, t.column, want)

    def _relations(self) -> set[str]:
        """Check every relation; the names of those too broken for their features to be."""
        broken = set()
        for rname, rel in self.spec.relations.items():
            loc: Loc = ("relations", rname)
            if rel.from_ in self.unsure or rel.to in self.unsure:
                broken.add(rname)
                continue
            if rel.via is not None:
                if not self._via(rname):
                    broken.add(rname)
                continue
            assert rel.source is not None
            assert rel.from_key is not None
            assert rel.to_key is not None
            if not self.need_source((*loc, "source"), rel.source):
                broken.add(rname)
                continue
            for key, entity in (("from_key", rel.from_), ("to_key", rel.to)):
                column = getattr(rel, key)
                if self.need_column((*loc, key), rel.source, column):
                    self._relation_key(loc, key, rel, entity)
                else:
                    broken.add(rname)
            for attr, col in rel.attributes.items():
                if not self.need_column((*loc, "attributes", attr), rel.source, col):
                    broken.add(rname)
            if rel.during is not None:
                self.need_column((*loc, "during"), rel.source, rel.during, "date")
            if rel.where is not None:
                self.where(loc, rel.source, rel.where, f"relation:{rname}", "a relation's where")
        return broken

    def _via(self, rname: str) -> bool:
        """A relation followed through others: each step known, leading on from the one
        before, from the relation's `from` to its `to`, never back through itself; the
        steps' attributes distinct.  Whether it holds."""
        rel = self.spec.relations[rname]
        assert rel.via is not None
        at = rel.from_
        seen_attrs: dict[str, str] = {}
        for i, hop in enumerate(rel.via):
            loc: Loc = ("relations", rname, "via", i)
            step = self.spec.relations.get(hop)
            if step is not None and (step.from_ in self.unsure or step.to in self.unsure):
                return False  # reported as such
            if step is None:
                self.problem(
                    loc,
                    Code.UNKNOWN_RELATION,
                    f"relation {rname!r} follows {hop!r}, which is no relation",
                    did_you_mean(
                        hop, [r for r in self.spec.relations if r != rname], "the relations"
                    ),
                )
                return False
            if _leads_back(self.spec, hop, rname, set()):
                self.problem(
                    loc,
                    Code.RELATION_CHAIN,
                    f"relation {rname!r} follows {hop!r}, which leads back to {rname!r}",
                    "follow relations read from sources, or via relations that do not name this one",
                )
                return False
            if step.from_ != at:
                self.problem(
                    loc,
                    Code.RELATION_CHAIN,
                    f"step {i + 1} of {rname!r}, {hop!r}, starts from {article(step.from_)}, where "
                    f"the step before leads to {article(at)}",
                    "list the relations in the order they are followed, each from where the last "
                    "one ends",
                )
                return False
            for attr in self.cat.link_columns(hop):
                if attr in seen_attrs:
                    self.clash(
                        loc,
                        f"steps {seen_attrs[attr]!r} and {hop!r} of {rname!r} both have the "
                        f"attribute {attr!r}",
                        "rename one of the attributes: a body could not say which it reads",
                    )
                    return False
                seen_attrs[attr] = hop
            at = step.to
        if at != rel.to:
            self.problem(
                ("relations", rname, "to"),
                Code.RELATION_CHAIN,
                f"relation {rname!r} is declared to {article(rel.to)}, and its last step leads to "
                f"{article(at)}",
                f"write to: {at}, or follow relations that end at {article(rel.to)}",
            )
            return False
        return True

    def _relation_key(self, loc: Loc, key: str, rel: RelationDef, entity: str) -> None:
        column = getattr(rel, key)
        assert rel.source is not None  # a relation read from a source
        if self.links_to(rel.source, column, entity):
            return
        keys = self.keyed_by(rel.source, entity)
        self.problem(
            (*loc, key),
            Code.NOT_KEYED_BY_ENTITY,
            f"{key} {column!r} does not hold the key of {article(entity)}: the relation's "
            f"{'from' if key == 'from_key' else 'to'} is {article(entity)}",
            f"{key}: {keys[0]}"
            if len(keys) == 1
            else f"give one of {', '.join(keys)}"
            if keys
            else f"{rel.source} references no {entity}: add references: to a column in sources.yaml",
        )

    def _lists(self) -> None:
        if not self.spec.lists:
            return
        loc: Loc = ("lists",)
        if not self.need_source(loc, CREDIT_LISTS, ": listed() reads the credit lists from it"):
            return
        for column, want in CREDIT_LIST_COLUMNS.items():
            self.need_column(loc, CREDIT_LISTS, column, want)
        for ent in LISTED_KINDS:
            if ent in self.spec.entities:
                self.need_link(loc, CREDIT_LISTS, ent, f"listed() on {article(ent)}")

    def where(self, loc: Loc, source: str, text: str, key: str, what: str) -> None:
        """A `where` on a source's rows: a condition on its columns, kept under `key`."""
        node = self.checker.parse((*loc, "where"), text)
        if node is not None:
            self.checker.expect(node, source_scope(source, self.cat.source_columns), {"bool"}, what)
            self.cat.where[key] = node

    # --- names ---------------------------------------------------------------------------

    def _names(self) -> None:
        """Features, relations, their attributes and lists never share a name: a policy, a
        worked example or an explanation would read one where the other was meant."""
        relations = self.spec.relations
        for entity, features in self.spec.features.items():
            for name in features:
                loc: Loc = ("features", entity, name)
                rel = relations.get(name)
                if rel is not None and rel.from_ == entity:
                    self.clash(
                        loc,
                        f"{name!r} is both a feature of {article(entity)} and a relation from it",
                        "give them different names: a worked example could not say which it gives",
                    )
                elif name in RUN_DATES:
                    self.clash(
                        loc,
                        f"feature {name!r} is also a run date: policies would read the run's date",
                        f"rename the feature; the run dates are {', '.join(RUN_DATES)}",
                    )
                elif name in CASE_KEYS:
                    self.clash(
                        loc,
                        f"feature {name!r}: worked examples give {name!r} beside the features",
                        f"rename the feature; {' and '.join(CASE_KEYS)} are keys of worked examples",
                    )
        for rname, rel in relations.items():
            if rname in CASE_KEYS:
                self.clash(
                    ("relations", rname),
                    f"relation {rname!r}: worked examples give {rname!r} beside the relations",
                    f"rename the relation; {' and '.join(CASE_KEYS)} are keys of worked examples",
                )
            for attr in rel.attributes:
                if attr in self.cat.features_of(rel.to):
                    self.clash(
                        ("relations", rname, "attributes", attr),
                        f"attribute {attr!r} of relation {rname!r} is also a feature of the "
                        f"related {rel.to}: inside count({rname}, ...) one would hide the other",
                        "rename the attribute",
                    )
        for lname in self.spec.lists:
            owners = [e for e, fs in self.spec.features.items() if lname in fs]
            if owners or lname in relations:
                what = f"a feature of {article(owners[0])}" if owners else "a relation"
                self.clash(
                    ("lists", lname),
                    f"credit list {lname!r} is also {what}: listed({lname!r}) and {lname} "
                    "would read alike in a policy",
                    f"rename the {'feature' if owners else 'relation'}: a list's name is the "
                    "one the credit office delivers",
                )

    def clash(self, loc: Loc, message: str, fix: str) -> None:
        self.problem(loc, Code.NAME_CLASH, message, fix)

    # --- features ------------------------------------------------------------------------

    def _source_feature(self, entity: str, fname: str, fdef: FeatureDef) -> None:
        loc: Loc = ("features", entity, fname)
        assert fdef.source is not None
        if not self.need_source((*loc, "source"), fdef.source):
            return
        own = self.spec.entities.get(entity)
        is_own = own is not None and own.source == fdef.source
        self.need_link((*loc, "source"), fdef.source, entity, f"feature {fname!r}")
        if entity not in self.unsure and entity in self.spec.entities:
            self._aggregation(loc, entity, fname, fdef, is_own)
        if fdef.window is not None and fdef.window.anchor is not None:
            self._anchor(entity, fname, fdef)
        if fdef.window is not None and fdef.source not in self.spec.timed:
            self.problem(
                (*loc, "window"),
                Code.BAD_VALUE,
                f"feature {fname!r} reads {fdef.source}, which has no months: a look-back has no meaning",
                "give window: only to features of a source listed under timed:",
            )
        if fdef.column is not None and self.need_column((*loc, "column"), fdef.source, fdef.column):
            self._column_type(loc, fname, fdef)
        if fdef.where is not None:
            self.where(loc, fdef.source, fdef.where, f"{entity}.{fname}", "a feature's where")

    def _aggregation(
        self, loc: Loc, entity: str, fname: str, fdef: FeatureDef, is_own: bool
    ) -> None:
        """The entity's own record is read as it is (agg: value); any other source has many
        rows per entity, aggregated; the window's months only of a monthly source."""
        agg = fdef.agg or "value"
        timed = self.spec.timed.get(fdef.source or "")
        if is_own and agg != "value":
            self.problem(
                (*loc, "agg"),
                Code.BAD_VALUE,
                f"feature {fname!r} reads the {entity}'s own record, one row per {entity}: "
                f"it is read as it is, not by {agg}",
                f"write agg: value, or read a source with many rows per {entity}",
            )
        elif not is_own and agg == "value":
            self.problem(
                (*loc, "agg") if fdef.agg else loc,
                Code.BAD_VALUE,
                f"feature {fname!r} reads {fdef.source}, which has many rows per {entity}: "
                "say how they are aggregated",
                "give agg: sum, mean, min, max, first, last, count, count_distinct"
                + (", months, at_start or at_end" if timed else ""),
            )
        elif (
            agg in MONTHLY_AGGS
            and (timed is None or timed.unit != "month")
            and "timed:" not in self.unsure
        ):
            self.problem(
                (*loc, "agg"),
                Code.BAD_VALUE,
                f"feature {fname!r}: agg: {agg} reads the months of a monthly source, and "
                f"{fdef.source} is not one (timed: in features.yaml, unit month)",
                "choose count, sum, max, last, ... or read a monthly source",
            )

    def _column_type(self, loc: Loc, fname: str, fdef: FeatureDef) -> None:
        assert fdef.source is not None
        assert fdef.column is not None
        col_type = self.cat.source_columns[fdef.source][fdef.column]
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
            self.problem(
                (*loc, "type"),
                Code.TYPE_MISMATCH,
                f"feature {fname!r} is declared {fdef.type} but column {fdef.source}.{fdef.column} is {col_type}",
                "declare the type the column holds, or choose an aggregation that gives it",
            )

    def _anchor(self, entity: str, fname: str, fdef: FeatureDef) -> None:
        """An anchored window: on a date of the entity's own record, over a monthly source, for
        an aggregation that does not name the window's first or last month."""
        assert fdef.window is not None
        loc: Loc = ("features", entity, fname, "window", "anchor")
        anchor = self.cat.features_of(entity).get(fdef.window.anchor or "")
        own = self.spec.entities[entity].source if entity in self.spec.entities else None
        timed = self.spec.timed.get(fdef.source or "")
        if (
            anchor is None
            or anchor.type != "date"
            or anchor.source != own
            or anchor.agg not in (None, "value")
        ):
            self.problem(
                loc,
                Code.BAD_VALUE,
                f"feature {fname!r} is anchored on {fdef.window.anchor!r}, which is no date of the "
                f"{entity}'s own record",
                f"anchor on a date feature read from {own} (agg: value)",
            )
        elif timed is None or timed.unit != "month" or fdef.agg in ("at_start", "at_end"):
            self.problem(
                loc,
                Code.BAD_VALUE,
                f"feature {fname!r}: an anchored window counts months of a monthly source, and not "
                "at_start or at_end",
                "anchor a sum, count, months, min, max, first or last over a monthly source",
            )

    def _relation_feature(self, entity: str, fname: str, fdef: FeatureDef) -> None:
        loc: Loc = ("features", entity, fname)
        assert fdef.relation is not None
        checker = self.checker
        if fdef.window is not None:
            self.problem(
                (*loc, "window"),
                Code.BAD_VALUE,
                f"feature {fname!r} aggregates a relation: its window is the relation's `during`",
                "leave out window:",
            )
        rel = self.spec.relations.get(fdef.relation)
        if rel is None or rel.from_ != entity:
            known = sorted(n for n, r in self.spec.relations.items() if r.from_ == entity)
            self.problem(
                (*loc, "relation"),
                Code.UNKNOWN_RELATION,
                f"unknown relation {fdef.relation!r}"
                if rel is None
                else f"relation {fdef.relation!r} starts from {article(rel.from_)}, not {article(entity)}",
                did_you_mean(fdef.relation, known, f"relations from {article(entity)}")
                if known
                else f"no relation starts from {article(entity)}",
            )
            return
        func = fdef.agg or "count"
        body_text = fdef.where if func in ("count", "any", "all") else fdef.body
        body = (
            checker.parse((*loc, "where" if fdef.where else "body"), body_text)
            if body_text
            else None
        )
        located = checker.located
        span = A.Span(located.file, *located.at(loc), f"{func}({fdef.relation})")
        agg = A.Aggregate(func, fdef.relation, body, span)  # type: ignore[arg-type]
        agg_type = checker.check(agg, Scope(entity, {}, "", relations_from=entity))
        if agg_type is not None and agg_type != fdef.type:
            self.problem(
                (*loc, "type"),
                Code.TYPE_MISMATCH,
                f"feature {fname!r} is declared {fdef.type} but {func}() gives {agg_type}",
                f"declare type: {agg_type}",
            )
        self.cat.relation_features[f"{entity}.{fname}"] = agg


def _leads_back(spec: FeatureCatalogue, hop: str, target: str, seen: set[str]) -> bool:
    """Whether following `hop` reaches `target` (or a circle) through via steps."""
    if hop == target or hop in seen:
        return True
    step = spec.relations.get(hop)
    if step is None or step.via is None:
        return False
    return any(_leads_back(spec, h, target, seen | {hop}) for h in step.via)
