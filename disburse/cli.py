"""The `disburse` command line: parses options, calls one library function, prints.

No logic lives here.  A user error (bad input, unreachable database) is shown
as its message with exit status 1 and no traceback, unless --debug is given.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from disburse import __version__
from disburse.errors import exit_code, render, user_error
from disburse.options import (
    BESIDE_POLICIES,
    as_of_option,
    catalogue_option,
    db_option,
    engine_choice,
    engine_options,
    json_option,
    policies_option,
    quiet_option,
    store_option,
    unmask_option,
)
from jobs.settings import Settings


class _Group(click.Group):
    """A group that turns user errors, and faults from outside (a login the database
    refuses, a lost connection, a full disk), into a clean message and a non-zero exit
    status (1, or an interrupted run's 130 / 143); --debug shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = user_error(exc)
            if error is None or ctx.find_root().params.get("debug"):
                raise
            shown = click.ClickException(render(error))
            code = exit_code(error)
            if code == shown.exit_code:
                raise shown from None
            shown.show()  # then its own status: an interrupted run's 130 or 143
            ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="disburse")
@click.option("--debug", is_flag=True, help="Show the full traceback of any error.")
def main(debug: bool) -> None:
    """Pay subsidies to every enterprise and person entitled to them, with no application.

    Policy officers write one rule file per policy; the nightly batch joins
    registry, tax and social-security data, evaluates every policy and writes an
    idempotent, double-entry payout ledger.

    The database is --db, else $DISBURSE_DB, else ./disburse.db (SQLite).
    PostgreSQL: postgresql+psycopg://user@host:5432/dbname.

    The catalogue (features.yaml and sources.yaml) is the folder --catalogue DIR,
    else $DISBURSE_CATALOGUE, else a policy folder's own features.yaml and the
    shipped sources.yaml, else the shipped ones (docs/policies.md, "The catalogue").
    """


@main.command()
@click.option(
    "--enterprises", type=click.IntRange(min=1), required=True, help="Number of enterprises."
)
@click.option("--persons", type=click.IntRange(min=1), required=True, help="Number of residents.")
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Random seed: same seed, same bytes."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the Parquet files and manifest.json into.",
)
@click.option(
    "--errors",
    type=click.FloatRange(0, 0.5),
    default=0.0,
    show_default=True,
    help="Fraction of rows to corrupt, with every kind of error ingest quarantines.",
)
@as_of_option("The snapshot date: monthly data ends the month before it.", default="2026-01-01")
@click.option(
    "--months",
    type=click.IntRange(min=12),
    default=24,
    show_default=True,
    help="Months of tax and social-security history (at least a year), ending before --as-of.",
)
@catalogue_option()
@quiet_option("No progress lines.")
def synth(enterprises, persons, seed, out, errors, as_of, months, catalogue_dir, quiet):
    """Write a synthetic city's source files (Parquet), one per catalogue source.

    Realistic shapes (size classes skewed to micro, seasonality, layoffs and
    graduate hires, an age pyramid past 100, about a third of working-age
    residents registered outside the city, ~1% credit-listed), every
    identifier with a valid check character. With --errors, bad rows of every
    kind are injected and listed in manifest.json.
    """
    from disburse.progress import terminal_progress
    from disburse.synth import generate
    from jobs.catalogue_dir import source_catalogue

    catalogue = source_catalogue(catalogue_dir)
    started = time.perf_counter()
    with terminal_progress(quiet) as progress:
        manifest = generate(
            out,
            catalogue=catalogue,
            enterprises=enterprises,
            persons=persons,
            seed=seed,
            errors=errors,
            as_of=as_of,
            months=months,
            progress=progress.log,
        )
    seconds = time.perf_counter() - started
    total = sum(manifest["rows"].values())
    for name, n in manifest["rows"].items():
        click.echo(f"{name:<26}{n:>12,} rows")
    click.echo(f"{'total':<26}{total:>12,} rows in {seconds:.1f} s ({total / seconds:,.0f} rows/s)")
    if manifest["injected"]:
        click.echo(f"injected {len(manifest['injected'])} bad rows; see {out / 'manifest.json'}")


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder holding one <source>.parquet or <source>.csv per source.",
)
@as_of_option("The run's date (YYYY-MM-DD).")
@db_option
@store_option("staged files")
@catalogue_option()
@json_option("Print the result as JSON.")
@quiet_option("No progress lines.")
def ingest(data, as_of, db, store, catalogue_dir, as_json, quiet):
    """Validate every source file and keep the accepted rows for the run.

    Rows that break a catalogue rule go to the quarantine table with the rule;
    per source, rows = accepted + quarantined. A missing file or column, or a
    wrong type, stops before anything is written.

    Sources are validated in memory, two side by side while they hold at most
    $DISBURSE_INGEST_MEMORY_ROWS rows between them (default 40 million); a
    larger source is streamed through a scratch file, alone.
    """
    from disburse.progress import terminal_progress
    from jobs.catalogue_dir import source_catalogue
    from jobs.ingest import ingest as run_ingest
    from jobs.ingest import quarantine_summary
    from ledgers.db import init_schema, make_engine

    settings = Settings.resolve(db, store)
    cat = source_catalogue(catalogue_dir)
    engine = make_engine(settings.db_url)
    init_schema(engine)
    with terminal_progress(quiet or as_json) as progress:
        result = run_ingest(
            data,
            as_of,
            engine=engine,
            store=settings.store,
            catalogue=cat,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(f"run {result.run_id}: ingested {data} as of {as_of}")
        click.echo(quarantine_summary(result))


@main.command()
@click.option(
    "--markdown", is_flag=True, help="Print the delivery documentation (docs/sources.md)."
)
@catalogue_option()
def sources(markdown, catalogue_dir):
    """List the source files the engine reads, with their columns and types."""
    from jobs.catalogue_dir import source_catalogue
    from jobs.docs import catalogue_markdown

    cat = source_catalogue(catalogue_dir)
    if markdown:
        click.echo(catalogue_markdown(cat), nl=False)
        return
    for name in cat.ordered():
        source = cat.sources[name]
        click.echo(f"{name}  (key: {', '.join(source.key)}; from {source.bureau})")
        for cname, col in source.columns.items():
            flag = "required" if col.required else "optional"
            click.echo(f"    {cname:<26}{col.type:<8}{flag}")


@main.command()
@click.option("--run", "run_id", type=int, help="The ingest run (default: the latest).")
@click.option("--source", help="Only this source.")
@click.option("--rule", help="Only rows that failed this rule.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@db_option
@catalogue_option()
@unmask_option("Show identity numbers, accounts and names in full.")
@json_option("Print rows as JSON lines.")
def quarantine(run_id, source, rule, limit, db, catalogue_dir, unmask, as_json):
    """Show quarantined rows: source, row number, the rule they failed, the row itself.

    Personal data is masked unless --unmask is given.
    """
    from jobs.catalogue_dir import source_catalogue
    from jobs.quarantine import quarantined_rows
    from ledgers.db import make_engine

    settings = Settings.resolve(db)
    catalogue = source_catalogue(catalogue_dir)
    engine = make_engine(settings.db_url)
    rows = quarantined_rows(
        engine,
        catalogue,
        run_id=run_id,
        source=source,
        rule=rule,
        limit=limit,
        unmask=unmask,
    )
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))
        else:
            click.echo(
                f"run {row['run_id']} {row['source']} row {row['row_no']}: {row['rule']} "
                f"in {row['column']} = {row['value']!r}\n    {json.dumps(row['row'], ensure_ascii=False)}"
            )


@main.group()
def policy() -> None:
    """Write, check and test policy files."""


@policy.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@catalogue_option(BESIDE_POLICIES)
@click.option("--verbose", "-v", is_flag=True, help="List passing cases too.")
def policy_check(paths, catalogue_dir, verbose):
    """Check policy files and run their test cases (default: the shipped policies).

    Every problem in every file is reported as file:line:col: CODE message, with
    a fix: line. A failing case shows the given values, the expected and actual
    results and the condition that decided. Exit status 0 only if all pass.

    To check your own folder against a catalogue kept elsewhere (the city's):

    \b
        disburse policy check my_policies/ --catalogue /srv/city/catalogue
    """
    from jobs.policies import check_policies

    report = check_policies(list(paths), catalogue_dir)
    click.echo(report.to_text(verbose=verbose))
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.option(
    "--policies",
    "policies_path",
    type=click.Path(exists=True, path_type=Path),
    help="Policy folder whose own features.yaml to list (default: the shipped one).",
)
@catalogue_option(BESIDE_POLICIES)
@json_option("Print the catalogue as JSON.")
def features(policies_path, catalogue_dir, as_json):
    """List the features policies may read: entity, name, type, where it comes from."""
    from jobs.policies import list_features

    listing = list_features([policies_path] if policies_path else None, catalogue_dir)
    if as_json:
        click.echo(json.dumps(listing.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(listing.to_text())


@main.command()
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder of source files (as for ingest).",
)
@as_of_option("The date to simulate (YYYY-MM-DD).")
@click.option("--policy", "policy_id", help="Only this policy.")
@policies_option
@catalogue_option(BESIDE_POLICIES)
@click.option(
    "--against",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An older version of the policy: report who gains, who loses, how much.",
)
@unmask_option("Show identifiers in full.")
@engine_options
@json_option('Print {"policies": {ID: {...}}} as JSON.')
@quiet_option("No progress lines.")
def simulate(
    data,
    as_of,
    policy_id,
    policies_paths,
    catalogue_dir,
    against,
    unmask,
    engine,
    scheduler,
    partitions,
    as_json,
    quiet,
):
    """Reach and cost of each policy before launch; writes nothing to any ledger.

    Per policy: eligible count, total amount, budget use, distribution by region
    and by size class or age band, the top reasons for ineligibility; with
    --against, the difference between two versions of a policy.
    """
    from disburse.progress import terminal_progress
    from jobs.simulate import simulate as run_simulation

    with terminal_progress(quiet or as_json) as progress:
        report = run_simulation(
            data,
            as_of,
            policies=list(policies_paths) or None,
            catalogue_dir=catalogue_dir,
            only=policy_id,
            against=against,
            unmask=unmask,
            evaluate_on=engine_choice(engine, scheduler, partitions),
            progress=progress,
        )
    click.echo(
        json.dumps(report.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
        if as_json
        else report.to_text()
    )


from disburse import cli_events, cli_ledger, cli_pay, cli_run  # noqa: E402 - these attach to the group above

cli_ledger.register(main)
cli_run.register(main)
cli_pay.register(main)
cli_events.register(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
