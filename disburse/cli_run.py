"""The batch's commands: `run`, `demo`, `bench`, `explain` and `report`.

Thin, like disburse/cli.py: parse options, call one `jobs` entry point, print its
result (`to_json()` with --json, else its text).  `register(main)` adds them to
the `disburse` command.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from disburse.options import (
    BESIDE_POLICIES,
    RUNS_CATALOGUE,
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


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder holding one <source>.parquet or <source>.csv per source.",
)
@as_of_option("The run's date (YYYY-MM-DD).")
@db_option
@store_option("staged and decision files")
@policies_option
@catalogue_option(BESIDE_POLICIES)
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
@engine_options
@json_option("Print the outcome as JSON (no progress).")
@quiet_option()
def run(
    data,
    as_of,
    db,
    store,
    policies_paths,
    catalogue_dir,
    wait,
    chunk_size,
    engine,
    scheduler,
    partitions,
    as_json,
    quiet,
):
    """The nightly batch: ingest, evaluate, allocate, post, summarise.

    Every policy valid on --as-of is evaluated over the source files in --data;
    stacking groups and budgets are applied (counting what earlier runs already
    granted); the ledger gets only the differences, so running it again with
    nothing changed posts nothing, and a corrected file posts adjustments.

    If a run was interrupted (killed, machine lost), the same command finishes
    it first: the ledger ends as if nothing had happened. Only one run at a time
    may hold a database; a second one exits with a message, or waits with --wait.
    """
    from disburse.progress import terminal_progress
    from jobs.run import run_nightly

    choice = engine_choice(engine, scheduler, partitions)
    with terminal_progress(quiet or as_json) as progress:
        outcome = run_nightly(
            data,
            as_of,
            Settings.resolve(db, store),
            policies=list(policies_paths) or None,
            catalogue_dir=catalogue_dir,
            wait=wait,
            chunk_size=chunk_size,
            evaluate_on=choice,
            progress=progress,
        )
    if as_json:
        _print_json(outcome.to_json())
    else:
        click.echo(outcome.to_text())


DEMO_AS_OF = dt.date(2026, 3, 15)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Folder for the demo's city (data/), database (disburse.db) and store (store/).",
)
@click.option("--enterprises", type=click.IntRange(min=10), default=20_000, show_default=True)
@click.option("--persons", type=click.IntRange(min=10), default=100_000, show_default=True)
@json_option("Print the run's outcome as JSON.")
@quiet_option()
def demo(out, enterprises, persons, as_json, quiet):
    """A synthetic city, a full nightly run into a SQLite file, and the finance day after it.

    Generates the city into OUT/data (once; an existing one is reused), runs
    the night as of 2026-03-15 into OUT/disburse.db with every shipped policy,
    and prints what was decided; then publishes the notice, exports the payment
    file (pain.001) of what is due, imports a simulated bank reply with some
    returns, pays the published policies once their notice closed, and prints
    what was paid and what is still owed (files in OUT/finance). Afterwards try,
    with --db sqlite:///OUT/disburse.db: `disburse runs`,
    `disburse ledger summary`, `disburse audit verify`, or `disburse run` again
    (it posts nothing: nothing changed).
    """
    from disburse.progress import terminal_progress
    from disburse.synth import generate
    from jobs.finance_day import finance_day
    from jobs.policies import load_policy_files
    from jobs.run import run_nightly
    from ledgers.db import open_engine
    from ledgers.keys import key_file, posting_key

    data = out / "data"
    if not (data / "manifest.json").is_file():
        if not quiet:
            click.echo(
                f"synthesising {enterprises:,} enterprises and {persons:,} persons into {data}",
                err=True,
            )
        generate(data, enterprises=enterprises, persons=persons, seed=1, errors=0.001)
    settings = Settings(db_url=f"sqlite:///{(out / 'disburse.db').resolve()}", store=out / "store")
    with terminal_progress(quiet or as_json) as progress:
        outcome = run_nightly(data, DEMO_AS_OF, settings, progress=progress)
        progress.log("the finance day: notice, payment file, the bank's reply")
        with open_engine(settings.db_url) as engine:
            key = posting_key(engine, key_file(settings.store))
            day = finance_day(
                engine, load_policy_files().policies, outcome.run_id, DEMO_AS_OF,
                out / "finance", key,
            )  # fmt: skip
    if as_json:
        _print_json({**outcome.to_json(), "finance_day": day.to_json()})
        return
    click.echo(outcome.to_text())
    click.echo("")
    click.echo(day.to_text())
    click.echo(
        f"\nledger: {settings.db_url}  (try: disburse audit verify --db {settings.db_url} "
        f"--store {settings.store})"
    )


@click.command()
@click.option("--enterprises", type=click.IntRange(min=10), required=True)
@click.option("--persons", type=click.IntRange(min=10), required=True)
@click.option(
    "--months", type=click.IntRange(min=12), default=12, show_default=True,
    help="Months of tax and social security per enterprise.",
)  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--db",
    help="A PostgreSQL server URL: the benchmark creates a fresh database on it and drops it "
    "afterwards. Default: a fresh SQLite file.",
)
@click.option(
    "--rounds", type=click.IntRange(min=1), default=5, show_default=True,
    help="Rounds of the evaluation comparison, after a discarded warm-up; the engines run "
    "in turn within each round and the report gives every round and the median ratio.",
)  # fmt: skip
@click.option(
    "--no-baselines",
    is_flag=True,
    help="Skip the comparison with the hand-written baselines (the pipeline alone): at 1M "
    "enterprises and 10M persons the hand-written Polars peaks at 17 GB and DuckDB at 19 GB "
    "of memory, the compiled evaluation at 6.6 GB, so larger cities need this flag.",
)
@click.option(
    "--payments",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also time a pain.001 of this many payments written and validated, and the bank's "
    "pain.002 reply to it read and validated (rows/s, peak memory); 0: not.",
)
@click.option(
    "--finance-day",
    is_flag=True,
    help="After the first night, also time the finance day through the ledger: publish, "
    "pay export of everything due (instructions recorded and posted, the pain.001 written "
    "and validated), and pay import of a simulated bank reply (rows/s, peak memory growth).",
)
@click.option(
    "--events",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also decide this many entities of each kind with every active policy through "
    "durable-rules (the event path's rulesets) and through the reference interpreter, in "
    "turn each round: decisions per second, and whether all agree; then serve this many "
    "events of a synthetic day end to end (inbox to ledger: events per second) and offer "
    "1,000 events/s for 5 s while serving (latency from insert to posting, p50 and p99); "
    "0: not.",
)
@click.option(
    "--events-batch",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="The most events the timed serve takes in one batch (one commit of outcomes and "
    "postings), as `disburse events serve --batch`: larger batches serve more events per "
    "second, smaller ones sooner.",
)
@engine_options
@json_option("Print the report as JSON.")
@quiet_option()
def bench(
    enterprises,
    persons,
    months,
    seed,
    db,
    rounds,
    no_baselines,
    payments,
    finance_day,
    events,
    events_batch,
    engine,
    scheduler,
    partitions,
    as_json,
    quiet,
):
    """Time the whole nightly pipeline on a synthetic population.

    The population is cached by its parameters and the generator's code
    ($DISBURSE_BENCH_CACHE, default <tmp>/disburse-bench-cache). Two runs against a fresh database: the first
    (everything new) and a second with nothing changed. Reports per-phase
    seconds, rows per second and peak memory, and baseline_ratio / duckdb_ratio:
    the compiled policy evaluation's time over that of the same policies written
    by hand in Polars and in DuckDB SQL, timed in this process in interleaved
    rounds after a warm-up (every round, the median ratio and its spread). The
    policies measured are the bench's own fixed set (disburse/bench/policies),
    not the working folder's; the report names the machine and its load.
    """
    from disburse.bench import BenchRequest
    from disburse.bench import bench as run_bench
    from disburse.progress import RichProgress, choose
    from jobs.catalogue import load_source_catalogue

    cat = load_source_catalogue()
    progress = choose(quiet or as_json)
    try:
        report = run_bench(
            BenchRequest(
                enterprises,
                persons,
                months,
                seed,
                db,
                rounds,
                finance=finance_day,
                events=events,
                events_batch=events_batch,
                baselines=not no_baselines,
                engine=engine_choice(engine, scheduler, partitions),
            ),
            catalogue=cat,
            progress=progress,
        )
    finally:
        if isinstance(progress, RichProgress):
            progress.close()
    files = _bench_payments(payments) if payments else None
    if as_json:
        data = report.to_json()
        if files is not None:
            data["payments"] = files
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    click.echo(report.to_text(), nl=False)
    if files is not None:
        for what, r in files.items():
            click.echo(
                f"{what}: {r['n']:,} payments in {r['seconds']} s ({r['rows_per_second']:,} rows/s), "
                f"peak memory +{r['peak_rss_growth_mb']} MiB, file {r['file_mb']} MiB"
            )


def _bench_payments(n: int) -> dict[str, dict[str, float | int | str]]:
    """The payment files at n payments (`jobs.bankfiles.bench`), in a scratch folder."""
    import tempfile

    from jobs.bankfiles.bench import bench_pain001, bench_pain002

    with tempfile.TemporaryDirectory(prefix="disburse-bench-pay-") as folder:
        return {
            "pain.001 written and validated": bench_pain001(n, Path(folder)),
            "pain.002 read and validated": bench_pain002(n, Path(folder)),
        }


@click.command()
@click.option("--policy", "policy_id", required=True, help="The policy id.")
@click.option(
    "--entity", required=True, help="The enterprise's credit code or the person's identity number."
)
@click.option(
    "--run", "run_id", type=int, help="The run (default: the latest that evaluated the policy)."
)
@click.option(
    "--period",
    help="A past benefit period the run paid as back-pay (2025); default: the run's own.",
)
@db_option
@catalogue_option(RUNS_CATALOGUE)
@unmask_option("Show identity numbers in full.")
@json_option("Print the explanation as JSON.")
def explain(policy_id, entity, run_id, period, db, catalogue_dir, unmask, as_json):
    """Why an entity was paid what it was paid under a policy, or why not.

    Answers from what the run recorded, without re-running anything: the
    policy's title, legal basis and file hash; the source snapshots' hashes;
    the feature values used; every condition in plain words with the values it
    compared and whether it passed (for a failed one, by how much); the
    related members of every aggregate that decided (the first 20: which
    counted, and for the others the part of the condition that failed, read
    from the sources the run staged); the amount's steps; the stacking and
    budget decision; and the ledger's transfers for the key. A past benefit
    period the run paid as back-pay is explained with --period, as of that
    period's last day. Personal data is masked unless --unmask is given.
    """
    from jobs.explain import explain_entity

    out = explain_entity(
        Settings.resolve(db),
        policy_id,
        entity,
        run_id=run_id,
        unmask=unmask,
        catalogue_dir=catalogue_dir,
        period=period,
    )
    if as_json:
        _print_json(out.to_json())
    else:
        click.echo(out.to_text())


@click.command()
@db_option
@click.option("--run", "run_id", type=int, required=True, help="The nightly run to report.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The HTML file to write (self-contained: open it anywhere, no network needed).",
)
@catalogue_option(RUNS_CATALOGUE)
@json_option("Also print the report's figures as JSON.")
def report(db, run_id, out, catalogue_dir, as_json):
    """One self-contained HTML page of a run: totals, budgets, who is paid, reasons, timings.

    Totals per policy and benefit period (the ledger after the run), budget
    use, the distribution of payments by region and by size class or age band,
    the top reasons for ineligibility, quarantined rows by reason, and the
    run's phase timings, with inline SVG charts.
    """
    from jobs.html_report import write_report

    figures = write_report(Settings.resolve(db), run_id, out, catalogue_dir=catalogue_dir)
    if as_json:
        _print_json(figures.to_json())
    else:
        click.echo(f"wrote {out} (run {run_id} as of {figures.as_of.isoformat()})")


@click.command("runs")
@db_option
@json_option("Print the runs as JSON.")
def runs_list(db, as_json):
    """Every run of the ledger, one line each, and where the money stands.

    Nightly runs with their entitlements, amount, transfers and public notice
    (published on, open until); payment exports with their file; bank replies
    with what they settled and returned; objection reversals. Below: the money
    owed and not yet instructed, at the bank, paid, and owed back.
    """
    from jobs.runlist import list_runs
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        listed = list_runs(engine)
    if as_json:
        _print_json(listed.to_json())
    else:
        click.echo(listed.to_text())


def register(main: click.Group) -> None:
    """Attach the batch's commands to the `disburse` group."""
    main.add_command(run)
    main.add_command(explain)
    main.add_command(report)
    main.add_command(runs_list)
    main.add_command(demo)
    main.add_command(bench)
