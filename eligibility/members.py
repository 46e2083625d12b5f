"""An aggregate member by member: which related entities it looked at, and why each did or
did not count, in plain words.

    count(hires, age_on(hired_in) <= 24) = 1 over 2 hires (1 counted, 1 not)
      330106**********34: counted
      330106**********45: not counted: age_on(hired_in) <= 24 (age_on(hired_in) = 25)

Standard library only.  Nothing here evaluates an expression: the values of the parts
of an aggregate's body on each member (`member_nodes`) are computed by the compiled
plan over the member's row (`eligibility.backends.polars.members`), and this module
only reads them: which part decided, and how to say it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eligibility import ast as A
from eligibility.checked import CheckedPolicy, FeatureRef, LetRef
from eligibility.explain import show_value, source_text

LIMIT = 20  # members listed per aggregate; the rest are counted, not listed


def _deciding_candidates(node: A.Node) -> list[A.Node]:
    """A condition on a member, and the parts that may decide it: the operands of an
    `and`, the body of a defined function, in turn."""
    out = [node]
    if isinstance(node, A.BoolOp) and node.op == "and":
        for o in node.operands:
            out += _deciding_candidates(o)
    elif isinstance(node, A.Apply):
        out += _deciding_candidates(node.body)
    return out


def shown(part: A.Node) -> list[A.Node]:
    """The values a deciding part is shown with: the sides of a comparison that are not
    written out, the item of an `in`, the arguments of a function that are not."""
    match part:
        case A.Compare(left=a, right=b):
            return [x for x in (a, b) if not isinstance(x, A.Literal)]
        case A.In(item=item):
            return [item]
        case A.Unary(op="not", operand=o):
            return shown(o)
        case A.BoolOp(operands=ops):
            return _unique([x for o in ops for x in shown(o)])
        case A.Call(args=args):
            return [x for x in args if not isinstance(x, A.Literal | A.ListLit)]
    return [part]


def _unique(nodes: list[A.Node]) -> list[A.Node]:
    seen: dict[str, A.Node] = {}
    for n in nodes:
        seen.setdefault(source_text(n), n)
    return list(seen.values())


def _conditions(agg: A.Aggregate) -> list[A.Node]:
    """The conditions on a member: the pick's, and the body where it is one."""
    out: list[A.Node] = []
    if agg.pick is not None and agg.pick.where is not None:
        out.append(agg.pick.where)
    if agg.body is not None and agg.func != "sum":
        out.append(agg.body)
    return out


def member_nodes(agg: A.Aggregate) -> list[A.Node]:
    """Every expression whose value on each member the words read, in a fixed order: the
    pick's key, each condition and the parts that may decide it with the values they are
    shown with, and a sum's body with its values."""
    out: list[A.Node] = []
    if agg.pick is not None:
        out.append(agg.pick.key)
    for cond in _conditions(agg):
        for part in _deciding_candidates(cond):
            out += [part, *shown(part)]
    if agg.func == "sum" and agg.body is not None:
        out += [agg.body, *shown(agg.body)]
    seen: set[int] = set()
    return [n for n in out if not (id(n) in seen or seen.add(id(n)))]  # type: ignore[func-returns-value]


@dataclass(frozen=True)
class MemberRow:
    """One related entity of one owner, as the compiled plan saw it: its identifier, for a
    pick whether it was picked and its place in the pick's order (among those that may be
    picked), and the value of every node of `member_nodes` by `id()`."""

    entity_id: str
    values: dict[int, Any]
    picked: bool | None = None
    rank: int | None = None


@dataclass(frozen=True)
class MemberLine:
    """One member in words: its identifier as printed, whether it counted, and why."""

    member: str
    counted: bool
    text: str

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {"member": self.member, "counted": self.counted, "text": self.text}


@dataclass(frozen=True)
class MemberBreakdown:
    """One aggregate of one owner, member by member (the first `LIMIT`)."""

    aggregate: str  # as written
    relation: str
    value: str  # the archived value, in words
    read_by: list[str]  # the condition ids (and "amount") that read it
    total: int  # related entities
    counted: int  # of which counted (for a sum: added a value)
    members: list[MemberLine]
    recomputed: str | None = None  # the value the members give, where it differs
    counted_word: str = "counted"
    notes: list[str] = field(default_factory=list)

    @property
    def more(self) -> int:
        """Members not listed."""
        return self.total - len(self.members)

    def lines(self) -> list[str]:
        """The breakdown as indented lines of text."""
        n = self.total
        head = f"{self.aggregate} = {self.value} (read by {', '.join(self.read_by)})"
        out = [head]
        if n == 0:
            out.append(f"  no {self.relation}: none to look at")
        else:
            out.append(
                f"  {n} related ({self.relation}): {self.counted} {self.counted_word}, "
                f"{n - self.counted} not"
                + (f"; the first {len(self.members)} listed" if self.more else "")
            )
        out += [f"    {m.member}: {m.text}" for m in self.members]
        if self.more:
            out.append(f"    and {self.more} more")
        out += [f"  {note}" for note in self.notes]
        if self.recomputed is not None:
            out.append(
                f"  WARNING: these members give {self.recomputed}, the run recorded "
                f"{self.value}: the staged sources changed after the run"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """As plain data (what `disburse explain --json` shows of it)."""
        return {
            "aggregate": self.aggregate,
            "relation": self.relation,
            "value": self.value,
            "read_by": list(self.read_by),
            "total": self.total,
            "counted": self.counted,
            "members": [m.to_json() for m in self.members],
            "more": self.more,
            "recomputed": self.recomputed,
            "notes": list(self.notes),
        }


def _decisive_readers(policy: CheckedPolicy, passed: list[bool]) -> list[tuple[str, A.Node]]:
    """What decided: the conditions up to the first that failed, or, if all held, every
    condition and the amount; each with its id ("amount" for the amount)."""
    first_failed = next((i for i, ok in enumerate(passed) if not ok), None)
    readers: list[tuple[str, A.Node]] = [
        (c.id, c.node)
        for c in policy.conditions[: None if first_failed is None else first_failed + 1]
    ]
    if first_failed is None:
        readers += [("amount", n) for n in policy.amount.nodes()]
    return readers


def decisive_aggregates(
    policy: CheckedPolicy, passed: list[bool]
) -> list[tuple[A.Aggregate | str, list[str]]]:
    """The aggregates that decided (`passed`: each condition's result): those read,
    directly or through lets, by the conditions up to the first that failed, or, if all
    held, by every condition and the amount; each with the ids of what reads it ("amount"
    for the amount), in the order first read.  The features they read are given by name
    beside them: those over a relation (graduates_hired) are aggregates of the feature
    catalogue, which the caller, knowing the catalogue, keeps."""
    found: dict[object, tuple[A.Aggregate | str, list[str]]] = {}
    for reader, node in _decisive_readers(policy, passed):
        for agg in _read(policy, node):
            entry = found.setdefault(agg if isinstance(agg, str) else id(agg), (agg, []))
            if reader not in entry[1]:
                entry[1].append(reader)
    return list(found.values())


def aggregates_read(policy: CheckedPolicy, node: A.Node) -> list[A.Aggregate]:
    """The aggregates an expression reads, itself or through the lets it names."""
    return [a for a in _read(policy, node) if isinstance(a, A.Aggregate)]


def _read(policy: CheckedPolicy, node: A.Node) -> list[A.Aggregate | str]:
    """The aggregates and the features an expression reads, itself or through its lets."""
    out: list[A.Aggregate | str] = []
    seen_lets: set[str] = set()

    def visit(n: A.Node) -> None:
        for x in A.walk_outside_aggregates(n):
            if isinstance(x, A.Aggregate) and all(x is not y for y in out):
                out.append(x)
            b = policy.typed.bindings.get(id(x))
            if isinstance(x, A.Name) and isinstance(b, FeatureRef) and x.name not in out:
                out.append(x.name)
            if isinstance(x, A.Name) and isinstance(b, LetRef) and x.name not in seen_lets:
                seen_lets.add(x.name)
                visit(policy.lets[x.name])

    visit(node)
    return out


Show = Callable[[str], str]


class _Words:
    """The words of one aggregate's members: the values of one member, and how to say them."""

    def __init__(self, agg: A.Aggregate, types: dict[int, str], show_id: Show) -> None:
        self.agg, self.types, self.show_id = agg, types, show_id

    def value(self, row: MemberRow, node: A.Node) -> str:
        v = row.values.get(id(node))
        if isinstance(v, str):  # personal data in a text value is masked as identifiers are
            v = self.show_id(v)
        return show_value(v, self.types.get(id(node)))

    def failed(self, row: MemberRow, cond: A.Node) -> str:
        """The part of a condition that decided it did not hold, with its values."""
        prefix: list[str] = []
        node = cond
        while True:
            if isinstance(node, A.BoolOp) and node.op == "and":
                failing = [o for o in node.operands if row.values.get(id(o)) is not True]
                if not failing:  # every operand held: cannot happen for a failed `and`
                    break
                node = failing[0]
            elif isinstance(node, A.Apply):
                prefix.append(node.func)
                node = node.body
            else:
                break
        text = source_text(node)
        if row.values.get(id(node)) is None:
            text += " is unknown"
        elif isinstance(node, A.Name):
            text += f" is {self.value(row, node)}"
        vals = [v for v in shown(node) if v is not node]
        if vals:
            text += " (" + ", ".join(f"{source_text(v)} = {self.value(row, v)}" for v in vals) + ")"
        return ": ".join([*prefix, text])

    def member(self, row: MemberRow, n: int | None) -> MemberLine:
        """One member: whether it counted, and why in words."""
        agg = self.agg
        pick = agg.pick
        verbs = {
            "count": ("counted", "not counted"),
            "any": ("holds", "does not hold"),
            "all": ("holds", "does not hold"),
        }
        before = ""
        if pick is not None:
            key = f"{source_text(pick.key)} {self.value(row, pick.key)}"
            if not row.picked:
                if row.values.get(id(pick.key)) is None:
                    why = f"{source_text(pick.key)} is unknown"
                elif pick.where is not None and row.values.get(id(pick.where)) is not True:
                    why = self.failed(row, pick.where)
                else:
                    why = f"beyond the first {n} (#{row.rank} by {key})"
                return MemberLine(self.show_id(row.entity_id), False, f"not picked: {why}")
            before = f"picked #{row.rank} by {key}"
            if agg.body is None:
                return MemberLine(self.show_id(row.entity_id), True, before)
            before += "; "
        if agg.body is None:
            return MemberLine(self.show_id(row.entity_id), True, before + "counted")
        if agg.func == "sum":
            v = row.values.get(id(agg.body))
            if v is None:
                return MemberLine(
                    self.show_id(row.entity_id),
                    False,
                    before + "adds nothing: " + self.failed(row, agg.body),
                )
            return MemberLine(
                self.show_id(row.entity_id), True, before + f"adds {self.value(row, agg.body)}"
            )
        yes, no = verbs[agg.func]
        if row.values.get(id(agg.body)) is True:
            return MemberLine(self.show_id(row.entity_id), True, before + yes)
        return MemberLine(
            self.show_id(row.entity_id), False, f"{before}{no}: {self.failed(row, agg.body)}"
        )


def breakdown(
    agg: A.Aggregate,
    types: dict[int, str],
    rows: list[MemberRow],
    *,
    value: str,
    read_by: list[str],
    pick_n: int | None = None,
    recomputed: str | None = None,
    show_id: Show = str,
    limit: int = LIMIT,
    feature: str | None = None,
) -> MemberBreakdown:
    """The breakdown of one aggregate from its members' rows, in the order given (a pick's
    order, then by identifier); `types` the type of each node by `id()`; `show_id` prints an
    identifier (masks it); `value` the archived value in words; `feature` the name of a
    feature of the catalogue that is this aggregate."""
    words = _Words(agg, types, show_id)
    lines = [words.member(r, pick_n) for r in rows]
    return MemberBreakdown(
        aggregate=source_text(agg) if feature is None else f"{feature} ({source_text(agg)})",
        relation=agg.relation,
        value=value,
        read_by=read_by,
        total=len(lines),
        counted=sum(1 for m in lines if m.counted),
        members=lines[:limit],
        recomputed=recomputed,
        counted_word={"sum": "added", "any": "held", "all": "held"}.get(agg.func, "counted"),
    )
