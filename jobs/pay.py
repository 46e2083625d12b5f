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
returned and what was set against what its payee owes back (an offset, where the
policy allows it: `jobs.recover`); the EndToEndId is the key's and its attempt's (`ledgers.payments`), so the
same ledger gives the same instructions.

The bank's reply (`apply_statuses`): each status names an instruction by EndToEndId;
settled posts `settled`, rejected posts `rejected` (the amount is owed again and
retried once the account is corrected).  A status for an instruction already answered
the same way changes nothing; one that contradicts it (settled, then rejected) refuses
the whole file; one for an unknown EndToEndId is reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, select

from common.money import format_yuan
from eligibility import CheckedPolicy, PolicySet, paid_to, payee_kind
from eligibility.schema import Unbanked
from jobs.bankfiles import (
    PaymentHeader,
    read_pain002,
    read_status_csv,
    reason_words,
    simulate_bank_reply,
    write_bulk_csv,
    write_pain001,
)
from jobs.errors import JobError
from jobs.evaluate import staged_scan
from jobs.faults import checkpoint
from jobs.ingest import staged_dir
from jobs.recover import set_off
from ledgers import payments, runs, versions
from ledgers.frames import read_frame
from ledgers.holdings import read_held
from ledgers.keys import LedgerKey
from ledgers.masking import mask_account
from ledgers.objections import notices, open_keys, record_waivers, waivers
from ledgers.post import ledger_connection, post_entitlements
from ledgers.recoveries import offsets_by_key
from ledgers.runs import RunRecord
from ledgers.schema import ENTITLEMENT_KINDS, EntitlementKey, Run, Transfer

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
    "account_digest": pl.String,
}


@dataclass
class Due:
    """What is due on a day and what is not, from the ledger and the night's accounts."""

    as_of: dt.date
    nightly: RunRecord
    due: pl.DataFrame  # DUE_SCHEMA, in EndToEndId order
    withheld: pl.DataFrame  # KEY, payee, amount_fen, reason
    counts: dict[str, int] = field(default_factory=dict)
    # Offsets posted on the way (`jobs.recover.set_off`): their transfers.
    offsets: pl.DataFrame = field(default_factory=pl.DataFrame)


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


def granting_runs(conn: Connection, policy_ids: list[str]) -> pl.DataFrame:
    """(key, run_id) of every run that granted or raised an entitlement (credited the
    payable) of the policies `policy_ids`."""
    t = Transfer.__table__
    stmt = (
        select(t.c.policy_id, t.c.benefit_period, t.c.entity, t.c.run_id)
        .where(
            t.c.kind.in_(("grant", "adjustment")),
            t.c.credit_account.like("payable:%"),
            t.c.policy_id.in_(policy_ids),
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
    policies = {p.id: p for p in pset.policies}
    noticed = [pid for pid, p in policies.items() if p.spec.notice is not None]
    with engine.connect() as conn:
        held = entitled_keys(conn)
        done = payments.instructions(conn)
        objected = open_keys(conn)
        granted_by = granting_runs(conn, noticed)
        published = notices(conn)
        offset = offsets_by_key(conn)
    by_key = payments.key_payments(done)
    owed = (
        held.join(by_key, on=KEY, how="left")
        .join(offset, on=KEY, how="left")
        .with_columns(
            pl.col("instructed_fen").fill_null(0),
            pl.col("offset_fen").fill_null(0),
            pl.col("open").fill_null(False),
            pl.col("attempts").fill_null(0),
        )
        .with_columns(
            (pl.col("net_fen") - pl.col("instructed_fen") - pl.col("offset_fen")).alias(
                "amount_fen"
            )
        )
        .filter(pl.col("amount_fen") > 0)
    )
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
    waits = _notice_waits(
        owed.filter(pl.col("policy_id").is_in(noticed)), granted_by, published, as_of
    )
    withhold(owed.join(waits, on=KEY, how="inner"), pl.col("reason"))
    owed = owed.join(waits, on=KEY, how="anti")
    paid = _accounts(nightly, pset, owed, policies)
    owed = owed.join(paid, on=["policy_id", "payee"], how="left")
    withhold(owed.filter(pl.col("account_no").is_null()), pl.lit(NO_ACCOUNT))
    owed = owed.filter(pl.col("account_no").is_not_null())
    owed = owed.with_columns(payments.account_digests(key, owed).alias("_digest"))
    same = pl.col("returned_digest").is_not_null() & (
        pl.col("returned_digest") == pl.col("_digest")
    )
    withhold(owed.filter(same), pl.lit(NOT_CORRECTED))
    owed = owed.filter(~same)
    due = owed.with_columns((pl.col("attempts") + 1).alias("attempt"))
    ids = [payments.end_to_end_id(*row) for row in due.select(*KEY, "attempt").iter_rows()]
    due = due.with_columns(
        pl.Series("end_to_end_id", ids, pl.String),
        pl.col("account").alias("account_kind"),
        pl.col("_digest").alias("account_digest"),
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


def instruction_rows(due: Due, msg_id: str, run_id: int) -> pl.DataFrame:
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
        "account_digest",
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


# --- the steps ---------------------------------------------------------------------

EXPORT = "payment"  # the kind of run an export records its instructions under
REPLY = "bank-reply"  # the kind of run an imported reply records its statuses under
WAIVE = "waiver"  # the kind of run that reverses entitlements deemed waived
FORMATS = ("pain.001", "csv")


@dataclass(frozen=True)
class Debtor:
    """Who pays: the paying account (the finance bureau's, 财政零余额账户) and its bank."""

    name: str
    account: str
    bank_code: str


@dataclass
class Exported:
    """What `pay export` did."""

    as_of: dt.date
    msg_id: str | None
    file: Path | None
    format: str
    sha256: str | None
    instructions: int
    amount_fen: int
    posted: int  # instructed transfers posted by this command (0: the file was there)
    withheld: pl.DataFrame
    finished: bool = False  # an export interrupted earlier was finished
    # Keys set against what their payees owe back before the file (`jobs.recover`).
    offsets: pl.DataFrame = field(default_factory=pl.DataFrame)

    def to_text(self) -> str:
        return _exported_text(self)

    def to_json(self) -> dict[str, object]:
        reasons = (
            self.withheld.group_by("reason")
            .agg(pl.len(), pl.col("amount_fen").sum())
            .sort("reason")
            if self.withheld.height
            else pl.DataFrame()
        )
        return {
            "as_of": self.as_of.isoformat(),
            "msg_id": self.msg_id,
            "file": None if self.file is None else str(self.file),
            "format": self.format,
            "sha256": self.sha256,
            "instructions": self.instructions,
            "amount_fen": self.amount_fen,
            "posted": self.posted,
            "finished_interrupted": self.finished,
            "offset": {
                "keys": self.offsets.height,
                "amount_fen": int(self.offsets["amount_fen"].sum()) if self.offsets.height else 0,
            },
            "withheld": {
                r["reason"]: {"keys": r["len"], "amount_fen": r["amount_fen"]}
                for r in reasons.iter_rows(named=True)
            },
        }


WAIVED = "deemed waived: no usable account {days} days after it was granted"


def waive_unclaimed(engine: Engine, pset: PolicySet, due: Due, key: LedgerKey) -> pl.DataFrame:
    """Waive what `due` withholds for want of a usable account (none on file, or still the
    one the bank returned) under a policy with `unbanked: {waive_after_days: N}`, once N
    days have passed since the key was granted: recorded in `waivers`, then reversed (the
    payable goes back to the budget) under a run of its own; later nights keep it at
    zero.  The keys waived (KEY, payee, amount_fen, reason); none if nothing is due to be."""
    days = {
        p.id: p.spec.unbanked.waive_after_days
        for p in pset.policies
        if isinstance(p.spec.unbanked, Unbanked)
    }
    waiting = due.withheld.filter(
        pl.col("reason").is_in([NO_ACCOUNT, NOT_CORRECTED]) & pl.col("policy_id").is_in(list(days))
    )
    if waiting.height == 0:
        return waiting.with_columns(pl.lit(None, pl.String).alias("why"))
    k, r = EntitlementKey.__table__, Run.__table__
    with engine.connect() as conn:
        granted = read_frame(
            conn,
            select(k.c.policy_id, k.c.benefit_period, k.c.entity, r.c.as_of).select_from(
                k.join(r, r.c.run_id == k.c.run_id)
            ),
            {**dict.fromkeys(KEY, pl.String), "granted_on": pl.String},
        ).with_columns(pl.col("granted_on").str.to_date())
    lapsed = (
        waiting.join(granted, on=KEY)
        .with_columns(
            pl.col("policy_id").replace_strict(days, return_dtype=pl.Int64).alias("_days")
        )
        .filter(pl.col("granted_on") + pl.duration(days=pl.col("_days")) < pl.lit(due.as_of))
    )
    if lapsed.height == 0:
        return lapsed.select(*KEY, "payee", "amount_fen", "reason")
    run_id = _run_of(engine, WAIVE, due.as_of)
    rows = lapsed.select(
        *KEY,
        "payee",
        "amount_fen",
        "granted_on",
        pl.lit(due.as_of).alias("waived_on"),
        pl.concat_str(
            [pl.col("reason"), pl.lit(" for "), pl.col("_days").cast(pl.String), pl.lit(" days")]
        ).alias("reason"),
        pl.lit(run_id, pl.Int64).alias("run_id"),
    )
    with engine.connect() as conn:
        recorded = waivers(conn)
    fresh = rows.join(recorded.select(KEY), on=KEY, how="anti")
    with engine.connect() as conn:
        record_waivers(conn, fresh)
    _reverse_waived(engine, rows, run_id, key)
    runs.complete(engine, run_id, summary={"waived": rows.height}, timings={})
    return rows.select(
        *KEY,
        "payee",
        "amount_fen",
        pl.format(WAIVED.replace("{days}", "{}"), lapsed["_days"]).alias("reason"),
    )


def _reverse_waived(engine: Engine, rows: pl.DataFrame, run_id: int, key: LedgerKey) -> None:
    """Post the reversal of each waived key still holding money (none twice: a key at zero
    is left as it is)."""
    t = Transfer.__table__
    with engine.connect() as conn:
        numbers = read_frame(
            conn,
            select(
                t.c.policy_id,
                t.c.benefit_period,
                t.c.entity,
                t.c.policy_version_id,
                t.c.transfer_id,
            )
            .where(t.c.kind.in_(ENTITLEMENT_KINDS))
            .where(t.c.policy_id.in_(sorted(set(rows["policy_id"].to_list())))),
            {
                **dict.fromkeys(KEY, pl.String),
                "policy_version_id": pl.Int32,
                "transfer_id": pl.Int64,
            },
        )
        # The sha256 joined in Polars from the (small) versions table, not per row in SQL.
        shas = numbers.with_columns(versions.sha256_expr(versions.known(conn)))
    last = shas.sort("transfer_id").group_by(KEY).agg(pl.col("policy_sha256").last())
    decision = pl.struct(
        pl.lit(True).alias("waived"), pl.col("granted_on").cast(pl.String)
    ).struct.json_encode()
    frame = rows.join(last, on=KEY).select(
        *KEY,
        "payee",
        pl.lit(0, pl.Int64).alias("amount_fen"),
        "policy_sha256",
        decision.alias("decision"),
    )
    post_entitlements(engine, frame, run_id, key=key)


def _withheld_lines(withheld: pl.DataFrame) -> list[str]:
    if withheld.height == 0:
        return []
    lines = ["  not instructed:"]
    by = withheld.group_by("reason").agg(pl.len(), pl.col("amount_fen").sum()).sort("reason")
    for r in by.iter_rows(named=True):
        lines.append(f"    {r['len']:,} keys, {format_yuan(r['amount_fen'])} yuan: {r['reason']}")
    return lines


def _offset_lines(offsets: pl.DataFrame) -> list[str]:
    if offsets.height == 0:
        return []
    fen = int(offsets["amount_fen"].sum())
    return [
        f"  set against what payees owe back (offset, before the file): {offsets.height:,} "
        f"transfers, {format_yuan(fen)} yuan"
    ]


def _exported_text(e: Exported) -> str:
    if e.msg_id is None:
        return "\n".join(
            [
                f"nothing is due on {e.as_of}: no file written",
                *_offset_lines(e.offsets),
                *_withheld_lines(e.withheld),
            ]
        )
    head = (
        f"payment file {e.file} ({e.format}, MsgId {e.msg_id}): {e.instructions:,} "
        f"instructions, {format_yuan(e.amount_fen)} yuan; sha256 {e.sha256}"
    )
    if e.finished:
        what = f"  finished the export interrupted earlier: {e.posted:,} transfers posted"
    elif e.posted:
        what = f"  posted {e.posted:,} instructed transfers (payable to clearing)"
    else:
        what = "  nothing new was due: the day's file written again, nothing posted"
    return "\n".join([head, what, *_offset_lines(e.offsets), *_withheld_lines(e.withheld)])


def _write(
    fmt: str, full: pl.DataFrame, msg: str, as_of: dt.date, debtor: Debtor, out: Path
) -> str:
    """Write the file of instructions `full` (`_file_rows`) at `out`; its sha256.  A pain.001
    is validated against the XSD before it takes the name (`jobs.bankfiles`)."""
    frame = _bank_frame(full)
    if fmt == "csv":
        return write_bulk_csv(frame, out).sha256
    return write_pain001(frame, _header(msg, as_of, debtor), out).sha256


def _bank_frame(full: pl.DataFrame) -> pl.DataFrame:
    """`jobs.bankfiles`' instruction columns of `_file_rows`' frame."""
    return full.select(
        "end_to_end_id",
        "amount_fen",
        pl.col("account_name").fill_null("").alias("creditor_name"),
        pl.col("account_no").alias("creditor_account"),
        pl.col("bank_code").alias("creditor_bank_code"),
        pl.format("{} {}", "policy_id", "benefit_period").alias("remittance"),
    )


def _header(msg: str, as_of: dt.date, debtor: Debtor) -> PaymentHeader:
    return PaymentHeader(
        msg_id=msg,
        created_at=dt.datetime.combine(as_of, dt.time(0)),  # fixed: the same batch, same bytes
        initiating_party_name=debtor.name,
        debtor_name=debtor.name,
        debtor_account=debtor.account,
        debtor_bank_code=debtor.bank_code,
        execution_on=as_of,
    )


def simulate_reply(
    engine: Engine,
    pset: PolicySet,
    out: Path,
    *,
    debtor: Debtor,
    key: LedgerKey,
    seed: int = 0,
    return_rate: float = 0.02,
    msg_id: str | None = None,
) -> tuple[str, int, int]:
    """A simulated bank reply (pain.002, `jobs.bankfiles.simulate_bank_reply`) to a payment
    file this ledger wrote (default: the newest): (MsgId answered, settled, rejected)."""
    with engine.connect() as conn:
        written = payments.files(conn)
        done = payments.instructions(conn)
    if written.height == 0:
        raise JobError("no payment file was written", fix="export one first (`pay export`)")
    row = (
        written.sort("as_of", "msg_id").row(-1, named=True)
        if msg_id is None
        else next((r for r in written.iter_rows(named=True) if r["msg_id"] == msg_id), None)
    )
    if row is None:
        raise JobError(
            f"no payment file {msg_id} was written", fix="give a MsgId `pay export` printed"
        )
    msg = str(row["msg_id"])
    rows = done.filter(pl.col("msg_id") == msg)
    nightly = runs.latest_completed(engine, row["as_of"])
    assert nightly is not None  # the export found it
    frame = _bank_frame(_file_rows(engine, pset, nightly, rows, key))
    reply = simulate_bank_reply(
        frame, _header(msg, row["as_of"], debtor), seed=seed, return_rate=return_rate,
        xml_target=out,
    )  # fmt: skip
    rejected = reply.rejected
    return msg, frame.height - rejected, rejected


def _read(path: Path, done: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The statuses (end_to_end_id, status, reason_code) a reply gives and its sha256: a
    pain.002 (read against its XSD; each payment of the file it answers resolved to its
    own status, its block's or the whole message's) or a CSV status file."""
    if not path.is_file():
        raise JobError(f"{path} does not exist", fix="give the bank's reply file")
    with path.open("rb") as f:
        start = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<"):
        report = read_pain002(path)
        answered = report.original_msg_id
        ids = done.filter(pl.col("msg_id") == answered)["end_to_end_id"].to_list()
        if not ids:
            raise JobError(
                f"{path} answers payment file {answered}, which this ledger never wrote",
                fix="import the reply into the database that exported the file",
            )
        statuses = report.resolve(ids, msg_id=answered)
    else:
        report = read_status_csv(path)
        statuses = report.statuses
    return (
        statuses.select("end_to_end_id", pl.col("status").cast(pl.String), "reason_code"),
        report.sha256,
    )


def message_id(as_of: dt.date, ids: list[str]) -> str:
    """The MsgId of a payment file: DSB, the day, 20 hex digits of the sha256 of its
    EndToEndIds (31 characters, Max35Text): the same instructions give the same id."""
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:20].upper()
    return f"DSB{as_of:%Y%m%d}{digest}"


def _settleable(due: Due) -> pl.DataFrame:
    """The keys that may be set against what their payees owe back: those due, then those
    withheld only for want of a usable account (KEY, payee, amount_fen)."""
    cols = [*KEY, "payee", "amount_fen"]
    wanting = due.withheld.filter(pl.col("reason").is_in([NO_ACCOUNT, NOT_CORRECTED]))
    return pl.concat([due.due.select(cols), wanting.select(cols).sort(KEY)])


def _run_of(engine: Engine, kind: str, as_of: dt.date) -> int:
    """The open run of `kind` (one interrupted earlier), else a new one: a step killed and
    run again posts under the same run id, so the ledger is the one an uninterrupted
    step writes."""
    for run in runs.open_runs(engine, kind):
        if run.as_of == as_of:
            return run.run_id
    with engine.begin() as conn:
        return runs.start_run(conn, kind=kind, as_of=as_of)


def _file_rows(
    engine: Engine, pset: PolicySet, nightly: RunRecord, rows: pl.DataFrame, key: LedgerKey
) -> pl.DataFrame:
    """Instruction rows with the names and account numbers to write, read again from the
    night's sources and checked against the digest each instruction recorded."""
    policies = {p.id: p for p in pset.policies if p.id in set(rows["policy_id"].to_list())}
    numbers = _accounts(nightly, pset, rows, policies)
    full = rows.join(numbers, on=["policy_id", "payee"], how="left")
    changed = full.with_columns(payments.account_digests(key, full).alias("_now")).filter(
        pl.col("_now") != pl.col("account_digest")
    )
    if changed.height:
        raise JobError(
            f"{changed.height} instruction(s) of payment file {rows['msg_id'][0]} were recorded "
            "for accounts the night's sources no longer hold",
            fix="export with the nightly run the instructions were made from (do not change "
            "the account sources between an interrupted export and its re-run)",
        )
    return full.sort("end_to_end_id")


def export_payments(
    engine: Engine,
    pset: PolicySet,
    as_of: dt.date,
    out: Path,
    *,
    fmt: str,
    debtor: Debtor,
    key: LedgerKey,
) -> Exported:
    """`disburse pay export`: instruct what is due on `as_of` in one file at `out`.

    In order: an export interrupted before it recorded its file is finished first (its
    instructions are recorded: the file is written again from them, byte for byte, and
    their transfers posted); with nothing new due, the newest file of the day is written
    again (same MsgId) and nothing is posted; else the new instructions are written to
    the file (validated before it takes its name), recorded, and their `instructed`
    transfers posted, then the file is recorded."""
    if fmt not in FORMATS:
        raise JobError(f"unknown format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    due = due_payments(engine, pset, as_of, key)
    waived = waive_unclaimed(engine, pset, due, key)
    if waived.height:
        due = due_payments(engine, pset, as_of, key)
    offsets = set_off(engine, pset, _settleable(due), lambda: _run_of(engine, EXPORT, as_of), key)
    if offsets.height:
        due = due_payments(engine, pset, as_of, key)
    if waived.height:
        due.withheld = pl.concat(
            [due.withheld, waived.select(*KEY, "payee", "amount_fen", "reason")],
            how="vertical_relaxed",
        ).sort(*KEY)
    due.offsets = offsets
    with engine.connect() as conn:
        done = payments.instructions(conn)
        written = payments.files(conn)
    unfinished = done.filter(~pl.col("msg_id").is_in(written["msg_id"].implode()))
    if unfinished.height:
        msg = str(unfinished.sort("msg_id")["msg_id"][0])
        rows = unfinished.filter(pl.col("msg_id") == msg)
        run_id = int(rows["run_id"][0])
        result = _finish(engine, pset, due, rows, out, fmt, debtor, key, run_id)
        result.finished = True
        return result
    if due.due.height == 0:
        today = written.filter(pl.col("as_of") == as_of).sort("msg_id")
        if today.height == 0:
            nothing = Exported(as_of, None, None, fmt, None, 0, 0, 0, due.withheld, offsets=offsets)
            for run in runs.open_runs(engine, EXPORT):  # offsets posted, nothing to pay
                if run.as_of == as_of:
                    runs.complete(engine, run.run_id, summary=nothing.to_json(), timings={})
            return nothing
        msg = str(today["msg_id"][-1])
        rows = done.filter(pl.col("msg_id") == msg)
        sha = _write(fmt, _file_rows(engine, pset, due.nightly, rows, key), msg, as_of, debtor, out)
        return Exported(
            as_of, msg, out, fmt, sha, rows.height, int(rows["amount_fen"].sum()), 0, due.withheld,
            offsets=offsets,
        )  # fmt: skip
    msg = message_id(as_of, due.due["end_to_end_id"].to_list())
    run_id = _run_of(engine, EXPORT, as_of)
    rows = instruction_rows(due, msg, run_id)
    # The names and numbers to write are those `due` read from the night's sources.
    full = rows.join(
        due.due.select("end_to_end_id", "bank_code", "account_no", "account_name"),
        on="end_to_end_id",
    ).sort("end_to_end_id")
    sha = _write(fmt, full, msg, as_of, debtor, out)  # validated before it takes its name
    checkpoint("pay:file-written")
    with engine.connect() as conn:
        payments.record_instructions(conn, rows)
    checkpoint("pay:instructions-recorded")
    return _finish(
        engine, pset, due, rows.with_columns(pl.lit(None, pl.String).alias("status"),
                                             pl.lit(None, pl.String).alias("reason_code")),
        out, fmt, debtor, key, run_id, written=sha,
    )  # fmt: skip


def _finish(
    engine: Engine,
    pset: PolicySet,
    due: Due,
    rows: pl.DataFrame,
    out: Path,
    fmt: str,
    debtor: Debtor,
    key: LedgerKey,
    run_id: int,
    written: str | None = None,
) -> Exported:
    """Write the file of recorded instructions `rows` (unless `written`, its sha256: this
    command wrote it from them), post what they call for, record the file and close the
    run."""
    msg = str(rows["msg_id"][0])
    sha = written or _write(
        fmt, _file_rows(engine, pset, due.nightly, rows, key), msg, due.as_of, debtor, out
    )
    with ledger_connection(engine) as conn:
        todo = payments.unposted(conn, payments.instructions(conn, msg))
        posted = payments.post_payments(conn, todo, run_id, key)
    checkpoint("pay:posted")
    amount = int(rows["amount_fen"].sum())
    with engine.connect() as conn:
        payments.record_file(
            conn,
            {
                "msg_id": msg,
                "format": fmt,
                "as_of": due.as_of,
                "run_id": run_id,
                "file_name": out.name,
                "sha256": sha,
                "instructions": rows.height,
                "amount_fen": amount,
            },
        )
    result = Exported(
        due.as_of,
        msg,
        out,
        fmt,
        sha,
        rows.height,
        amount,
        posted,
        due.withheld,
        offsets=due.offsets,
    )
    runs.complete(engine, run_id, summary=result.to_json(), timings={})
    return result


@dataclass
class Reply:
    """What `pay import` did."""

    file: Path
    applied: Applied
    run_id: int | None

    def to_text(self) -> str:
        a = self.applied
        lines = [f"bank reply {self.file} (sha256 {a.file_sha256[:16]}):"]
        lines.append(f"  settled: {a.settled:,} instructions, {format_yuan(a.settled_fen)} yuan")
        lines.append(
            f"  returned: {a.rejected:,} instructions, {format_yuan(a.rejected_fen)} yuan"
            + (
                " ("
                + ", ".join(f"{reason_words(k)}: {n}" for k, n in sorted(a.reasons.items()))
                + ")"
                if a.reasons
                else ""
            )
        )
        if a.pending:
            lines.append(f"  still pending at the bank: {a.pending:,}")
        if a.already:
            lines.append(f"  already applied from an earlier file: {a.already:,} (nothing changed)")
        if a.unknown:
            lines.append(
                f"  for no instruction of this ledger: {len(a.unknown):,}, e.g. {a.unknown[0]} "
                "(reported, not applied)"
            )
        lines.append(
            f"  {a.transfers:,} transfers posted"
            + (f" in run {self.run_id}" if self.run_id else "")
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        a = self.applied
        return {
            "file": str(self.file),
            "sha256": a.file_sha256,
            "run_id": self.run_id,
            "settled": {"instructions": a.settled, "amount_fen": a.settled_fen},
            "rejected": {"instructions": a.rejected, "amount_fen": a.rejected_fen},
            "rejected_by_reason": dict(sorted(a.reasons.items())),
            "pending": a.pending,
            "already_applied": a.already,
            "unknown": a.unknown,
            "transfers": a.transfers,
        }


def import_reply(engine: Engine, path: Path, key: LedgerKey) -> Reply:
    """`disburse pay import`: apply the bank's reply (pain.002 or a CSV status file) once."""
    with engine.connect() as conn:
        done = payments.instructions(conn)
    statuses, sha = _read(path, done)
    applied = check_statuses(statuses, done, sha)
    fresh = new_statuses(statuses, done)
    if fresh.height == 0 and not _unposted_any(engine):
        return Reply(path, applied, None)
    as_of = dt.date.today()
    run_id = _run_of(engine, REPLY, as_of)
    rows = fresh.select(
        "end_to_end_id",
        "status",
        "reason_code",
        pl.lit(sha).alias("file_sha256"),
        pl.lit(run_id, pl.Int64).alias("run_id"),
    )
    with engine.connect() as conn:
        payments.record_statuses(conn, rows)
    checkpoint("reply:statuses-recorded")
    with ledger_connection(engine) as conn:
        todo = payments.unposted(conn, payments.instructions(conn))
        applied.transfers = payments.post_payments(conn, todo, run_id, key)
    checkpoint("reply:posted")
    amounts = fresh.join(done.select("end_to_end_id", "amount_fen"), on="end_to_end_id")
    for status, part in amounts.partition_by("status", as_dict=True).items():
        n, fen = part.height, int(part["amount_fen"].sum())
        if status == ("settled",):
            applied.settled, applied.settled_fen = n, fen
        else:
            applied.rejected, applied.rejected_fen = n, fen
            applied.reasons = {
                str(r["reason_code"]): int(r["len"])
                for r in part.group_by("reason_code").len().iter_rows(named=True)
            }
    result = Reply(path, applied, run_id)
    runs.complete(engine, run_id, summary=result.to_json(), timings={})
    return result


def _unposted_any(engine: Engine) -> bool:
    with engine.connect() as conn:
        return payments.unposted(conn, payments.instructions(conn)).height > 0


__all__ = [
    "DUE_SCHEMA",
    "FORMATS",
    "Applied",
    "Debtor",
    "Due",
    "Exported",
    "Reply",
    "check_statuses",
    "due_payments",
    "export_payments",
    "import_reply",
    "instruction_rows",
    "new_statuses",
    "simulate_reply",
    "waive_unclaimed",
]
