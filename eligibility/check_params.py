"""Checking a policy's parameters: dated values, lists and keyed tables of literals, one
kind and shape per parameter, covering the policy from its first day; and which names
a parameter, let or function of the policy may not take."""

from __future__ import annotations

from typing import Any

from common.errors import Code, did_you_mean
from common.yamlsrc import Loc
from eligibility import ast as A
from eligibility.checked import (
    DatedValue,
    KeyedValues,
    LetRef,
    ParamRef,
    RunDate,
    Scope,
)
from eligibility.readings import Reading
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker
from eligibility.types import Type, unify


def check_params(
    c: Checker, spec: PolicyFile, scope: Scope, reading: Reading | None
) -> dict[str, list[DatedValue]]:
    """Each parameter's dated values (literals, lists of literals or tables of them), of
    one kind and shape per parameter, dates increasing; a reading's value instead, for the
    whole validity, where it sets one."""
    params: dict[str, list[DatedValue]] = {}
    settings = dict(reading.params) if reading else {}
    for name, (at, _value) in settings.items():
        if name not in spec.params:
            c.problem_at(
                at,
                Code.UNKNOWN_SETTING,
                f"{reading.label if reading else ''} sets {name!r}, which is no parameter",
                did_you_mean(name, sorted(spec.params), "the parameters")
                if spec.params
                else "declare the parameter under params:",
            )
    for pname, values in spec.params.items():
        ptype: Type | None = None
        shape: str | None = None
        dated = []
        for i, pv in enumerate(values):
            loc: Loc = ("params", pname, i, "value")
            got = _param_value(c, loc, pv.value)
            if got is None:
                continue
            node, t, this_shape = got
            if shape is not None and this_shape != shape:
                c.problem_at(
                    loc,
                    Code.TYPE_MISMATCH,
                    f"parameter {pname!r} changes shape: a {shape}, then a {this_shape}",
                    "give every dated value of a parameter the same shape",
                )
            shape = shape or this_shape
            if ptype is not None and unify(ptype, t) is None:
                c.problem_at(
                    loc,
                    Code.TYPE_MISMATCH,
                    f"parameter {pname!r} changes kind: {ptype} then {t}",
                    "every value of a parameter is of one kind: all rates, or all amounts",
                )
            ptype = t if ptype is None else (unify(ptype, t) or ptype)
            if i and pv.from_ <= values[i - 1].from_:
                c.problem_at(
                    ("params", pname, i, "from"),
                    Code.PARAM_DATES,
                    f"parameter {pname!r}: dates must increase",
                    "list values from oldest to newest",
                )
            dated.append(DatedValue(pv.from_, node, pv.ref))
        first = min(range(len(values)), key=lambda k: values[k].from_, default=None)
        if first is not None and values[first].from_ > spec.valid.from_:
            c.problem_at(
                ("params", pname, first, "from"),
                Code.PARAM_NO_VALUE,
                f"parameter {pname!r} has no value from the policy's first day "
                f"({spec.valid.from_}) until {values[first].from_}",
                f"give its first value from {spec.valid.from_}, or start the policy "
                f"(valid.from) on {values[first].from_}",
            )
        taken = name_taken(c, pname, scope)
        if taken is not None:
            c.problem_at(
                ("params", pname),
                Code.NAME_CLASH,
                f"parameter {pname!r} hides {taken} of the same name",
                "rename the parameter",
            )
        if pname in settings and ptype is not None:
            at, value = settings[pname]
            got = _param_value(c, at, value)
            if got is not None and (got[2] != shape or unify(ptype, got[1]) is None):
                c.problem_at(
                    at,
                    Code.TYPE_MISMATCH,
                    f"{pname!r} is set to a {got[1]} {got[2]}, where the file gives a {ptype} {shape}",
                    "set a value of the kind and shape the file gives",
                )
            elif got is not None and reading is not None:
                dated = [DatedValue(spec.valid.from_, got[0], reading.label)]
        if ptype is not None and shape is not None:
            scope.names[pname] = ParamRef(pname, ptype, shape)  # type: ignore[arg-type]
            params[pname] = dated
            c.param_nodes[pname] = [d.node for d in dated if isinstance(d.node, A.Node)]
    return params


def _param_literal(c: Checker, loc: Loc, value: Any) -> tuple[A.Node, Type] | None:
    """One value of a parameter: a literal as written (60%, 1500 yuan, 2026-01-01, true), or
    text (a code such as H or 3301, quoted or not)."""
    if isinstance(value, list | dict):
        c.problem_at(
            loc,
            Code.TYPE_MISMATCH,
            "a parameter's list or table holds plain values",
            "write values: [H, O, R]",
        )
        return None
    node = c.parse(loc, value)
    if node is not None and not isinstance(node, A.Literal) and isinstance(value, str):
        line, col = c.located.value_at(loc)
        node = A.Literal(value, "", A.Span(c.located.file, line, col, value))
    if node is None:
        return None
    t = c.check(node, Scope(None, {}, "literals only"))
    return (node, t) if t is not None else None


def _param_value(c: Checker, loc: Loc, value: Any) -> tuple[A.Node | KeyedValues, Type, str] | None:
    """A dated value of a parameter, its type and its shape (value, list or table)."""
    if isinstance(value, list):
        items = [_param_literal(c, (*loc, k), v) for k, v in enumerate(value)]
        if not items or any(x is None for x in items):
            if not items:
                c.problem_at(loc, Code.TYPE_MISMATCH, "an empty list", "give at least one value")
            return None
        nodes = [x[0] for x in items if x is not None]
        types = {x[1] for x in items if x is not None}
        if len(types) > 1 and unify(*sorted(types)[:2]) is None:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                f"a list mixes {', '.join(sorted(types))}",
                "give values of one kind",
            )
            return None
        first = nodes[0].span
        return A.ListLit(tuple(nodes), first), sorted(types)[0], "list"
    if isinstance(value, dict):
        if not value:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                "an empty table",
                'give a value per key, as in {"3301": 100 yuan, default: 80 yuan}',
            )
            return None
        entries: list[tuple[str, A.Node]] = []
        default: A.Node | None = None
        types = set()
        for key, v in value.items():
            got = _param_literal(c, (*loc, key), v)
            if got is None:
                return None
            types.add(got[1])
            if key == "default":
                default = got[0]
            else:
                entries.append((str(key), got[0]))
        if len(types) > 1:
            c.problem_at(
                loc,
                Code.TYPE_MISMATCH,
                f"a table mixes {', '.join(sorted(types))}",
                "give values of one kind",
            )
            return None
        return KeyedValues(tuple(entries), default), types.pop(), "table"
    got = _param_literal(c, loc, value)
    return None if got is None else (got[0], got[1], "value")


def name_taken(c: Checker, name: str, scope: Scope) -> str | None:
    """What `name` already names where a policy's expressions read it: a feature of the
    target, a run date, a parameter, a let, or a relation of the catalogue; None if free."""
    binding = scope.names.get(name)
    if isinstance(binding, RunDate):
        return "a run date"
    if isinstance(binding, ParamRef):
        return "a parameter"
    if isinstance(binding, LetRef):
        return "a let"
    if binding is not None:
        return "a feature"
    if c.catalogue is not None and name in c.catalogue.spec.relations:
        return "a relation"
    return None
