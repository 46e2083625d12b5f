"""The run records: every ingest, post or nightly batch is a row of `runs`, and this module
is the only code that reads or writes it (with the snapshots a run recorded).

A nightly run moves through its states in order, each written once its phase is
durable (see `jobs.run`):

    started -> ingested -> evaluated -> posted -> completed        (or failed)

A run in an open state was interrupted (or is running); from `evaluated` on it is
decided: its allocation is recorded and only posting remains.  The record says
what the run read (the sha256 of every source and policy file, of the source
catalogue and of everything its decisions depend on) and the content-hashed files
it decided from, so a crashed run resumes from it and `explain` answers from it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection, Engine, Row, Table, case, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from ledgers.schema import PolicySnapshot, QuarantinedRow, Run, SourceSnapshot, Transfer

NIGHTLY: Final = "nightly"
EVENTS: Final = "events"  # `disburse events serve` (jobs.events.serve)
# Writers that may record a run at the same moment (a nightly run, an ingest, a post).
_ID_ATTEMPTS: Final = 100


class RunState(StrEnum):
    """Where a run got to; stored as its value in `runs.state`."""

    STARTED = "started"  # recorded with the policy files it will read
    INGESTED = "ingested"  # sources validated and staged, with snapshots and quarantine
    EVALUATED = "evaluated"  # claims, allocation and archive written and recorded
    POSTED = "posted"  # the ledger holds the allocation
    COMPLETED = "completed"  # the summary is recorded
    FAILED = "failed"  # ended with a message; nothing more happens to it

    @property
    def is_open(self) -> bool:
        """Interrupted or still running: the next nightly run finishes or abandons it."""
        return self in OPEN_STATES

    @property
    def is_decided(self) -> bool:
        """Its allocation is recorded: it is finished from the record, never decided again."""
        return self in DECIDED_STATES


OPEN_STATES: Final = frozenset(
    {RunState.STARTED, RunState.INGESTED, RunState.EVALUATED, RunState.POSTED}
)
DECIDED_STATES: Final = frozenset({RunState.EVALUATED, RunState.POSTED})
# A run in one of these has staged its sources (a later run may link them).
STAGED_STATES: Final = frozenset(
    {RunState.INGESTED, RunState.EVALUATED, RunState.POSTED, RunState.COMPLETED}
)


def _values(states: Iterable[RunState]) -> list[str]:
    """The states as plain text for SQL (drivers bind `str`, not its subclasses)."""
    return sorted(s.value for s in states)


def _compact(data: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON: the same bytes in every database."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


# --- the typed record ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashedFile:
    """A file a run wrote or archived, and the sha256 it had then."""

    file: str
    sha256: str

    @property
    def path(self) -> Path:
        """The file as a path."""
        return Path(self.file)

    def to_json(self) -> dict[str, str]:
        """As stored: {"file": ..., "sha256": ...}."""
        return {"file": self.file, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> HashedFile:
        """From its stored form."""
        return cls(file=str(data["file"]), sha256=str(data["sha256"]))


@dataclass(frozen=True)
class RunArchive:
    """What a nightly run archived beside its claims, stored as `runs.archive_json`.

    `features`: per entity kind, the wide file of every entity's feature values,
    condition results and amounts; `policies`: per policy id, the copy of the
    policy file the run read; `catalogue`: the copy of the feature catalogue
    (archives of the earliest runs have none).
    """

    features: Mapping[str, HashedFile] = field(default_factory=dict)
    policies: Mapping[str, HashedFile] = field(default_factory=dict)
    catalogue: HashedFile | None = None
    # Back-pay (`back_pay`): per day a past period was decided as of (ISO), the wide file
    # per entity kind; and the claims of those past periods, with that day (`as_of`).
    back_pay: Mapping[str, Mapping[str, HashedFile]] = field(default_factory=dict)
    back_pay_claims: HashedFile | None = None

    def files(self) -> list[HashedFile]:
        """Every archived file."""
        extra = [self.catalogue] if self.catalogue is not None else []
        past = [f for files in self.back_pay.values() for f in files.values()]
        if self.back_pay_claims is not None:
            past.append(self.back_pay_claims)
        return [*self.features.values(), *self.policies.values(), *extra, *past]

    def to_json(self) -> str:
        """The compact JSON stored on the run row."""
        data: dict[str, Any] = {
            "features": {k: f.to_json() for k, f in self.features.items()},
            "policies": {k: f.to_json() for k, f in self.policies.items()},
        }
        if self.catalogue is not None:
            data["catalogue"] = self.catalogue.to_json()
        if self.back_pay:
            data["back_pay"] = {
                day: {k: f.to_json() for k, f in files.items()}
                for day, files in self.back_pay.items()
            }
        if self.back_pay_claims is not None:
            data["back_pay_claims"] = self.back_pay_claims.to_json()
        return _compact(data)

    @classmethod
    def from_json(cls, text: str) -> RunArchive:
        """Parse the stored JSON."""
        data = json.loads(text)
        claims = data.get("back_pay_claims")
        return cls(
            features={k: HashedFile.from_json(v) for k, v in data.get("features", {}).items()},
            policies={k: HashedFile.from_json(v) for k, v in data.get("policies", {}).items()},
            catalogue=HashedFile.from_json(data["catalogue"]) if "catalogue" in data else None,
            back_pay={
                day: {k: HashedFile.from_json(v) for k, v in files.items()}
                for day, files in data.get("back_pay", {}).items()
            },
            back_pay_claims=HashedFile.from_json(claims) if claims else None,
        )


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`, typed, with the sha256 of the sources and policies it recorded."""

    run_id: int
    kind: str
    as_of: dt.date
    state: RunState
    data_dir: str
    store_dir: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    message: str | None = None
    host: str | None = None
    pid: int | None = None
    catalogue_sha256: str | None = None
    inputs_sha256: str | None = None
    claims: HashedFile | None = None  # the decision table's eligible rows
    allocation: HashedFile | None = None  # the desired amount of every key
    archive: RunArchive | None = None
    counts: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # source -> sha256
    policies: Mapping[str, str] = field(default_factory=dict)  # policy id -> sha256

    def describe(self) -> str:
        """One line naming the run for people: who runs it, since when, how far it got."""
        return (
            f"run {self.run_id} (as of {self.as_of}, state {self.state}, pid {self.pid} on "
            f"{self.host}, started {self.started_at:%Y-%m-%d %H:%M:%S})"
        )


def _hashed(file: str | None, sha256: str | None) -> HashedFile | None:
    return None if file is None or sha256 is None else HashedFile(file, sha256)


def _record(row: Row[Any], sources: Mapping[str, str], policies: Mapping[str, str]) -> RunRecord:
    return RunRecord(
        run_id=int(row.run_id),
        kind=row.kind,
        as_of=row.as_of,
        state=RunState(row.state),
        data_dir=row.data_dir,
        store_dir=row.store_dir,
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
        host=row.host,
        pid=row.pid,
        catalogue_sha256=row.catalogue_sha256,
        inputs_sha256=row.inputs_sha256,
        claims=_hashed(row.claims_file, row.claims_sha256),
        allocation=_hashed(row.allocation_file, row.allocation_sha256),
        archive=None if row.archive_json is None else RunArchive.from_json(row.archive_json),
        counts=json.loads(row.counts_json) if row.counts_json else {},
        timings=json.loads(row.timings_json) if row.timings_json else {},
        summary=json.loads(row.summary_json) if row.summary_json else None,
        sources=sources,
        policies=policies,
    )


# --- connections ---------------------------------------------------------------------

Bind = Engine | Connection


@contextmanager
def _writing(bind: Bind) -> Iterator[Connection]:
    """A transaction of its own on an engine; on a connection, the caller's.

    SQLite: BEGIN IMMEDIATE, so a transition that reads before it writes holds the
    write lock from the start (a deferred one fails at once if another process
    wrote in between, whatever the busy timeout)."""
    if isinstance(bind, Engine):
        with bind.connect() as bare:
            conn = bare.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
    else:
        yield bind


@contextmanager
def _reading(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            yield conn
    else:
        yield bind


def _set(bind: Bind, run_id: int, **values: Any) -> None:
    with _writing(bind) as conn:
        conn.execute(update(Run).where(Run.run_id == run_id).values(**values))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- writing: one function per transition --------------------------------------------


class PolicyFile(NamedTuple):
    """A policy file as a run read it."""

    policy_id: str
    file: str
    sha256: str


def start_run(
    bind: Bind,
    *,
    kind: str,
    as_of: dt.date,
    data_dir: Path | str = "",
    store_dir: Path | str | None = None,
    state: RunState | str = RunState.STARTED,
    started_at: dt.datetime | None = None,
    host: str | None = None,
    pid: int | None = None,
    policies: Iterable[PolicyFile] = (),
) -> int:
    """Insert a run row (with the policy files it reads, if any) and return its id.

    On a connection, the caller's transaction commits it.  The id is the next after
    the highest recorded, never a PostgreSQL sequence's (which a transaction rolled
    back, or killed, spends for good): a run killed before its first commit leaves
    no gap, so the run the same command makes again has the id, and its transfers
    the hashes, an uninterrupted run would have had."""
    # Only the columns given: a run of any kind can be recorded on the baseline schema.
    who = {k: v for k, v in (("host", host), ("pid", pid)) if v is not None}
    values = {
        "kind": kind,
        "as_of": as_of,
        "state": RunState(state).value,
        "data_dir": str(data_dir),
        "store_dir": None if store_dir is None else str(store_dir),
        "started_at": started_at or _now(),
        **who,
    }
    with _writing(bind) as conn:
        run_id = _insert_run(conn, values)
        snapshots = [
            {"run_id": run_id, "policy_id": p.policy_id, "file": p.file, "sha256": p.sha256}
            for p in sorted(policies)
        ]
        if snapshots:
            conn.execute(insert(PolicySnapshot), snapshots)
    return run_id


def _insert_run(conn: Connection, values: Mapping[str, Any]) -> int:
    """Insert the run row with the next id after the highest; its id.

    SQLite gives an INTEGER PRIMARY KEY exactly that by itself, under its write
    lock.  PostgreSQL: two writers may both read the same highest id; the second
    waits for the first's commit and fails on the primary key, so it reads again,
    in a savepoint that keeps the caller's transaction."""
    if conn.dialect.name != "postgresql":
        return int(conn.execute(insert(Run).values(**values).returning(Run.run_id)).scalar_one())
    following = select(func.coalesce(func.max(Run.run_id), 0) + 1).scalar_subquery()
    for _ in range(_ID_ATTEMPTS):
        try:
            with conn.begin_nested():
                stmt = insert(Run).values(run_id=following, **values).returning(Run.run_id)
                return int(conn.execute(stmt).scalar_one())
        except IntegrityError as exc:
            if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) != "runs_pkey":
                raise
    raise RuntimeError(f"no free run id after {_ID_ATTEMPTS} attempts")  # pragma: no cover


def claim(bind: Bind, run_id: int, *, host: str, pid: int) -> None:
    """Record the process that now carries the run on (a resumed run changes hands)."""
    _set(bind, run_id, host=host, pid=pid)


def mark_ingested(
    bind: Bind, run_id: int, *, catalogue_sha256: str, finished: bool = False
) -> None:
    """The run's sources are staged under this source catalogue (`finished`: the run ends here)."""
    done = {"finished_at": _now()} if finished else {}
    _set(
        bind,
        run_id,
        state=RunState.INGESTED.value,
        catalogue_sha256=catalogue_sha256,
        **done,
    )


def record_linked_ingest(
    bind: Bind,
    run_id: int,
    earlier: int,
    *,
    staged: Path,
    files: Mapping[str, str],
    catalogue_sha256: str,
) -> int:
    """Record as this run's ingest what `earlier` ingested from the same files: its source
    snapshots (with this run's `files` and `staged` folder) and its quarantine; the rows read.

    The caller has linked the staged files into `staged`; all of it lands in one
    transaction with the state "ingested"."""
    q = QuarantinedRow.__table__
    assert isinstance(q, Table)
    cols = ["source", "row_no", "column_name", "rule", "value", "row_json"]
    with _writing(bind) as conn:
        snaps = conn.execute(
            select(SourceSnapshot.__table__).where(SourceSnapshot.run_id == earlier)
        ).all()
        conn.execute(
            insert(q).from_select(
                ["run_id", *cols],
                select(literal(run_id), *[q.c[c] for c in cols])
                .where(q.c.run_id == earlier)
                .order_by(q.c.id),
            )
        )
        conn.execute(
            insert(SourceSnapshot),
            [
                {
                    "run_id": run_id,
                    "source": s.source,
                    "file": files[s.source],
                    "format": s.format,
                    "sha256": s.sha256,
                    "rows": s.rows,
                    "accepted": s.accepted,
                    "quarantined": s.quarantined,
                    "staged_file": str(staged / f"{s.source}.parquet"),
                }
                for s in snaps
            ],
        )
        mark_ingested(conn, run_id, catalogue_sha256=catalogue_sha256)
    return sum(int(s.rows) for s in snaps)


def mark_evaluated(
    bind: Bind,
    run_id: int,
    *,
    inputs_sha256: str,
    claims: HashedFile,
    allocation: HashedFile,
    archive: RunArchive,
    counts: Mapping[str, Any],
) -> None:
    """The run is decided: its claims, allocation and archive are written and recorded."""
    _set(
        bind,
        run_id,
        state=RunState.EVALUATED.value,
        inputs_sha256=inputs_sha256,
        claims_file=claims.file,
        claims_sha256=claims.sha256,
        allocation_file=allocation.file,
        allocation_sha256=allocation.sha256,
        archive_json=archive.to_json(),
        counts_json=_compact(counts),
    )


def mark_posted(bind: Bind, run_id: int) -> None:
    """The ledger holds the run's allocation."""
    _set(bind, run_id, state=RunState.POSTED.value)


def complete(
    bind: Bind, run_id: int, *, summary: Mapping[str, Any], timings: Mapping[str, Any]
) -> None:
    """The run is finished with its summary; `timings` join those of earlier invocations
    (a resumed run keeps the phases it timed before it was interrupted)."""
    with _writing(bind) as conn:
        old = conn.execute(select(Run.timings_json).where(Run.run_id == run_id)).scalar_one()
        merged = {**(json.loads(old) if old else {}), **timings}
        _set(
            conn,
            run_id,
            state=RunState.COMPLETED.value,
            finished_at=_now(),
            summary_json=_compact(summary),
            timings_json=_compact(merged),
        )


def fail(bind: Bind, run_id: int, message: str) -> None:
    """The run ends failed with `message` (the first 2000 characters)."""
    _set(bind, run_id, state=RunState.FAILED.value, finished_at=_now(), message=message[:2000])


# --- reading -------------------------------------------------------------------------


def _snapshot_hashes(
    conn: Connection, name: Any, sha256: Any, run: Any, run_id: int
) -> dict[str, str]:
    rows = conn.execute(select(name, sha256).where(run == run_id)).all()
    return dict(sorted((str(r[0]), str(r[1])) for r in rows))


def recorded_sources(bind: Bind, run_id: int) -> dict[str, str]:
    """source -> sha256 of the source files the run read, sorted by source."""
    t = SourceSnapshot
    with _reading(bind) as conn:
        return _snapshot_hashes(conn, t.source, t.sha256, t.run_id, run_id)


def recorded_policies(bind: Bind, run_id: int) -> dict[str, str]:
    """policy id -> sha256 of the policy files the run read, sorted by id."""
    t = PolicySnapshot
    with _reading(bind) as conn:
        return _snapshot_hashes(conn, t.policy_id, t.sha256, t.run_id, run_id)


def _records(conn: Connection, rows: Iterable[Row[Any]]) -> list[RunRecord]:
    return [
        _record(r, recorded_sources(conn, r.run_id), recorded_policies(conn, r.run_id))
        for r in rows
    ]


def get_run(bind: Bind, run_id: int) -> RunRecord | None:
    """The run's record, or None if there is no such run."""
    with _reading(bind) as conn:
        row = conn.execute(select(Run.__table__).where(Run.run_id == run_id)).first()
        return None if row is None else _records(conn, [row])[0]


def state_of(bind: Bind, run_id: int) -> RunState:
    """The run's state."""
    with _reading(bind) as conn:
        return RunState(conn.execute(select(Run.state).where(Run.run_id == run_id)).scalar_one())


def open_runs(bind: Bind, kind: str = NIGHTLY) -> list[RunRecord]:
    """The runs of `kind` in an open state, oldest first."""
    with _reading(bind) as conn:
        rows = conn.execute(
            select(Run.__table__)
            .where(Run.kind == kind, Run.state.in_(_values(OPEN_STATES)))
            .order_by(Run.run_id)
        ).all()
        return _records(conn, rows)


def newest_open(bind: Bind, kind: str = NIGHTLY) -> RunRecord | None:
    """The newest run of `kind` in an open state (the one holding the run lock, if any)."""
    runs = open_runs(bind, kind)
    return runs[-1] if runs else None


def latest_completed(bind: Bind, on_or_before: dt.date, kind: str = NIGHTLY) -> RunRecord | None:
    """The newest completed run of `kind` as of `on_or_before` or earlier (the night whose
    staged sources a payment file reads the payees' accounts from), or None."""
    with _reading(bind) as conn:
        found = conn.execute(
            select(func.max(Run.run_id)).where(
                Run.kind == kind,
                Run.state == RunState.COMPLETED.value,
                Run.as_of <= on_or_before,
            )
        ).scalar_one_or_none()
        return None if found is None else get_run(conn, int(found))


def latest_run_id(bind: Bind) -> int | None:
    """The id of the newest run of any kind, or None if there is none."""
    with _reading(bind) as conn:
        found = conn.execute(select(func.max(Run.run_id))).scalar_one_or_none()
    return None if found is None else int(found)


def reusable_ingest(
    bind: Bind,
    *,
    catalogue_sha256: str,
    sources: Mapping[str, str],
    kept: Callable[[RunRecord], bool],
) -> RunRecord | None:
    """The newest of the last 20 runs that staged exactly these `sources` (name -> sha256)
    under this source catalogue and whose staged files are still `kept`."""
    with _reading(bind) as conn:
        rows = conn.execute(
            select(Run.__table__)
            .where(
                Run.catalogue_sha256 == catalogue_sha256,
                Run.state.in_(_values(STAGED_STATES)),
            )
            .order_by(Run.run_id.desc())
            .limit(20)
        ).all()
        for row in rows:
            if recorded_sources(conn, row.run_id) != dict(sources):
                continue
            run = _records(conn, [row])[0]
            if kept(run):
                return run
    return None


def reusable_decisions(bind: Bind, inputs_sha256: str) -> RunRecord | None:
    """The newest of the last 5 runs decided from the same inputs whose claims and archive
    files are all still there."""
    with _reading(bind) as conn:
        rows = conn.execute(
            select(Run.__table__)
            .where(Run.inputs_sha256 == inputs_sha256, Run.claims_sha256.is_not(None))
            .order_by(Run.run_id.desc())
            .limit(5)
        ).all()
        for run in _records(conn, rows):
            assert run.claims is not None
            archived = run.archive.files() if run.archive is not None else []
            if all(f.path.is_file() for f in [run.claims, *archived]):
                return run
    return None


def evaluated_with(bind: Bind, policy_id: str, kind: str = NIGHTLY) -> RunRecord | None:
    """The newest run of `kind` whose archive holds policy `policy_id`."""
    with _reading(bind) as conn:
        rows = conn.execute(
            select(Run.run_id, Run.archive_json)
            .where(Run.kind == kind, Run.archive_json.is_not(None))
            .order_by(Run.run_id.desc())
        ).all()
        for row in rows:
            if policy_id in RunArchive.from_json(row.archive_json).policies:
                return get_run(conn, int(row.run_id))
    return None


class SourceCount(NamedTuple):
    """How many rows a run read of one source, and how many of them it quarantined."""

    rows: int
    quarantined: int


def source_counts(bind: Bind, run_id: int) -> dict[str, SourceCount]:
    """source -> rows read and quarantined, as the run recorded them, sorted by source."""
    t = SourceSnapshot
    with _reading(bind) as conn:
        rows = conn.execute(
            select(t.source, t.rows, t.quarantined).where(t.run_id == run_id).order_by(t.source)
        ).all()
    return {r.source: SourceCount(int(r.rows), int(r.quarantined)) for r in rows}


class Posted(NamedTuple):
    """The transfers of one kind a run posted for one policy and benefit period."""

    policy_id: str
    kind: str
    transfers: int
    amount_fen: int
    benefit_period: str | None = None


def posted_by(bind: Bind, run_id: int) -> list[Posted]:
    """What the run posted, per policy, benefit period and kind of transfer, in that order;
    an adjustment as an `increase` (from the budget) or a `decrease` (back to it)."""
    t = Transfer.__table__
    kind = case(
        (
            t.c.kind == "adjustment",
            case(
                (func.substr(t.c.debit_account, 1, 7) == "budget:", "increase"),
                else_="decrease",
            ),
        ),
        else_=t.c.kind,
    ).label("kind")
    with _reading(bind) as conn:
        rows = conn.execute(
            select(t.c.policy_id, t.c.benefit_period, kind, func.count(), func.sum(t.c.amount_fen))
            .where(t.c.run_id == run_id)
            .group_by(t.c.policy_id, t.c.benefit_period, kind)
            .order_by(t.c.policy_id, t.c.benefit_period, kind)
        ).all()
    return [
        Posted(str(p), str(k), int(n), int(total or 0), None if period is None else str(period))
        for p, period, k, n, total in rows
    ]


__all__ = [
    "DECIDED_STATES",
    "NIGHTLY",
    "OPEN_STATES",
    "STAGED_STATES",
    "HashedFile",
    "PolicyFile",
    "Posted",
    "RunArchive",
    "RunRecord",
    "RunState",
    "SourceCount",
    "claim",
    "complete",
    "evaluated_with",
    "fail",
    "get_run",
    "latest_completed",
    "latest_run_id",
    "mark_evaluated",
    "mark_ingested",
    "mark_posted",
    "newest_open",
    "open_runs",
    "posted_by",
    "record_linked_ingest",
    "recorded_policies",
    "recorded_sources",
    "reusable_decisions",
    "reusable_ingest",
    "source_counts",
    "start_run",
]
