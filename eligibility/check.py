"""From files to checked policies: parse every expression, resolve every name, check every type.

All problems of a file are collected before anything is reported, each with
its file, line, column, code and a fix.  What comes out (`CheckedPolicy`) is
what every backend compiles: it names the features, relations and lists the
policy reads, so only those are computed.

Error codes:
  E000 file unreadable          E001-E003 YAML (syntax, duplicate key, yes/no)
  E101 expression syntax        E102 unknown function      E103 wrong number of arguments
  E104 unknown name             E105 type mismatch         E106 unknown relation
  E107 duplicate id             E108 bad parameter         E109 bad amount
  E110 unknown key              E111 missing key           E112 bad value
  E120 bad test case            E121 unknown condition in a test
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.errors import Code, Problem, ProblemsError, did_you_mean
from common.yamlsrc import Loc, Located, load_yaml_file, schema_problems
from eligibility import ast as A
from eligibility.parse import parse_expression
from eligibility.schema import FeatureCatalogue, FeatureDef, PolicyFile, RelationDef
from eligibility.types import NUMERIC, Type, arithmetic, comparable, unify

RUN_DATES = (
    "as_of",
    "period_start",
    "period_end",
    "window_start",
    "window_end",
    "policy_start",
    "policy_end",
)


# --- what names mean -----------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRef:
    name: str
    type: Type


@dataclass(frozen=True)
class LetRef:
    name: str
    type: Type


@dataclass(frozen=True)
class ParamRef:
    name: str
    type: Type


@dataclass(frozen=True)
class RunDate:
    name: str
    type: Type = "date"


@dataclass(frozen=True)
class ColumnRef:
    """A column of a source row (in feature and relation `where` clauses) or of a link."""

    name: str
    column: str
    type: Type


Binding = FeatureRef | LetRef | ParamRef | RunDate | ColumnRef


@dataclass
class Scope:
    """The names visible in one expression, and the entity whose row it is evaluated on."""

    entity: str | None
    names: dict[str, Binding]
    what: str  # for messages: "features of a person", "columns of tax_monthly"
    relations_from: str | None = None  # aggregates allowed over relations from this entity


@dataclass
class Typed:
    """Parsed expressions with their types and bindings (keyed by node identity)."""

    types: dict[int, Type] = field(default_factory=dict)
    bindings: dict[int, Binding] = field(default_factory=dict)
    scopes: dict[int, Scope] = field(default_factory=dict)  # Aggregate node -> body scope
    features: set[tuple[str, str]] = field(default_factory=set)  # (entity, feature)
    aggregates: list[A.Aggregate] = field(default_factory=list)
    lists: set[tuple[str, str]] = field(default_factory=set)  # (entity, list name)
    uses_age: bool = False

    def type_of(self, node: A.Node) -> Type:
        return self.types[id(node)]


# --- the checked catalogue -----------------------------------------------------------


@dataclass
class CheckedCatalogue:
    """The feature catalogue with every expression parsed and typed."""

    spec: FeatureCatalogue
    file: str
    sha256: str
    source_columns: dict[str, dict[str, Type]]
    typed: Typed
    where: dict[str, A.Node]  # "entity.feature" or "relation:<name>" -> parsed where
    relation_features: dict[str, A.Aggregate]  # "entity.feature" -> aggregate
    source_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def features_of(self, entity: str) -> dict[str, FeatureDef]:
        return dict(self.spec.features.get(entity, {}))  # type: ignore[call-overload]

    def relation(self, name: str) -> RelationDef:
        return self.spec.relations[name]


@dataclass(frozen=True)
class CheckedCondition:
    id: str
    node: A.Node
    ref: str | None
    text: str | None


@dataclass
class CheckedAmount:
    kind: str  # formula | tiers | table
    formula: A.Node | None = None
    tiers_by: A.Node | None = None
    tiers_mode: str = "step"
    brackets: list[tuple[A.Node | None, A.Node | None, A.Node]] = field(default_factory=list)
    table: list[tuple[A.Node, A.Node]] = field(default_factory=list)
    otherwise: A.Node | None = None
    prorate_from: A.Node | None = None
    prorate_until: A.Node | None = None
    cap: A.Node | None = None
    round: str = "fen"


@dataclass
class CheckedPolicy:
    """A policy ready to compile: its spec, parsed expressions, and what it reads."""

    spec: PolicyFile
    file: str
    sha256: str
    lets: dict[str, A.Node]
    params: dict[str, list[tuple[Any, A.Node, str]]]  # name -> [(from date, value node, ref)]
    conditions: list[CheckedCondition]
    amount: CheckedAmount
    payee_where: A.Node | None
    rank_by: A.Node | None
    typed: Typed
    located: Located

    @property
    def id(self) -> str:
        return self.spec.policy

    @property
    def target(self) -> str:
        return self.spec.target


# --- the checker ---------------------------------------------------------------------


class Checker:
    """Parses and types the expressions of one file, collecting problems."""

    def __init__(self, located: Located, catalogue: CheckedCatalogue | None) -> None:
        self.located = located
        self.catalogue = catalogue
        self.problems: list[Problem] = []
        self.typed = Typed()

    def problem(self, loc: Loc, code: Code, message: str, fix: str = "") -> None:
        self.problems.append(self.located.problem(loc, code, message, fix))

    def node_problem(self, node: A.Node, code: Code, message: str, fix: str = "") -> None:
        s = node.span
        self.problems.append(Problem(s.file, s.line, s.col, code, message, fix))

    def parse(self, loc: Loc, value: Any) -> A.Node | None:
        """Parse the expression at `loc`; numbers and dates written bare become literals."""
        text = _as_text(value)
        line, col = self.located.value_at(loc)
        try:
            return parse_expression(text, self.located.file, line, col)
        except ProblemsError as exc:
            self.problems.extend(exc.problems)
            return None

    # -- typing ------------------------------------------------------------------------
    def check(self, node: A.Node, scope: Scope) -> Type | None:
        """The type of `node` in `scope`; None (with a problem recorded) if it has none."""
        t = self._check(node, scope)
        if t is not None:
            self.typed.types[id(node)] = t
        return t

    def _check(self, node: A.Node, scope: Scope) -> Type | None:
        match node:
            case A.Literal(value=v, unit=unit):
                if unit in ("yuan", "fen"):
                    return "money"
                if v is None:
                    return "null"
                if isinstance(v, bool):
                    return "bool"
                if isinstance(v, Decimal):
                    return (
                        "count"
                        if v == v.to_integral_value()
                        and "." not in node.span.text
                        and "%" not in node.span.text
                        else "number"
                    )
                if isinstance(v, str):
                    return "text"
                return "date"
            case A.Name(name=name):
                binding = scope.names.get(name)
                if binding is None:
                    fix = did_you_mean(name, list(scope.names), f"the names here ({scope.what})")
                    if name in RUN_DATES:
                        fix = f"{name} is not available here"
                    self.node_problem(
                        node,
                        Code.UNKNOWN_NAME,
                        f"unknown name {name!r}",
                        fix
                        + (
                            " Known features are listed by `disburse features`"
                            if "did you mean" in fix
                            else ""
                        ),
                    )
                    return None
                self.typed.bindings[id(node)] = binding
                if isinstance(binding, FeatureRef) and scope.entity is not None:
                    self.typed.features.add((scope.entity, binding.name))
                return binding.type
            case A.ListLit(items=items):
                types = [self.check(i, scope) for i in items]
                if any(t is None for t in types):
                    return None
                first: Type = types[0] or "null" if types else "null"
                for item, t in zip(items, types, strict=True):
                    if t is None or unify(first, t) is None:
                        self.node_problem(item, Code.TYPE_MISMATCH, f"a list mixes {first} and {t}")
                        return None
                return first
            case A.Unary(op="not", operand=o):
                return self._expect(o, scope, {"bool"}, "not needs a condition")
            case A.Unary(op="-", operand=o):
                return self._expect(o, scope, set(NUMERIC), "minus needs a number")
            case A.Binary(op=op, left=left, right=right):
                lt, rt = self.check(left, scope), self.check(right, scope)
                if lt is None or rt is None:
                    return None
                result = arithmetic(op, lt, rt)
                if result not in ("text", "count", "number", "money", "date", "bool", "null"):
                    self.node_problem(
                        node,
                        Code.TYPE_MISMATCH,
                        str(result),
                        "money amounts are written with a unit: 1500 yuan",
                    )
                    return None
                return result  # type: ignore[return-value]
            case A.Compare(left=left, right=right, op=op):
                lt, rt = self.check(left, scope), self.check(right, scope)
                if lt is None or rt is None:
                    return None
                zero = any(
                    isinstance(x, A.Literal) and x.value == 0 and x.unit == ""
                    for x in (left, right)
                )
                if not comparable(lt, rt) and not ({lt, rt} == {"money", "count"} and zero):
                    fix = (
                        "write money with a unit: 5000000 yuan"
                        if "money" in (lt, rt)
                        else "use is_missing(x) to test for a missing value"
                        if "null" in (lt, rt)
                        else "compare values of the same kind"
                    )
                    self.node_problem(
                        node, Code.TYPE_MISMATCH, f"cannot compare {lt} with {rt}", fix
                    )
                    return None
                if lt in ("text", "bool") and op not in ("==", "!="):
                    self.node_problem(
                        node, Code.TYPE_MISMATCH, f"{lt} values can only be compared with == and !="
                    )
                    return None
                return "bool"
            case A.BoolOp(operands=ops, op=op):
                ok = all(self._expect(o, scope, {"bool"}, f"`{op}` joins conditions") for o in ops)
                return "bool" if ok else None
            case A.In(item=item, options=options):
                it, lt = self.check(item, scope), self.check(options, scope)
                if it is None or lt is None:
                    return None
                if lt != "null" and not comparable(it, lt):
                    self.node_problem(
                        node, Code.TYPE_MISMATCH, f"cannot look for a {it} value in a list of {lt}"
                    )
                    return None
                return "bool"
            case A.Cond(test=test, then=a, otherwise=b):
                self._expect(test, scope, {"bool"}, "the condition after `if`")
                at, bt = self.check(a, scope), self.check(b, scope)
                if at is None or bt is None:
                    return None
                u = unify(at, bt)
                if u is None:
                    self.node_problem(
                        node, Code.TYPE_MISMATCH, f"the two branches of `if` differ: {at} and {bt}"
                    )
                return u
            case A.Call():
                return self._call(node, scope)
            case A.Aggregate():
                return self._aggregate(node, scope)
        raise TypeError(f"unknown node {node!r}")

    def _expect(self, node: A.Node, scope: Scope, allowed: set[str], what: str) -> Type | None:
        t = self.check(node, scope)
        if t is not None and t not in allowed and t != "null":
            self.node_problem(
                node,
                Code.TYPE_MISMATCH,
                f"{what}: expected {' or '.join(sorted(allowed))}, found {t}",
            )
            return None
        return t

    def _call(self, node: A.Call, scope: Scope) -> Type | None:
        f, args = node.func, node.args
        if f == "listed":
            (arg,) = args
            if not (isinstance(arg, A.Literal) and isinstance(arg.value, str)):
                self.node_problem(
                    node,
                    Code.TYPE_MISMATCH,
                    "listed() takes the name of a list in quotes",
                    'write: listed("serious_dishonesty")',
                )
                return None
            self.typed.types[id(arg)] = "text"
            if scope.entity is None:
                self.node_problem(
                    node, Code.FUNCTION_CONTEXT, "listed() needs an enterprise or person"
                )
                return None
            self.typed.lists.add((scope.entity, arg.value))
            return "bool"
        types = [self.check(a, scope) for a in args]
        if any(t is None for t in types):
            return None
        ts: list[Type] = [t for t in types if t is not None]
        if f in ("min", "max", "coalesce"):
            result: Type | None = ts[0]
            for t in ts[1:]:
                result = unify(result, t) if result is not None else None
            if result is None or (
                f != "coalesce" and result not in ("count", "number", "money", "date")
            ):
                self.node_problem(
                    node,
                    Code.TYPE_MISMATCH,
                    f"{f}() needs values of one kind, found {', '.join(ts)}",
                )
                return None
            return result
        if f == "abs":
            return self._want(node, ts, [set(NUMERIC)], ts[0])
        if f == "round":
            if len(args) == 2 and not (isinstance(args[1], A.Literal) and ts[1] == "count"):
                self.node_problem(
                    args[1],
                    Code.TYPE_MISMATCH,
                    "round()'s places must be a whole number written out",
                )
                return None
            return self._want(node, ts[:1], [{"number", "money", "count"}], ts[0])
        if f in ("months_between", "days_between"):
            return self._want(node, ts, [{"date"}, {"date"}], "count")
        if f == "age_on":
            if "birth_on" not in scope.names:
                self.node_problem(
                    node,
                    Code.FUNCTION_CONTEXT,
                    "age_on() needs the feature birth_on, which this entity has not",
                    "age_on applies to persons",
                )
                return None
            self.check(A.Name("birth_on", node.span), scope)
            self.typed.uses_age = True
            return self._want(node, ts, [{"date"}], "count")
        if f in ("add_months", "add_days"):
            return self._want(node, ts, [{"date"}, {"count"}], "date")
        if f == "month_start":
            return self._want(node, ts, [{"date"}], "date")
        if f == "year_of":
            return self._want(node, ts, [{"date"}], "count")
        if f == "is_missing":
            return "bool"
        raise TypeError(f"function {f} has no type rule")

    def _want(
        self, node: A.Call, ts: list[Type], allowed: list[set[str]], result: Type
    ) -> Type | None:
        for i, (t, ok) in enumerate(zip(ts, allowed, strict=False)):
            if t not in ok and t != "null":
                self.node_problem(
                    node.args[i],
                    Code.TYPE_MISMATCH,
                    f"argument {i + 1} of {node.func}() must be {' or '.join(sorted(ok))}, found {t}",
                )
                return None
        return result

    def _aggregate(self, node: A.Aggregate, scope: Scope) -> Type | None:
        cat = self.catalogue
        rel = cat.spec.relations.get(node.relation) if cat else None
        if cat is None or rel is None or rel.from_ != scope.relations_from:
            known = [
                n
                for n, r in (cat.spec.relations.items() if cat else [])
                if r.from_ == scope.relations_from
            ]
            self.node_problem(
                node,
                Code.UNKNOWN_RELATION,
                f"unknown relation {node.relation!r}",
                did_you_mean(node.relation, known, f"relations of a {scope.relations_from}")
                if known
                else f"no relation starts from {scope.relations_from or 'here'}",
            )
            return None
        body_scope = member_scope(cat, node.relation, scope)
        self.typed.scopes[id(node)] = body_scope
        self.typed.aggregates.append(node)
        if node.body is None:
            return "count"
        if node.func in ("any", "all", "count"):
            t = self._expect(
                node.body,
                body_scope,
                {"bool"},
                f"{node.func}() takes a condition on each related {rel.to}",
            )
            if t is None:
                return None
            return "count" if node.func == "count" else "bool"
        return self._expect(node.body, body_scope, set(NUMERIC), "sum() adds up numbers")


def member_scope(cat: CheckedCatalogue, relation: str, outer: Scope) -> Scope:
    """Names inside an aggregate body: the related entity's features and the link's attributes."""
    rel = cat.spec.relations[relation]
    names: dict[str, Binding] = dict(entity_scope(cat, rel.to).names)
    for attr, column in rel.attributes.items():
        names[attr] = ColumnRef(attr, column, cat.source_columns[rel.source][column])
    for n, b in outer.names.items():
        if isinstance(b, ParamRef | RunDate):
            names.setdefault(n, b)
    return Scope(
        rel.to,
        names,
        f"features of the related {rel.to} and the link's attributes",
        relations_from=None,
    )


def entity_scope(cat: CheckedCatalogue, entity: str) -> Scope:
    """The features of one entity kind."""
    names: dict[str, Binding] = {
        n: FeatureRef(n, f.type) for n, f in cat.features_of(entity).items()
    }
    return Scope(
        entity,
        names,
        f"features of an {entity}" if entity == "enterprise" else f"features of a {entity}",
        relations_from=entity,
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- loading the catalogue -----------------------------------------------------------


def _schema_problems(located: Located, exc: ValidationError) -> list[Problem]:
    return schema_problems(
        located,
        exc,
        codes=(Code.UNKNOWN_KEY, Code.MISSING_KEY, Code.BAD_VALUE),
        unknown_key_fix=lambda _loc: (
            "check the spelling; the keys of a policy file are described in docs/policies.md"
        ),
        format_hint="see docs/policies.md for the format",
    )


def load_features(
    path: Path,
    source_columns: dict[str, dict[str, Type]],
    source_keys: dict[str, tuple[str, ...]] | None = None,
) -> CheckedCatalogue:
    """Load policies/features.yaml, checking it against the staged source columns."""
    located = load_yaml_file(path)
    try:
        spec = FeatureCatalogue.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(_schema_problems(located, exc)) from None
    cat = CheckedCatalogue(
        spec, located.file, _sha256(located.text), source_columns, Typed(), {}, {}
    )
    checker = Checker(located, cat)
    cat.typed = checker.typed

    def need_source(loc: Loc, source: str) -> bool:
        if source not in source_columns:
            checker.problem(
                loc,
                Code.UNKNOWN_SOURCE,
                f"unknown source {source!r}",
                did_you_mean(source, list(source_columns), "sources"),
            )
            return False
        return True

    def need_column(loc: Loc, source: str, column: str) -> bool:
        if column not in source_columns[source]:
            checker.problem(
                loc,
                Code.UNKNOWN_COLUMN,
                f"source {source!r} has no column {column!r}",
                did_you_mean(column, list(source_columns[source]), "its columns"),
            )
            return False
        return True

    for ent, edef in spec.entities.items():
        need_source(("entities", ent, "source"), edef.source)
    for src, t in spec.timed.items():
        if need_source(("timed", src), src):
            need_column(("timed", src, "column"), src, t.column)
    for rname, rel in spec.relations.items():
        loc: Loc = ("relations", rname)
        if not need_source((*loc, "source"), rel.source):
            continue
        for key in ("from_key", "to_key"):
            need_column((*loc, key), rel.source, getattr(rel, key))
        for attr, col in rel.attributes.items():
            need_column((*loc, "attributes", attr), rel.source, col)
        if rel.during is not None:
            need_column((*loc, "during"), rel.source, rel.during)
        if rel.where is not None:
            node = checker.parse((*loc, "where"), rel.where)
            if node is not None:
                checker._expect(
                    node, _source_scope(rel.source, source_columns), {"bool"}, "a relation's where"
                )
                cat.where[f"relation:{rname}"] = node
    for entity, fname, fdef in (
        (e, n, f) for e, fs in spec.features.items() for n, f in fs.items()
    ):
        loc = ("features", entity, fname)
        if fdef.source is not None:
            if not need_source((*loc, "source"), fdef.source):
                continue
            if fdef.column is not None and need_column((*loc, "column"), fdef.source, fdef.column):
                col_type = source_columns[fdef.source][fdef.column]
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
                    checker.problem(
                        (*loc, "type"),
                        Code.TYPE_MISMATCH,
                        f"feature {fname!r} is declared {fdef.type} but column {fdef.source}.{fdef.column} is {col_type}",
                    )
            if fdef.where is not None:
                node = checker.parse((*loc, "where"), fdef.where)
                if node is not None:
                    checker._expect(
                        node,
                        _source_scope(fdef.source, source_columns),
                        {"bool"},
                        "a feature's where",
                    )
                    cat.where[f"{entity}.{fname}"] = node
        elif fdef.relation is not None:
            if fdef.relation not in spec.relations:
                checker.problem(
                    (*loc, "relation"),
                    Code.UNKNOWN_RELATION,
                    f"unknown relation {fdef.relation!r}",
                    did_you_mean(fdef.relation, list(spec.relations), "relations"),
                )
                continue
            func = fdef.agg or "count"
            body_text = fdef.where if func in ("count", "any", "all") else fdef.body
            body = (
                checker.parse((*loc, "where" if fdef.where else "body"), body_text)
                if body_text
                else None
            )
            span = A.Span(located.file, *located.at(loc), f"{func}({fdef.relation})")
            agg = A.Aggregate(func, fdef.relation, body, span)  # type: ignore[arg-type]
            outer = Scope(entity, {}, "", relations_from=entity)
            agg_type = checker.check(agg, outer)
            if agg_type is not None and agg_type != fdef.type:
                checker.problem(
                    (*loc, "type"),
                    Code.TYPE_MISMATCH,
                    f"feature {fname!r} is declared {fdef.type} but {func}() gives {agg_type}",
                )
            cat.relation_features[f"{entity}.{fname}"] = agg
    if checker.problems:
        raise ProblemsError(checker.problems)
    return cat


def _source_scope(source: str, source_columns: dict[str, dict[str, Type]]) -> Scope:
    names: dict[str, Binding] = {c: ColumnRef(c, c, t) for c, t in source_columns[source].items()}
    return Scope(None, names, f"columns of {source}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- loading a policy ---------------------------------------------------------------


def load_policy(path: Path, cat: CheckedCatalogue) -> CheckedPolicy:
    """Load, parse and type-check one policy file; every problem in it at once."""
    located = load_yaml_file(path)
    try:
        spec = PolicyFile.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(_schema_problems(located, exc)) from None
    return check_policy(spec, located, cat)


def check_policy(spec: PolicyFile, located: Located, cat: CheckedCatalogue) -> CheckedPolicy:
    """Type-check a validated policy file against the feature catalogue."""
    c = Checker(located, cat)
    base = entity_scope(cat, spec.target)
    names = dict(base.names)
    for d in RUN_DATES:
        names[d] = RunDate(d)
    scope = Scope(
        spec.target, names, base.what + ", lets, params and run dates", relations_from=spec.target
    )

    params: dict[str, list[tuple[Any, A.Node, str]]] = {}
    for pname, values in spec.params.items():
        ptype: Type | None = None
        dated = []
        for i, pv in enumerate(values):
            node = c.parse(("params", pname, i, "value"), pv.value)
            if node is None:
                continue
            t = c.check(node, Scope(None, {}, "literals only"))
            if t is not None and ptype is not None and unify(ptype, t) is None:
                c.node_problem(
                    node, Code.TYPE_MISMATCH, f"parameter {pname!r} changes kind: {ptype} then {t}"
                )
            ptype = t if ptype is None else (unify(ptype, t) or ptype) if t else ptype
            if i and pv.from_ <= values[i - 1].from_:
                c.problem(
                    ("params", pname, i, "from"),
                    Code.PARAM_DATES,
                    f"parameter {pname!r}: dates must increase",
                    "list values from oldest to newest",
                )
            dated.append((pv.from_, node, pv.ref))
        if pname in scope.names:
            c.problem(
                ("params", pname),
                Code.NAME_CLASH,
                f"parameter {pname!r} hides a feature of the same name",
                "rename the parameter",
            )
        if ptype is not None:
            scope.names[pname] = ParamRef(pname, ptype)
            params[pname] = dated

    lets: dict[str, A.Node] = {}
    for lname, text in spec.let.items():
        node = c.parse(("let", lname), text)
        if lname in scope.names:
            c.problem(
                ("let", lname),
                Code.NAME_CLASH,
                f"{lname!r} is already the name of a feature or parameter",
                "choose another name",
            )
        if node is None:
            continue
        t = c.check(node, scope)
        if t is not None:
            scope.names[lname] = LetRef(lname, t)
            lets[lname] = node

    conditions = []
    seen: dict[str, int] = {}
    for i, cond in enumerate(spec.eligible):
        if cond.id in seen:
            c.problem(
                ("eligible", i, "id"),
                Code.DUPLICATE_ID,
                f"condition id {cond.id!r} is used twice (first at condition {seen[cond.id] + 1})",
                "give each condition its own id",
            )
        seen.setdefault(cond.id, i)
        node = c.parse(("eligible", i, "when"), cond.when)
        if node is not None and c._expect(
            node, scope, {"bool"}, "a condition must be true or false"
        ):
            conditions.append(CheckedCondition(cond.id, node, cond.ref, cond.text))

    amount = _check_amount(c, spec, scope)

    payee_where = None
    if spec.payee != "self":
        rel = cat.spec.relations.get(spec.payee.relation)
        if rel is None or rel.from_ != spec.target or rel.to != "person":
            known = [
                n
                for n, r in cat.spec.relations.items()
                if r.from_ == spec.target and r.to == "person"
            ]
            c.problem(
                ("payee", "relation"),
                Code.UNKNOWN_RELATION,
                f"unknown relation {spec.payee.relation!r} for a payee",
                did_you_mean(spec.payee.relation, known, "relations to a person") if known else "",
            )
        elif spec.payee.where is not None:
            payee_where = c.parse(("payee", "where"), spec.payee.where)
            if payee_where is not None:
                agg = A.Aggregate("any", spec.payee.relation, payee_where, payee_where.span)
                c.check(agg, scope)

    rank_by = None
    if spec.budget is not None and spec.budget.rank_by is not None:
        rank_by = c.parse(("budget", "rank_by"), spec.budget.rank_by)
        if rank_by is not None:
            c._expect(rank_by, scope, set(NUMERIC) | {"date"}, "rank_by orders claims")

    policy = CheckedPolicy(
        spec,
        located.file,
        _sha256(located.text),
        lets,
        params,
        conditions,
        amount,
        payee_where,
        rank_by,
        c.typed,
        located,
    )
    _check_cases(c, policy, cat)
    if c.problems:
        raise ProblemsError(c.problems)
    return policy


def _check_amount(c: Checker, spec: PolicyFile, scope: Scope) -> CheckedAmount:
    am = spec.amount
    out = CheckedAmount(kind="formula", round=am.round)

    def money(loc: Loc, value: Any, what: str) -> A.Node | None:
        node = c.parse(loc, value)
        if node is None:
            return None
        t = c.check(node, scope)
        if t is not None and t not in ("money", "null"):
            c.node_problem(
                node,
                Code.AMOUNT_NOT_MONEY,
                f"{what} must be money, found {t}",
                "write the unit: 1500 yuan, or multiply a money feature",
            )
            return None
        return node

    if am.formula is not None:
        out.formula = money(("amount", "formula"), am.formula, "the amount")
    elif am.tiers is not None:
        out.kind, out.tiers_mode = "tiers", am.tiers.mode
        out.tiers_by = c.parse(("amount", "tiers", "by"), am.tiers.by)
        by_t = c.check(out.tiers_by, scope) if out.tiers_by is not None else None
        for i, br in enumerate(am.tiers.brackets):
            loc: Loc = ("amount", "tiers", "brackets", i)
            bounds: list[A.Node | None] = []
            for key, raw in (("from", br.from_), ("to", br.to)):
                if raw is None:
                    bounds.append(None)
                    continue
                node = c.parse((*loc, key), raw)
                t = c.check(node, scope) if node is not None else None
                if (
                    node is not None
                    and t is not None
                    and by_t is not None
                    and not comparable(t, by_t)
                ):
                    c.node_problem(
                        node, Code.TYPE_MISMATCH, f"a bracket bound is {t} but tiers are by {by_t}"
                    )
                bounds.append(node)
            if am.tiers.mode == "step":
                if br.amount is None:
                    c.problem(
                        loc,
                        Code.BRACKET_INCOMPLETE,
                        "a step bracket needs amount",
                        "add amount: 100 yuan",
                    )
                    continue
                value = money((*loc, "amount"), br.amount, "a bracket's amount")
            else:
                if br.rate is None:
                    c.problem(
                        loc,
                        Code.BRACKET_INCOMPLETE,
                        "a marginal bracket needs rate",
                        "add rate: 5%",
                    )
                    continue
                value = c.parse((*loc, "rate"), br.rate)
                if value is not None:
                    c._expect(value, scope, {"number", "count"}, "a rate")
                if by_t not in ("money", None):
                    c.problem(
                        ("amount", "tiers", "by"),
                        Code.MARGINAL_NOT_MONEY,
                        "marginal tiers apply rates to money",
                        "tier by a money feature",
                    )
            if value is not None:
                out.brackets.append((bounds[0], bounds[1], value))
    else:
        out.kind = "table"
        for i, row in enumerate(am.table or []):
            when = c.parse(("amount", "table", i, "when"), row.when)
            if when is not None:
                c._expect(when, scope, {"bool"}, "a table row's when")
            value = money(("amount", "table", i, "amount"), row.amount, "a table row's amount")
            if when is not None and value is not None:
                out.table.append((when, value))
        if am.otherwise is not None:
            out.otherwise = money(("amount", "otherwise"), am.otherwise, "otherwise")
    if am.prorate is not None:
        for key in ("from_", "until"):
            raw = getattr(am.prorate, key)
            if raw is not None:
                node = c.parse(("amount", "prorate", key.rstrip("_")), raw)
                if node is not None:
                    c._expect(node, scope, {"date"}, "a proration bound")
                setattr(out, f"prorate_{key.rstrip('_')}", node)
        if spec.benefit_period in ("once", "month"):
            c.problem(
                ("amount", "prorate"),
                Code.PRORATE_PERIOD,
                f"proration by month needs a benefit period of year or quarter, not {spec.benefit_period}",
            )
    if am.cap is not None:
        out.cap = money(("amount", "cap"), am.cap, "the cap")
    return out


def _check_cases(c: Checker, policy: CheckedPolicy, cat: CheckedCatalogue) -> None:
    spec = policy.spec
    features = cat.features_of(spec.target)
    relations = {n for n, r in cat.spec.relations.items() if r.from_ == spec.target}
    cond_ids = [x.id for x in spec.eligible] + ["payee", "amount_unknown", "amount_zero"]
    for i, case in enumerate(spec.tests):
        for key in case.given:
            if key not in features and key not in relations and key != "lists":
                c.problem(
                    ("tests", i, "given", key),
                    Code.CASE_UNKNOWN_FEATURE,
                    f"test {case.name!r} gives {key!r}, which is no feature of an {spec.target}"
                    if spec.target == "enterprise"
                    else f"test {case.name!r} gives {key!r}, which is no feature of a person",
                    did_you_mean(key, sorted({*features, *relations, "lists"}), "features"),
                )
        if case.expect.reason is not None and case.expect.reason not in cond_ids:
            c.problem(
                ("tests", i, "expect", "reason"),
                Code.CASE_UNKNOWN_REASON,
                f"test {case.name!r} expects reason {case.expect.reason!r}, which is no condition id",
                did_you_mean(case.expect.reason, cond_ids, "condition ids"),
            )
        if case.expect.eligible and case.expect.amount is None and case.expect.amount_yuan is None:
            c.problem(
                ("tests", i, "expect"),
                Code.CASE_NO_AMOUNT,
                f"test {case.name!r} expects eligibility but no amount",
                "add amount: 9000 yuan",
            )
