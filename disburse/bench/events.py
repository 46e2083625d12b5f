"""How fast durable-rules decides: the event path's decisions alone, without the database.

Rows of a staged city's wide frames (features computed by the batch's Polars plan)
are decided three ways, in turn within each round so that a busy machine slows all
three alike: the exact values asserted as facts are computed (`fact`), durable-rules
matches the facts (`masks`: the rulesets alone), and the reference interpreter decides
the same rows (`decide`), the row-at-a-time baseline.  A warm-up round is discarded;
the report gives each round and the median.  The durable-rules results are checked
equal to the reference interpreter's.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eligibility import ID_COLUMN, Naming, PolicySet, wide_plans
from eligibility.backends.durable import Decider, compile_policy, fact
from eligibility.reference import amount, decide, row_env, verdict
from jobs.evaluate import staged_scan


@dataclass(frozen=True)
class DurableRound:
    """One round: seconds for the facts, the matching and the reference interpreter."""

    facts_s: float
    match_s: float
    reference_s: float


@dataclass(frozen=True)
class DurableSpeed:
    """Decisions per second through durable-rules alone, and against the reference."""

    decisions: int  # rows x policies per round
    policies: dict[str, int]  # policy -> its conditions
    rounds: list[DurableRound]
    agree: bool

    def _median(self, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in self.rounds))

    @property
    def match_per_s(self) -> float:
        """durable-rules matching alone: decisions per second."""
        return self.decisions / self._median("match_s")

    @property
    def with_facts_per_s(self) -> float:
        """Exact facts and matching together: decisions per second."""
        return self.decisions / statistics.median(r.facts_s + r.match_s for r in self.rounds)

    @property
    def reference_per_s(self) -> float:
        """The reference interpreter: decisions per second."""
        return self.decisions / self._median("reference_s")

    def ratio(self) -> tuple[float, float, float]:
        """(median, min, max) of each round's (facts + matching) / reference time."""
        ratios = [(r.facts_s + r.match_s) / r.reference_s for r in self.rounds]
        return statistics.median(ratios), min(ratios), max(ratios)

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        med, lo, hi = self.ratio()
        return {
            "decisions_per_round": self.decisions,
            "policies": self.policies,
            "rounds": [asdict(r) for r in self.rounds],
            "match_per_s": round(self.match_per_s),
            "with_facts_per_s": round(self.with_facts_per_s),
            "reference_per_s": round(self.reference_per_s),
            "ratio_to_reference": {"median": med, "min": lo, "max": hi},
            "agree": self.agree,
        }

    def to_text(self) -> list[str]:
        """The figures for people."""
        med, lo, hi = self.ratio()
        return [
            f"durable-rules decisions ({self.decisions:,} per round, "
            f"{len(self.rounds)} rounds after a warm-up, medians):",
            f"  matching alone:        {self.match_per_s:>10,.0f} decisions/s",
            f"  exact facts + match:   {self.with_facts_per_s:>10,.0f} decisions/s",
            f"  reference interpreter: {self.reference_per_s:>10,.0f} decisions/s",
            f"  time / reference: {med:.2f} (rounds {lo:.2f} to {hi:.2f}); "
            f"same results as the reference: {'yes' if self.agree else 'NO'}",
        ]


def durable_speed(
    staged_dir: Path, pset: PolicySet, as_of: dt.date, rows: int, rounds: int = 5
) -> DurableSpeed:
    """Decide up to `rows` entities of each kind with every policy active on `as_of`."""
    policies = pset.active(as_of)
    cat = pset.catalogue
    decider = Decider({p.id: compile_policy(p) for p in policies})
    work = []
    for kind, plan in wide_plans(staged_scan(staged_dir), policies, cat, as_of).items():
        wide = plan.head(rows).collect()
        for p in (p for p in policies if p.target == kind):
            payee = Naming.payee(p.id)
            inputs = [
                (row_env(p, cat, as_of, r), r[ID_COLUMN], r.get(payee))
                for r in wide.iter_rows(named=True)
            ]
            work.append((p, decider.rulesets[p.id], inputs))
    decisions = sum(len(inputs) for _p, _rs, inputs in work)
    agree = True
    out = []
    for k in range(rounds + 1):  # round 0 warms up and is discarded
        t0 = time.perf_counter()
        facts = [[fact(rs, env, i) for i, (env, _e, _p) in enumerate(inp)] for _p, rs, inp in work]
        t1 = time.perf_counter()
        masks = [decider.masks(p.id, f) for (p, _rs, _i), f in zip(work, facts, strict=True)]
        t2 = time.perf_counter()
        want = [[decide(p, *row) for row in inp] for p, _rs, inp in work]
        t3 = time.perf_counter()
        if k == 0:
            for (p, _rs, inp), m, w in zip(work, masks, want, strict=True):
                got = [
                    verdict(p, mask, amount(p, env), e, pay)
                    for mask, (env, e, pay) in zip(m, inp, strict=True)
                ]
                agree = agree and got == w
            continue
        out.append(DurableRound(t1 - t0, t2 - t1, t3 - t2))
    return DurableSpeed(decisions, {p.id: len(p.conditions) for p, _r, _i in work}, out, agree)
