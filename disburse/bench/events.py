"""How fast the event path decides: durable-rules alone, and end to end through the inbox.

Rows of a staged city's wide frames (features computed by the batch's Polars plan)
are decided four ways, in turn within each round so that a busy machine slows all
alike: the exact values asserted as facts are computed row by row (`fact`),
durable-rules matches the facts (`masks`: the rulesets alone), the reference
interpreter decides the same rows (`decide`), the row-at-a-time baseline, and the
event path's way decides them (`decide_frame`: the facts' values computed over the
frame at once, one fact per distinct outcome matched).  A warm-up round is discarded;
the report gives each round and the median.  Both durable-rules results are checked
equal to the reference interpreter's.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from disburse.synth.events import Event, day_of_events
from eligibility import ID_COLUMN, CheckedPolicy, Naming, PolicySet, wide_plans
from eligibility.backends.durable import Decider, compile_policy, decide_frame, fact
from eligibility.reference import RowReader, amount, decide, verdict
from jobs.catalogue import Catalogue
from jobs.evaluate import staged_scan
from ledgers import inbox


@dataclass(frozen=True)
class DurableRound:
    """One round: seconds for the facts, the matching and the reference interpreter."""

    facts_s: float
    match_s: float
    reference_s: float
    frame_s: float = 0.0  # decide_frame, the event path's way


@dataclass(frozen=True)
class DurableSpeed:
    """Decisions per second through durable-rules alone, and against the reference."""

    decisions: int  # rows x policies per round
    policies: dict[str, int]  # policy -> its conditions
    rounds: list[DurableRound]
    agree: bool

    def _median(self, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in self.rounds))

    @property
    def match_per_s(self) -> float:
        """durable-rules matching alone: decisions per second."""
        return self.decisions / self._median("match_s")

    @property
    def with_facts_per_s(self) -> float:
        """Exact facts and matching together: decisions per second."""
        return self.decisions / statistics.median(r.facts_s + r.match_s for r in self.rounds)

    @property
    def frame_per_s(self) -> float:
        """The event path's way (`decide_frame`): decisions per second."""
        return self.decisions / self._median("frame_s")

    @property
    def reference_per_s(self) -> float:
        """The reference interpreter: decisions per second."""
        return self.decisions / self._median("reference_s")

    def ratio(self) -> tuple[float, float, float]:
        """(median, min, max) of each round's (facts + matching) / reference time."""
        ratios = [(r.facts_s + r.match_s) / r.reference_s for r in self.rounds]
        return statistics.median(ratios), min(ratios), max(ratios)

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        med, lo, hi = self.ratio()
        return {
            "decisions_per_round": self.decisions,
            "policies": self.policies,
            "rounds": [asdict(r) for r in self.rounds],
            "match_per_s": round(self.match_per_s),
            "with_facts_per_s": round(self.with_facts_per_s),
            "frame_per_s": round(self.frame_per_s),
            "reference_per_s": round(self.reference_per_s),
            "ratio_to_reference": {"median": med, "min": lo, "max": hi},
            "agree": self.agree,
        }

    def to_text(self) -> list[str]:
        """The figures for people."""
        med, lo, hi = self.ratio()
        return [
            f"durable-rules decisions ({self.decisions:,} per round, "
            f"{len(self.rounds)} rounds after a warm-up, medians):",
            f"  matching alone:        {self.match_per_s:>10,.0f} decisions/s",
            f"  exact facts + match:   {self.with_facts_per_s:>10,.0f} decisions/s",
            f"  on a frame (events):   {self.frame_per_s:>10,.0f} decisions/s",
            f"  reference interpreter: {self.reference_per_s:>10,.0f} decisions/s",
            f"  time / reference: {med:.2f} (rounds {lo:.2f} to {hi:.2f}); "
            f"same results as the reference: {'yes' if self.agree else 'NO'}",
        ]


def durable_speed(
    staged_dir: Path, pset: PolicySet, as_of: dt.date, rows: int, rounds: int = 5
) -> DurableSpeed:
    """Decide up to `rows` entities of each kind with every policy active on `as_of`."""
    policies = pset.active(as_of)
    cat = pset.catalogue
    decider = Decider({p.id: compile_policy(p) for p in policies})
    work = []
    frames: list[tuple[CheckedPolicy, pl.DataFrame]] = []
    for kind, plan in wide_plans(staged_scan(staged_dir), policies, cat, as_of).items():
        wide = plan.head(rows).collect()
        for p in (p for p in policies if p.target == kind):
            payee, reader = Naming.payee(p.id), RowReader(p, cat, as_of)
            inputs = [
                (reader.env(r), r[ID_COLUMN], r.get(payee)) for r in wide.iter_rows(named=True)
            ]
            work.append((p, decider.rulesets[p.id], inputs))
            frames.append((p, wide))
    decisions = sum(len(inputs) for _p, _rs, inputs in work)
    agree = True
    out = []
    for k in range(rounds + 1):  # round 0 warms up and is discarded
        t0 = time.perf_counter()
        facts = [[fact(rs, env, i) for i, (env, _e, _p) in enumerate(inp)] for _p, rs, inp in work]
        t1 = time.perf_counter()
        masks = [decider.masks(p.id, f) for (p, _rs, _i), f in zip(work, facts, strict=True)]
        t2 = time.perf_counter()
        want = [[decide(p, *row) for row in inp] for p, _rs, inp in work]
        t3 = time.perf_counter()
        framed = [decide_frame(decider, p, cat, as_of, wide, [], ID_COLUMN) for p, wide in frames]
        t4 = time.perf_counter()
        if k == 0:
            for (p, _rs, inp), m, w, f in zip(work, masks, want, framed, strict=True):
                got = [
                    verdict(p, mask, amount(p, env), e, pay)
                    for mask, (env, e, pay) in zip(m, inp, strict=True)
                ]
                on_frame = f.select(list(w[0]) if w else []).to_dicts()
                agree = agree and got == w and on_frame == w
            continue
        out.append(DurableRound(t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    return DurableSpeed(decisions, {p.id: len(p.conditions) for p, _r, _i in work}, out, agree)


# --- end to end: the inbox, the serve, the ledger ----------------------------------------


WARM = 100  # events the serve decides as it starts, before it is timed


@dataclass(frozen=True)
class Latency:
    """Events offered one per transaction at a steady rate while a serve runs: from each
    insert's commit to the commit of its outcome (after its posting), in milliseconds."""

    offered_per_s: float
    events: int
    achieved_per_s: float  # what the inserting process managed to offer
    p50_ms: float
    p99_ms: float
    max_ms: float
    batches: int


@dataclass(frozen=True)
class EndToEnd:
    """A day of synthetic events (`disburse.synth.events`) through the inbox into the
    ledger: inserted in one transaction, then served until the inbox is empty."""

    database: str
    events: int
    batch: int
    insert_per_s: float
    start_seconds: float  # the serve's start: the night read and indexed, WARM events decided
    serve_seconds: float  # then `events` more, the serve running
    batches: int
    decided: int
    quarantined: int
    keys: int
    transfers: int
    latency: Latency | None

    @property
    def events_per_s(self) -> float:
        """Events served per second, inbox to ledger."""
        return self.events / self.serve_seconds

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {**asdict(self), "events_per_s": round(self.events_per_s)}

    def to_text(self) -> list[str]:
        """The figures for people."""
        out = [
            f"events end to end on {self.database} ({self.events:,} events, batches of "
            f"{self.batch:,}):",
            f"  inserted into the inbox: {self.insert_per_s:>10,.0f} events/s",
            f"  served into the ledger:  {self.events_per_s:>10,.0f} events/s "
            f"({self.batches} batches; {self.decided:,} decided, {self.quarantined:,} "
            f"quarantined; {self.keys:,} keys, {self.transfers:,} transfers), the serve "
            f"running: its start (the night read and indexed, {WARM} events decided) "
            f"took {self.start_seconds:.2f} s",
        ]
        if self.latency is not None:
            lat = self.latency
            out.append(
                f"  latency at {lat.offered_per_s:,.0f} events/s offered "
                f"({lat.events:,} events, {lat.achieved_per_s:,.0f}/s achieved, "
                f"{lat.batches} batches): p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, "
                f"max {lat.max_ms:.1f} ms"
            )
        return out


def _offer(url: str, events: list[Event], rate: float, out: str) -> None:
    """In a child process: insert `events` one per transaction at `rate` per second;
    write each event's id and the time its insert committed to `out`."""
    from ledgers.db import make_engine

    engine = make_engine(url, remember=False)
    done: list[tuple[int, float]] = []
    start = time.time()
    try:
        for k, event in enumerate(events):
            wait = start + k / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            with engine.begin() as conn:
                (event_id,) = inbox.add_events(conn, [event])
            done.append((event_id, time.time()))
    finally:
        engine.dispose()
        Path(out).write_text(json.dumps(done))


def events_end_to_end(
    url: str,
    store: Path,
    city: Path,
    *,
    catalogue: Catalogue,
    pset: PolicySet,
    as_of: dt.date,
    count: int,
    batch: int = 2000,
    offered_per_s: float = 1000.0,
    offered_seconds: float = 5.0,
    poll_seconds: float = 0.005,
) -> EndToEnd:
    """Serve `count` events of a synthetic day over the completed night in `url`, then
    offer more at `offered_per_s` for `offered_seconds` while serving, for latency."""
    from jobs.events.serve import EventServer
    from ledgers.db import make_engine
    from ledgers.keys import key_file, posting_key

    events = day_of_events(city, as_of, WARM + count + int(offered_per_s * offered_seconds))
    engine = make_engine(url, remember=False)
    try:
        with engine.begin() as conn:
            inbox.add_events(conn, events[:WARM])
        started = time.perf_counter()
        with engine.begin() as conn:
            inbox.add_events(conn, events[WARM : WARM + count])
        insert_s = time.perf_counter() - started

        server = EventServer(
            engine,
            store=store,
            catalogue=catalogue,
            pset=pset,
            key=posting_key(engine, key_file(store)),
            as_of=as_of,
            batch=WARM,
        )
        # Its start apart: a serve runs all day, and reads the night once.
        started = time.perf_counter()
        server.once()
        start_s = time.perf_counter() - started
        server.batch = batch
        started = time.perf_counter()
        totals = server.serve(until_idle=True)
        serve_s = time.perf_counter() - started
        latency = None
        offered = events[WARM + count :]
        if offered:
            latency = _latency(engine, url, server, offered, offered_per_s, poll_seconds)
    finally:
        engine.dispose()
    return EndToEnd(
        database=engine.dialect.name,
        events=count,
        batch=batch,
        insert_per_s=round(count / insert_s),
        start_seconds=round(start_s, 3),
        serve_seconds=round(serve_s, 3),
        batches=totals.batches,
        decided=totals.decided,
        quarantined=totals.quarantined,
        keys=totals.keys,
        transfers=totals.transfers,
        latency=latency,
    )


def _latency(
    engine: Engine,
    url: str,
    server: Any,
    offered: list[Event],
    rate: float,
    poll_seconds: float,
) -> Latency:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "inserted.json"
        child = mp.get_context("spawn").Process(
            target=_offer, args=(url, offered, rate, str(out)), daemon=True
        )
        served_at: dict[int, float] = {}

        def on_batch(b: Any) -> None:
            now = time.time()
            served_at.update(dict.fromkeys(b.event_ids, now))

        def stop() -> bool:
            return not child.is_alive() and len(served_at) >= len(offered)

        child.start()
        totals = server.serve(stop=stop, poll_seconds=poll_seconds, on_batch=on_batch)
        child.join()
        inserted = json.loads(out.read_text())
    waits = sorted((served_at[i] - t) * 1000 for i, t in inserted)
    span = inserted[-1][1] - inserted[0][1] if len(inserted) > 1 else 0.0
    return Latency(
        offered_per_s=rate,
        events=len(waits),
        achieved_per_s=round(len(inserted) / span) if span else 0.0,
        p50_ms=round(statistics.median(waits), 1),
        p99_ms=round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 1),
        max_ms=round(waits[-1], 1),
        batches=totals.batches,
    )
