"""A policy read otherwise than its file sets it: a declared variant's parameters and lets,
a worked example's or a scenario's own settings on top of its variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.errors import Code, did_you_mean
from common.yamlsrc import Loc
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker


@dataclass(frozen=True)
class Reading:
    """Parameters and lets set otherwise than the file sets them: a variant's, or a worked
    example's; each with where it was written."""

    label: str  # "variant province_a", "test 'a small firm'": cited as the values' reference
    params: dict[str, tuple[Loc, Any]] = field(default_factory=dict)
    lets: dict[str, tuple[Loc, str]] = field(default_factory=dict)

    def then(self, other: Reading) -> Reading:
        """This reading with `other`'s settings on top."""
        return Reading(other.label, {**self.params, **other.params}, {**self.lets, **other.lets})


def variant_reading(
    c: Checker | None, spec: PolicyFile, name: str | None, loc: Loc
) -> Reading | None:
    """The settings of a declared variant (None, with a problem at `loc`, if undeclared)."""
    variant = spec.variants.get(name or "")
    if variant is None:
        if c is None:
            return None
        c.problem_at(
            loc,
            Code.UNKNOWN_VARIANT,
            f"no variant {name!r} is declared",
            did_you_mean(str(name), sorted(spec.variants), "the variants")
            if spec.variants
            else "declare it under variants:",
        )
        return None
    at: Loc = ("variants", str(name))
    return Reading(
        f"variant {name}",
        {p: ((*at, "params", p), v) for p, v in variant.params.items()},
        {n: ((*at, "let", n), text) for n, text in variant.let.items()},
    )


def case_reading(spec: PolicyFile, index: int) -> Reading | None:
    """The reading of worked example `index`: its variant, then its own parameters."""
    case = spec.tests[index]
    if case.variant is None and not case.params:
        return None
    own = Reading(
        f"test {case.name!r}",
        {p: (("tests", index, "params", p), v) for p, v in case.params.items()},
    )
    variant = variant_reading(None, spec, case.variant, ()) if case.variant else None
    return variant.then(own) if variant else own


def scenario_reading(spec: PolicyFile, index: int) -> Reading | None:
    """The reading of scenario `index`: its variant, then its own parameters."""
    scenario = spec.scenarios[index]
    if scenario.variant is None and not scenario.params:
        return None
    own = Reading(
        f"scenario {scenario.name!r}",
        {p: (("scenarios", index, "params", p), v) for p, v in scenario.params.items()},
    )
    variant = variant_reading(None, spec, scenario.variant, ()) if scenario.variant else None
    return variant.then(own) if variant else own
