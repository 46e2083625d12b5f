"""A folder of policy files with its feature catalogue, loaded and checked together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import Code, Problem, ProblemsError, did_you_mean
from eligibility.cases import CaseResult, run_cases
from eligibility.check import load_policy
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.plan import is_active, once_scope
from eligibility.scenarios import ScenarioResult

# Runs a policy's scenarios (`jobs.scenarios.run_scenarios`: they need a ledger, which
# this package knows nothing of); ProblemsError for a value it cannot use.
ScenarioRunner = Callable[[CheckedPolicy, CheckedCatalogue], list[ScenarioResult]]

# The data files beside the policies: the catalogues and the working-day calendar.
NOT_POLICIES = {"features.yaml", "sources.yaml", "holidays.yaml"}


def policy_files(paths: list[Path]) -> list[Path]:
    """The policy files among `paths`: files as given, folders' *.yaml but the catalogues."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.glob("*.yaml") if f.name not in NOT_POLICIES)
        else:
            out.append(p)
    return out


@dataclass
class PolicySet:
    """Checked policies and the catalogue they were checked against."""

    catalogue: CheckedCatalogue
    policies: list[CheckedPolicy]

    def active(self, as_of: dt.date, only: str | None = None) -> list[CheckedPolicy]:
        """The policies valid on `as_of` (or just `only`, if given and valid)."""
        return [p for p in self.policies if is_active(p, as_of) and (only is None or p.id == only)]

    def get(self, policy_id: str) -> CheckedPolicy:
        for p in self.policies:
            if p.id == policy_id:
                return p
        known = ", ".join(p.id for p in self.policies)
        raise ProblemsError(
            [
                Problem(
                    "<policies>",
                    1,
                    1,
                    Code.UNKNOWN_POLICY,
                    f"no policy {policy_id!r}",
                    f"policies are: {known}",
                )
            ]
        )


def load_policy_set(
    paths: list[Path], cat: CheckedCatalogue, scenarios: ScenarioRunner | None = None
) -> PolicySet:
    """Load and check every policy file and run its worked examples (and, with a runner,
    its scenarios), as `policy check` does: a policy with a problem, or whose own examples
    or scenarios do not hold, is not run; all problems of all files are reported together."""
    report = check_files(paths, cat, scenarios)
    failed = [
        r.problem(report.files[pid]) for pid, rs in report.cases.items() for r in rs if not r.passed
    ]
    failed += [
        s.problem(report.files[pid])
        for pid, ss in report.scenarios.items()
        for s in ss
        if not s.passed
    ]
    if report.problems or failed:
        raise ProblemsError([*report.problems, *failed])
    return PolicySet(cat, report.policies)


@dataclass
class CheckReport:
    """The outcome of `disburse policy check`: problems, warnings and every case's result."""

    problems: list[Problem]
    cases: dict[str, list[CaseResult]]
    files: dict[str, str]
    warnings: list[Problem] = field(default_factory=list)
    policies: list[CheckedPolicy] = field(default_factory=list)  # those that loaded
    scenarios: dict[str, list[ScenarioResult]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem, every case and every scenario passed (warnings do not count)."""
        return (
            not self.problems
            and all(r.passed for rs in self.cases.values() for r in rs)
            and all(s.passed for ss in self.scenarios.values() for s in ss)
        )

    def to_text(self, *, verbose: bool = False) -> str:
        """Every problem and warning by position, the failing cases (every case if
        `verbose`), and a count line."""
        lines = [p.render() for p in sorted([*self.problems, *self.warnings])]
        n_cases = n_failed = n_scenarios = n_sfailed = 0
        for pid, results in self.cases.items():
            for r in results:
                n_cases += 1
                n_failed += not r.passed
                if verbose or not r.passed:
                    lines.append(r.render(self.files[pid]))
            for sc in self.scenarios.get(pid, []):
                n_scenarios += 1
                n_sfailed += not sc.passed
                if verbose or not sc.passed:
                    lines.append(sc.render(self.files[pid], verbose=verbose))
        files = len(self.cases)
        warned = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        ran = f"{n_cases - n_failed} of {n_cases} case(s)"
        if n_scenarios:
            ran += f" and {n_scenarios - n_sfailed} of {n_scenarios} scenario(s)"
        lines.append(
            f"{files} polic{'y' if files == 1 else 'ies'} checked, "
            f"{len(self.problems)} problem(s){warned}; {ran} passed"
        )
        return "\n".join(lines)


def check_files(
    paths: list[Path], cat: CheckedCatalogue, scenarios: ScenarioRunner | None = None
) -> CheckReport:
    """Check each file and run its cases, and with a runner its scenarios; a broken file
    does not stop the others."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    policies: list[CheckedPolicy] = []
    cases: dict[str, list[CaseResult]] = {}
    ran: dict[str, list[ScenarioResult]] = {}
    files: dict[str, str] = {}
    ids: dict[str, str] = {}
    files_given = policy_files(paths)
    if not files_given:
        where = str(paths[0]) if paths else "."
        problems.append(
            Problem(
                where,
                1,
                1,
                Code.NO_POLICY_FILES,
                "no policy files here: nothing to check",
                "give policy .yaml files, or a folder holding them",
            )
        )
    for f in files_given:
        try:
            policy = load_policy(f, cat)
        except ProblemsError as exc:
            problems += exc.problems
            continue
        if policy.id in ids:
            line, col = policy.located.at(("policy",))
            problems.append(
                Problem(
                    policy.file,
                    line,
                    col,
                    Code.DUPLICATE_ID,
                    f"policy id {policy.id!r} is also used by {ids[policy.id]}",
                    "give each policy its own id",
                )
            )
            continue
        ids[policy.id] = policy.file
        files[policy.id] = policy.file
        warnings += policy.warnings
        policies.append(policy)
        try:
            cases[policy.id] = run_cases(policy, cat)
        except ProblemsError as exc:
            problems += exc.problems
            continue
        if scenarios is not None:
            try:
                ran[policy.id] = scenarios(policy, cat)
            except ProblemsError as exc:
                problems += exc.problems
    problems += once_per_problems(policies)
    return CheckReport(sorted(problems), cases, files, sorted(warnings), policies, ran)


def once_per_problems(policies: list[CheckedPolicy]) -> list[Problem]:
    """Each policy a `once_per` names in `across` is checked with it and says the same: the
    same relation, the same policies, the same assessed window and benefit period (so
    that one run decides them together, `eligibility.plan.OnceNeed`)."""
    by_id = {p.id: p for p in policies}
    out = []
    for p in policies:
        rule = p.spec.once_per
        if rule is None:
            continue
        mine = once_scope(p)
        for i, other_id in enumerate(rule.across):
            if other_id == p.id:
                continue
            other = by_id.get(other_id)
            if other is None:
                what = "is not among the policies checked with it"
                fix = did_you_mean(other_id, sorted(by_id), "the policies checked") + (
                    "; check the policies of a once_per group together (the folder)"
                )
            elif other.spec.once_per is None:
                what = "declares no once_per: its members would be counted again"
                fix = f"add to {other.file}: once_per: {{relation: {rule.relation}, across: [{p.id}]}}"
            elif (
                other.spec.once_per.relation != rule.relation
                or once_scope(other) != mine
                or (other.spec.assess, other.spec.benefit_period)
                != (p.spec.assess, p.spec.benefit_period)
            ):
                what = (
                    "counts otherwise: its once_per, assess and benefit_period must be "
                    f"this one's (relation {rule.relation}, policies {mine}, assess "
                    f"{p.spec.assess}, benefit_period {p.spec.benefit_period})"
                )
                fix = f"make {other.file} declare the same once_per, assess and benefit_period"
            else:
                continue
            line, col = p.located.value_at(("once_per", "across", i))
            out.append(
                Problem(
                    p.file,
                    line,
                    col,
                    Code.ONCE_PER_ACROSS,
                    f"once_per across names {other_id!r}, which {what}",
                    fix,
                )
            )
    return out
