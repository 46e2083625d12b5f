"""A folder of policy files with its feature catalogue, loaded and checked together."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from common.errors import Code, Problem, ProblemsError
from eligibility.cases import CaseResult, run_cases
from eligibility.check import load_policy
from eligibility.checked import CheckedCatalogue, CheckedPolicy
from eligibility.plan import is_active

NOT_POLICIES = {"features.yaml", "sources.yaml"}


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


def load_policy_set(paths: list[Path], cat: CheckedCatalogue) -> PolicySet:
    """Load and check every policy file; all problems of all files are reported together."""
    policies: list[CheckedPolicy] = []
    problems: list[Problem] = []
    files = policy_files(paths)
    if not files:
        raise ProblemsError(
            [
                Problem(
                    str(paths[0]) if paths else ".",
                    1,
                    1,
                    Code.NO_POLICY_FILES,
                    "no policy files found",
                    "give policy .yaml files or a folder holding them",
                )
            ]
        )
    for f in files:
        try:
            policies.append(load_policy(f, cat))
        except ProblemsError as exc:
            problems += exc.problems
    seen: dict[str, CheckedPolicy] = {}
    for p in policies:
        if p.id in seen:
            line, col = p.located.at(("policy",))
            problems.append(
                Problem(
                    p.file,
                    line,
                    col,
                    Code.DUPLICATE_ID,
                    f"policy id {p.id!r} is also used by {seen[p.id].file}",
                    "a policy id is part of every ledger key: give each policy its own",
                )
            )
        seen.setdefault(p.id, p)
    if problems:
        raise ProblemsError(problems)
    return PolicySet(cat, policies)


@dataclass
class CheckReport:
    """The outcome of `disburse policy check`: problems, and every case's result."""

    problems: list[Problem]
    cases: dict[str, list[CaseResult]]
    files: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.passed for rs in self.cases.values() for r in rs)


def check_files(paths: list[Path], cat: CheckedCatalogue) -> CheckReport:
    """Check each file and run its cases; a broken file does not stop the others."""
    problems: list[Problem] = []
    cases: dict[str, list[CaseResult]] = {}
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
        try:
            cases[policy.id] = run_cases(policy, cat)
        except ProblemsError as exc:
            problems += exc.problems
    return CheckReport(sorted(problems), cases, files)
