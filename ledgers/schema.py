"""SQL schema: the run records (runs, snapshots, quarantine) and the payout ledger.

The same models serve SQLite (the embedded default) and PostgreSQL (psycopg 3);
the Alembic migrations in `ledgers/migrations/` create exactly these tables, plus
what models cannot say: the append-only triggers and the auditors' views.

Money is BIGINT fen, always greater than zero in a transfer; counts are BIGINT,
because a city's source files run to tens of millions of rows.  Identifier
columns compare bytewise (collation "C" on PostgreSQL, SQLite's default BINARY),
so both databases sort them the same way and index them fast.

The ledger follows TigerBeetle and Formance: accounts are addresses made of
parts (`budget:<policy>:<period>`, `payable:<payee>`, `receivable:<payee>`,
`clearing:bank`, see `ledgers.accounts`), balances are sums of immutable
transfers, a correction is a new transfer, and every transfer carries the hash of
the one before it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

# Kinds of transfer.  The first four come from posting entitlements; the payment
# kinds move money that is already owed (`ledgers.payments`, `ledgers.recoveries`):
# instructed to the bank, settled or rejected by it, set off against what the payee
# owes back, recovered from the payee (migration 0011 added the last two).
ENTITLEMENT_KINDS = ("grant", "adjustment", "reversal", "clawback")
PAYMENT_KINDS = ("instructed", "settled", "rejected", "offset", "recovered")
TRANSFER_KINDS = ENTITLEMENT_KINDS + PAYMENT_KINDS


def ident(length: int) -> TypeEngine[str]:
    """A short identifier column compared bytewise: VARCHAR COLLATE "C" on PostgreSQL."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class hex_of(FunctionElement[str]):
    """SQL: a binary column as lower-case hexadecimal text (encode(x, 'hex') on
    PostgreSQL, lower(hex(x)) on SQLite), null for null."""

    type = String()
    inherit_cache = True


@compiles(hex_of, "postgresql")
def _hex_of_postgresql(element: hex_of, compiler: SQLCompiler, **kw: object) -> str:
    return f"encode({compiler.process(element.clauses, **kw)}, 'hex')"


@compiles(hex_of)
def _hex_of_sqlite(element: hex_of, compiler: SQLCompiler, **kw: object) -> str:
    # hex(NULL) is '' in SQLite: a null stays null (a digest is never empty).
    return f"nullif(lower(hex({compiler.process(element.clauses, **kw)})), '')"


class Digest(TypeDecorator[str]):
    """A sha256 or HMAC-SHA256 digest stored as its 32 bytes (bytea, BLOB), read and
    bound as the 64 lower-case hexadecimal characters everything else prints.

    Selected through SQLAlchemy, the column comes back as hexadecimal text converted
    by the database (`hex_of`), so a query read as CSV by `ledgers.frames` carries
    text too; a value compared with it is bound as bytes.  Half the bytes of hex
    text on disk, in the WAL and on the wire (migration 0013).
    """

    impl = LargeBinary
    cache_ok = True

    def column_expression(self, colexpr: ColumnElement[str]) -> ColumnElement[str]:
        return hex_of(colexpr)

    def process_bind_param(self, value: str | None, dialect: object) -> bytes | None:
        return None if value is None else bytes.fromhex(value)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of every table disburse owns."""


class Run(Base):
    """One run of the engine: an ingest, or a whole nightly batch (`ledgers.runs` reads and
    writes it; `state` holds a `ledgers.runs.RunState`)."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_kind_as_of", "kind", "as_of"),)

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16))
    data_dir: Mapped[str] = mapped_column(Text)
    store_dir: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)
    # Compact JSON objects the batch fills in: rows and entitlements per step, and
    # seconds per step.  Text, not a JSON type, so both databases store the same bytes.
    counts_json: Mapped[str | None] = mapped_column(Text, default=None)
    timings_json: Mapped[str | None] = mapped_column(Text, default=None)
    # A nightly run's own record (migration 0003): who runs it, the hashes of what
    # it read, the content-hashed files it decided from, and its summary.
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    catalogue_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    inputs_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # The claims: the decision table's eligible rows (named decisions_* before migration 0005).
    claims_file: Mapped[str | None] = mapped_column(Text, default=None)
    claims_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    allocation_file: Mapped[str | None] = mapped_column(Text, default=None)
    allocation_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # `ledgers.runs.RunArchive` as JSON: the archived features, policy files and catalogue.
    archive_json: Mapped[str | None] = mapped_column(Text, default=None)
    summary_json: Mapped[str | None] = mapped_column(Text, default=None)


class SourceSnapshot(Base):
    """One source file as a run read it: its hash and how many rows it kept."""

    __tablename__ = "source_snapshots"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    file: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    quarantined: Mapped[int] = mapped_column(BigInteger)
    staged_file: Mapped[str | None] = mapped_column(Text)


class PolicySnapshot(Base):
    """One policy file as a run read it: its id and sha256, so the run can be replayed."""

    __tablename__ = "policy_snapshots"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    policy_id: Mapped[str] = mapped_column(ident(64), primary_key=True)
    file: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))


class QuarantinedRow(Base):
    """A source row that failed validation, with the first rule it failed and the row itself."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_run_source_rule", "run_id", "source", "rule"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    source: Mapped[str] = mapped_column(String(64))
    row_no: Mapped[int] = mapped_column(BigInteger)
    column_name: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)
    row_json: Mapped[str] = mapped_column(Text)


class Transfer(Base):
    """One immutable ledger entry: `amount_fen` moves from the debit to the credit account.

    A transfer balances by construction (one amount, two accounts), so every
    balance of the ledger sums to zero.  Entitlement kinds carry their key
    (policy, benefit period, entity), the payee, the policy file's sha256 and
    the decision: the compact JSON of the feature values and condition results
    that decided it, so `explain` answers from the ledger alone.

    `hash` is sha256(prev_hash || canonical content), see `ledgers.chain`; ids are
    dense and follow the chain.  The content commits to the personal fields (the
    accounts, entity and payee) through `personal_mac`, a digest under the ledger
    key (`ledgers.keys`), so a printed hash allows no search for a masked number.  There is deliberately no foreign key to `runs`:
    PostgreSQL checks one with a trigger per row, which makes bulk posting about
    2.5 times slower; `audit verify` checks every run exists instead.
    """

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="ck_transfers_amount_positive"),
        CheckConstraint("debit_account <> credit_account", name="ck_transfers_two_accounts"),
        CheckConstraint(_in("kind", TRANSFER_KINDS), name="ck_transfers_kind"),
        CheckConstraint(
            f"NOT ({_in('kind', ENTITLEMENT_KINDS)}) OR (policy_id IS NOT NULL"
            " AND benefit_period IS NOT NULL AND entity IS NOT NULL AND payee IS NOT NULL)",
            name="ck_transfers_entitlement_key",
        ),
        Index("ix_transfers_entity", "entity"),
        # Runs post in id order, so a BRIN index (a few pages) finds a run's transfers
        # on PostgreSQL at almost no cost to bulk writes; SQLite gets a B-tree.
        Index("ix_transfers_run", "run_id", postgresql_using="brin"),
    )

    transfer_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    kind: Mapped[str] = mapped_column(String(16))
    debit_account: Mapped[str] = mapped_column(ident(200))
    credit_account: Mapped[str] = mapped_column(ident(200))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int] = mapped_column(Integer)
    policy_id: Mapped[str | None] = mapped_column(ident(64))
    benefit_period: Mapped[str | None] = mapped_column(ident(16))
    entity: Mapped[str | None] = mapped_column(ident(64))
    payee: Mapped[str | None] = mapped_column(ident(64))
    # The policy file's version (its sha256, in `policy_versions`) for entitlement kinds;
    # the sha256 itself on every row before migration 0013.
    policy_version_id: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str | None] = mapped_column(Text)
    # HMAC-SHA256 of the personal fields under the ledger key: chain version 2
    # (migration 0006); null on the version 1 transfers posted before it.
    personal_mac: Mapped[str | None] = mapped_column(Digest, default=None)
    prev_hash: Mapped[str] = mapped_column(Digest)
    hash: Mapped[str] = mapped_column(Digest)


class PolicyVersion(Base):
    """A policy file's version a transfer was decided under: the (policy, sha256) pairs
    the ledger has seen, each once, numbered in the order they were first posted.

    Append-only like the transfers (migration 0013): the chain commits to the
    sha256 (`ledgers.chain`), so a changed row here fails `audit verify` for every
    transfer that refers to it.  A transfer refers to its version by this number
    instead of repeating the 64 characters on every row.
    """

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "sha256", name="uq_policy_versions"),)

    policy_version_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    policy_id: Mapped[str] = mapped_column(ident(64))
    sha256: Mapped[str] = mapped_column(String(64))


class EntitlementKey(Base):
    """The idempotency key of an entitlement: one row per (policy, benefit period, entity), ever.

    Written with the key's grant; its primary key is the database's last line of
    defence against entitling an entity twice.  The amount is not part of it: a
    changed amount is an adjustment transfer under the same key.
    """

    __tablename__ = "entitlement_keys"

    policy_id: Mapped[str] = mapped_column(ident(64), primary_key=True)
    benefit_period: Mapped[str] = mapped_column(ident(16), primary_key=True)
    entity: Mapped[str] = mapped_column(ident(64), primary_key=True)
    transfer_id: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int] = mapped_column(Integer)


class CountedMember(Base):
    """A related member an entitlement counted (`once_per`): one row per (scope, member),
    ever (migration 0009).

    `scope` names the policies in which a member counts once (their ids, sorted, joined
    by commas); the primary key is what keeps a person from being counted for two
    grants of the scope, whatever runs at once or again.  Append-only: a member once
    counted stays counted, even if the grant is later reduced or reversed.
    """

    __tablename__ = "counted_members"

    scope: Mapped[str] = mapped_column(ident(200), primary_key=True)
    member: Mapped[str] = mapped_column(ident(64), primary_key=True)
    policy_id: Mapped[str] = mapped_column(ident(64))
    benefit_period: Mapped[str] = mapped_column(ident(16))
    entity: Mapped[str] = mapped_column(ident(64))
    run_id: Mapped[int] = mapped_column(Integer)


class InboxEvent(Base):
    """An event delivered one at a time: a row of a catalogue source (as JSON text) and its
    operation, upsert or remove (migration 0012).  Append-only; what became of it is an
    `EventOutcome`."""

    __tablename__ = "event_inbox"

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    source: Mapped[str] = mapped_column(ident(64))
    op: Mapped[str] = mapped_column(String(16))
    row_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class EventOutcome(Base):
    """What the event path did with an event, once: decided (by events run `run_id`, over
    the staged night `base_run_id`) or quarantined (the rule and its reason)."""

    __tablename__ = "event_outcomes"
    __table_args__ = (
        CheckConstraint("outcome IN ('decided', 'quarantined')", name="ck_event_outcome"),
        Index("ix_event_outcomes_base", "base_run_id", "outcome"),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int] = mapped_column(Integer)
    base_run_id: Mapped[int | None] = mapped_column(Integer, default=None)
    column_name: Mapped[str | None] = mapped_column(String(64), default=None)
    rule: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class HoldingsSnapshot(Base):
    """What the ledger held per entitlement key at one chain head, kept in a Parquet file.

    A cache that a later run reads instead of scanning every entitlement transfer
    (`ledgers.holdings`): used only while the transfer at `head_id` still has
    `head_hash` and the file still has `sha256`.  Not part of the ledger: rows
    come and go (the newest two are kept).
    """

    __tablename__ = "holdings_snapshots"

    head_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    head_hash: Mapped[str] = mapped_column(String(64))
    policy_ids: Mapped[str] = mapped_column(Text)  # compact JSON list, sorted
    file: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


# The read-only views auditors get, resident identity numbers masked (created by the
# migrations; `db init` grants them to the auditor role).
AUDIT_VIEWS = (
    "audit_transfers",
    "audit_entitlements",
    "audit_balances",
    "audit_summary",
    "audit_runs",
)
# The same with identity numbers whole: granted only to the unmasked-reader role.
UNMASKED_VIEWS = (
    "audit_transfers_unmasked",
    "audit_entitlements_unmasked",
    "audit_balances_unmasked",
)


# --- from ledger to money (issue 19, migration 0010) ------------------------------------
# Append-only like the ledger: a state changes by a new row, never by an update.


class Notice(Base):
    """The public notice (公示) of a nightly run's new entitlements: published on a day, open
    to objections for a number of working days; its CSV and HTML by sha256.  One per run."""

    __tablename__ = "notices"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    published_on: Mapped[dt.date] = mapped_column(Date)
    working_days: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[dt.date] = mapped_column(Date)
    entitlements: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    csv_sha256: Mapped[str] = mapped_column(String(64))
    html_sha256: Mapped[str] = mapped_column(String(64))


class Objection(Base):
    """An objection (异议) to an entitlement during its notice, or from someone refused:
    what was said and the evidence's sha256.  Its decision is a row of its own."""

    __tablename__ = "objections"

    objection_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(ident(64))
    benefit_period: Mapped[str] = mapped_column(ident(16))
    entity: Mapped[str] = mapped_column(ident(64))
    # What the ledger held for the entity under the policy when it was filed:
    # "granted" (a payee's entitlement: payment waits) or "refused" (for review).
    standing: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    evidence_name: Mapped[str | None] = mapped_column(Text, default=None)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    filed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ObjectionDecision(Base):
    """The decision on an objection, once: upheld (the entitlement is reversed and stays
    refused) or dismissed (payment goes ahead); the note says why."""

    __tablename__ = "objection_decisions"
    __table_args__ = (
        CheckConstraint("decision IN ('upheld', 'dismissed')", name="ck_objection_decision"),
    )

    objection_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Integer, default=None)  # the reversal's run


class PaymentInstruction(Base):
    """One payment instruction to the bank: an entitlement key's amount due, to the payee's
    account, in one payment file (`msg_id`).  Its `instructed` transfer moves the amount
    from the payee's payable to clearing; its status (a row of `payment_statuses`)
    settles or returns it.  `attempt` counts the key's instructions: a returned one is
    retried under a new EndToEndId.  The account is kept masked and as a keyed digest."""

    __tablename__ = "payment_instructions"
    __table_args__ = (
        Index("ix_payment_instructions_key", "policy_id", "benefit_period", "entity"),
        Index("ix_payment_instructions_msg", "msg_id"),
    )

    end_to_end_id: Mapped[str] = mapped_column(ident(35), primary_key=True)
    msg_id: Mapped[str] = mapped_column(ident(35))
    run_id: Mapped[int] = mapped_column(Integer)
    policy_id: Mapped[str] = mapped_column(ident(64))
    benefit_period: Mapped[str] = mapped_column(ident(16))
    entity: Mapped[str] = mapped_column(ident(64))
    payee: Mapped[str] = mapped_column(ident(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    account_kind: Mapped[str] = mapped_column(String(32))
    account_masked: Mapped[str] = mapped_column(String(64))
    account_digest: Mapped[str] = mapped_column(String(64))


class PaymentStatus(Base):
    """The bank's answer to one instruction, once: settled or rejected (with the reason
    code), read from the file with `file_sha256`."""

    __tablename__ = "payment_statuses"
    __table_args__ = (
        CheckConstraint("status IN ('settled', 'rejected')", name="ck_payment_status"),
    )

    end_to_end_id: Mapped[str] = mapped_column(ident(35), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(8), default=None)
    file_sha256: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(Integer)


class PaymentFile(Base):
    """A payment file written for the bank: its MsgId, format, sha256 and totals."""

    __tablename__ = "payment_files"

    msg_id: Mapped[str] = mapped_column(ident(35), primary_key=True)
    format: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    instructions: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class Waiver(Base):
    """An entitlement deemed waived (视为自动放弃): its payee had no usable account on record
    for the policy's `unbanked: {waive_after_days}` after it was granted.  The key is
    reversed by `run_id` and later nights keep it at zero.  Once per key."""

    __tablename__ = "waivers"

    policy_id: Mapped[str] = mapped_column(ident(64), primary_key=True)
    benefit_period: Mapped[str] = mapped_column(ident(16), primary_key=True)
    entity: Mapped[str] = mapped_column(ident(64), primary_key=True)
    payee: Mapped[str] = mapped_column(ident(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    granted_on: Mapped[dt.date] = mapped_column(Date)
    waived_on: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(Integer)
