"""Options shared by the commands: one definition each, the help worded per command where it
says what the option does there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = "Database URL (default: $DISBURSE_DB, else ./disburse.db)."

# Where the catalogues are looked for when --catalogue is not given (jobs/catalogue_dir.py).
BESIDE_POLICIES = (
    "features.yaml from the first policy folder given that holds one, else the shipped "
    "one, and the shipped sources.yaml. A policy folder holding a features.yaml of its own "
    "is refused beside --catalogue (E022)"
)
SHIPPED = "the shipped ones"
# explain and report read a run's archived features.yaml, but today's sources.yaml.
RUNS_CATALOGUE = "the shipped ones. Give the catalogue the run read"

# --policies, as `run` and `simulate` take it.
policies_option = click.option(
    "--policies",
    "policies_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Policy files or folders (default: the shipped policies).",
)


def parse_date(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    """A click callback: YYYY-MM-DD as a date, or a usage error naming the option."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date written YYYY-MM-DD", param=param
        ) from None


def db_option(fn: F) -> F:
    """--db: the database URL (resolved by `jobs.settings.Settings`)."""
    return click.option("--db", help=DB_HELP)(fn)


def catalogue_option(default: str = SHIPPED) -> Callable[[F], F]:
    """--catalogue DIR: the folder holding features.yaml and sources.yaml (resolved by
    `jobs.catalogue_dir.find_catalogue`); `default` says where they are looked for without it."""
    return click.option(
        "--catalogue",
        "catalogue_dir",
        metavar="DIR",
        type=click.Path(path_type=Path),
        help="Catalogue folder holding features.yaml and sources.yaml, e.g. the city's. "
        f"Default: $DISBURSE_CATALOGUE, else {default}.",
    )


def store_option(holds: str) -> Callable[[F], F]:
    """--store: the folder for what the command keeps (`holds`: "staged files", ...)."""
    return click.option(
        "--store",
        help=f"Folder for {holds} (default: $DISBURSE_STORE, else ./disburse-store).",
    )


def as_of_option(text: str, *, default: str | None = None) -> Callable[[F], F]:
    """--as-of as a date: required, unless it has a `default` (shown in the help)."""
    return click.option(
        "--as-of",
        "as_of",
        callback=parse_date,
        required=default is None,
        default=default,
        show_default=default is not None,
        help=text,
    )


def json_option(text: str) -> Callable[[F], F]:
    """--json: print the result as JSON instead of text (`text` says what is printed)."""
    return click.option("--json", "as_json", is_flag=True, help=text)


def unmask_option(text: str) -> Callable[[F], F]:
    """--unmask: show personal identifiers in full (`text` says which)."""
    return click.option("--unmask", is_flag=True, help=text)


def quiet_option(text: str = "No progress.") -> Callable[[F], F]:
    """--quiet: no progress on stderr."""
    return click.option("--quiet", is_flag=True, help=text)


def engine_options(fn: F) -> F:
    """--engine, --scheduler, --partitions: what computes the features and evaluates the
    policies (`jobs.engines`); `engine_choice` makes them one value."""
    fn = click.option(
        "--partitions",
        type=click.IntRange(min=1),
        help="--engine dask or spark: ranges of the entity key evaluated apart (default: "
        "twice the cluster's cores).",
    )(fn)
    fn = click.option(
        "--scheduler",
        metavar="ADDRESS",
        help="--engine dask: the Dask scheduler (tcp://host:8786); --engine spark: the Spark "
        "master (spark://host:7077). Every worker must have disburse installed and see "
        "--store. Default: this machine's cores (a local Dask cluster, or local[*]).",
    )(fn)
    return click.option(
        "--engine",
        type=click.Choice(["polars", "dask", "spark"]),
        default="polars",
        show_default=True,
        help="What computes the features and evaluates the policies: polars in this "
        "process, or per range of the entity key on a Dask or Spark cluster (the same "
        "decisions and ledger). Ingest, allocation and posting stay in this process.",
    )(fn)


def engine_choice(engine: str, scheduler: str | None, partitions: int | None) -> Any:
    """The `jobs.engines.EngineChoice` of `engine_options`; --scheduler and --partitions
    only with --engine dask or spark."""
    from jobs.engines import EngineChoice

    if engine == "polars" and (scheduler is not None or partitions is not None):
        raise click.UsageError("--scheduler and --partitions apply to --engine dask or spark")
    return EngineChoice(engine, scheduler, partitions)
