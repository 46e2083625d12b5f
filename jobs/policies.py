"""Loading the policy set a run uses: catalogue, feature catalogue and policy files; and
the feature catalogue as `disburse features` lists it.

Where the catalogues are read from is `jobs.catalogue_dir`'s to say: `--catalogue DIR`,
$DISBURSE_CATALOGUE, else beside the policies, else the shipped ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eligibility import (
    CheckedCatalogue,
    CheckedPolicy,
    CheckReport,
    PolicySet,
    check_files,
    load_feature_catalogue,
    load_policy_set,
)
from eligibility.scenarios import ScenarioResult
from jobs.catalogue import Catalogue
from jobs.catalogue import load_source_catalogue as load_source_catalogue
from jobs.catalogue_dir import CataloguePaths, find_catalogue
from jobs.catalogue_dir import features_path as features_path
from jobs.paths import policies_dir
from jobs.scenarios import run_scenarios
from jobs.staged import staged_columns, staged_links


def check_features(path: Path, catalogue: Catalogue) -> CheckedCatalogue:
    """The feature catalogue at `path` checked against what the source catalogue stages:
    columns and types, keys, surrogate keys and the entity sources."""
    return load_feature_catalogue(
        path,
        staged_columns(catalogue),
        {name: src.key for name, src in catalogue.sources.items()},
        links=staged_links(catalogue),
        entity_sources=catalogue.entity_sources,
    )


def feature_catalogue(
    catalogue: Catalogue, paths: list[Path] | None = None, *, features: Path | None = None
) -> CheckedCatalogue:
    """The feature catalogue (`features`, else the one beside the policy folders `paths`,
    else the shipped one) checked against the source catalogue's staged columns."""
    return check_features(features or features_path(paths), catalogue)


def load_policies(
    catalogue: Catalogue, paths: list[Path] | None = None, *, features: Path | None = None
) -> PolicySet:
    """The policies in `paths` (files or folders), default the shipped policies folder,
    checked against the feature catalogue `features` (default: see `feature_catalogue`);
    a policy whose worked examples or scenarios do not hold is refused."""
    return load_policy_set(
        paths or [policies_dir()],
        feature_catalogue(catalogue, paths, features=features),
        scenarios=checked_scenarios,
    )


@dataclass(frozen=True)
class Loaded:
    """What a command that reads policies loaded: where the catalogues were, the source
    catalogue, and the policies checked against the feature catalogue."""

    where: CataloguePaths
    sources: Catalogue
    policies: PolicySet


def load_policy_files(
    policies: list[Path] | None = None, catalogue_dir: Path | str | None = None
) -> Loaded:
    """The policies in `policies` (default the shipped ones) with the catalogues in
    `catalogue_dir` (--catalogue; default: see `jobs.catalogue_dir.find_catalogue`)."""
    where = find_catalogue(catalogue_dir, policies or ())
    sources = where.load_sources()
    return Loaded(where, sources, load_policies(sources, policies, features=where.features))


def check_policies(paths: list[Path], catalogue_dir: Path | str | None = None) -> CheckReport:
    """`disburse policy check`: every problem of the policy files in `paths` (default the
    shipped ones) and their worked examples' results, against the catalogues in
    `catalogue_dir` (--catalogue; default: see `jobs.catalogue_dir.find_catalogue`)."""
    where = find_catalogue(catalogue_dir, paths)
    sources = where.load_sources()
    return check_files(
        paths or [policies_dir()],
        check_features(where.features, sources),
        scenarios=checked_scenarios,
    )


_SCENARIOS: dict[tuple[str, ...], list[ScenarioResult]] = {}


def checked_scenarios(policy: CheckedPolicy, cat: CheckedCatalogue) -> list[ScenarioResult]:
    """The results of a policy's scenarios (`jobs.scenarios.run_scenarios`), run once per
    process for the same policy text and catalogue: every command that loads policies
    runs them, and a process (the test suite, a long-lived service) loads the same ones
    many times."""
    if not policy.spec.scenarios:
        return []
    columns = repr(sorted((s, sorted(c.items())) for s, c in cat.source_columns.items()))
    # Not the file's path: a copy of the same text has the same results (positions
    # included); a problem is raised, never kept.
    key = (policy.sha256, cat.sha256, hashlib.sha256(columns.encode()).hexdigest())
    if key not in _SCENARIOS:
        _SCENARIOS[key] = run_scenarios(policy, cat)
    return _SCENARIOS[key]


@dataclass(frozen=True)
class ListedFeature:
    """A feature policies may read: its entity, name and type, and where it comes from."""

    entity: str
    name: str
    type: str
    origin: str  # "sum of tax_monthly.amount over the window", "count over relation hires", ...
    description: str

    def to_json(self) -> dict[str, str]:
        """As `disburse features --json` lists it."""
        return {
            "entity": self.entity,
            "name": self.name,
            "type": self.type,
            "from": self.origin,
            "description": self.description,
        }


@dataclass(frozen=True)
class ListedRelation:
    """A one-to-many link between entities that relation features aggregate over."""

    name: str
    from_: str
    to: str
    description: str


@dataclass(frozen=True)
class FeatureListing:
    """The feature catalogue as `disburse features` shows it."""

    features: Sequence[ListedFeature]
    relations: Sequence[ListedRelation]

    def to_json(self) -> dict[str, Any]:
        """{"features": [...], "relations": {name: description}}."""
        return {
            "features": [f.to_json() for f in self.features],
            "relations": {r.name: r.description for r in self.relations},
        }

    def to_text(self) -> str:
        """One line per feature, then one per relation."""
        lines = [f"{f.entity:<11}{f.name:<24}{f.type:<8}{f.origin}" for f in self.features]
        lines.append("")
        lines += [
            f"relation {r.name}: {r.from_} -> {r.to}: {r.description}" for r in self.relations
        ]
        return "\n".join(lines)


def list_features(
    paths: list[Path] | None = None, catalogue_dir: Path | str | None = None
) -> FeatureListing:
    """The features of the feature catalogue in `catalogue_dir` (--catalogue), else of the
    policy folders `paths`, else the shipped one."""
    where = find_catalogue(catalogue_dir, paths or ())
    spec = check_features(where.features, where.load_sources()).spec
    features = []
    for entity, feats in spec.features.items():
        for name, f in feats.items():
            if f.source is not None:
                origin = (
                    f"{f.agg or 'value'} of {f.source}.{f.column}"
                    if f.column
                    else f"{f.agg} of {f.source} rows"
                )
                if f.where:
                    origin += f" where {f.where}"
                if f.source in spec.timed:
                    origin += " over the window"
            else:
                origin = f"{f.agg or 'count'} over relation {f.relation}" + (
                    f" where {f.where}" if f.where else ""
                )
            features.append(ListedFeature(entity, name, f.type, origin, f.description))
    relations = [ListedRelation(n, r.from_, r.to, r.description) for n, r in spec.relations.items()]
    return FeatureListing(features, relations)
