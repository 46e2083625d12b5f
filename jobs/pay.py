"""Paying what the ledger owes: which entitlements are due, the payment file, the bank's reply.

Due on a day (`due_payments`): every entitlement key whose payee is owed more than is
instructed and not returned, unless

* an instruction of it awaits the bank's answer (one open instruction per key);
* an objection to it is undecided (`ledgers.objections`);
* its policy declares `notice: {working_days: N}` and a run that granted or raised it
  has no notice, or its notice is still open (the window closes at the deadline's end);
* the payee has none of the policy's accounts on file in the night's delivered
  account sources (the newest completed nightly run on or before the day), or the
  account on file is the one the bank returned the last attempt from.

What is not due for one of these reasons is listed with the reason, never dropped.
An instruction's amount is what the key holds less what is instructed and not
returned; the EndToEndId is the key's and its attempt's (`ledgers.payments`), so the
same ledger gives the same instructions.

The bank's reply (`apply_statuses`): each status names an instruction by EndToEndId;
settled posts `settled`, rejected posts `rejected` (the amount is owed again and
retried once the account is corrected).  A status for an instruction already answered
the same way changes nothing; one that contradicts it (settled, then rejected) refuses
the whole file; one for an unknown EndToEndId is reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, select

from eligibility import CheckedPolicy, PolicySet, paid_to, payee_kind
from jobs.errors import JobError
from jobs.evaluate import staged_scan
from jobs.ingest import staged_dir
from ledgers import payments, runs
from ledgers.frames import read_frame
from ledgers.holdings import read_held
from ledgers.keys import LedgerKey
from ledgers.masking import mask_account
from ledgers.objections import notices, open_keys
from ledgers.runs import RunRecord
from ledgers.schema import Transfer

KEY = ["policy_id", "benefit_period", "entity"]
PAYMENT = "payment"  # the kind of run a payment step records its transfers under

# Why a key owed money is not instructed, as listed.
AWAITING_BANK = "instructed, awaiting the bank's answer"
OBJECTION = "objection {id} not yet decided"
NOT_PUBLISHED = "not yet published (its policy requires a notice)"
IN_NOTICE = "in its public notice until {deadline}"
NO_ACCOUNT = "no account on file"
NOT_CORRECTED = "returned by the bank; the account on file is the one returned"
NO_POLICY = "its policy file is not in the policy set"

DUE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "policy_id": pl.String,
    "benefit_period": pl.String,
    "entity": pl.String,
    "payee": pl.String,
    "amount_fen": pl.Int64,
    "attempt": pl.Int64,
    "end_to_end_id": pl.String,
    "account_kind": pl.String,
    "bank_code": pl.String,
    "account_no": pl.String,
    "account_name": pl.String,
}


@dataclass
class Due:
    """What is due on a day and what is not, from the ledger and the night's accounts."""

    as_of: dt.date
    nightly: RunRecord
    due: pl.DataFrame  # DUE_SCHEMA, in EndToEndId order
    withheld: pl.DataFrame  # KEY, payee, amount_fen, reason
    counts: dict[str, int] = field(default_factory=dict)


def entitled_keys(conn: Connection) -> pl.DataFrame:
    """What every entitlement key holds, per payee (> 0 only), across all policies."""
    t = Transfer.__table__
    ids = [
        str(r[0])
        for r in conn.execute(
            select(t.c.policy_id).where(t.c.kind == "grant").distinct().order_by(t.c.policy_id)
        )
    ]
    held = read_held(conn, ids)
    return held.filter(pl.col("net_fen") > 0).with_columns(
        pl.coalesce("payee", "entity").alias("payee")
    )


def granting_runs(conn: Connection) -> pl.DataFrame:
    """(key, run_id) of every run that granted or raised an entitlement (credited the payable)."""
    t = Transfer.__table__
    stmt = (
        select(t.c.policy_id, t.c.benefit_period, t.c.entity, t.c.run_id)
        .where(
            t.c.kind.in_(("grant", "adjustment")),
            t.c.credit_account.like("payable:%"),
        )
        .distinct()
    )
    return read_frame(
        conn,
        stmt,
        {
            "policy_id": pl.String,
            "benefit_period": pl.String,
            "entity": pl.String,
            "run_id": pl.Int64,
        },
    )


def _notice_waits(
    owed: pl.DataFrame, granted_by: pl.DataFrame, published: pl.DataFrame, as_of: dt.date
) -> pl.DataFrame:
    """Per key of `owed` (policies with a notice rule only) that may not be instructed on
    `as_of`: the reason (not published, or in notice until its deadline)."""
    runs_of = granted_by.join(owed.select(KEY).unique(), on=KEY, how="semi").join(
        published.select("run_id", "deadline"), on="run_id", how="left"
    )
    waits = runs_of.filter(pl.col("deadline").is_null() | (pl.col("deadline") >= as_of))
    return (
        waits.group_by(KEY)
        .agg(
            pl.col("deadline").is_null().any().alias("_unpublished"),
            pl.col("deadline").max().alias("_deadline"),
        )
        .select(
            *KEY,
            pl.when(pl.col("_unpublished"))
            .then(pl.lit(NOT_PUBLISHED))
            .otherwise(
                pl.format(
                    IN_NOTICE.replace("{deadline}", "{}"), pl.col("_deadline").cast(pl.String)
                )
            )
            .alias("reason"),
        )
    )


def _accounts(
    nightly: RunRecord, pset: PolicySet, owed: pl.DataFrame, policies: dict[str, CheckedPolicy]
) -> pl.DataFrame:
    """Per (policy_id, payee) of `owed`: the account paid to (its kind, bank code, number
    and the name to pay), from the night's staged sources; nulls where none is on file."""
    cat = pset.catalogue
    staged = staged_dir(Path(nightly.store_dir or ""), nightly.run_id)
    scan = staged_scan(staged)
    pairs = owed.select("policy_id", "payee").unique()
    chosen = paid_to(scan, cat, list(policies.values()), pairs.lazy()).collect()
    parts = []
    wanted = {
        (str(payee_kind(p.spec, cat)), name) for p in policies.values() for name in p.accounts
    }
    for kind, name in sorted(wanted):
        acc = cat.spec.entities[kind].accounts[name]
        key_col = cat.source_keys.get(acc.source, (cat.id_column(kind),))[0]
        frame = scan(acc.source)
        cols = frame.collect_schema().names()
        holder = scan(cat.entity_source(kind)).select(
            pl.col(cat.id_column(kind)).alias("payee"), pl.col("name").alias("_holder")
        )
        named = frame.select(
            pl.col(key_col).alias("payee"),
            pl.lit(name).alias("account"),
            pl.col("bank_code").cast(pl.String),
            pl.col("account_no").cast(pl.String),
            (pl.col("account_name") if "account_name" in cols else pl.lit(None, pl.String)).alias(
                "_account_name"
            ),
        ).join(holder, on="payee", how="left")
        parts.append(
            named.select(
                "payee",
                "account",
                "bank_code",
                "account_no",
                pl.coalesce("_account_name", "_holder").alias("account_name"),
            )
        )
    numbers = (
        pl.concat(parts).unique(["payee", "account"], keep="first").collect()
        if parts
        else pl.DataFrame(
            schema={
                "payee": pl.String,
                "account": pl.String,
                "bank_code": pl.String,
                "account_no": pl.String,
                "account_name": pl.String,
            }
        )
    )
    return chosen.join(numbers, on=["payee", "account"], how="left")


def due_payments(engine: Engine, pset: PolicySet, as_of: dt.date, key: LedgerKey) -> Due:
    """What may be instructed on `as_of`, and what is withheld and why (module docstring)."""
    nightly = runs.latest_completed(engine, as_of)
    if nightly is None:
        raise JobError(
            f"no nightly run has completed on or before {as_of}",
            fix="run the night first (`disburse run`), or give a later --as-of",
        )
    with engine.connect() as conn:
        held = entitled_keys(conn)
        done = payments.instructions(conn)
        objected = open_keys(conn)
        granted_by = granting_runs(conn)
        published = notices(conn)
    by_key = payments.key_payments(done)
    owed = (
        held.join(by_key, on=KEY, how="left")
        .with_columns(
            pl.col("instructed_fen").fill_null(0),
            pl.col("open").fill_null(False),
            pl.col("attempts").fill_null(0),
        )
        .with_columns((pl.col("net_fen") - pl.col("instructed_fen")).alias("amount_fen"))
        .filter(pl.col("amount_fen") > 0)
    )
    policies = {p.id: p for p in pset.policies}
    reasons: list[pl.DataFrame] = []

    def withhold(rows: pl.DataFrame, reason: pl.Expr) -> None:
        reasons.append(rows.select(*KEY, "payee", "amount_fen", reason.alias("reason")))

    withhold(owed.filter(pl.col("open")), pl.lit(AWAITING_BANK))
    owed = owed.filter(~pl.col("open"))
    withhold(owed.filter(~pl.col("policy_id").is_in(list(policies))), pl.lit(NO_POLICY))
    owed = owed.filter(pl.col("policy_id").is_in(list(policies)))
    blocked = owed.join(objected, on=KEY, how="inner")
    withhold(blocked, pl.format(OBJECTION.replace("{id}", "{}"), pl.col("objection_id")))
    owed = owed.join(objected, on=KEY, how="anti")
    noticed = [pid for pid, p in policies.items() if p.spec.notice is not None]
    waits = _notice_waits(
        owed.filter(pl.col("policy_id").is_in(noticed)), granted_by, published, as_of
    )
    withhold(owed.join(waits, on=KEY, how="inner"), pl.col("reason"))
    owed = owed.join(waits, on=KEY, how="anti")
    paid = _accounts(nightly, pset, owed, policies)
    owed = owed.join(paid, on=["policy_id", "payee"], how="left")
    withhold(owed.filter(pl.col("account_no").is_null()), pl.lit(NO_ACCOUNT))
    owed = owed.filter(pl.col("account_no").is_not_null())
    owed = owed.with_columns(
        pl.struct("bank_code", "account_no")
        .map_elements(
            lambda r: payments.account_digest(key, r["bank_code"], r["account_no"]),
            return_dtype=pl.String,
        )
        .alias("_digest")
    )
    same = pl.col("returned_digest").is_not_null() & (
        pl.col("returned_digest") == pl.col("_digest")
    )
    withhold(owed.filter(same), pl.lit(NOT_CORRECTED))
    owed = owed.filter(~same)
    due = owed.with_columns((pl.col("attempts") + 1).alias("attempt")).with_columns(
        pl.struct(*KEY, "attempt")
        .map_elements(
            lambda r: payments.end_to_end_id(
                r["policy_id"], r["benefit_period"], r["entity"], r["attempt"]
            ),
            return_dtype=pl.String,
        )
        .alias("end_to_end_id"),
        pl.col("account").alias("account_kind"),
    )
    withheld = (
        pl.concat(reasons)
        if reasons
        else pl.DataFrame(schema={**dict.fromkeys(KEY, pl.String), "payee": pl.String})
    )
    return Due(
        as_of=as_of,
        nightly=nightly,
        due=due.select(list(DUE_SCHEMA)).cast(DUE_SCHEMA).sort("end_to_end_id"),  # type: ignore[arg-type]
        withheld=withheld.sort(*KEY) if withheld.height else withheld,
        counts={"due": due.height, "withheld": withheld.height},
    )


def instruction_rows(due: Due, msg_id: str, run_id: int, key: LedgerKey) -> pl.DataFrame:
    """The `payment_instructions` rows of `due`'s instructions in one file."""
    return due.due.select(
        "end_to_end_id",
        pl.lit(msg_id).alias("msg_id"),
        pl.lit(run_id, pl.Int64).alias("run_id"),
        *KEY,
        "payee",
        "amount_fen",
        "attempt",
        "account_kind",
        pl.col("account_no")
        .map_elements(mask_account, return_dtype=pl.String)
        .alias("account_masked"),
        pl.struct("bank_code", "account_no")
        .map_elements(
            lambda r: payments.account_digest(key, r["bank_code"], r["account_no"]),
            return_dtype=pl.String,
        )
        .alias("account_digest"),
    )


@dataclass
class Applied:
    """What a bank reply did: statuses applied, already known, for unknown instructions."""

    file_sha256: str
    settled: int = 0
    settled_fen: int = 0
    rejected: int = 0
    rejected_fen: int = 0
    pending: int = 0
    already: int = 0
    unknown: list[str] = field(default_factory=list)
    transfers: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason code -> rejected


def check_statuses(statuses: pl.DataFrame, done: pl.DataFrame, file_sha256: str) -> Applied:
    """What applying `statuses` (end_to_end_id, status settled|rejected|pending, reason_code)
    to the instructions `done` would do, or a JobError if the file contradicts itself or
    the ledger (a status other than the one recorded for the same instruction)."""
    twice = (
        statuses.filter(pl.col("status") != "pending")
        .group_by("end_to_end_id")
        .agg(pl.col("status").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    if twice.height:
        raise JobError(
            f"the file gives two different statuses for instruction {twice['end_to_end_id'][0]}",
            fix="ask the bank for a corrected status file; nothing was applied",
        )
    known = statuses.join(
        done.select("end_to_end_id", pl.col("status").alias("recorded")),
        on="end_to_end_id",
        how="left",
    ).with_columns(pl.col("end_to_end_id").is_in(done["end_to_end_id"].implode()).alias("_known"))
    clash = known.filter(
        pl.col("recorded").is_not_null()
        & (pl.col("status") != "pending")
        & (pl.col("status") != pl.col("recorded"))
    )
    if clash.height:
        r = clash.row(0, named=True)
        raise JobError(
            f"instruction {r['end_to_end_id']} is recorded as {r['recorded']}, and this file "
            f"says {r['status']}: the file contradicts an earlier one ({clash.height} such)",
            fix="a settled payment can only come back as a new return from the bank; check "
            "which file is right with the bank; nothing was applied",
        )
    out = Applied(file_sha256)
    out.unknown = sorted(known.filter(~pl.col("_known"))["end_to_end_id"].unique().to_list())
    out.already = known.filter(pl.col("recorded").is_not_null()).height
    out.pending = known.filter(pl.col("_known") & (pl.col("status") == "pending")).height
    return out


def new_statuses(statuses: pl.DataFrame, done: pl.DataFrame) -> pl.DataFrame:
    """The statuses of `statuses` not yet recorded for a known open instruction, once each."""
    open_ids = done.filter(pl.col("status").is_null()).select("end_to_end_id")
    return (
        statuses.filter(pl.col("status") != "pending")
        .join(open_ids, on="end_to_end_id", how="semi")
        .unique("end_to_end_id", keep="first", maintain_order=True)
    )


__all__ = [
    "DUE_SCHEMA",
    "Applied",
    "Due",
    "check_statuses",
    "due_payments",
    "instruction_rows",
    "new_statuses",
]
