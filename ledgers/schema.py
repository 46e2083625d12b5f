"""SQL schema of the run records: runs, source snapshots and quarantine.

The same models serve SQLite (the embedded default) and PostgreSQL (psycopg 3).
Money, when it arrives with the ledger, is BIGINT fen; counts are BIGINT too,
because a city's source files run to tens of millions of rows.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every table disburse owns."""


class Run(Base):
    """One run of the engine: an ingest, or (later) a whole nightly batch."""

    __tablename__ = "runs"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16))
    data_dir: Mapped[str] = mapped_column(Text)
    store_dir: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)


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
