"""What a scenario expects and what came out: the officers' worked examples over several runs.

A scenario (`schema.Scenario`) gives an entity's features, then a sequence of nightly
runs, each with what changed since the one before, and expects per run the night's
decision, what the ledger holds for the key afterwards and the transfers posted; and
totals over a benefit year.  Running one needs a ledger, which this package knows
nothing of: `jobs.scenarios` runs them on the real allocation and posting over a
scratch SQLite ledger, and hands back the `ScenarioResult`s defined here, which
`policy check` counts and renders beside the worked examples' results.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from common.errors import Code, Problem
from common.money import format_yuan, parse_money
from eligibility.schema import ExpectRun, Scenario

FIX = "correct the policy, or the scenario if the policy text says otherwise"


@dataclass(frozen=True)
class Posted:
    """A transfer a run posted for the entity: its kind, its effect on what the key holds
    (signed fen: + a grant or an increase, - a decrease, a reversal, a clawback), its payee
    and benefit period."""

    kind: str
    fen: int
    payee: str
    period: str

    def show(self, *, payee: bool = False) -> str:
        """`grant +1,000.00 yuan` (with ` to <payee>` if asked, ` for <period>` if it has one)."""
        sign = "+" if self.fen > 0 else ""
        to = f" to {self.payee}" if payee else ""
        period = f" for {self.period}" if self.period else ""
        return f"{self.kind} {sign}{format_yuan(self.fen)} yuan{period}{to}"


@dataclass(frozen=True)
class NightOutcome:
    """What one run of a scenario did: the night's decision for the entity, what the ledger
    holds for its key of the run's benefit period once posted, and the transfers posted."""

    as_of: dt.date
    period: str
    eligible: bool
    reason: str | None
    payee: str | None
    held_fen: int
    transfers: tuple[Posted, ...]
    decided_by: str = ""


@dataclass
class RunResult:
    """One run of a scenario compared with what it expects (only what it expects)."""

    index: int
    outcome: NightOutcome
    expected: dict[str, str]
    actual: dict[str, str]
    line: int
    col: int

    @property
    def passed(self) -> bool:
        return self.expected == self.actual


@dataclass
class TotalResult:
    """A total over a period compared with what the scenario expects."""

    period: str
    expected_fen: int
    actual_fen: int
    line: int
    col: int

    @property
    def passed(self) -> bool:
        return self.expected_fen == self.actual_fen


@dataclass
class ScenarioResult:
    """The outcome of one scenario: each run's and each total's comparison."""

    policy: str
    name: str
    runs: list[RunResult]
    totals: list[TotalResult] = field(default_factory=list)
    line: int = 1
    col: int = 1

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.runs) and all(t.passed for t in self.totals)

    def _where(self) -> tuple[int, int, str]:
        """The position and words of the first thing that does not hold."""
        for r in self.runs:
            if not r.passed:
                what = (
                    f"run {r.index + 1} ({r.outcome.as_of}) expected {_show(r.expected)}, "
                    f"got {_show(r.actual)}"
                )
                return r.line, r.col, what
        for t in self.totals:
            if not t.passed:
                what = (
                    f"the total over {t.period} expected {format_yuan(t.expected_fen)} yuan, "
                    f"got {format_yuan(t.actual_fen)} yuan"
                )
                return t.line, t.col, what
        return self.line, self.col, "it holds"

    def problem(self, file: str) -> Problem:
        """A failing scenario as a problem of its file (what `run` refuses a policy for)."""
        line, col, what = self._where()
        return Problem(
            file,
            line,
            col,
            Code.SCENARIO_FAILED,
            f"scenario {self.name!r} does not hold: {what}",
            f"correct the policy or its scenario; `disburse policy check {file} -v` shows every run",
        )

    def render(self, file: str, *, verbose: bool = False) -> str:
        """A passing scenario in one line (with its runs if `verbose`); a failing one
        positioned at what fails first, with every run and total, and a fix."""
        if self.passed and not verbose:
            return f"ok   {self.policy}: scenario {self.name}"
        lines = []
        if self.passed:
            lines.append(f"ok   {self.policy}: scenario {self.name}")
        else:
            line, col, _ = self._where()
            lines.append(
                f"{file}:{line}:{col}: {Code.SCENARIO_FAILED} FAIL {self.policy}: "
                f"scenario {self.name}"
            )
        for r in self.runs:
            o = r.outcome
            head = f"  run {r.index + 1} {o.as_of} ({o.period}): "
            if r.passed:
                lines.append(head + "ok, " + _night(o))
                continue
            lines.append(head + "FAIL")
            lines.append(f"    expected: {_show(r.expected)}")
            lines.append(f"    actual:   {_show(r.actual)}")
            if o.decided_by:
                lines.append(f"    decided by: {o.decided_by}")
        for t in self.totals:
            mark = "ok" if t.passed else "FAIL"
            lines.append(
                f"  total {t.period}: {mark}, expected {format_yuan(t.expected_fen)} yuan, "
                f"got {format_yuan(t.actual_fen)} yuan"
            )
        if not self.passed:
            lines.append(f"  fix: {FIX}")
        return "\n".join(lines)


def _night(o: NightOutcome) -> str:
    """A run's outcome in a few words: what the key holds and what was posted."""
    posted = (
        ", ".join(
            t.show() if t.period != o.period else replace(t, period="").show() for t in o.transfers
        )
        or "nothing posted"
    )
    return f"holds {format_yuan(o.held_fen)} yuan; {posted}"


def _show(d: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def compare_run(expect: ExpectRun, o: NightOutcome) -> tuple[dict[str, str], dict[str, str]]:
    """What a run expects and what it did, as the same keys in words (only those it expects).

    Transfers are compared as a collection, in the ledger's order when shown: the officer
    need not know the order in which a post writes increases, decreases and clawbacks."""
    expected: dict[str, str] = {}
    actual: dict[str, str] = {}
    if expect.eligible is not None:
        expected["eligible"] = str(expect.eligible).lower()
        actual["eligible"] = str(o.eligible).lower()
    if expect.reason is not None:
        expected["reason"] = expect.reason
        actual["reason"] = str(o.reason)
    if expect.payee is not None:
        expected["payee"] = expect.payee
        actual["payee"] = str(o.payee)
    if expect.amount is not None:
        expected["amount"] = f"{format_yuan(parse_money(expect.amount))} yuan"
        actual["amount"] = f"{format_yuan(o.held_fen)} yuan"
    if expect.transfers is not None:
        with_payee = any(t.payee is not None for t in expect.transfers)
        with_period = any(t.period is not None for t in expect.transfers)
        wanted = [
            Posted(
                t.kind,
                parse_money(t.amount),
                t.payee or "",
                "" if t.period is None else str(t.period),
            )
            for t in expect.transfers
        ]
        got = [
            Posted(
                t.kind,
                t.fen,
                t.payee if with_payee else "",
                t.period if with_period else "",
            )
            for t in o.transfers
        ]
        if _same(wanted, got):
            wanted = got  # shown in the ledger's order
        expected["transfers"] = _transfers(wanted, with_payee)
        actual["transfers"] = _transfers(got, with_payee)
    return expected, actual


def _same(a: list[Posted], b: list[Posted]) -> bool:
    """The same transfers, in whatever order; a payee or a period left out of an expected one
    matches any."""

    def key(t: Posted) -> tuple[str, int, str, str]:
        return (t.kind, t.fen, t.payee, t.period)

    if any(not t.payee for t in a):
        b = [Posted(t.kind, t.fen, "", t.period) for t in b]
        a = [Posted(t.kind, t.fen, "", t.period) for t in a]
    if any(not t.period for t in a):
        b = [Posted(t.kind, t.fen, t.payee, "") for t in b]
        a = [Posted(t.kind, t.fen, t.payee, "") for t in a]
    return Counter(map(key, a)) == Counter(map(key, b))


def _transfers(ts: list[Posted], payee: bool) -> str:
    return "[" + ", ".join(t.show(payee=payee and bool(t.payee)) for t in ts) + "]"


def total_over(held: list[tuple[str, int]], period: str) -> int:
    """What the entity holds over `period`: the benefit periods that are it or lie in it
    (2026 sums 2026, 2026-Q1 ... and 2026-01 ...); `held` is (benefit period, net fen)."""
    return sum(fen for p, fen in held if p == period or p.startswith(f"{period}-"))


def scenario_totals(scenario: Scenario) -> list[tuple[int | None, str, int]]:
    """Each expected total: its index in a list (None if written as one mapping), its
    period as text, its amount in fen."""
    many = isinstance(scenario.expect_total, list)
    return [
        (k if many else None, str(t.period), parse_money(t.amount))
        for k, t in enumerate(scenario.totals)
    ]


def merged_given(scenario: Scenario, upto: int) -> tuple[dict[str, Any], dict[str, int | None]]:
    """The features given for run `upto`: the scenario's, with each run's changes up to it
    on top; and for each, the run that gave it last (None: the scenario's own `given`)."""
    given = dict(scenario.given)
    source: dict[str, int | None] = dict.fromkeys(given)
    for k, run in enumerate(scenario.runs[: upto + 1]):
        for name, value in run.given.items():
            given[name] = value
            source[name] = k
    return given, source
