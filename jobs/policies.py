"""Loading the policy set a run uses: catalogue, feature catalogue and policy files."""

from __future__ import annotations

from pathlib import Path

from eligibility import CheckedCatalogue, PolicySet, load_feature_catalogue, load_policy_set
from jobs.catalogue import Catalogue
from jobs.paths import policies_dir
from jobs.staged import staged_columns


def features_path(paths: list[Path] | None) -> Path:
    """features.yaml of the first folder given, if it has one, else the shipped one."""
    for p in paths or []:
        if p.is_dir() and (p / "features.yaml").is_file():
            return p / "features.yaml"
    return policies_dir() / "features.yaml"


def feature_catalogue(catalogue: Catalogue, paths: list[Path] | None = None) -> CheckedCatalogue:
    """The feature catalogue checked against the source catalogue's staged columns."""
    keys = {name: src.key for name, src in catalogue.sources.items()}
    return load_feature_catalogue(features_path(paths), staged_columns(catalogue), keys)


def load_policies(catalogue: Catalogue, paths: list[Path] | None = None) -> PolicySet:
    """The policies in `paths` (files or folders), default the shipped policies folder."""
    return load_policy_set(paths or [policies_dir()], feature_catalogue(catalogue, paths))
