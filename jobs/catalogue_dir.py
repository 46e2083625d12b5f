"""Where a command reads the catalogues: features.yaml (the features policies read) and
sources.yaml (the files the bureaus deliver).

A catalogue folder holds both.  It is `--catalogue DIR`, else $DISBURSE_CATALOGUE, so that
a district's policy officer checks their own policy folder against the city's catalogue
kept elsewhere, and an operator runs with a catalogue that is not beside the policies.
Without one, as before either existed:

* features.yaml: that of the first policy folder given that holds one, else the shipped one;
* sources.yaml: the shipped one.

"The shipped one" is in the policies folder: $DISBURSE_POLICIES, else the checkout's
policies/, else the installed copy (`jobs.paths.policies_dir`).

Two feature catalogues are never mixed silently: a policy folder given that holds a
features.yaml of its own, besides a catalogue folder that holds another, is an error
(E022) naming both, unless the two are the same file or have the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import Code
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.errors import JobError
from jobs.paths import policies_dir

ENV = "DISBURSE_CATALOGUE"
FEATURES = "features.yaml"
SOURCES = "sources.yaml"


@dataclass(frozen=True)
class CataloguePaths:
    """The feature catalogue and the source catalogue a command reads."""

    features: Path
    sources: Path

    def load_sources(self) -> Catalogue:
        """The source catalogue, validated (every problem positioned in sources.yaml)."""
        return load_source_catalogue(self.sources)


def find_catalogue(
    catalogue_dir: Path | str | None = None, policies: Sequence[Path] = ()
) -> CataloguePaths:
    """The catalogues of a command: in `catalogue_dir` (--catalogue), else in $DISBURSE_CATALOGUE,
    else beside the policy folders given in `policies`, else the shipped ones (see the
    module's docstring).  A JobError, with its code and the path, for a catalogue folder
    that is missing, incomplete, or at odds with a policy folder's own features.yaml."""
    via = "--catalogue"
    if catalogue_dir is None or str(catalogue_dir) == "":
        catalogue_dir, via = os.environ.get(ENV) or None, f"${ENV}"
    if catalogue_dir is None:
        return CataloguePaths(features_path(policies), policies_dir() / SOURCES)
    folder = Path(catalogue_dir)
    paths = CataloguePaths(folder / FEATURES, folder / SOURCES)
    _check_folder(folder, paths, via)
    for given in policies:
        own = given / FEATURES
        if given.is_dir() and own.exists() and not _same_file(own, paths.features):
            raise JobError(
                f"the policy folder has a feature catalogue of its own, and {via} gives "
                f"another: {paths.features}",
                fix=f"to check against {via}'s, move {own} out of the policy folder; to use "
                + (
                    "the folder's, leave out --catalogue"
                    if via == "--catalogue"
                    else f"the folder's, unset {ENV}"
                ),
                code=Code.CATALOGUE_TWICE,
                file=str(own),
            )
    return paths


def features_path(policies: Sequence[Path] | None) -> Path:
    """features.yaml of the first policy folder given that has one, else the shipped one."""
    for p in policies or []:
        if p.is_dir() and (p / FEATURES).is_file():
            return p / FEATURES
    return policies_dir() / FEATURES


def _check_folder(folder: Path, paths: CataloguePaths, via: str) -> None:
    """A folder that holds features.yaml and sources.yaml (whether they read well is for
    their loaders to say, with positions)."""
    what = "the folder holding features.yaml and sources.yaml"
    if not folder.exists():
        raise JobError(
            f"no catalogue folder here (given by {via})",
            fix=f"give {what}; check the path",
            code=Code.CATALOGUE_NOT_FOUND,
            file=str(folder),
        )
    if not folder.is_dir():
        raise JobError(
            f"is a file, not a catalogue folder (given by {via})",
            fix=f"give its folder, {folder.parent}"
            if folder.name in (FEATURES, SOURCES)
            else f"give {what}",
            code=Code.CATALOGUE_NOT_FOUND,
            file=str(folder),
        )
    missing = [p.name for p in (paths.features, paths.sources) if not p.is_file()]
    if missing:
        shipped = policies_dir()
        raise JobError(
            f"the catalogue folder (given by {via}) holds no file {' and no '.join(missing)}",
            fix=f"a catalogue folder holds both features.yaml and sources.yaml; copy the "
            f"missing one from the shipped catalogue ({shipped}) and edit it, or give "
            "another folder",
            code=Code.CATALOGUE_INCOMPLETE,
            file=str(folder),
        )


def _same_file(a: Path, b: Path) -> bool:
    """The same file, or files of the same bytes (then nothing is mixed)."""
    try:
        return a.resolve() == b.resolve() or a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def source_catalogue(catalogue_dir: Path | str | None = None) -> Catalogue:
    """The source catalogue of a command that reads no policies (see `find_catalogue`)."""
    return find_catalogue(catalogue_dir).load_sources()
