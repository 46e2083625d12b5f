"""How much a policy pays: its amount as frozen typed variants over the expression tree.

The base amount is one of four kinds, then optionally prorated by the months of the
benefit period covered, capped, and rounded half up to the fen or the yuan:

    Formula        one money expression                    amount: premium * 90%
    Table          the first row whose `when` holds        table: [{when: .., amount: ..}]
    StepTiers      the bracket `by` falls in               tiers: {mode: step, ...}
    MarginalTiers  each slice of `by` at its bracket's rate
    Monthly        each month's amount, summed over the benefit period  tiers: {mode: marginal, ...}

Each backend gives one `functools.singledispatch` rule per kind: the Polars compiler
(`eligibility.backends.polars.amounts`), the reference interpreter
(`eligibility.reference`) and the explanation (`eligibility.explain`).  Adding a kind
is one class here, its check in `eligibility.check`, and one rule per backend;
tests/unit/test_functions.py fails while a backend lacks one.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eligibility import ast as A


@dataclass(frozen=True, slots=True)
class Rounding:
    """To what unit (fen, yuan, ten_yuan) and how (half_up, half_even, down) the amount
    is rounded."""

    to: Literal["fen", "yuan", "ten_yuan"] = "fen"
    mode: Literal["half_up", "half_even", "down"] = "half_up"

    @property
    def unit_fen(self) -> int:
        """The unit rounded to, in fen."""
        return {"fen": 1, "yuan": 100, "ten_yuan": 1000}[self.to]

    def words(self) -> str:
        """The rounding in plain words: rounded half up to the fen."""
        how = {"half_up": "half up", "half_even": "half to even", "down": "down"}[self.mode]
        unit = {"fen": "the fen", "yuan": "the yuan", "ten_yuan": "ten yuan"}[self.to]
        return f"rounded {how} to {unit}"


@dataclass(frozen=True, slots=True)
class Formula:
    """One money expression."""

    expr: A.Node

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the kind, in file order."""
        return (self.expr,)


@dataclass(frozen=True, slots=True)
class Table:
    """A first-hit decision table: the amount of the first row whose `when` holds, else
    `otherwise` (0 when there is none)."""

    rows: tuple[tuple[A.Node, A.Node], ...]  # (when, amount)
    otherwise: A.Node | None

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the kind, in file order."""
        out: list[A.Node] = [x for row in self.rows for x in row]
        return (*out, *((self.otherwise,) if self.otherwise is not None else ()))


@dataclass(frozen=True, slots=True)
class Bracket:
    """From `low` (inclusive) to `high` (exclusive) of the `by` value; either may be open.
    `value` is the bracket's amount (step tiers) or rate (marginal tiers)."""

    low: A.Node | None
    high: A.Node | None
    value: A.Node

    def nodes(self) -> tuple[A.Node, ...]:
        """The bounds and the value, in file order."""
        return tuple(x for x in (self.low, self.high, self.value) if x is not None)


@dataclass(frozen=True, slots=True)
class StepTiers:
    """The amount of the bracket `by` falls in; 0 if none; unknown if `by` is."""

    by: A.Node
    brackets: tuple[Bracket, ...]

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the kind, in file order."""
        return (self.by, *(x for b in self.brackets for x in b.nodes()))


@dataclass(frozen=True, slots=True)
class MarginalTiers:
    """The sum over brackets of the slice of `by` inside the bracket times its rate."""

    by: A.Node
    brackets: tuple[Bracket, ...]

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the kind, in file order."""
        return (self.by, *(x for b in self.brackets for x in b.nodes()))


@dataclass(frozen=True, slots=True)
class Monthly:
    """The sum over the benefit period's months of `expr`, in which the run date `month`
    is each month's first day: an allowance whose tier changes on a birthday's month."""

    expr: A.Node

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the kind, in file order."""
        return (self.expr,)


Base = Formula | Table | StepTiers | MarginalTiers | Monthly
KINDS: tuple[type, ...] = (Formula, Table, StepTiers, MarginalTiers, Monthly)

MONTH = "month"  # inside `monthly`: the first day of each month of the benefit period


@dataclass(frozen=True, slots=True)
class Amount:
    """A base amount, then proration by months (when either bound is given), a cap and
    the rounding."""

    base: Base
    prorate_from: A.Node | None = None
    prorate_until: A.Node | None = None
    cap: A.Node | None = None
    round: Rounding = Rounding()

    @property
    def prorated(self) -> bool:
        """Whether the amount is prorated by the months of the benefit period covered."""
        return self.prorate_from is not None or self.prorate_until is not None

    def nodes(self) -> tuple[A.Node, ...]:
        """Every expression of the amount."""
        rest = (self.prorate_from, self.prorate_until, self.cap)
        return (*self.base.nodes(), *(x for x in rest if x is not None))
