"""What checking produces: names bound to their meaning, typed expressions, and the
checked feature catalogue and policies that every backend compiles.

`eligibility.typecheck` types expressions, `eligibility.catalogue` checks the feature
catalogue, `eligibility.check` checks a policy file; each fills these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from common.errors import Problem
from common.yamlsrc import Located
from eligibility import ast as A
from eligibility.amounts import Amount
from eligibility.schema import FeatureCatalogue, FeatureDef, PolicyFile, RelationDef
from eligibility.types import Type

# The dates of a run a policy's expressions may read (`eligibility.plan.RunDates`).
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
    """A feature of the entity the expression is evaluated on."""

    name: str
    type: Type


@dataclass(frozen=True)
class LetRef:
    """A `let` value of the policy."""

    name: str
    type: Type


@dataclass(frozen=True)
class ParamRef:
    """A parameter of the policy (its value in force on the run's date): a value, a list
    (of values of `type`, for `in`) or a table (code -> value of `type`, for `lookup`)."""

    name: str
    type: Type
    shape: Literal["value", "list", "table"] = "value"


@dataclass(frozen=True)
class RunDate:
    """One of `RUN_DATES`."""

    name: str
    type: Type = "date"


@dataclass(frozen=True)
class ColumnRef:
    """A column of a source row (in feature and relation `where` clauses) or of a link."""

    name: str
    column: str
    type: Type


@dataclass(frozen=True)
class ArgRef:
    """An argument of a defined function, inside its body: stands for the expression the
    call gives (`node`, evaluated where the call is)."""

    name: str
    type: Type
    node: A.Node


@dataclass(frozen=True)
class OwnerRef:
    """Inside an aggregate body, a value of the entity the aggregate is taken for: its own
    feature (`owner.x`, `feature`), or a let of the policy evaluated on it (`let`)."""

    name: str
    type: Type
    feature: str | None = None
    let: A.Node | None = None


Binding = FeatureRef | LetRef | ParamRef | RunDate | ColumnRef | ArgRef | OwnerRef

OWNER = "owner."  # owner.x: the owner's feature x, inside an aggregate body


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

    # The nodes of the keys above, kept so that an id is never reused while it is a key,
    # and so that a pickled copy (a distributed engine's worker) keys its own nodes.
    nodes: dict[int, A.Node] = field(default_factory=dict)

    def type_of(self, node: A.Node) -> Type:
        """The type the checker gave `node`."""
        return self.types[id(node)]

    def note(self, node: A.Node) -> int:
        """`node`'s key in `types`, `bindings` and `scopes` (its identity), remembered."""
        self.nodes[id(node)] = node
        return id(node)

    def __getstate__(self) -> dict[str, Any]:
        # Identities do not survive pickling: keyed by the nodes themselves instead, which
        # pickle keeps the same objects as the ASTs that hold them.
        state = dict(self.__dict__)
        for name in ("types", "bindings", "scopes"):
            state[name] = [(self.nodes[k], v) for k, v in state[name].items()]
        state["nodes"] = list(self.nodes.values())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        nodes = state.pop("nodes")
        self.__dict__.update(state)
        for name in ("types", "bindings", "scopes"):
            setattr(self, name, {id(n): v for n, v in state[name]})
        self.nodes = {id(n): n for n in nodes}


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
        """The features of one entity kind, by name."""
        return dict(self.spec.features.get(entity, {}))

    def relation(self, name: str) -> RelationDef:
        """A relation by name."""
        return self.spec.relations[name]

    def steps(self, name: str) -> list[str]:
        """The relations read from sources that a relation follows, in turn: itself, or
        those its `via` names (the catalogue check refuses circles and broken chains)."""
        rel = self.spec.relations[name]
        if rel.via is None:
            return [name]
        return [step for hop in rel.via for step in self.steps(hop)]

    def link_columns(self, name: str) -> dict[str, tuple[str, str]]:
        """A relation's link attributes: name -> (source, column), over every step."""
        out = {}
        for step in self.steps(name):
            rel = self.spec.relations[step]
            for attr, column in rel.attributes.items():
                out[attr] = (rel.source or "", column)
        return out

    def dated(self, name: str) -> bool:
        """Whether a relation's links count only when dated in the window (a step's `during`)."""
        return any(self.spec.relations[s].during is not None for s in self.steps(name))

    def entity_source(self, entity: str) -> str:
        """The source that lists the entities of a kind."""
        return self.spec.entities[entity].source

    def entities(self) -> list[str]:
        """The entity kinds, in the catalogue's order."""
        return list(self.spec.entities)

    def payable(self, entity: str) -> bool:
        """Whether payouts may go to entities of a kind."""
        return self.spec.entities[entity].payable

    def id_column(self, entity: str) -> str:
        """The identifying column of an entity's source: its key (credit_code, person_id)."""
        source = self.entity_source(entity)
        key = self.source_keys.get(source, ())
        if len(key) == 1:
            return key[0]
        for candidate in ("credit_code", "person_id"):
            if candidate in self.source_columns[source]:
                return candidate
        raise ValueError(f"entity source {source} has no identifier column")


def payee_kind(spec: PolicyFile, cat: CheckedCatalogue) -> str | None:
    """The entity kind a policy pays: its target, or where its payee relation leads (None
    if that relation is not declared)."""
    if spec.payee == "self":
        return spec.target
    rel = cat.spec.relations.get(spec.payee.relation)
    return rel.to if rel is not None else None


# --- a checked policy ----------------------------------------------------------------


@dataclass(frozen=True)
class CheckedCondition:
    """One eligibility condition: its id, parsed expression, legal reference and words."""

    id: str
    node: A.Node
    ref: str | None
    text: str | None


@dataclass(frozen=True)
class KeyedValues:
    """A table parameter's value: a literal per code, and one for the codes not listed."""

    entries: tuple[tuple[str, A.Node], ...]
    default: A.Node | None


@dataclass(frozen=True)
class DatedValue:
    """One dated value of a parameter: from when, the literal (a list of literals, or a
    table of them), the text that set it."""

    from_: Any
    node: A.Node | KeyedValues
    ref: str


@dataclass
class CheckedPolicy:
    """A policy ready to compile: its spec, parsed expressions, and what it reads."""

    spec: PolicyFile
    file: str
    sha256: str
    lets: dict[str, A.Node]
    params: dict[str, list[DatedValue]]
    conditions: list[CheckedCondition]
    amount: Amount
    payee_where: A.Node | None
    rank_by: A.Node | None
    typed: Typed
    located: Located
    warnings: list[Problem] = field(default_factory=list)  # accepted, but look at them
    variants: dict[str, CheckedPolicy] = field(default_factory=dict)  # each, checked
    reading: str = ""  # which reading this is: "", "variant x", "test 'y'"
    accounts: tuple[str, ...] = ()  # the payee's accounts paid to, the first on file

    @property
    def id(self) -> str:
        """The policy's id, part of every ledger key."""
        return self.spec.policy

    @property
    def target(self) -> str:
        """enterprise or person."""
        return self.spec.target

    def expressions(self) -> list[A.Node]:
        """Every top-level expression: lets, conditions, the amount's, rank_by."""
        return [
            *self.lets.values(),
            *(c.node for c in self.conditions),
            *self.amount.nodes(),
            *((self.rank_by,) if self.rank_by is not None else ()),
        ]
