"""Events ("second cash"): `events add`, `events serve`, `events status`.

Thin, like the other command modules: parse options, call one function of `jobs`,
print.  `register(main)` attaches them to the `disburse` group.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from disburse.options import (
    BESIDE_POLICIES,
    as_of_option,
    catalogue_option,
    db_option,
    json_option,
    policies_option,
    quiet_option,
    store_option,
)
from jobs.settings import Settings


@click.group()
def events() -> None:
    """Decide an entity as its data arrives, with the nightly run's rules and keys.

    Upstream systems insert events (a delivered row of a source: a month of
    insurance, an employment spell, a birth, a registration) into the ledger
    database's inbox, or `events add` does; `events serve` takes them in order,
    validates them as a delivery is validated (a bad one is quarantined with its
    reason), decides the entities they affect with the policies that say
    `events: true`, and posts under the keys the nightly run uses.
    """


@events.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", help="For a CSV or Parquet file: the source its rows are of.")
@click.option(
    "--op",
    type=click.Choice(["upsert", "remove"]),
    default="upsert",
    show_default=True,
    help="For a CSV or Parquet file without an op column: what its rows do.",
)
@db_option
@catalogue_option(BESIDE_POLICIES)
@json_option("Print the ids added as JSON.")
def events_add(file, source, op, db, catalogue_dir, as_json):
    """Put the events of FILE into the inbox (.jsonl, or one source's .csv/.parquet).

    A JSON line is {"source": "employment", "op": "upsert", "row": {...}}. The
    file is read whole first: if any line is not an event, nothing is added.
    """
    from jobs.catalogue_dir import find_catalogue
    from jobs.events.files import read_events
    from ledgers import inbox
    from ledgers.db import open_engine

    catalogue = find_catalogue(catalogue_dir, ()).load_sources()
    rows = read_events(file, catalogue, source, op)
    settings = Settings.resolve(db, None)
    with open_engine(settings.db_url) as engine, engine.begin() as conn:
        ids = inbox.add_events(conn, rows)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "added": len(ids),
                    "first": ids[0] if ids else None,
                    "last": ids[-1] if ids else None,
                }
            )
        )
    elif ids:
        click.echo(f"{len(ids):,} events added to the inbox: ids {ids[0]} to {ids[-1]}")
    else:
        click.echo("no events in the file: nothing added")


@events.command("serve")
@as_of_option("The day events are decided as of (default: today).", default=None)
@db_option
@store_option("the ledger key and the nightly runs' staged files")
@policies_option
@catalogue_option(BESIDE_POLICIES)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Events decided and posted together (one posting per batch).",
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Stop when the inbox is empty, instead of waiting for more.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.001),
    default=0.2,
    show_default=True,
    help="Seconds between looks at an empty inbox on SQLite (PostgreSQL wakes on each "
    "insert and looks again at most this often while idle).",
)
@json_option("Print the totals as JSON.")
@quiet_option()
def events_serve(
    as_of, db, store, policies_paths, catalogue_dir, batch, until_idle, poll, as_json, quiet
):
    """Take the inbox's events in order: validate, decide, post, record.

    Decides over the newest completed nightly run's staged sources with every
    event since laid over them. Waits for the nightly run's lock (never posts at
    the same time as a run). Killed at any point, the next serve finishes the
    job: an event's outcome is recorded after its posting, and posting is
    idempotent by key. On PostgreSQL it wakes on each insert (LISTEN/NOTIFY); on
    SQLite it polls.
    """
    from disburse.progress import terminal_progress
    from jobs.events.serve import EventServer
    from jobs.policies import load_policy_files
    from ledgers.db import open_engine
    from ledgers.keys import key_file, posting_key

    settings = Settings.resolve(db, store)
    loaded = load_policy_files(list(policies_paths) or None, catalogue_dir)
    with terminal_progress(quiet or as_json) as progress, open_engine(settings.db_url) as engine:
        server = EventServer(
            engine,
            store=settings.store,
            catalogue=loaded.sources,
            pset=loaded.policies,
            key=posting_key(engine, key_file(settings.store), progress.log),
            as_of=as_of,
            batch=batch,
            progress=progress,
        )

        def said(b):
            progress.log(
                f"{b.events} events: {b.decided} decided, {b.quarantined} quarantined, "
                f"{b.transfers} transfers ({b.seconds * 1000:.0f} ms)"
            )

        try:
            totals = server.serve(until_idle=until_idle, poll_seconds=poll, on_batch=said)
        except KeyboardInterrupt:
            totals = None
    if totals is None:
        return
    if as_json:
        click.echo(json.dumps(totals.to_json(), sort_keys=True))
    else:
        click.echo(
            f"{totals.events:,} events: {totals.decided:,} decided, "
            f"{totals.quarantined:,} quarantined; {totals.keys:,} keys posted, "
            f"{totals.transfers:,} transfers"
            + (f" (events run {totals.run_id})" if totals.run_id is not None else "")
        )


@events.command("status")
@db_option
@json_option("Print the counts as JSON.")
def events_status(db, as_json):
    """Events in the inbox: pending, decided, quarantined."""
    from ledgers import inbox
    from ledgers.db import open_engine

    settings = Settings.resolve(db, None)
    with open_engine(settings.db_url) as engine, engine.connect() as conn:
        counts = inbox.counts(conn)
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
    else:
        click.echo(", ".join(f"{v:,} {k}" for k, v in counts.items()))


def register(main: click.Group) -> None:
    """Attach the event commands to the `disburse` group."""
    main.add_command(events)
