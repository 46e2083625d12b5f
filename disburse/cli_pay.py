"""From ledger to money: `publish`, `objection add|decide|list`, `pay export|import|recover`.

Thin, like the other command modules: parse options, call one function of `jobs`,
print.  `register(main)` attaches them to the `disburse` group.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from disburse.options import db_option, json_option, store_option, unmask_option
from jobs.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ledgers.keys import LedgerKey


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"


@contextmanager
def _keyed_ledger(db: str | None, store: str | None) -> Iterator[tuple[Engine, LedgerKey]]:
    """The ledger of --db and its key (--store's ledger.key, or $DISBURSE_LEDGER_KEY_FILE)."""
    from ledgers.db import open_engine
    from ledgers.keys import key_file, posting_key

    settings = Settings.resolve(db, store)
    with open_engine(settings.db_url) as engine:
        yield engine, posting_key(engine, key_file(settings.store))


def _show(result: Any, as_json: bool) -> None:
    """A step's result as JSON (`to_json`) or its lines (`to_text`)."""
    if as_json:
        click.echo(_json(result.to_json()), nl=False)
    else:
        click.echo(result.to_text())


@click.group()
def objection() -> None:
    """Objections to a public notice: record them, decide them, list them."""


@objection.command("add")
@db_option
@click.option("--policy", "policy_id", required=True, help="The policy objected to.")
@click.option(
    "--entity", required=True, help="The entity (credit code or identity number, in full)."
)
@click.option("--reason", required=True, help="What the objector says, in their words.")
@click.option(
    "--period",
    "benefit_period",
    help="The benefit period (default: the newest the ledger holds for the entity).",
)
@click.option(
    "--evidence",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file handed in with it; its sha256 is recorded.",
)
@unmask_option("Show the identity number in full.")
def objection_add(db, policy_id, entity, reason, benefit_period, evidence, unmask):
    """Record an objection to an entitlement (or to a refusal).

    Against an entitlement the entity holds: its payment waits until the
    objection is decided. From someone refused: recorded and listed for review;
    the engine does not re-decide a refusal by itself.
    """
    from jobs.objections import object_to
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        filed = object_to(
            engine,
            policy_id=policy_id,
            entity=entity,
            reason=reason,
            benefit_period=benefit_period,
            evidence=evidence,
        )
    click.echo(filed.to_text(show=unmask))


@objection.command("decide")
@db_option
@store_option("ledger.key, unless $DISBURSE_LEDGER_KEY_FILE says otherwise")
@click.option("--id", "objection_id", type=int, required=True, help="The objection's id.")
@click.option("--uphold", "decision", flag_value="uphold", help="The objection is right.")
@click.option("--dismiss", "decision", flag_value="dismiss", help="The objection is not.")
@click.option("--note", required=True, help="Why: recorded with the decision.")
def objection_decide(db, store, objection_id, decision, note):
    """Decide an objection, once: --uphold or --dismiss, with a --note.

    Upheld against an entitlement: it is reversed at once (posted under a run of
    its own) and later nights keep it at zero. Dismissed: payment goes ahead.
    """
    from jobs.objections import decide

    if decision is None:
        raise click.UsageError("give --uphold or --dismiss")
    with _keyed_ledger(db, store) as (engine, key):
        click.echo(decide(engine, objection_id, uphold=decision == "uphold", note=note, key=key))


@objection.command("list")
@db_option
@json_option("Print the objections as JSON.")
@unmask_option("Show identity numbers in full.")
def objection_list(db, as_json, unmask):
    """Every objection: the key, what was said, the evidence's sha256, the decision."""
    from ledgers.db import open_engine
    from ledgers.masking import mask_entity
    from ledgers.objections import objections

    with open_engine(Settings.resolve(db).db_url) as engine, engine.connect() as conn:
        frame = objections(conn)
    rows = frame.to_dicts()
    for r in rows:
        if not unmask:
            r["entity"] = mask_entity(r["entity"])
    if as_json:
        click.echo(_json(rows), nl=False)
        return
    if not rows:
        click.echo("no objection is recorded")
        return
    for r in rows:
        state = r["decision"] or ("OPEN" if r["standing"] == "granted" else "OPEN, for review")
        click.echo(
            f"{r['objection_id']:>5}  {r['policy_id']} {r['benefit_period']} {r['entity']} "
            f"({r['standing']}): {state}"
        )
        click.echo(f"       reason: {r['reason']}")
        if r["evidence_sha256"]:
            click.echo(f"       evidence: {r['evidence_name']} sha256 {r['evidence_sha256']}")
        if r["note"]:
            click.echo(f"       note: {r['note']}")


@click.command()
@db_option
@click.option("--run", "run_id", type=int, required=True, help="The nightly run to publish.")
@click.option(
    "--days",
    type=click.IntRange(1, 60),
    help="Working days open to objection (default: the largest its policies declare, else 5).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The HTML page to write; the CSV is written beside it (same name, .csv).",
)
@click.option(
    "--on",
    "published_on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day of publication (default: today).",
)
@click.option("--issuer", default="the subsidy office", show_default=True, help="Who signs it.")
@click.option(
    "--contact",
    default="write to the subsidy office, giving the policy and the entity's identifier",
    show_default=True,
    help="How to object, as printed on the notice.",
)
@click.option(
    "--calendar",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The working-day calendar (default: policies/holidays.yaml).",
)
@json_option("Print the result as JSON.")
def publish(db, run_id, days, out, published_on, issuer, contact, calendar, as_json):
    """Publish a run's new entitlements (公示) before they are paid.

    Writes the public notice as one self-contained HTML page and a CSV: each
    policy's new grants and increases, enterprises named in full, persons with
    the name and identity number masked as public lists show them, the amounts,
    and the objection deadline counted in working days (policies/holidays.yaml,
    the day of publication not counted). Records the notice in the ledger: a
    policy that declares notice: {working_days: N} is paid only after it closes.
    Publishing the same run again writes the same files.
    """
    from jobs.publish import publish as run_publish
    from ledgers.db import open_engine

    with open_engine(Settings.resolve(db).db_url) as engine:
        done = run_publish(
            engine,
            run_id,
            out,
            days=days,
            published_on=published_on.date() if published_on else None,
            issuer=issuer,
            contact=contact,
            calendar=calendar,
        )
    _show(done, as_json)


@click.group()
def pay() -> None:
    """Pay what the ledger owes: the payment file for the bank, the bank's reply, money
    paid back."""


@pay.command("export")
@db_option
@store_option("ledger.key, unless $DISBURSE_LEDGER_KEY_FILE says otherwise")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="The day of payment: what is due on it is instructed.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pain.001", "csv"]),
    default="pain.001",
    show_default=True,
    help="ISO 20022 pain.001.001.09, or the CSV of a bank's bulk-payment (代发) template.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file."
)
@click.option(
    "--debtor-name",
    envvar="DISBURSE_DEBTOR_NAME",
    default="Municipal Finance Bureau",
    show_default=True,
    help="The paying account's name ($DISBURSE_DEBTOR_NAME).",
)
@click.option(
    "--debtor-account",
    envvar="DISBURSE_DEBTOR_ACCOUNT",
    default="000000000000",
    show_default=True,
    help="The paying account's number ($DISBURSE_DEBTOR_ACCOUNT).",
)
@click.option(
    "--debtor-bank",
    envvar="DISBURSE_DEBTOR_BANK",
    default="011",
    show_default=True,
    help="The paying account's bank code ($DISBURSE_DEBTOR_BANK).",
)
@click.option("--policies", "policy_paths", multiple=True, type=click.Path(path_type=Path),
              help="Policy files or folders (default: the shipped ones).")  # fmt: skip
@json_option("Print the result as JSON.")
def pay_export(
    db, store, as_of, fmt, out, debtor_name, debtor_account, debtor_bank, policy_paths, as_json
):
    """Instruct everything due on --as-of in one payment file.

    Due: what a key holds less what is instructed and not returned, unless an
    instruction of it awaits the bank, an objection to it is undecided, its
    notice is not over, or the payee has no account on file (or still the one
    the bank returned). Each instruction posts an `instructed` transfer (payable
    to clearing) under a deterministic EndToEndId; the file is validated before
    it is written. Exporting again with nothing new writes the same file and
    posts nothing; an export killed midway is finished by the same command.
    """
    from jobs.pay import Debtor, export_payments
    from jobs.policies import load_policy_files

    loaded = load_policy_files(list(policy_paths) or None, None)
    with _keyed_ledger(db, store) as (engine, key):
        done = export_payments(
            engine,
            loaded.policies,
            as_of.date(),
            out,
            fmt=fmt,
            debtor=Debtor(debtor_name, debtor_account, debtor_bank),
            key=key,
        )
    _show(done, as_json)


@pay.command("import")
@db_option
@store_option("ledger.key, unless $DISBURSE_LEDGER_KEY_FILE says otherwise")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("Print the result as JSON.")
def pay_import(db, store, file, as_json):
    """Apply the bank's reply: a pain.002 status report or a CSV status file.

    Settled posts `settled` (clearing to paid); rejected or returned posts
    `rejected` (clearing back to the payable, with the reason code) and the key
    is retried once its account is corrected. Importing the same file twice
    changes nothing; a file that contradicts an earlier one is refused whole.
    """
    from jobs.pay import import_reply

    with _keyed_ledger(db, store) as (engine, key):
        done = import_reply(engine, file, key)
    _show(done, as_json)


@pay.command("simulate-reply")
@db_option
@store_option("ledger.key, unless $DISBURSE_LEDGER_KEY_FILE says otherwise")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The pain.002."
)
@click.option("--msg-id", help="The payment file answered (default: the newest written).")
@click.option(
    "--return-rate",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="The share of payments the simulated bank returns (closed or wrong accounts).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed, same reply.")
@click.option("--policies", "policy_paths", multiple=True, type=click.Path(path_type=Path),
              help="Policy files or folders (default: the shipped ones).")  # fmt: skip
def pay_simulate_reply(db, store, out, msg_id, return_rate, seed, policy_paths):
    """Write the pain.002 a bank would send back for a payment file (demo and tests).

    Settles most payments and returns a share with realistic reason codes
    (AC04 closed account, AC01 wrong number, ...). Not a bank: for trying the
    loop without one. Import it with `disburse pay import FILE`.
    """
    from jobs.pay import Debtor, simulate_reply
    from jobs.policies import load_policy_files

    loaded = load_policy_files(list(policy_paths) or None, None)
    with _keyed_ledger(db, store) as (engine, key):
        msg, settled, rejected = simulate_reply(
            engine,
            loaded.policies,
            out,
            debtor=Debtor("Municipal Finance Bureau", "000000000000", "011"),
            key=key,
            seed=seed,
            return_rate=return_rate,
            msg_id=msg_id,
        )
    click.echo(f"wrote {out}: a reply to {msg}, {settled:,} settled and {rejected:,} returned")


@pay.command("recover")
@db_option
@store_option("ledger.key, unless $DISBURSE_LEDGER_KEY_FILE says otherwise")
@click.option(
    "--entity",
    "payee",
    required=True,
    help="The payee who paid back (credit code or identity number, in full).",
)
@click.option(
    "--amount", required=True, help="The money received, in yuan (1200, 1200.50 or 1200 yuan)."
)
@click.option(
    "--reference",
    required=True,
    help="The bank's reference of the money received: the same reference is recorded once.",
)
@click.option(
    "--on",
    "received_on",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="The day the money was received.",
)
@click.option("--policy", "policy_id", help="Settle only what is owed back under this policy.")
@unmask_option("Show the identity number in full.")
@json_option("Print the result as JSON.")
def pay_recover(db, store, payee, amount, reference, received_on, policy_id, unmask, as_json):
    """Record money a payee paid back after a clawback.

    A re-run that finds a paid entitlement should not have been paid posts a
    clawback: the payee owes it back (receivable). The money received settles
    what the payee owes, oldest clawback first (recovered:bank to the
    receivable). Recording more than is owed is refused; the same reference
    again changes nothing. A later grant under a policy that declares
    `offset: {against: this_policy|any_policy}` is set against what is still
    owed when the next payment file is exported.
    """
    from common.money import parse_money
    from jobs.recover import recover

    try:
        text = amount.strip()
        fen = parse_money(text if text.endswith(("yuan", "fen")) else f"{text} yuan")
    except ValueError as e:
        raise click.BadParameter(f"{e}; write yuan, e.g. 1200.50", param_hint="--amount") from None
    with _keyed_ledger(db, store) as (engine, key):
        done = recover(
            engine,
            payee,
            fen,
            reference,
            received_on.date(),
            key,
            policy_id=policy_id,
            unmask=unmask,
        )
    _show(done, as_json)


def register(main: click.Group) -> None:
    """Attach the payment commands to the `disburse` group."""
    main.add_command(objection)
    main.add_command(publish)
    main.add_command(pay)
