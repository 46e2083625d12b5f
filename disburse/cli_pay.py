"""From ledger to money: `publish`, `objection add|decide|list`, `pay export|import`.

Thin, like the other command modules: parse options, call one function of `jobs`,
print.  `register(main)` attaches them to the `disburse` group.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from disburse.options import db_option, json_option, store_option, unmask_option
from jobs.settings import Settings


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"


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
    from ledgers.db import open_engine
    from ledgers.keys import key_file, posting_key

    if decision is None:
        raise click.UsageError("give --uphold or --dismiss")
    settings = Settings.resolve(db, store)
    with open_engine(settings.db_url) as engine:
        key = posting_key(engine, key_file(settings.store))
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


def register(main: click.Group) -> None:
    """Attach the payment commands to the `disburse` group."""
    main.add_command(objection)
