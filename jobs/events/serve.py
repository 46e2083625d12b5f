"""`disburse events serve`: take the inbox's events in order, decide, post, record.

One batch at a time, under the nightly run's lock (a nightly run and the event path
never post at once; one waits for the other):

1. the newest completed nightly run is the base: its staged sources, as of its date;
2. the pending events (oldest first, at most `batch`) are validated by the catalogue's
   rules (`jobs.events.stage`) against the night with the events decided over it laid
   on, which the serve keeps in memory between batches (`jobs.events.overlay`); a
   pending event that fails is quarantined with its reason;
3. the entities the pending events affect are decided by durable-rules over the night
   with every event since laid over it (`jobs.events.decide`), for the policies that
   take events (`events: true`) and are valid on the day;
4. they are allocated against the ledger as the nightly run allocates (stacking in a
   group; a budget first come, first served within what remains) and posted under the
   keys the nightly run uses;
5. each event's outcome is recorded.

Posting is idempotent by key (the ledger posts the difference), and an outcome is
recorded only after its posting: killed between the two, the next serve decides the
same events again, posts nothing new and records them.  Replaying the inbox posts
nothing new.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine

from eligibility import CheckedPolicy, PolicySet
from jobs.allocate import allocate_policies, entitlements
from jobs.catalogue import Catalogue
from jobs.errors import JobError
from jobs.events.decide import decide_events, deciders
from jobs.events.overlay import Overlay
from jobs.events.stage import EVENT, OP
from jobs.faults import checkpoint
from jobs.ingest import staged_dir
from jobs.progress import Progress, Silent
from jobs.run import run_lock
from ledgers import inbox, runs
from ledgers.holdings import Holdings, chain_head, holdings
from ledgers.keys import LedgerKey
from ledgers.post import post_entitlements
from ledgers.runs import EVENTS, NIGHTLY, PolicyFile, RunRecord

KIND = EVENTS
# Where pending events are looked for (`EventServer._pending`): after the last event
# taken; every RECENT_SECONDS (and whenever that finds none) among the RECENT_IDS events
# before it too; every WHOLE_INBOX_SECONDS in the whole inbox.
RECENT_SECONDS = 1.0
RECENT_IDS = 100_000
WHOLE_INBOX_SECONDS = 60.0
UNKNOWN_SOURCE = "the event names no source of the catalogue"
UNREADABLE = "the event's row is not a JSON object of column values"


@dataclass
class Served:
    """What one batch did."""

    events: int = 0
    decided: int = 0
    quarantined: int = 0
    keys: int = 0
    transfers: int = 0
    seconds: float = 0.0
    event_ids: tuple[int, ...] = ()  # the events taken, decided or quarantined


@dataclass
class ServeTotals:
    """What a serve did, over its batches."""

    batches: int = 0
    events: int = 0
    decided: int = 0
    quarantined: int = 0
    keys: int = 0
    transfers: int = 0
    run_id: int | None = None
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, b: Served) -> None:
        """Count one batch in."""
        self.batches += 1
        self.events += b.events
        self.decided += b.decided
        self.quarantined += b.quarantined
        self.keys += b.keys
        self.transfers += b.transfers

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "batches": self.batches,
            "events": self.events,
            "decided": self.decided,
            "quarantined": self.quarantined,
            "keys": self.keys,
            "transfers": self.transfers,
            "run_id": self.run_id,
        }


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def parse_events(
    events: pl.DataFrame, catalogue: Catalogue
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """The inbox's rows as one frame per source (event_id, op, the columns as text), and
    the events that name no source or whose row is not readable, as quarantine rows."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    bad: list[dict[str, Any]] = []
    for event_id, source, op, row_json in events.iter_rows():
        if source not in catalogue.sources:
            bad.append(
                {
                    EVENT: event_id,
                    "column": "source",
                    "rule": "unknown_source",
                    "reason": UNKNOWN_SOURCE,
                }
            )
            continue
        try:
            row = json.loads(row_json)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            bad.append(
                {EVENT: event_id, "column": None, "rule": "unreadable_row", "reason": UNREADABLE}
            )
            continue
        columns = catalogue.sources[source].columns
        text = {c: _text(row.get(c)) for c in columns}
        by_source.setdefault(source, []).append({EVENT: event_id, OP: op, **text})
    frames = {
        name: pl.DataFrame(
            rows,
            schema={
                EVENT: pl.Int64,
                OP: pl.String,
                **dict.fromkeys(catalogue.sources[name].columns, pl.String),
            },
            orient="row",
        )
        for name, rows in by_source.items()
    }
    quarantined = pl.DataFrame(
        bad, schema={EVENT: pl.Int64, "column": pl.String, "rule": pl.String, "reason": pl.String}
    )
    return frames, quarantined


class EventServer:
    """Serves the inbox of one ledger database (see the module's docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        store: Path,
        catalogue: Catalogue,
        pset: PolicySet,
        key: LedgerKey,
        as_of: dt.date | None = None,
        batch: int = 500,
        progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.catalogue = catalogue
        self.pset = pset
        self.key = key
        self.as_of = as_of
        self.batch = batch
        self.progress = progress or Silent()
        self.run_id: int | None = None
        self._deciders: dict[tuple[str, ...], Any] = {}
        self._overlay: Overlay | None = None
        self._held: Holdings | None = None  # what the ledger held after this serve's last post
        self._taken: int | None = None  # the largest event id of this serve's last batch
        self._recent_at = 0.0  # when the recent events were last read for pending ones
        self._whole_at = 0.0  # when the whole inbox was

    def day(self) -> dt.date:
        """The day events are decided as of: given, or today."""
        return self.as_of or dt.date.today()

    def policies(self) -> list[CheckedPolicy]:
        """The policies that take events and are valid on the day."""
        return [p for p in self.pset.active(self.day()) if p.spec.events]

    def base(self) -> RunRecord:
        """The newest completed nightly run: the data events are laid over."""
        night = runs.latest_completed(self.engine, self.day(), NIGHTLY)
        if night is None:
            raise JobError(
                f"no nightly run has completed as of {self.day()}: events are decided over "
                "a night's staged sources",
                fix="run `disburse run` first, then serve events",
            )
        return night

    def _run(self, policies: list[CheckedPolicy]) -> int:
        if self.run_id is None:
            self.run_id = runs.start_run(
                self.engine,
                kind=KIND,
                as_of=self.day(),
                store_dir=self.store.resolve(),
                host=socket.gethostname(),
                pid=os.getpid(),
                policies=[PolicyFile(p.id, str(p.file), p.sha256) for p in policies],
            )
        return self.run_id

    def _close_abandoned(self) -> None:
        """Mark failed the events runs of this host whose process is gone (killed): what
        they posted stands, and their events without an outcome are taken again."""
        here = socket.gethostname()
        for run in runs.open_runs(self.engine, KIND):
            if run.host == here and run.pid is not None and not _alive(run.pid):
                runs.fail(
                    self.engine,
                    run.run_id,
                    "the serve stopped before it finished (killed?); what it posted stands "
                    "and the events it had not recorded were taken by the next serve",
                )

    def once(self) -> Served | None:
        """Decide, post and record one batch of pending events; None if there were none."""
        started = time.perf_counter()
        with run_lock(self.engine, wait=True, progress=self.progress):
            with self.engine.connect() as conn:
                waiting = self._pending(conn)
                if waiting.height == 0:
                    return None
                night = self.base()
                overlay = self.overlay(conn, night)
            try:
                served = self._batch(waiting, overlay, night)
            except BaseException:
                self._overlay = None  # half laid: built again for the next batch
                self._taken = None
                raise
            last = int(waiting.get_column("event_id").max())  # type: ignore[arg-type]
            self._taken = max(last, self._taken or 0)  # a late event's batch: lower
        served.seconds = time.perf_counter() - started
        return served

    def _pending(self, conn: Connection) -> pl.DataFrame:
        """The next batch of pending events, without reading the whole inbox each time.

        On PostgreSQL an event can commit after events of higher ids that a serve has
        already taken (its transaction took its id first and committed later).  So the
        inbox is read on from the last event taken; every `RECENT_SECONDS`, and
        whenever that finds none, from `RECENT_IDS` events before it; and every
        `WHOLE_INBOX_SECONDS` from its first event.  An event committed late is taken
        within a second, or a minute if its id is far behind: never lost."""
        now = time.monotonic()
        if self._taken is None or now - self._whole_at >= WHOLE_INBOX_SECONDS:
            self._whole_at = self._recent_at = now
            return inbox.pending(conn, self.batch)
        if now - self._recent_at < RECENT_SECONDS:
            waiting = inbox.pending(conn, self.batch, after=self._taken)
            if waiting.height:
                return waiting
        self._recent_at = now
        return inbox.pending(conn, self.batch, after=max(self._taken - RECENT_IDS, 0))

    def overlay(self, conn: Connection, night: RunRecord) -> Overlay:
        """The night with the events decided over it laid on: the one kept from the last
        batch, unless the night changed or events were decided over it elsewhere."""
        kept = self._overlay
        if (
            kept is not None
            and kept.base_run_id == night.run_id
            and kept.laid == inbox.decided_count(conn, night.run_id)
        ):
            return kept
        folder = staged_dir(Path(night.store_dir or self.store), night.run_id)
        overlay = Overlay(folder, self.catalogue, night.run_id)
        before = inbox.decided_over(conn, night.run_id)
        frames, _unreadable = parse_events(before, self.catalogue)
        staged = overlay.stage(frames)
        overlay.lay({n: s.accepted for n, s in staged.items() if s.accepted.height})
        overlay.laid = before.height
        self._overlay = overlay
        return overlay

    def _batch(self, waiting: pl.DataFrame, overlay: Overlay, night: RunRecord) -> Served:
        frames, unreadable = parse_events(waiting, self.catalogue)
        staged = overlay.stage(frames)
        new = {n: s.accepted for n, s in staged.items() if s.accepted.height}
        quarantined = pl.concat([unreadable, *(s.quarantined for s in staged.values())])
        policies = self.policies()
        run_id = self._run(policies)
        served = Served(
            events=waiting.height,
            quarantined=quarantined.height,
            event_ids=tuple(waiting["event_id"].to_list()),
        )
        checkpoint("events:staged")
        replaced = overlay.lay(new)
        if policies and new:
            result = self._decide_and_post(overlay, new, replaced, policies, run_id)
            served.keys, served.transfers = result
        checkpoint("events:posted")
        decided_ids = sorted({e for a in new.values() for e in a[EVENT].to_list()})
        outcomes = pl.concat(
            [
                pl.DataFrame(
                    {
                        "event_id": decided_ids,
                        "outcome": ["decided"] * len(decided_ids),
                        "run_id": [run_id] * len(decided_ids),
                        "base_run_id": [night.run_id] * len(decided_ids),
                    },
                    schema_overrides={
                        "event_id": pl.Int64,
                        "run_id": pl.Int64,
                        "base_run_id": pl.Int64,
                    },
                ),
                quarantined.select(
                    pl.col(EVENT).alias("event_id"),
                    pl.lit("quarantined").alias("outcome"),
                    pl.lit(run_id, pl.Int64).alias("run_id"),
                    pl.lit(night.run_id, pl.Int64).alias("base_run_id"),
                    pl.col("column").alias("column_name"),
                    "rule",
                    "reason",
                ),
            ],
            how="diagonal_relaxed",
        ).sort("event_id")
        with self.engine.begin() as conn:
            inbox.record_outcomes(conn, outcomes)
        checkpoint("events:recorded")
        served.decided = len(decided_ids)
        return served

    def _decide_and_post(
        self,
        overlay: Overlay,
        new: dict[str, pl.DataFrame],
        replaced: dict[str, pl.DataFrame],
        policies: list[CheckedPolicy],
        run_id: int,
    ) -> tuple[int, int]:
        ids = tuple(sorted(p.id for p in policies))
        decider = self._deciders.get(ids)
        if decider is None:
            decider = self._deciders[ids] = deciders(policies)
        as_of = self.day()
        result = decide_events(overlay, self.pset, policies, as_of, new, replaced, decider)
        decided = result.decisions
        if decided.height == 0:
            return 0, 0
        groups = {p.spec.group for p in policies if p.spec.group}
        others = [p for p in self.pset.policies if p.spec.group in groups and p not in policies]
        known = self._holdings(sorted({p.id for p in [*policies, *others]}))
        held = known.nonzero()
        keys = ["policy_id", "period", "entity_id"]
        held_keys = held.select(
            "policy_id",
            pl.col("benefit_period").alias("period"),
            pl.col("entity").alias("entity_id"),
        ).unique()
        claims = pl.concat(
            [
                decided.filter(pl.col("eligible")),
                decided.filter(~pl.col("eligible")).join(held_keys, on=keys, how="semi"),
            ]
        )
        # What the ledger holds for the entities decided (stacking and what each holds
        # go by entity), and every key of a budgeted policy (what its budget has left
        # counts what the others hold): not every key of the city.
        budgeted = sorted(p.id for p in [*policies, *others] if p.spec.budget is not None)
        held = held.filter(
            pl.col("entity").is_in(claims.get_column("entity_id").unique().implode())
            | pl.col("policy_id").is_in(budgeted)
        )
        allocation = allocate_policies(claims, policies, others, as_of, held)
        # The decision each posted key carries names the events that decided it, for
        # `disburse explain` (`jobs.explain`).
        frame = (
            entitlements(allocation, policies)
            .join(
                result.by.rename({"entity_id": "entity"}),
                on=["target", "entity"],
                how="left",
                maintain_order="left",
            )
            .with_columns(
                pl.struct("claim_fen", "stacking", "budget", "events")
                .struct.json_encode()
                .alias("decision")
            )
            .drop("events")
        )
        checkpoint("events:decided")
        if frame.height == 0:
            return 0, 0
        self._held = None  # the post hands back what the ledger holds after it
        posted = post_entitlements(
            self.engine, frame, run_id, key=self.key, known=known, then=self._keep_held
        )
        return frame.height, posted.transfers

    def _holdings(self, policy_ids: list[str]) -> Holdings:
        """What the ledger holds for these policies: kept from the last post if the chain
        head is still the one it was read at (nothing posted since), else read again."""
        kept = self._held
        if kept is not None and kept.policy_ids == frozenset(policy_ids):
            with self.engine.connect() as conn:
                if chain_head(conn) == kept.head:
                    return kept
        self._held = holdings(self.engine, policy_ids)
        return self._held

    def _keep_held(self, held: Holdings) -> None:
        self._held = held

    def serve(
        self,
        *,
        until_idle: bool = False,
        poll_seconds: float = 0.2,
        stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[Served], None] | None = None,
    ) -> ServeTotals:
        """Serve batches until the inbox is empty (`until_idle`) or `stop()` says so;
        between batches wait for a notification (PostgreSQL) or poll (SQLite)."""
        if not self.policies():
            raise JobError(
                f"no policy valid on {self.day()} takes events: there is nothing to decide "
                "them with",
                fix="say `events: true` in the policies an event should decide (see "
                "docs/policies.md, 'Events'), or give --as-of a day they are valid",
            )
        self._close_abandoned()
        totals = ServeTotals()
        waiter = _Waiter(self.engine, poll_seconds)
        try:
            while not stop():
                served = self.once()
                if served is None:
                    if until_idle:
                        break
                    waiter.wait()
                    continue
                totals.add(served)
                if on_batch is not None:
                    on_batch(served)
        finally:
            waiter.close()
        totals.run_id = self.run_id
        if self.run_id is not None:
            runs.complete(self.engine, self.run_id, summary=totals.to_json(), timings={})
        self.run_id = None  # a serve is one run: serving again starts another
        return totals


def _alive(pid: int) -> bool:
    """Whether a process of this host with id `pid` is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: running
        return True
    return True


class _Waiter:
    """Waits for the next event: LISTEN on PostgreSQL (the inbox's trigger notifies),
    a short sleep on SQLite."""

    def __init__(self, engine: Engine, poll_seconds: float) -> None:
        self.poll = poll_seconds
        self.conn: Any = None
        if engine.dialect.name == "postgresql":
            import psycopg

            url = engine.url.set(drivername="postgresql")
            self.conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            self.conn.execute(f"LISTEN {inbox.CHANNEL}")

    def wait(self) -> None:
        """Until an event arrives, or at most the poll interval."""
        if self.conn is None:
            time.sleep(self.poll)
            return
        for _ in self.conn.notifies(timeout=self.poll, stop_after=1):
            break

    def close(self) -> None:
        """Stop listening."""
        if self.conn is not None:
            self.conn.close()
