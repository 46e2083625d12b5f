"""Publishing a nightly run's new entitlements (公示) before they are paid.

`publish` lists what run N granted or raised (per key, the amount the run credited the
payee), names each entity as the public list shows it (`jobs.notice`: enterprises
whole, persons masked), and writes the notice as a CSV file and one HTML page.  The
objection deadline is counted in working days on the calendar `policies/holidays.yaml`
(`common.workdays`), from the day of publication, that day not counted.  The notice is
recorded in the ledger (`ledgers.objections.notices`): one per run.  Publishing the same
run again writes the same files (the recorded day and window) and records nothing;
another window for a published run is refused.

A policy that declares `notice: {working_days: N}` is instructed only once the notice
of every run that granted or raised its key has closed (`jobs.pay`).  The window of a
notice is the largest N of the policies it lists (5 if none says), unless --days says.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, select

from common.holidays import load_work_calendar
from common.workdays import objection_deadline
from jobs.errors import JobError
from jobs.explain import archived_policies
from jobs.ingest import staged_dir
from jobs.notice import NoticeHeader, write_notice_csv, write_notice_html
from jobs.paths import holidays_path
from jobs.staged import scan_staged, staged_file
from ledgers import runs
from ledgers.frames import read_frame
from ledgers.objections import notices, record_notice
from ledgers.schema import Transfer

DEFAULT_DAYS = 5


@dataclass
class Published:
    """What `publish` wrote and recorded."""

    run_id: int
    published_on: dt.date
    working_days: int
    deadline: dt.date
    entitlements: int
    amount_fen: int
    html: Path
    csv: Path
    again: bool = False  # the run was published before: the same files written again
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "published_on": self.published_on.isoformat(),
            "working_days": self.working_days,
            "objection_deadline": self.deadline.isoformat(),
            "entitlements": self.entitlements,
            "amount_fen": self.amount_fen,
            "html": str(self.html),
            "csv": str(self.csv),
            "published_before": self.again,
            "warnings": self.warnings,
        }

    def to_text(self) -> str:
        lines = [
            f"notice of run {self.run_id}: {self.entitlements:,} entitlements, "
            f"{self.amount_fen / 100:,.2f} yuan"
            + (" (published before: the same files written again)" if self.again else ""),
            f"  published {self.published_on.isoformat()}; objections until "
            f"{self.deadline.isoformat()} ({self.working_days} working days)",
            f"  wrote {self.html} and {self.csv}",
        ]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def new_entitlements(engine: Engine, run_id: int) -> pl.DataFrame:
    """Per key, what run `run_id` credited the payee (grants and increases): the list a
    notice publishes."""
    t = Transfer.__table__
    stmt = select(t.c.policy_id, t.c.benefit_period, t.c.entity, t.c.payee, t.c.amount_fen).where(
        t.c.run_id == run_id,
        t.c.kind.in_(("grant", "adjustment")),
        t.c.credit_account.like("payable:%"),
    )
    schema = {
        "policy_id": pl.String,
        "benefit_period": pl.String,
        "entity": pl.String,
        "payee": pl.String,
        "amount_fen": pl.Int64,
    }
    with engine.connect() as conn:
        rows = read_frame(conn, stmt, schema)
    return rows.group_by("policy_id", "benefit_period", "entity").agg(
        pl.coalesce("payee", "entity").first().alias("payee"), pl.col("amount_fen").sum()
    )


def publish(
    engine: Engine,
    run_id: int,
    out: Path,
    *,
    days: int | None = None,
    published_on: dt.date | None = None,
    title: str | None = None,
    issuer: str = "the subsidy office",
    contact: str = "write to the subsidy office, giving the policy and the entity's identifier",
    calendar: Path | None = None,
) -> Published:
    """`disburse publish` (module docstring): the HTML at `out`, the CSV beside it."""
    run = runs.get_run(engine, run_id)
    if run is None or run.kind != runs.NIGHTLY or run.archive is None:
        raise JobError(
            f"run {run_id} is not a nightly run that decided entitlements",
            fix="`disburse ledger summary` lists the runs; publish a nightly run",
        )
    if run.state is not runs.RunState.COMPLETED:
        raise JobError(
            f"run {run_id} is {run.state.value}, not completed",
            fix="finish it first: run the same `disburse run` command again",
        )
    with engine.connect() as conn:
        before = notices(conn).filter(pl.col("run_id") == run_id)
    _cat, policies = archived_policies(run)
    listed = new_entitlements(engine, run_id)
    if days is None:
        wanted = [
            p.spec.notice.working_days
            for pid, p in policies.items()
            if p.spec.notice is not None and pid in set(listed["policy_id"].to_list())
        ]
        days = max(wanted, default=DEFAULT_DAYS)
    again = before.height > 0
    if again:
        row = before.row(0, named=True)
        if row["working_days"] != days:
            raise JobError(
                f"run {run_id} was published on {row['published_on']} for "
                f"{row['working_days']} working days, not {days}",
                fix="a notice is published once: leave out --days to write it again",
            )
        published_on = row["published_on"]
    day = published_on or dt.date.today()
    cal = load_work_calendar(calendar or holidays_path())
    deadline = objection_deadline(day, days, cal)
    frame = _named(run, listed, policies)
    header = NoticeHeader.of(
        deadline,
        title=title
        or f"Public notice of the subsidies to be paid (run {run_id}, as of {run.as_of})",
        issuer=issuer,
        contact=contact,
    )
    html = write_notice_html(frame, header, out)
    csv = write_notice_csv(frame, out.with_suffix(".csv"))
    if not again:
        with engine.connect() as conn:
            record_notice(
                conn,
                {
                    "run_id": run_id,
                    "published_on": day,
                    "working_days": days,
                    "deadline": deadline.on,
                    "entitlements": csv.count,
                    "amount_fen": csv.amount_fen,
                    "csv_sha256": csv.sha256,
                    "html_sha256": html.sha256,
                },
            )
    elif (csv.sha256, html.sha256) != (before["csv_sha256"][0], before["html_sha256"][0]):
        raise JobError(
            f"the notice of run {run_id} written again differs from the one published",
            fix="the run's archive or the calendar changed since; restore them from backup",
        )
    return Published(
        run_id,
        day,
        days,
        deadline.on,
        csv.count,
        csv.amount_fen,
        html.path,
        csv.path,
        again,
        [str(w) for w in deadline.warnings],
    )


def _named(run: runs.RunRecord, listed: pl.DataFrame, policies: dict) -> pl.DataFrame:  # type: ignore[type-arg]
    """`listed` with each policy's title and target and each entity's name, from the run's
    staged registry (`jobs.notice.COLUMNS`)."""
    staged = staged_dir(Path(run.store_dir or ""), run.run_id)
    meta = pl.DataFrame(
        {
            "policy_id": list(policies),
            "policy_title": [p.spec.title for p in policies.values()],
            "target": [p.target for p in policies.values()],
        }
    )
    names = pl.concat(
        [
            scan_staged(staged_file(staged, source))
            .select(pl.col(key).alias("entity"), pl.col("name"), pl.lit(target).alias("target"))
            .collect()
            for target, source, key in (
                ("enterprise", "enterprises", "credit_code"),
                ("person", "persons", "person_id"),
            )
            if staged_file(staged, source).is_file()
        ]
    )
    # A policy on a kind that is not paid itself (a household) lists the person paid.
    own = pl.col("target").is_in(["enterprise", "person"])
    return (
        listed.join(meta, on="policy_id", how="left")
        .with_columns(
            pl.when(own).then(pl.col("entity")).otherwise(pl.col("payee")).alias("entity"),
            pl.when(own).then(pl.col("target")).otherwise(pl.lit("person")).alias("target"),
        )
        .join(names, on=["entity", "target"], how="left")
        .select(
            "policy_id",
            "policy_title",
            "benefit_period",
            "target",
            pl.col("name").fill_null("(not in the registry)"),
            pl.col("entity").alias("identifier"),
            "amount_fen",
        )
    )


__all__ = ["Published", "new_entitlements", "publish"]
