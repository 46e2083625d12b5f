"""The ledger's commands: `db init`, `ledger summary|entries|balances`, `audit verify`.

Thin, like disburse/cli.py: parse options, call one function of `ledgers`, print.
`register(main)` adds the three groups to the `disburse` command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from disburse.options import db_option, json_option, store_option, unmask_option
from jobs.settings import Settings

# `audit verify`'s exit status when nothing was found wrong but a check could not be
# made (no ledger key): not 0, so that a script cannot take it for a pass.
EXIT_INCOMPLETE = 3


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@click.group()
def db() -> None:
    """Create and upgrade the database: schema migrations and, on PostgreSQL, the roles."""


@db.command("init")
@db_option
@click.option(
    "--role-prefix",
    default="disburse",
    show_default=True,
    help="PostgreSQL: the roles are <prefix>_owner, _batch, _auditor and _auditor_unmasked.",
)
@json_option("Print the result as JSON.")
def db_init(db, role_prefix, as_json):
    """Create or upgrade the schema (safe to repeat); on PostgreSQL, the roles.

    Run it as a superuser (or a user with CREATEROLE) when installing and after
    every upgrade. On PostgreSQL it creates four NOLOGIN roles, to be granted to
    login roles (GRANT disburse_batch TO nightly): disburse_owner owns the
    tables, views and triggers (only it may alter them); disburse_batch may
    INSERT and SELECT the ledger, never UPDATE, DELETE or TRUNCATE it;
    disburse_auditor may read the audit_* views, identity numbers masked, and
    nothing else; disburse_auditor_unmasked may also read the *_unmasked views
    and the ledger's tables (to run `audit verify` and the `ledger` commands).
    """
    from ledgers.db import Roles, open_engine, setup_database

    with open_engine(Settings.resolve(db).db_url) as engine:
        report = setup_database(engine, roles=Roles.named(role_prefix))
    if as_json:
        click.echo(_json(report.to_json()), nl=False)
        return
    click.echo(f"schema at revision {report.revision} on {report.url}")
    roles = report.roles
    if roles is None:
        click.echo(f"read-only views for auditors: {', '.join(report.views)}")
        click.echo(f"the same with identity numbers whole: {', '.join(report.unmasked_views)}")
        return
    click.echo(f"owner role {roles.owner} owns the tables, views and triggers")
    click.echo(f"batch role {roles.batch} may insert into and read the ledger, nothing more")
    click.echo(f"auditor role {roles.auditor} may read: {', '.join(report.views)}")
    click.echo(
        f"unmasked reader role {roles.unmasked} may also read: {', '.join(report.unmasked_views)}"
    )


@click.group()
def ledger() -> None:
    """Read the payout ledger: totals per policy, entries, account balances, counted members."""


@ledger.command("summary")
@db_option
@json_option("Print the summary as JSON.")
def ledger_summary(db, as_json):
    """Per policy and benefit period: keys entitled now, amount, adjustments.

    The same ledger always prints the same bytes (no timestamps, fixed order),
    so two summaries can be compared with diff or sha256sum.
    """
    from ledgers.audit import summary
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        result = summary(engine)
    click.echo(_json(result.to_json()) if as_json else result.to_text(), nl=False)


@ledger.command("entries")
@db_option
@click.option("--policy", help="Only this policy id.")
@click.option("--entity", help="Only this entity (credit code or identity number, in full).")
@click.option("--run", "run_id", type=int, help="Only transfers posted by this run.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many entries, in id order (0: all).",
)
@json_option("One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@unmask_option("Show resident identity numbers in full.")
def ledger_entries(db, policy, entity, run_id, limit, as_json, as_csv, unmask):
    """List transfers (grants, adjustments, reversals, clawbacks, payments) in id order.

    Each carries its run, policy, benefit period, entity, payee, accounts,
    amount, the policy file's sha256 and the decision that made it. Resident
    identity numbers are masked unless --unmask is given; credit codes are not
    personal data and print whole.
    """
    from ledgers.audit import entries, entries_csv, entries_json_lines, entries_text
    from ledgers.db import open_engine

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    with open_engine(Settings.resolve(db).db_url) as engine:
        frame = entries(
            engine, policy=policy, entity=entity, run=run_id, limit=limit or None, unmask=unmask
        )
    if as_json:
        click.echo(entries_json_lines(frame), nl=False)
    elif as_csv:
        click.echo(entries_csv(frame), nl=False)
    else:
        click.echo(entries_text(frame), nl=False)


@ledger.command("balances")
@db_option
@click.option(
    "--kind",
    type=click.Choice(["budget", "payable", "receivable", "clearing", "paid"]),
    help="Only accounts of this kind.",
)
@json_option("Print the balances as JSON.")
@unmask_option("Show resident identity numbers in full.")
def ledger_balances(db, kind, as_json, unmask):
    """Every account's debits, credits and balance (credits minus debits).

    budget:<policy>:<period> goes negative as it pays; payable:<payee> is what
    is owed and never below zero; receivable:<payee> is what a payee owes back
    after a clawback; clearing:bank is what was instructed to the bank and not yet
    settled; paid:bank is what the bank paid out. The total is 0.
    """
    from ledgers.audit import balances
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        result = balances(engine, kind=kind, unmask=unmask)
    click.echo(_json(result.to_json()) if as_json else result.to_text(), nl=False)


@ledger.command("counted")
@db_option
@click.option("--policy", help="Only members counted by this policy's entitlements.")
@click.option("--member", help="Only this member (identity number, in full).")
@click.option("--entity", help="Only members counted for this entity (in full).")
@json_option("Print the rows as JSON.")
@unmask_option("Show resident identity numbers in full.")
def ledger_counted(db, policy, member, entity, as_json, unmask):
    """Which entitlement counted which related member (`once_per`, counted once).

    A policy that counts a related person once (a young person hired counts for one
    enterprise's grant) records, with its grants, who each entitlement counted: one
    row per member and scope, ever, kept even if the grant is later reversed. Answers
    "which enterprise was paid for this person?" Identity numbers are masked unless
    --unmask is given; give --member and --entity in full.
    """
    from ledgers.counted import counted_members, counted_text
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        frame = counted_members(engine, policy=policy, member=member, entity=entity, unmask=unmask)
    if as_json:
        click.echo(_json(frame.to_dicts()), nl=False)
    else:
        click.echo(counted_text(frame), nl=False)


@click.group()
def audit() -> None:
    """Check the ledger the way an auditor does."""


@audit.command("verify")
@db_option
@store_option("the runs' archives and, unless $DISBURSE_LEDGER_KEY_FILE says otherwise, ledger.key")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ledger key (default: $DISBURSE_LEDGER_KEY_FILE, else <store>/ledger.key).",
)
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A run's checkpoint.json (filed away from the ledger): fail unless the ledger extends it.",
)
@click.option(
    "--head",
    "expect_head",
    help="A head hash recorded earlier: fail unless the chain still contains it.",
)
@json_option("Print the result as JSON.")
@click.pass_context
def audit_verify(ctx, db, store, key_file, checkpoint_files, expect_head, as_json):
    """Recompute the hash chain, the personal fields' digests, the balances and the
    entitlement keys from the ledger.

    Exit status 0 only if every check was made and holds; 1 if one failed,
    naming the first bad entry of each failed check (an edit made behind the
    engine's back breaks the chain at the edited transfer); 3 if nothing was
    found wrong but the personal fields (accounts, entity, payee) could not be
    checked because the ledger key was not found.

    The chain shows no row was changed without rewriting every hash after it;
    --checkpoint proves it was not: give the checkpoint file a run wrote (its
    summary names it) from where finance filed it. The ledger must still hold
    that head with that hash, the same totals up to it, and nothing after it
    may claim a run that had ended; the file's signature is checked with the key.
    """
    from ledgers import keys
    from ledgers.audit import verify
    from ledgers.checkpoints import read_checkpoint
    from ledgers.db import open_engine

    settings = Settings.resolve(db, store)
    key = (
        keys.read_key(key_file)
        if key_file is not None
        else keys.find_key(keys.key_file(settings.store))
    )
    with open_engine(settings.db_url) as engine:
        result = verify(
            engine,
            key=key,
            expect_head=expect_head,
            checkpoints=[(read_checkpoint(f), str(f)) for f in checkpoint_files],
        )
    click.echo(_json(result.to_json()) if as_json else result.to_text(), nl=False)
    if result.failed:
        ctx.exit(1)
    if not result.ok:
        ctx.exit(EXIT_INCOMPLETE)


def register(main: click.Group) -> None:
    """Add the db, ledger and audit groups to `main` (idempotent)."""
    for group in (db, ledger, audit):
        if group.name not in main.commands:
            main.add_command(group)
