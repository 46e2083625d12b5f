"""The batch's commands: `run`, `demo` and `bench`.

Thin, like disburse/cli.py: parse options, call `jobs`, print.  `register(main)`
adds them to the `disburse` command.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from disburse.settings import Settings

_DB_HELP = "Database URL (default: $DISBURSE_DB, else ./disburse.db)."


def _date(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date written YYYY-MM-DD", param=param
        ) from None


def execute_run(
    data: Path,
    as_of: dt.date,
    settings: Settings,
    policies_paths: list[Path] | None,
    *,
    wait: bool = False,
    quiet: bool = False,
    chunk_size: int = 100_000,
):
    """Load the catalogue and policies, open the database, run the night; the outcome."""
    from disburse.progress import RichProgress, choose
    from jobs.catalogue import load_catalogue
    from jobs.policies import features_path, load_policies
    from jobs.run import RunRequest, run_nightly
    from ledgers.db import init_schema, make_engine

    cat = load_catalogue()
    pset = load_policies(cat, policies_paths)
    engine = make_engine(settings.db_url)
    progress = choose(quiet)
    try:
        init_schema(engine)
        request = RunRequest(
            data_dir=data,
            as_of=as_of,
            store=settings.store,
            features_file=features_path(policies_paths),
            wait=wait,
            chunk_size=chunk_size,
        )
        return run_nightly(engine, request, catalogue=cat, pset=pset, progress=progress)
    finally:
        if isinstance(progress, RichProgress):
            progress.close()
        engine.dispose()


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder holding one <source>.parquet or <source>.csv per source.",
)
@click.option(
    "--as-of", "as_of", callback=_date, required=True, help="The run's date (YYYY-MM-DD)."
)
@click.option("--db", help=_DB_HELP)
@click.option(
    "--store",
    help="Folder for staged and decision files (default: $DISBURSE_STORE, else ./disburse-store).",
)
@click.option(
    "--policies",
    "policies_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Policy files or folders (default: the shipped policies).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="If another run holds the database, wait for it instead of exiting.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Transfers per database transaction when posting.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (no progress).")
@click.option("--quiet", is_flag=True, help="No progress.")
def run(data, as_of, db, store, policies_paths, wait, chunk_size, as_json, quiet):
    """The nightly batch: ingest, evaluate, allocate, post, summarise.

    Every policy valid on --as-of is evaluated over the source files in --data;
    stacking groups and budgets are applied (counting what earlier runs already
    granted); the ledger gets only the differences, so running it again with
    nothing changed posts nothing, and a corrected file posts adjustments.

    If a run was interrupted (killed, machine lost), the same command finishes
    it first: the ledger ends as if nothing had happened. Only one run at a time
    may hold a database; a second one exits with a message, or waits with --wait.
    """
    from jobs.report import render_run

    settings = Settings.resolve(db, store)
    outcome = execute_run(
        data,
        as_of,
        settings,
        list(policies_paths) or None,
        wait=wait,
        quiet=quiet or as_json,
        chunk_size=chunk_size,
    )
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(render_run(outcome.to_json()))


def register(main: click.Group) -> None:
    """Attach the batch's commands to the `disburse` group."""
    main.add_command(run)
