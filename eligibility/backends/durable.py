"""The durable-rules backend: a checked policy's conditions as a durable-rules ruleset.

The ruleset is plain data (`Ruleset.definition`, compared with a stored golden file
in tests/golden/durable/): one rule per eligibility condition, each matching a fact
with one pattern.  durable-rules does the matching: the conditions' `and`, `or` and
`not`, each comparison against a literal and each `in` list.  It runs on a private
`Host` per ruleset set (`Decider`), never the module's global one, with no timer
threads.

What durable-rules cannot do exactly is done before the fact is asserted, by rules
another backend already holds to, so that they cannot drift: row by row by the
reference interpreter's (`decide_rows`, `eligibility.reference`), or over a whole
frame at once by the batch's compiled expressions (`decide_frame`, as the event path
decides: `eligibility.backends.polars`):

- durable-rules compares numbers as doubles; our money is fen and rates are exact
  decimals.  A comparison with a literal (`layoff_rate <= 5.5%`) asserts the value as
  a double chosen to stand on the same side of the literal's double as the exact
  value stands of the exact literal (`representative`), so a value at a threshold
  decides as it does in the batch.  A comparison of two computed values asserts
  their order (-1, 0 or 1), compared with 0.
- arithmetic, function calls, aggregates over relations and `a if t else b` have no
  durable-rules form: their values are computed, and durable-rules matches on them.

Unknown values keep their Kleene meaning.  Conditions are put in negation normal
form (`not` pushed onto comparisons by flipping them), and an unknown value is
left out of the fact, which durable-rules' patterns never match.  A formula in
negation normal form is true under Kleene's logic exactly when it is true with
every unknown comparison taken as false, so a condition holds in durable-rules
exactly when it holds in the batch.

Amounts are computed exactly, by the same backend as the atoms; the first
failing condition, the mask and the reasons after the conditions are those of
`eligibility.reference.verdict` (rows) or of the batch's `policy_result` (frames),
which tests/properties hold to the same words.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import polars as pl

from eligibility import ast as A
from eligibility.backends.polars.amounts import amount as compiled_amount
from eligibility.backends.polars.base import Context
from eligibility.backends.polars.expr import compile_expr, operands
from eligibility.backends.polars.policy import policy_context, policy_result
from eligibility.checked import CheckedCatalogue, CheckedPolicy, LetRef
from eligibility.plan import Naming
from eligibility.reference import Env, amount, evaluate, verdict

with warnings.catch_warnings():  # its C extension's import warns on newer Pythons
    warnings.simplefilter("ignore")
    from durable.engine import Host, MessageNotHandledException

# The most facts one assertion carries, and so the most one rule hands its action at
# once (durable-rules' `cap`): one action per rule per batch, not per fact.
BATCH = 200
EXACT_INT = 2**53  # integers below this in size are exact as doubles
SEEN = "seen"  # the rule every fact matches: proof that the batch went through whole
INDEX = "i"  # the fact's position in its batch

FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
OPS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}

Kind = Literal["value", "order", "truth", "member"]


class DurableError(Exception):
    """durable-rules did not take a batch whole: a bug, never a decision."""


@dataclass(frozen=True)
class Atom:
    """One field of the fact, computed exactly before the fact is asserted.

    value   a side of a comparison with a literal, as a double that orders the same
    order   the order of two computed values: -1, 0 or 1
    truth   a computed true/false (a boolean feature, `listed`, an aggregate, ...)
    member  whether a value is in a list parameter or a list of numbers
    """

    field: str
    kind: Kind
    node: A.Node  # the expression whose value (value, truth) or comparison (order) it is
    other: A.Node | None = None  # order: the right-hand side; value: the literal's node
    literal: Any = None  # value: the exact literal it is compared with


@dataclass(frozen=True)
class Ruleset:
    """A policy's conditions compiled: the durable-rules definition (plain data) and
    the atoms its facts carry."""

    name: str
    policy: CheckedPolicy = field(repr=False, compare=False)
    definition: dict[str, Any]
    atoms: tuple[Atom, ...]
    conditions: tuple[str, ...]  # condition ids, in order: rule c{i} is condition i


@dataclass
class _Compiler:
    policy: CheckedPolicy
    atoms: list[Atom] = field(default_factory=list)
    env: Env | None = None

    def literal(self, node: A.Literal) -> Any:
        if self.env is None:
            self.env = Env(typed=self.policy.typed, values={})
        return evaluate(node, self.env)

    def atom(self, kind: Kind, node: A.Node, other: A.Node | None = None, lit: Any = None) -> str:
        name = f"a{len(self.atoms)}"
        self.atoms.append(Atom(name, kind, node, other, lit))
        return name

    def condition(self, node: A.Node, holds: bool) -> dict[str, Any]:
        """The pattern that matches when `node` is true (`holds`) or false, in negation
        normal form; never when it is unknown."""
        match node:
            case A.BoolOp(op=op, operands=operands):
                conj = (op == "and") == holds
                parts = [self.condition(o, holds) for o in operands]
                return {"$and" if conj else "$or": parts}
            case A.Unary(op="not", operand=operand):
                return self.condition(operand, not holds)
            case A.Name() if isinstance(self.policy.typed.bindings.get(id(node)), LetRef):
                return self.condition(self.policy.lets[node.name], holds)
            case A.Apply(body=body) if self.policy.typed.type_of(body) == "bool":
                return self.condition(body, holds)
            case A.Compare():
                return self.compare(node, holds)
            case A.In(options=A.ListLit(items=items)) if self.listable(node.item, items):
                return self.member_of(node, items, holds)
            case A.In():
                f = self.atom("member", node)
                return {f: holds}
        f = self.atom("truth", node)
        return {f: holds}

    def compare(self, node: A.Compare, holds: bool) -> dict[str, Any]:
        op = node.op if holds else NEGATE[node.op]
        left, right = node.left, node.right
        if isinstance(left, A.Literal) and not isinstance(right, A.Literal):
            left, right, op = right, left, FLIP[op]
        if isinstance(right, A.Literal) and right.value is not None:
            lit = self.literal(right)
            kind = self.policy.typed.type_of(left)
            exact = durable_literal(lit)
            if exact is not None and (op in ("==", "!=") or kind not in ("text", "bool")):
                f = self.atom("value", left, right, lit=lit)
                return {f: exact} if op == "==" else {OPS[op]: {f: exact}}
        f = self.atom("order", left, right)
        return {f: 0} if op == "==" else {OPS[op]: {f: 0}}

    def listable(self, item: A.Node, items: tuple[A.Node, ...]) -> bool:
        """Whether durable-rules can match `item in [...]` itself: literals of text, a
        date or a whole number (equality of doubles is exact for them)."""
        if self.policy.typed.type_of(item) not in ("text", "date", "count", "bool"):
            return False
        return all(
            isinstance(i, A.Literal) and durable_literal(self.literal(i)) is not None for i in items
        )

    def member_of(self, node: A.In, items: tuple[A.Node, ...], holds: bool) -> dict[str, Any]:
        f = self.atom("value", node.item, lit=None)
        values = [durable_literal(self.literal(i)) for i in items if isinstance(i, A.Literal)]
        inside = holds != node.negated
        if inside:
            return {"$or": [{f: v} for v in values]}
        return {"$and": [{"$ex": {f: 1}}, *({"$neq": {f: v}} for v in values)]}


def plain(x: float) -> bool:
    """Whether durable-rules reads the double `x` back as written: its JSON parser
    refuses numbers in exponent form (`1e-06`), which Python writes below 1e-4 and
    from 1e16 up."""
    return math.isfinite(x) and "e" not in repr(x)


def durable_literal(value: Any) -> Any:
    """A literal as durable-rules gets it: text and booleans as they are, a date as its
    day number, a number as the nearest double (an int where that is exact); None
    where it has no form that durable-rules reads and compares exactly (a whole number
    past 2**53, a double written with an exponent)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, dt.date):
        return value.toordinal()
    if isinstance(value, int | Decimal) and value == int(value):
        whole = int(value)
        return whole if abs(whole) < EXACT_INT else None
    if isinstance(value, Decimal):
        return float(value) if plain(float(value)) else None
    return None


def compile_policy(policy: CheckedPolicy) -> Ruleset:
    """The durable-rules ruleset of `policy`: rule c{i} matches the facts for which its
    condition i holds; rule `seen` every fact."""
    c = _Compiler(policy)
    rules: dict[str, Any] = {}
    for i, cond in enumerate(policy.conditions):
        rules[f"c{i}"] = {"all": [{"m": c.condition(cond.node, True)}], "cap": BATCH}
    rules[SEEN] = {"all": [{"m": {"$ex": {INDEX: 1}}}], "cap": BATCH}
    name = policy.id
    return Ruleset(
        name=name,
        policy=policy,
        definition={name: rules},
        atoms=tuple(c.atoms),
        conditions=tuple(cond.id for cond in policy.conditions),
    )


# --- the facts: exact values computed before assertion -----------------------------------


def _exact(v: Any) -> Any:
    """A value as an exact number (Decimal), a day number, or text/bool as it is."""
    if isinstance(v, bool | str):
        return v
    if isinstance(v, dt.date):
        return v.toordinal()
    return Decimal(v)


def _order(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def representative(value: Any, lit: Any) -> Any:
    """`value` as durable-rules gets it for comparison with `lit` (whose durable form
    is `durable_literal(lit)`): text and booleans as they are; a number or date as a
    double that stands on the same side of the literal's double as the exact value
    stands of the exact literal, so that every comparison decides the same way."""
    if isinstance(value, bool | str):
        return value
    x = _exact(value)
    if lit is None:  # an `in` list of whole numbers or dates: exact as doubles below 2**53
        return int(x) if abs(x) < EXACT_INT else int(math.copysign(EXACT_INT, x))
    return standing(lit, _order(x, _exact(lit)), float(x))


def standing(lit: Any, side: int, own: float | None = None) -> Any:
    """A number durable-rules reads that stands on `side` (-1, 0 or 1) of the literal
    `lit`'s double as a value stands of `lit`: the literal itself at 0; else the value's
    `own` double if it stands there (rounding can carry it across), else the next
    double past the literal, else one past it."""
    if side == 0:
        return durable_literal(lit)
    lit_double = float(durable_literal(lit))
    away = math.inf if side > 0 else -math.inf
    guesses = (math.nextafter(lit_double, away), lit_double + side)
    for guess in guesses if own is None else (own, *guesses):
        if plain(guess) and _order(Decimal(guess), Decimal(lit_double)) == side:
            return int(guess) if guess.is_integer() and abs(guess) < EXACT_INT else guess
    raise AssertionError(f"no double stands {side} of {lit}")  # |lit| < 2**53: unreachable


def fact(ruleset: Ruleset, env: Env, index: int) -> dict[str, Any]:
    """The fact asserted for one row: each atom's value, exactly decided; an unknown
    atom is left out (durable-rules matches nothing on a field that is not there)."""
    return _fact(ruleset, env, index)[0]


def _fact(ruleset: Ruleset, env: Env, index: int) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The fact, and what decides how it matches: per atom, the side of its literal (or
    whether it equals it), its value where it is matched against a list, its order or
    truth; None where it is unknown.  Facts with the same outcome match the same rules."""
    out: dict[str, Any] = {INDEX: index}
    key: list[Any] = []
    for a in ruleset.atoms:
        v = evaluate(a.node, env)
        got: Any = None
        if v is None:
            pass
        elif a.kind == "value":
            got = out[a.field] = representative(v, a.literal)
            if a.literal is not None:
                as_is = isinstance(v, bool | str)
                got = v == a.literal if as_is else _order(_exact(v), _exact(a.literal))
        elif a.kind == "order":
            w = evaluate(a.other, env) if a.other is not None else None
            if w is not None:
                got = out[a.field] = _order(_exact(v), _exact(w))
        else:
            got = out[a.field] = bool(v)
        key.append(got)
    return out, tuple(key)


# --- deciding: a private host, one batch of facts at a time ------------------------------


class _QuietHost(Host):  # type: ignore[misc]
    """A durable-rules host without its timer threads: facts are asserted and their
    actions run in the caller's thread, and nothing is left running."""

    def _run(self) -> None:
        return


@dataclass
class Decider:
    """Decides rows with the rulesets of some policies, on a private durable-rules host."""

    rulesets: dict[str, Ruleset]
    _host: Any = None
    _hits: dict[str, list[int]] = field(default_factory=dict)
    _sids: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        definitions: dict[str, Any] = {}
        for rs in self.rulesets.values():
            rules = copy.deepcopy(rs.definition[rs.name])  # durable-rules pops `run`
            for rule_name, rule in rules.items():
                rule["run"] = self._collector(rule_name)
            definitions[rs.name] = rules
        self._host = _QuietHost(definitions)

    def _collector(self, rule_name: str) -> Callable[[Any], None]:
        def collect(c: Any) -> None:
            matched = c.m if isinstance(c.m, list) else [c.m]
            self._hits.setdefault(rule_name, []).extend(int(m[INDEX]) for m in matched)

        return collect

    def masks(self, name: str, facts: Sequence[dict[str, Any]]) -> list[int]:
        """The mask of conditions that hold for each fact (bit i: condition i)."""
        rs = self.rulesets[name]
        out: list[int] = []
        for start in range(0, len(facts), BATCH):
            out.extend(self._batch(rs, facts[start : start + BATCH]))
        return out

    def _batch(self, rs: Ruleset, facts: Sequence[dict[str, Any]]) -> list[int]:
        sid = f"b{next(self._sids)}"
        self._hits = {}
        try:
            self._host.assert_facts(rs.name, [{**f, "sid": sid} for f in facts])
        except MessageNotHandledException as e:
            raise DurableError(f"{rs.name}: a fact matched no rule, not even '{SEEN}'") from e
        finally:
            self._host.delete_state(rs.name, sid)
        if sorted(self._hits.get(SEEN, [])) != sorted(f[INDEX] for f in facts):
            raise DurableError(f"{rs.name}: durable-rules did not see the batch whole")
        position = {f[INDEX]: k for k, f in enumerate(facts)}
        masks = [0] * len(facts)
        for i in range(len(rs.conditions)):
            for index in self._hits.get(f"c{i}", []):
                masks[position[index]] |= 1 << i
        return masks


def decide_rows(
    decider: Decider,
    policy: CheckedPolicy,
    rows: Sequence[tuple[Env, str, str | None]],
) -> list[dict[str, Any]]:
    """eligible, amount_fen, reason, mask and payee for each (env, entity id, payee) row,
    the conditions decided by durable-rules, as `eligibility.reference.decide` gives them."""
    rs = decider.rulesets[policy.id]
    # Rows whose atoms come out the same match the same rules: durable-rules matches
    # one fact of each outcome.
    first: dict[tuple[Any, ...], int] = {}
    facts: list[dict[str, Any]] = []
    which: list[int] = []
    for env, _e, _p in rows:
        one, key = _fact(rs, env, len(facts))
        at = first.setdefault(key, len(facts))
        if at == len(facts):
            facts.append(one)
        which.append(at)
    masks = decider.masks(policy.id, facts)
    full = (1 << len(policy.conditions)) - 1  # the amount counts only where all hold
    return [
        verdict(policy, mask, amount(policy, env) if mask == full else None, entity, payee)
        for mask, (env, entity, payee) in zip((masks[k] for k in which), rows, strict=True)
    ]


# --- deciding a frame: the atoms computed by the batch's own compiled expressions ---------

ATOM = "durable:"  # the prefix of the columns that hold a frame's atoms
MASK = "durable:mask"


def _side(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """-1, 0 or 1 as `a` stands of `b`; null where either is unknown."""
    return pl.when(a > b).then(1).when(a < b).then(-1).when(a == b).then(0).cast(pl.Int8)


def _outcome(atom: Atom, ctx: Context) -> pl.Expr:
    """The column of what decides how a row's fact matches on `atom`, as `_fact`'s key
    has it: the side of its literal (or whether it equals a text or true/false literal),
    its value where it is matched against a list, its order, its truth; null where it
    is unknown.  In the batch's representation (money as Decimal fen), so exact."""
    if atom.kind == "value" and atom.literal is None:  # matched against a list
        return compile_expr(atom.node, ctx)
    if atom.kind in ("value", "order") and atom.other is not None:
        left, right = operands(atom.node, atom.other, ctx)
        if isinstance(atom.literal, bool | str):
            return left == right
        return _side(left, right)
    return compile_expr(atom.node, ctx).cast(pl.Boolean)


def _unequal(lit: bool | str) -> bool | str:
    """A value other than `lit`: what a fact carries for a value that is not it (only
    `==` and `!=` compare text or true/false with a literal)."""
    return not lit if isinstance(lit, bool) else f"{lit}."


def _fact_of(ruleset: Ruleset, outcome: tuple[Any, ...], index: int) -> dict[str, Any]:
    """The fact for a row whose atoms came out as `outcome` (`_outcome`'s columns)."""
    out: dict[str, Any] = {INDEX: index}
    for a, v in zip(ruleset.atoms, outcome, strict=True):
        if v is None:
            continue  # unknown: left out, matched by nothing
        if a.kind == "value" and a.literal is None:
            out[a.field] = representative(v, None)
        elif a.kind == "value" and isinstance(a.literal, bool | str):
            out[a.field] = a.literal if v else _unequal(a.literal)
        elif a.kind == "value":
            out[a.field] = standing(a.literal, int(v))
        else:
            out[a.field] = int(v) if a.kind == "order" else bool(v)
    return out


def decide_frame(
    decider: Decider,
    policy: CheckedPolicy,
    cat: CheckedCatalogue,
    as_of: dt.date,
    wide: pl.DataFrame,
    keys: Sequence[str],
    id_column: str,
) -> pl.DataFrame:
    """`keys`, then eligible, amount_fen, reason, mask, payee and rank for each row of
    `wide` (`eligibility.wide_plans`' frame of the policy's entity kind, collected), the
    conditions decided by durable-rules.

    What durable-rules cannot compute is computed over the whole frame at once by the
    batch's own compiled expressions (`eligibility.backends.polars`), exactly: each
    atom's side of its literal, order or truth.  Rows whose atoms come out the same
    match the same rules, so durable-rules matches one fact per distinct outcome, and
    the amount is the batch's, where every condition holds."""
    rs = decider.rulesets[policy.id]
    ctx = policy_context(policy, cat, Naming(cat), as_of)
    columns = [f"{ATOM}{a.field}" for a in rs.atoms]
    outcome = [_outcome(a, ctx).alias(c) for a, c in zip(rs.atoms, columns, strict=True)]
    if not columns:  # no atom: every row matches the same rules
        columns, outcome = [f"{ATOM}none"], [pl.lit(0).alias(f"{ATOM}none")]
    rows = wide.with_columns(outcome)
    distinct = rows.select(columns).unique(maintain_order=True)
    facts = [_fact_of(rs, o, k) for k, o in enumerate(distinct.iter_rows())] if rs.atoms else []
    masks = decider.masks(policy.id, facts) if facts else [0] * distinct.height
    matched = rows.join(
        distinct.with_columns(pl.Series(MASK, masks, dtype=pl.Int64)),
        on=columns,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    full = (1 << len(policy.conditions)) - 1
    held = [
        ((pl.col(MASK) & (1 << i)) != 0).alias(Naming.condition(policy.id, i))
        for i in range(len(policy.conditions))
    ]
    fen = pl.when(pl.col(MASK) == full).then(compiled_amount(policy.amount, ctx))
    return matched.with_columns(*held, fen.alias(Naming.amount(policy.id))).select(
        *keys, *policy_result(policy, id_column)
    )
