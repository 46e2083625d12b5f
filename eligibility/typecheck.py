"""Typing expressions: one rule per node kind; function calls by their registry entry.

The checker parses the expressions of one file (policy or feature catalogue),
resolves every name in its scope, types every node, and collects every problem
with its position before anything is reported.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatchmethod
from typing import Any

from common.errors import Code, Problem, ProblemsError, article, did_you_mean
from common.yamlsrc import Loc, Located
from eligibility import ast as A
from eligibility.checked import (
    OWNER,
    RUN_DATES,
    ArgRef,
    Binding,
    CheckedCatalogue,
    ColumnRef,
    FeatureRef,
    LetRef,
    OwnerRef,
    ParamRef,
    RunDate,
    Scope,
    Typed,
)
from eligibility.functions import FUNCTIONS, listed_name
from eligibility.parse import MAX_DEPTH, depth, parse_expression
from eligibility.schema import Define
from eligibility.types import NUMERIC, TYPES, Type, arithmetic, comparable, unify


class Checker:
    """Parses and types the expressions of one file, collecting problems."""

    def __init__(self, located: Located, catalogue: CheckedCatalogue | None) -> None:
        self.located = located
        self.catalogue = catalogue
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.typed = Typed()
        self._shaped: set[int] = set()  # names where a list or table parameter may stand
        self.defines: dict[str, Define] = {}  # the policy's own functions, in file order
        self.owner_lets: dict[str, A.Node] = {}  # lets an aggregate body may read (`owner_level`)
        self.param_nodes: dict[str, list[A.Node]] = {}  # a value parameter's values, as written

    def problem_at(self, loc: Loc, code: Code, message: str, fix: str) -> None:
        """Record a problem at a place in the file."""
        self.problems.append(self.located.problem(loc, code, message, fix))

    def problem(self, node: A.Node, code: Code, message: str, fix: str) -> None:
        """Record a problem at an expression node."""
        s = node.span
        self.problems.append(Problem(s.file, s.line, s.col, code, message, fix))

    def warn(self, node: A.Node, code: Code, message: str, fix: str) -> None:
        """Record a warning at an expression node: accepted, but an officer should look."""
        s = node.span
        self.warnings.append(Problem(s.file, s.line, s.col, code, message, fix))

    def warn_at(self, loc: Loc, code: Code, message: str, fix: str) -> None:
        """Record a warning at a place in the file."""
        self.warnings.append(self.located.problem(loc, code, message, fix))

    def param_shape(self, node: A.Node) -> str | None:
        """value, list or table for a parameter's name; None for anything else."""
        b = self.typed.bindings.get(id(node))
        return b.shape if isinstance(b, ParamRef) else None

    def param_literals(self, node: A.Node) -> list[A.Node]:
        """The values a value parameter takes in this reading, as written (none for others)."""
        b = self.typed.bindings.get(id(node))
        return self.param_nodes.get(b.name, []) if isinstance(b, ParamRef) else []

    def set_type(self, node: A.Node, t: Type) -> None:
        """Record a node's type."""
        self.typed.types[self.typed.note(node)] = t

    def raise_problems(self) -> None:
        """Raise every problem recorded, if any."""
        if self.problems:
            raise ProblemsError(self.problems)

    def parse(self, loc: Loc, value: Any, defined: list[str] | None = None) -> A.Node | None:
        """Parse the expression at `loc`; numbers and dates written bare become literals;
        calls of the policy's own functions (those in `defined`, default all) applied."""
        text = _as_text(value)
        line, col = self.located.value_at(loc)
        where = self.located.where(loc, text)
        names = list(self.defines) if defined is None else defined
        arity = {n: len(self.defines[n].args) for n in names}
        try:
            node = parse_expression(text, self.located.file, line, col, where, arity)
        except ProblemsError as exc:
            self.problems.extend(p for p in exc.problems if p not in self.problems)
            return None
        if not arity:
            return node
        applied = self._apply(node, names)
        if applied is not None and depth(applied) > MAX_DEPTH:
            s = applied.span
            self.problems.append(
                Problem(
                    s.file,
                    s.line,
                    s.col,
                    Code.TOO_COMPLEX,
                    f"with its defined functions applied, the expression is more than {MAX_DEPTH} operations deep",
                    "define simpler functions, or split the expression with let:",
                )
            )
            return None
        return applied

    def _apply(self, node: A.Node, defined: list[str]) -> A.Node | None:
        """`node` with every call of a defined function made an Apply of its body."""
        kids = [self._apply(c, defined) for c in A.children(node)]
        if any(k is None for k in kids):
            return None
        new = tuple(k for k in kids if k is not None)
        if isinstance(node, A.Call) and node.func in self.defines:
            body = self._body(node.func)
            return None if body is None else A.Apply(node.func, new, body, node.span)
        return A.with_children(node, new) if new != A.children(node) else node

    def _body(self, name: str) -> A.Node | None:
        """A fresh copy of a defined function's body (it may call the ones defined before)."""
        names = list(self.defines)
        earlier = names[: names.index(name)]
        d = self.defines[name]
        at: Loc = ("define", name)
        if d.expr is not None:
            return self.parse((*at, "expr"), d.expr, earlier)
        assert d.tiers is not None
        by = self.parse((*at, "tiers", "by"), d.tiers.by, earlier)
        otherwise = (
            self.parse((*at, "otherwise"), d.otherwise, earlier)
            if d.otherwise is not None
            else A.Literal(None, "", A.Span(self.located.file, *self.located.at(at)))
        )
        if by is None or otherwise is None:
            return None
        chain: A.Node = otherwise
        for i, br in reversed(list(enumerate(d.tiers.brackets))):
            loc: Loc = (*at, "tiers", "brackets", i)
            value = (
                self.parse((*loc, "amount"), br.amount, earlier) if br.amount is not None else None
            )
            if value is None:
                if br.amount is None:
                    self.problem_at(
                        loc,
                        Code.BRACKET_INCOMPLETE,
                        "a bracket needs amount",
                        "add amount: 100 yuan",
                    )
                return None
            tests: list[A.Node] = []
            for key, raw, op in (("from", br.from_, ">="), ("to", br.to, "<")):
                if raw is not None:
                    bound = self.parse((*loc, key), raw, earlier)
                    if bound is None:
                        return None
                    tests.append(A.Compare(op, by, bound, bound.span))  # type: ignore[arg-type]
            test = tests[0] if len(tests) == 1 else A.BoolOp("and", tuple(tests), value.span)
            chain = A.Cond(test, value, chain, value.span) if tests else value
        # Unknown `by`: unknown, as step tiers are (not `otherwise`).
        missing = A.Call("is_missing", (by,), by.span)
        return A.Cond(missing, A.Literal(None, "", by.span), chain, by.span)

    def check(self, node: A.Node, scope: Scope) -> Type | None:
        """The type of `node` in `scope`; None (with a problem recorded) if it has none."""
        t = self._type(node, scope)
        if t is not None:
            self.typed.types[self.typed.note(node)] = t
        return t

    def expect(self, node: A.Node, scope: Scope, allowed: set[str], what: str) -> Type | None:
        """The type of `node`, which must be one of `allowed` (or unknown)."""
        t = self.check(node, scope)
        if t is not None and t not in allowed and t != "null":
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                f"{what}: expected {' or '.join(sorted(allowed))}, found {t}",
                _fix_for(allowed),
            )
            return None
        return t

    # -- one rule per node kind --------------------------------------------------------

    @singledispatchmethod
    def _type(self, node: Any, scope: Scope) -> Type | None:
        raise TypeError(f"no type rule for {type(node).__name__}")

    @_type.register
    def _literal(self, node: A.Literal, scope: Scope) -> Type | None:
        v = node.value
        if node.unit in ("yuan", "fen"):
            return "money"
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, Decimal):
            whole = v == v.to_integral_value()
            written = node.span.text
            return "count" if whole and "." not in written and "%" not in written else "number"
        if isinstance(v, str):
            return "text"
        return "date"

    @_type.register
    def _name(self, node: A.Name, scope: Scope) -> Type | None:
        binding = scope.names.get(node.name)
        if binding is None:
            fix = did_you_mean(node.name, list(scope.names), f"the names here ({scope.what})")
            if node.name in RUN_DATES:
                fix = f"{node.name} is not available here"
            elif node.name.startswith(OWNER):
                owners = [n for n in scope.names if n.startswith(OWNER)]
                fix = (
                    "owner.<feature> names a feature of the entity itself, inside "
                    "count/any/all/sum and a payee's where"
                    + (f"; {did_you_mean(node.name, owners, 'they')}" if owners else "")
                )
            elif "did you mean" in fix and scope.entity is None:  # a `where` on a source's rows
                fix += " A source's columns are listed by `disburse sources`"
            elif "did you mean" in fix:
                fix += " Known features are listed by `disburse features`"
            self.problem(node, Code.UNKNOWN_NAME, f"unknown name {node.name!r}", fix)
            return None
        if (
            isinstance(binding, ParamRef)
            and binding.shape != "value"
            and id(node) not in self._shaped
        ):
            use = "x in NAME" if binding.shape == "list" else "lookup(NAME, code)"
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                f"{node.name!r} is a {binding.shape} parameter, not one value",
                f"use it as {use.replace('NAME', node.name)}",
            )
            return None
        self.typed.bindings[self.typed.note(node)] = binding
        if isinstance(binding, FeatureRef) and scope.entity is not None:
            self.typed.features.add((scope.entity, binding.name))
        return binding.type

    @_type.register
    def _list(self, node: A.ListLit, scope: Scope) -> Type | None:
        types = [self.check(i, scope) for i in node.items]
        if any(t is None for t in types):
            return None
        first: Type = types[0] or "null" if types else "null"
        for item, t in zip(node.items, types, strict=True):
            if t is None or unify(first, t) is None:
                self.problem(
                    item,
                    Code.TYPE_MISMATCH,
                    f"a list mixes {first} and {t}",
                    'a list holds values of one kind: ["micro", "small"]',
                )
                return None
        return first

    @_type.register
    def _unary(self, node: A.Unary, scope: Scope) -> Type | None:
        if node.op == "not":
            return self.expect(node.operand, scope, {"bool"}, "not needs a condition")
        return self.expect(node.operand, scope, set(NUMERIC), "minus needs a number")

    @_type.register
    def _binary(self, node: A.Binary, scope: Scope) -> Type | None:
        lt, rt = self.check(node.left, scope), self.check(node.right, scope)
        if lt is None or rt is None:
            return None
        result = arithmetic(node.op, lt, rt)
        if result not in TYPES:
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                str(result),
                "money amounts are written with a unit: 1500 yuan",
            )
            return None
        return result

    @_type.register
    def _compare(self, node: A.Compare, scope: Scope) -> Type | None:
        lt, rt = self.check(node.left, scope), self.check(node.right, scope)
        if lt is None or rt is None:
            return None
        zero = any(
            isinstance(x, A.Literal) and x.value == 0 and x.unit == ""
            for x in (node.left, node.right)
        )
        if not comparable(lt, rt) and not ({lt, rt} == {"money", "count"} and zero):
            fix = (
                "write money with a unit: 5000000 yuan"
                if "money" in (lt, rt)
                else "use is_missing(x) to test for a missing value"
                if "null" in (lt, rt)
                else "compare values of the same kind"
            )
            self.problem(node, Code.TYPE_MISMATCH, f"cannot compare {lt} with {rt}", fix)
            return None
        if lt in ("text", "bool") and node.op not in ("==", "!="):
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                f"{lt} values can only be compared with == and !=",
                "compare with == or !=, or use `in` with a list",
            )
            return None
        return "bool"

    @_type.register
    def _boolop(self, node: A.BoolOp, scope: Scope) -> Type | None:
        joins = f"`{node.op}` joins conditions"
        ok = all(self.expect(o, scope, {"bool"}, joins) for o in node.operands)
        return "bool" if ok else None

    @_type.register
    def _in(self, node: A.In, scope: Scope) -> Type | None:
        if isinstance(node.options, A.Name):
            b = scope.names.get(node.options.name)
            if not (isinstance(b, ParamRef) and b.shape == "list"):
                self.problem(
                    node.options,
                    Code.TYPE_MISMATCH,
                    f"`in` takes a list, and {node.options.name!r} is no list parameter",
                    'write the list out: x in ["a", "b"], or declare a list parameter',
                )
                return None
            self._shaped.add(id(node.options))
        it, lt = self.check(node.item, scope), self.check(node.options, scope)
        if it is None or lt is None:
            return None
        if lt != "null" and not comparable(it, lt):
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                f"cannot look for a {it} value in a list of {lt}",
                "list values of the same kind as the one looked for",
            )
            return None
        return "bool"

    @_type.register
    def _cond(self, node: A.Cond, scope: Scope) -> Type | None:
        self.expect(node.test, scope, {"bool"}, "the condition after `if`")
        at, bt = self.check(node.then, scope), self.check(node.otherwise, scope)
        if at is None or bt is None:
            return None
        u = unify(at, bt)
        if u is None:
            self.problem(
                node,
                Code.TYPE_MISMATCH,
                f"the two branches of `if` differ: {at} and {bt}",
                "both branches give the same kind of value: 90% if small else 30%",
            )
        return u

    @_type.register
    def _call(self, node: A.Call, scope: Scope) -> Type | None:
        fn = FUNCTIONS[node.func]  # the parser refuses unknown functions
        if fn.param_arg is not None and isinstance(node.args[fn.param_arg], A.Name):
            self._shaped.add(id(node.args[fn.param_arg]))
        ts: list[Type] = []
        if fn.typed_args:
            types = [self.check(a, scope) for a in node.args]
            if any(t is None for t in types):
                return None
            ts = [t for t in types if t is not None]
        if fn.names_list and scope.entity is None:
            self.problem(
                node,
                Code.FUNCTION_CONTEXT,
                f"{fn.name}() needs an enterprise or person",
                f"use {fn.name}() in a policy's expressions or in the body of an aggregate",
            )
            return None
        for name in fn.reads:
            if name not in scope.names:
                self.problem(
                    node,
                    Code.FUNCTION_CONTEXT,
                    f"{fn.name}() needs the feature {name}, which this entity has not",
                    fn.reads_fix,
                )
                return None
            self.check(A.Name(name, node.span), scope)
        result = fn.type_rule(node, ts, self)
        if result is not None and fn.names_list and scope.entity is not None:
            name = listed_name(node)
            declared = self.catalogue.spec.lists if self.catalogue is not None else {}
            if declared and name not in declared:
                self.problem(
                    node.args[0],
                    Code.UNKNOWN_LIST,
                    f"no credit list {name!r} is delivered: the exclusion would never apply",
                    did_you_mean(name, sorted(declared), "the lists (features.yaml, lists:)"),
                )
                return None
            self.typed.lists.add((scope.entity, name))
        return result

    @_type.register
    def _applied(self, node: A.Apply, scope: Scope) -> Type | None:
        types = [self.check(a, scope) for a in node.args]
        if any(t is None for t in types):
            return None
        d = self.defines[node.func]
        names: dict[str, Binding] = {
            n: b for n, b in scope.names.items() if isinstance(b, ParamRef | RunDate)
        }
        for arg_name, arg, t in zip(d.args, node.args, types, strict=True):
            names[arg_name] = ArgRef(arg_name, t, arg)  # type: ignore[arg-type]
        what = f"the arguments of {node.func}(): {', '.join(d.args)}; parameters; run dates"
        return self.check(node.body, Scope(scope.entity, names, what, relations_from=None))

    def _pick(self, pick: A.Pick, body_scope: Scope, scope: Scope, member: str) -> bool:
        """earliest/latest(relation, n, key[, where]): n a whole number of at least 1
        (written, or a parameter), key an orderable value of each related entity, where a
        condition on it."""
        ok = True
        if self.check(pick.n, scope) is not None:
            values = (
                self.param_literals(pick.n) if self.param_shape(pick.n) == "value" else [pick.n]
            )
            whole = [
                v.value
                for v in values
                if isinstance(v, A.Literal)
                and v.unit == ""
                and isinstance(v.value, Decimal)
                and v.value == v.value.to_integral_value()
                and v.value >= 1
            ]
            if not values or len(whole) != len(values):
                self.problem(
                    pick.n,
                    Code.TYPE_MISMATCH,
                    f"{pick.order}() picks a whole number of at least 1 of them",
                    f"write it out, {pick.order}(certificates, 3, issued_on), or name a "
                    "parameter whose every value is one",
                )
                ok = False
        else:
            ok = False
        key = self.expect(
            pick.key, body_scope, {"date", *NUMERIC}, f"{pick.order}() orders by a date or a number"
        )
        if key is None:
            ok = False
        if pick.where is not None and (
            self.expect(pick.where, body_scope, {"bool"}, f"a condition on each related {member}")
            is None
        ):
            ok = False
        return ok

    @_type.register
    def _aggregate(self, node: A.Aggregate, scope: Scope) -> Type | None:
        cat = self.catalogue
        rel = cat.spec.relations.get(node.relation) if cat else None
        if cat is None or rel is None or rel.from_ != scope.relations_from:
            known = [
                n
                for n, r in (cat.spec.relations.items() if cat else [])
                if r.from_ == scope.relations_from
            ]
            self.problem(
                node,
                Code.UNKNOWN_RELATION,
                f"unknown relation {node.relation!r}",
                did_you_mean(node.relation, known, f"relations of a {scope.relations_from}")
                if known
                else f"no relation starts from {scope.relations_from or 'here'}",
            )
            return None
        body_scope = member_scope(cat, node.relation, scope, self.owner_lets)
        self.typed.scopes[self.typed.note(node)] = body_scope
        self.typed.aggregates.append(node)
        if node.pick is not None and not self._pick(node.pick, body_scope, scope, rel.to):
            return None
        if node.body is None:
            return "count"
        if node.func in ("any", "all", "count"):
            t = self.expect(
                node.body,
                body_scope,
                {"bool"},
                f"{node.func}() takes a condition on each related {rel.to}",
            )
            if t is None:
                return None
            return "count" if node.func == "count" else "bool"
        return self.expect(node.body, body_scope, set(NUMERIC), "sum() adds up numbers")


def member_scope(
    cat: CheckedCatalogue, relation: str, outer: Scope, owner_lets: dict[str, A.Node] | None = None
) -> Scope:
    """Names inside an aggregate body: the related entity's features and the link's
    attributes; the owner's own features as `owner.x`, and the policy's lets that read only
    those (evaluated on the owner); parameters and run dates."""
    rel = cat.spec.relations[relation]
    names: dict[str, Binding] = dict(entity_scope(cat, rel.to).names)
    for attr, (source, column) in cat.link_columns(relation).items():
        names[attr] = ColumnRef(attr, column, cat.source_columns[source][column])
    for fname, f in cat.features_of(rel.from_).items():
        if f.source is not None:  # not a relation feature: no aggregate inside an aggregate
            names[OWNER + fname] = OwnerRef(OWNER + fname, f.type, feature=fname)
    for n, b in outer.names.items():
        if isinstance(b, ParamRef | RunDate):
            names.setdefault(n, b)
        elif isinstance(b, LetRef) and owner_lets and n in owner_lets:
            names.setdefault(n, OwnerRef(n, b.type, let=owner_lets[n]))
    return Scope(
        rel.to,
        names,
        f"features of the related {rel.to}, the link's attributes, owner.<feature>",
        relations_from=None,
    )


def owner_level(
    node: A.Node, typed: Typed, cat: CheckedCatalogue, entity: str, lets: dict[str, A.Node]
) -> bool:
    """Whether a let reads only what an aggregate body can see of its owner: the owner's
    source features, parameters, run dates and such lets (no aggregate, no credit list)."""
    features = cat.features_of(entity)
    for n in A.walk(node):
        if isinstance(n, A.Aggregate):
            return False
        if isinstance(n, A.Call) and FUNCTIONS[n.func].names_list:
            return False
        b = typed.bindings.get(id(n))
        if isinstance(b, FeatureRef) and features[b.name].source is None:
            return False
        if isinstance(b, LetRef) and b.name not in lets:
            return False
    return True


def entity_scope(cat: CheckedCatalogue, entity: str) -> Scope:
    """The features of one entity kind."""
    names: dict[str, Binding] = {
        n: FeatureRef(n, f.type) for n, f in cat.features_of(entity).items()
    }
    return Scope(
        entity,
        names,
        f"features of {article(entity)}",
        relations_from=entity,
    )


def source_scope(source: str, source_columns: dict[str, dict[str, Type]]) -> Scope:
    """The columns of one source's rows (for a feature's or relation's `where`)."""
    names: dict[str, Binding] = {c: ColumnRef(c, c, t) for c, t in source_columns[source].items()}
    return Scope(None, names, f"columns of {source}")


def _fix_for(allowed: set[str]) -> str:
    """How to write a value of one of the allowed types."""
    if allowed == {"bool"}:
        return 'write something true or false: a comparison such as headcount_end >= 3 or status == "active"'
    if allowed <= {"date"}:
        return "give a date: a date feature, a run date such as as_of, or 2026-01-01"
    if allowed <= set(NUMERIC) | {"date"}:
        return "give a number, a count, money with its unit (1500 yuan) or a date"
    return f"give a value of the kind {' or '.join(sorted(allowed))}"


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
