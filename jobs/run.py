"""The nightly run: ingest, evaluate, allocate, post, summarise; resumable, one at a time.

A run is a row in `runs` (kind "nightly", `ledgers.runs`) whose state says how far it got:

    started -> ingested -> evaluated -> posted -> completed        (or failed)

* ingested: the sources are validated and staged under <store>/runs/<id>/sources,
  with their snapshots and quarantine, in one transaction;
* evaluated: the wide archive (features, conditions and amounts of every entity),
  the claims (the decision table's eligible rows; the refused ones are derived
  from the archive when explain or report asks) and the allocation (the desired
  amount of every key after stacking and budgets) are written as content-hashed
  Parquet files beside the staged sources and recorded on the row; from here on
  the run is decided, and only posting remains;
* posted: the ledger holds the allocation (posting writes only differences, so
  it can be repeated after a crash mid-way and writes what is missing);
* completed: the summary, read back from the ledger, is on the row.

Killed at any moment, the same command again finishes the interrupted run from
its state (`jobs.resume`): a run that was not yet evaluated has posted nothing
and is simply redone (or abandoned as failed if its inputs changed meanwhile); a
run that was evaluated is always posted from its recorded allocation, never
re-decided, so the ledger ends exactly as if nothing had happened.

One run at a time per database (`ledgers.locks.RUN_LOCK`): on PostgreSQL a lock on
the runs table that only a role that may write runs can take (an auditor's login
cannot block the night with it), or an exclusive lock on a file beside the SQLite
database (its real path); both vanish with the process, so a killed run never leaves
a stale lock.  A second run exits with a message naming the running one and its
session, or waits for it with `wait=True`.  `events serve` takes the same lock for
each batch it posts; a run that finds a serve open waits for its batch.

Faults from outside (a full disk, a database that refuses the login or is lost,
SQLite locked past its busy timeout) raise RunFault, and SIGTERM or SIGINT
RunInterrupted (exit 143 / 130): each says where the run stopped and what to do,
and leaves the run open, so the same command again finishes it with the ledger of
an uninterrupted run.  Only bad input ends a run failed (it had posted nothing).
Run ids are deterministic (`ledgers.runs.start_run`): a run killed inside the
transaction that records it leaves no gap.

Nothing is computed twice when nothing changed: if the source files (by
sha256) and the catalogue are those of an earlier run, its staged files are
linked instead of validated again; if also the features and policies are the
same, its archive and claims are reused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine

from eligibility import CheckedPolicy, PolicySet, back_pay_dates
from jobs import once
from jobs.allocate import (
    Allocation,
    Terms,
    allocate_back_pay,
    allocate_policies,
    entitlements,
)
from jobs.catalogue import Catalogue
from jobs.engines import EngineChoice, Evaluator, evaluator
from jobs.errors import JobError
from jobs.evaluate import accounts_paid, decisions_of_wide, evaluated_counts
from jobs.faults import Fault, Stopped, checkpoint, outside_fault, stop_on_signals
from jobs.ingest import (
    STAGED_COMPRESSION,
    ingest,
    locate_sources,
    sha256_file,
    sha256_files,
    staged_dir,
)
from jobs.objections import upheld_claims
from jobs.policies import load_policy_files
from jobs.progress import PhaseTiming, Progress, Silent, peak_rss_mb, timed
from jobs.resume import ABANDONED, Step, Tonight, plan_resume
from jobs.settings import Settings
from jobs.staged import is_staged, staged_file
from jobs.summary import RunOutcome, RunSummary, run_summary
from ledgers import runs
from ledgers.checkpoints import write_checkpoint
from ledgers.db import open_engine
from ledgers.holdings import Holdings, holdings
from ledgers.keys import key_file, posting_key
from ledgers.locks import RUN_LOCK, LockBusy, hold, session_alive
from ledgers.post import post_entitlements
from ledgers.runs import EVENTS, NIGHTLY, HashedFile, PolicyFile, RunArchive, RunRecord, RunState

KIND = NIGHTLY
# Bump when the same inputs would decide differently, or the decided files change shape
# (2: the claims file holds the eligible rows only).
ENGINE_VERSION = "disburse-decisions-2"
PHASES = ("ingest", "evaluate", "allocate", "post", "summary")
DEFAULT_CHUNK_SIZE = 100_000


@dataclass
class RunRequest:
    """What `disburse run` was asked to do."""

    data_dir: Path
    as_of: dt.date
    store: Path
    features_file: Path
    wait: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    engine: EngineChoice = field(default_factory=EngineChoice)  # computes the features


# --- the run lock --------------------------------------------------------------------


class RunLock:
    """The run lock, held: `check()` raises a fault if its connection (and with it the
    lock) was lost, before a step only the lock's holder may take."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def check(self) -> None:
        """Raise a DatabaseFault if the lock was lost with its connection."""
        session_alive(self.conn, RUN_LOCK)


@contextmanager
def run_lock(engine: Engine, *, wait: bool, progress: Progress) -> Iterator[RunLock]:
    """Hold the database's run lock for the block, or raise JobError if another run holds it."""

    def holder() -> str:
        running = runs.newest_open(engine, KIND)
        if running is not None:
            return running.describe()
        serving = runs.newest_open(engine, EVENTS)
        if serving is not None:
            return f"events serve {serving.describe()}, deciding a batch"
        return "another run is starting"

    # An events serve holds the lock for one batch at a time (jobs.events.serve): a run
    # that finds one serving waits for its batch rather than fail.
    wait = wait or runs.newest_open(engine, EVENTS) is not None
    with engine.connect() as conn, ExitStack() as held:
        try:
            held.enter_context(
                hold(
                    conn,
                    RUN_LOCK,
                    wait=wait,
                    holder=holder,
                    waiting=lambda who: progress.log(f"waiting for {who}"),
                )
            )
        except LockBusy as busy:
            extra = f"; its session: {busy.session}" if busy.session else ""
            raise JobError(
                f"another nightly run holds this database: {busy.holder}{extra}",
                fix="wait for it to finish (or give --wait to queue behind it); never run two at once",
            ) from None
        yield RunLock(conn)


# --- small helpers -------------------------------------------------------------------


def _hashed_parquet(frame: pl.DataFrame | pl.LazyFrame, folder: Path, stem: str) -> HashedFile:
    """Write `frame` as <folder>/<stem>-<sha256[:16]>.parquet; the file and its full hash.

    LZ4, as the staged files: it writes and reads the archives faster than zstd,
    for larger files (docs/benchmarks.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stem}-{os.getpid()}.parquet"
    try:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression=STAGED_COMPRESSION, engine="streaming")
        else:
            frame.write_parquet(tmp, compression=STAGED_COMPRESSION)
    except BaseException:
        # A full disk leaves a partial file: give its space back before reporting.
        tmp.unlink(missing_ok=True)
        raise
    digest = sha256_file(tmp)
    final = folder / f"{stem}-{digest[:16]}.parquet"
    os.replace(tmp, final)
    return HashedFile(str(final), digest)


def _verified(recorded: HashedFile | None, what: str, run_id: int) -> Path:
    """A file the run recorded, checked to be there with the sha256 it had."""
    if recorded is None or not recorded.path.is_file():
        raise JobError(
            f"run {run_id}: its {what} file {recorded and recorded.file} is missing, "
            "so it cannot be finished",
            fix="restore the store folder (--store / $DISBURSE_STORE) from its backup",
        )
    if sha256_file(recorded.path) != recorded.sha256:
        raise JobError(
            f"run {run_id}: its {what} file {recorded.file} does not match the sha256 the run recorded",
            fix="the file was changed after the run wrote it; restore it from the backup",
        )
    return recorded.path


def _wide_files(archive: RunArchive) -> dict[str, Path]:
    """The wide archive's file per entity kind."""
    return {target: f.path for target, f in archive.features.items()}


def _policy_hashes(policies: list[CheckedPolicy]) -> dict[str, str]:
    return {p.id: p.sha256 for p in sorted(policies, key=lambda p: p.id)}


# --- the run -------------------------------------------------------------------------


# What a run was doing in each phase, for the message that says where a fault stopped it.
DOING = {
    "prepare": "getting ready (the run lock, the open runs, the source files' hashes)",
    "start": "recording the run",
    "ingest": "validating and staging the sources",
    "evaluate": "writing the decision files",
    "allocate": "writing the allocation",
    "post": "posting to the ledger",
    "summary": "summarising",
}


class RunFault(JobError):
    """A fault from outside (a full disk, a lost database) stopped the run; it stays open
    and the same command again finishes it."""

    def __init__(self, message: str, *, fix: str, fault: Fault) -> None:
        self.fault = fault
        super().__init__(message, fix=fix)


class RunInterrupted(JobError):
    """SIGTERM or SIGINT stopped the run; it stays open and the same command again finishes
    it.  `exit_code`: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def interrupted_before_start(stop: Stopped) -> RunInterrupted:
    """The message for a signal that came before any run was recorded."""
    return RunInterrupted(
        f"interrupted by {stop.name} before the run started (nothing was written); "
        "run the same command again",
        exit_code=stop.exit_code,
    )


class NightlyRun:
    """One invocation of `disburse run`: finishes what was interrupted, then runs the night."""

    def __init__(
        self,
        engine: Engine,
        request: RunRequest,
        catalogue: Catalogue,
        pset: PolicySet,
        progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.request = request
        self.catalogue = catalogue
        self.pset = pset
        self.progress = progress or Silent()
        self.policies = pset.active(request.as_of)
        # Policies paying past benefit periods tonight (`back_pay`), active or not: a
        # claim window may outlast the policy.  `recorded`: every policy the run reads.
        self.back_paying = [p for p in pset.policies if back_pay_dates(p, request.as_of)]
        self.recorded = sorted(
            {p.id: p for p in [*self.policies, *self.back_paying]}.values(), key=lambda p: p.id
        )
        self.timings: dict[str, PhaseTiming] = {}
        self.files: dict[str, tuple[Path, str]] = {}
        self.known: Holdings | None = None  # what allocation read of the ledger, for post
        self.lock: RunLock | None = None
        # Where the run is, for the message if a fault or a signal stops it.
        self.run_id: int | None = None
        self.phase = "prepare"

    def execute(self) -> RunOutcome:
        """Finish or abandon the interrupted runs, then run the night (or reuse the run just
        finished, if it was this very command).

        A fault from outside (`jobs.faults.outside_fault`) raises RunFault, SIGTERM or
        SIGINT (under `stop_on_signals`) RunInterrupted: both say where the run
        stopped, and leave it open for the same command to finish."""
        try:
            return self._execute()
        except Stopped as stop:
            raise self._interrupted(stop) from None
        except Exception as exc:
            url = self.engine.url.render_as_string(hide_password=False)
            fault = outside_fault(exc, url=url, folder=self.request.store, writing=True)
            if fault is None or isinstance(exc, RunFault):
                raise
            raise self._stopped_by(fault) from exc

    def _execute(self) -> RunOutcome:
        req = self.request
        if not self.recorded:
            raise JobError(
                f"no policy is valid on {req.as_of}",
                fix="check the valid: dates of the policy files, or the --as-of date",
            )
        self.files = locate_sources(req.data_dir, self.catalogue)
        with run_lock(self.engine, wait=req.wait, progress=self.progress) as self.lock:
            self.progress.log(f"hashing {len(self.files)} source files")
            digests = sha256_files(self.files)
            tonight = Tonight(
                as_of=req.as_of,
                data_dir=str(req.data_dir.resolve()),
                policies=_policy_hashes(self.recorded),
                catalogue_sha256=self.catalogue.fingerprint(),
                sources=digests,
            )
            plan = plan_resume(runs.open_runs(self.engine, KIND), tonight)
            for run_id, step in plan.steps:
                if step is Step.FINISH:
                    self.progress.log(
                        f"run {run_id} was interrupted after it was decided: finishing it"
                    )
                    self.run_id = run_id
                    self._finish(run_id)
                elif step is Step.ABANDON:
                    runs.fail(self.engine, run_id, ABANDONED)
            current = plan.current
            if current is None:
                self.run_id, self.phase = None, "start"
                current = self._start()
            else:
                self.progress.log(f"resuming run {current} from where it stopped")
            self.run_id = current
            self._advance(current, digests)
            outcome = self._outcome(current)
        self.lock = None
        outcome.resumed = plan.resumed
        outcome.abandoned = plan.abandoned
        return outcome

    # -- where the run stopped

    def _posted(self) -> str:
        """What the ledger holds of the run, from the phase it stopped in."""
        if self.phase == "post":
            return (
                "the chunks it committed stay in the ledger, the rest follows when it is finished"
            )
        if self.phase == "summary":
            return "everything was posted, only the summary is left"
        return "nothing was posted"

    def _stopped_by(self, fault: Fault) -> RunFault:
        doing = DOING.get(self.phase, self.phase)
        if self.run_id is None:
            return RunFault(
                f"the nightly run stopped while {doing}: {fault.what}; nothing was written",
                fix=f"{fault.remedy}, then run the same command again",
                fault=fault,
            )
        return RunFault(
            f"run {self.run_id} stopped while {doing}: {fault.what}; {self._posted()}",
            fix=f"{fault.remedy}, then run the same command again: it finishes run {self.run_id}",
            fault=fault,
        )

    def _interrupted(self, stop: Stopped) -> RunInterrupted:
        if self.run_id is None:
            return interrupted_before_start(stop)
        return RunInterrupted(
            f"interrupted by {stop.name}: run {self.run_id} stopped in phase {self.phase} "
            f"({self._posted()}); run the same command again to finish it",
            exit_code=stop.exit_code,
        )

    def _enter(self, phase: str) -> None:
        """The run goes into `phase`: checked to still hold the run lock."""
        self.phase = phase
        if self.lock is not None:
            self.lock.check()

    # -- the phases

    def _start(self) -> int:
        req = self.request
        # In a transaction of its own, with a crash point before it commits: a run killed
        # there was never recorded, and its run id is the next run's (`runs.start_run`).
        with self.engine.connect() as bare:
            conn = bare.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                run_id = runs.start_run(
                    conn,
                    kind=KIND,
                    as_of=req.as_of,
                    data_dir=req.data_dir.resolve(),
                    store_dir=req.store.resolve(),
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    policies=[PolicyFile(p.id, str(p.file), p.sha256) for p in self.recorded],
                )
                checkpoint("run:starting")
        self.progress.log(f"run {run_id} started: as of {req.as_of}, {len(self.recorded)} policies")
        checkpoint("run:started")
        return run_id

    def _advance(self, run_id: int, digests: dict[str, str]) -> None:
        """Take the run from its state to completed, one phase after another."""
        runs.claim(self.engine, run_id, host=socket.gethostname(), pid=os.getpid())
        state = runs.state_of(self.engine, run_id)
        try:
            if state is RunState.STARTED:
                self._enter("ingest")
                self._ingest(run_id, digests)
                state = RunState.INGESTED
            if state is RunState.INGESTED:
                self._enter("evaluate")
                self._evaluate(run_id)
                state = RunState.EVALUATED
        except Exception as exc:
            if outside_fault(exc, folder=self.request.store) is not None:
                raise  # a full disk, a lost database: the run stays open, to be finished
            # Bad input: nothing was posted; the run ends failed, with the reason, and the
            # next run starts afresh.  If even that cannot be written, the first error is
            # the one to report.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            doing = "ingesting" if state is RunState.STARTED else "evaluating"
            with suppress(Exception):
                runs.fail(self.engine, run_id, f"failed while {doing}, nothing posted: {first}")
            raise
        if state is RunState.EVALUATED:
            self._enter("post")
            self._post(run_id)
            state = RunState.POSTED
        if state is RunState.POSTED:
            self._enter("summary")
            self._summarise(run_id)

    def _finish(self, run_id: int) -> None:
        """Post (if not yet) and summarise a decided run from its record."""
        if runs.state_of(self.engine, run_id) is RunState.EVALUATED:
            self._enter("post")
            self._post(run_id)
        self._enter("summary")
        self._summarise(run_id)

    # -- ingest

    def _ingest(self, run_id: int, digests: dict[str, str]) -> None:
        req = self.request

        def kept(run: RunRecord) -> bool:
            folder = staged_dir(Path(run.store_dir or req.store), run.run_id)
            return all(is_staged(staged_file(folder, name)) for name in digests)

        with timed(self.progress, "ingest", self.timings) as timing:
            earlier = runs.reusable_ingest(
                self.engine,
                catalogue_sha256=self.catalogue.fingerprint(),
                sources=digests,
                kept=kept,
            )
            if earlier is not None:
                timing.rows = self._link_ingest(run_id, earlier)
                timing.skipped = (
                    f"sources unchanged since run {earlier.run_id}: its staged files reused"
                )
            else:
                result = ingest(
                    req.data_dir,
                    req.as_of,
                    engine=self.engine,
                    store=req.store,
                    catalogue=self.catalogue,
                    progress=self.progress,
                    run_id=run_id,
                    digests=digests,
                )
                timing.rows = sum(r.rows for r in result.sources.values())
        checkpoint("run:ingested")

    def _link_ingest(self, run_id: int, earlier: RunRecord) -> int:
        """Stage by hard links to an earlier run's files; record its snapshots and quarantine."""
        src = staged_dir(Path(earlier.store_dir or self.request.store), earlier.run_id)
        final = staged_dir(self.request.store, run_id)
        tmp = final.with_name(f".sources-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            for f in src.glob("*.parquet"):
                try:
                    os.link(f, tmp / f.name)
                except OSError:  # another file system: copy
                    shutil.copy2(f, tmp / f.name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk: give back what was copied
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return runs.record_linked_ingest(
            self.engine,
            run_id,
            earlier.run_id,
            staged=final,
            files={name: str(path) for name, (path, _fmt) in self.files.items()},
            catalogue_sha256=self.catalogue.fingerprint(),
        )

    # -- evaluate and allocate

    def _inputs_key(self, run_id: int) -> str:
        """sha256 of everything the decision table depends on."""
        payload = {
            "engine": ENGINE_VERSION,
            "as_of": self.request.as_of.isoformat(),
            "catalogue": self.catalogue.fingerprint(),
            "sources": runs.recorded_sources(self.engine, run_id),
            "features": sha256_file(self.request.features_file),
            "policies": _policy_hashes(self.recorded),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _archive(
        self, run_id: int, folder: Path, counted: pl.DataFrame | None, on: Evaluator
    ) -> tuple[HashedFile, RunArchive]:
        """Write the wide archive (features, conditions, amounts) per entity kind, the
        claims derived from it, and a copy of every policy file read.

        The claims are the rows of the decision table whose entity is eligible: a few
        percent of it at city scale.  The rest, the refusals and their reasons, are
        derived from the archive when they are asked for (`archived_decisions`), so
        the run neither writes nor hashes them."""
        req = self.request
        features = self._wide_files(
            on,
            run_id,
            folder,
            self.policies,
            req.as_of,
            None if counted is None else counted.lazy(),
        )
        scans = {t: pl.scan_parquet(f.path) for t, f in features.items()}
        claims = _hashed_parquet(
            decisions_of_wide(scans, self.policies, req.as_of, claims_only=True),
            folder,
            "claims",
        )
        copies = folder / "policies"
        copies.mkdir(parents=True, exist_ok=True)
        policies: dict[str, HashedFile] = {}
        for p in self.recorded:
            copy = copies / f"{p.id}-{p.sha256[:16]}.yaml"
            shutil.copyfile(p.file, copy)
            if sha256_file(copy) != p.sha256:
                raise JobError(
                    f"policy file {p.file} changed while the run was reading it",
                    fix="do not edit policy files during a run; run again",
                )
            policies[p.id] = HashedFile(str(copy), p.sha256)
        catalogue = copies / "features.yaml"
        shutil.copyfile(req.features_file, catalogue)
        back_pay, back_pay_claims = self._archive_back_pay(on, run_id, folder)
        archive = RunArchive(
            features=features,
            policies=policies,
            catalogue=HashedFile(str(catalogue), sha256_file(catalogue)),
            back_pay=back_pay,
            back_pay_claims=back_pay_claims,
        )
        return claims, archive

    def _wide_files(
        self,
        on: Evaluator,
        run_id: int,
        folder: Path,
        policies: list[CheckedPolicy],
        as_of: dt.date,
        counted: pl.LazyFrame | None,
    ) -> dict[str, HashedFile]:
        """Per entity kind, the wide file of `policies` as of `as_of` (`features-<kind>`,
        `@<day>` for a past one), computed by the run's engine `on` (`jobs.engines`)."""
        suffix = "" if as_of == self.request.as_of else f"@{as_of.isoformat()}"
        wide = on.wide(
            staged_dir(self.request.store, run_id),
            self.pset,
            policies,
            as_of,
            counted,
            f"features{suffix}",
            self.progress.log,
        )
        return {
            target: _hashed_parquet(plan, folder, f"features-{target}{suffix}")
            for target, plan in wide.items()
        }

    def _past_days(self) -> dict[dt.date, list[CheckedPolicy]]:
        """Per day a past benefit period is decided as of (`back_pay_dates`), the policies
        deciding one as of that day."""
        days: dict[dt.date, list[CheckedPolicy]] = {}
        for p in self.back_paying:
            for _period, day in back_pay_dates(p, self.request.as_of):
                days.setdefault(day, []).append(p)
        return dict(sorted(days.items()))

    def _archive_back_pay(
        self, on: Evaluator, run_id: int, folder: Path
    ) -> tuple[dict[str, dict[str, HashedFile]], HashedFile | None]:
        """Back-pay: each past period decided as of its last day over tonight's staged
        sources, as the night's own (wide files `features-<kind>@<day>`), and their
        claims in one file with the day (`as_of`)."""
        files: dict[str, dict[str, HashedFile]] = {}
        claims: list[pl.DataFrame] = []
        for day, policies in self._past_days().items():
            self.progress.log(
                f"back-pay: {len(policies)} policies' past period as of {day.isoformat()}"
            )
            files[day.isoformat()] = self._wide_files(on, run_id, folder, policies, day, None)
            scans = {t: pl.scan_parquet(f.path) for t, f in files[day.isoformat()].items()}
            claims.append(
                decisions_of_wide(scans, policies, day, claims_only=True)
                .collect(engine="streaming")
                .with_columns(pl.lit(day, pl.Date).alias("as_of"))
            )
        if not claims:
            return files, None
        return files, _hashed_parquet(pl.concat(claims), folder, "back-pay-claims")

    def _evaluate(self, run_id: int) -> None:
        folder = self.request.store / "runs" / str(run_id)
        key = self._inputs_key(run_id)
        with timed(self.progress, "evaluate", self.timings) as timing:
            earlier = runs.reusable_decisions(self.engine, key)
            # Members counted once (`once_per`): the ledger's, read before evaluating. An
            # earlier run's decisions stand only if it saw the same, but for its own.
            counted = once.counted_before(self.engine, self.policies)
            if earlier is not None and earlier.counts.get("counted_sha256") != once.digest(
                counted, earlier.run_id
            ):
                earlier = None
            if earlier is not None and earlier.archive is not None:
                _verified(earlier.claims, "claims table", run_id)
                assert earlier.claims is not None
                claims, archive = earlier.claims, earlier.archive
                timing.skipped = "inputs unchanged: an earlier run's decisions reused"
            else:
                phase = self.progress.phase("evaluate")
                phase.status(f"{len(self.policies)} policies over the staged sources")
                with evaluator(self.request.engine, self.catalogue, folder / "partitioned") as on:
                    claims, archive = self._archive(run_id, folder, counted, on)
            evaluated = evaluated_counts(_wide_files(archive), self.policies)
            timing.rows = sum(evaluated.values())
        checkpoint("run:decisions-written")
        self.phase = "allocate"
        with timed(self.progress, "allocate", self.timings) as timing:
            self.progress.phase("allocate").status("stacking groups and budgets against the ledger")
            allocation = self._allocate(claims.path, archive, evaluated)
            frame = self._entitlements(allocation, run_id)
            allocated = _hashed_parquet(frame, folder, "allocation")
            timing.rows = frame.height
        checkpoint("run:allocation-written")
        runs.mark_evaluated(
            self.engine,
            run_id,
            inputs_sha256=key,
            claims=claims,
            allocation=allocated,
            archive=archive,
            counts={
                "allocation": {pid: r.to_json() for pid, r in allocation.policies.items()},
                "counted_sha256": once.digest(counted),
            },
        )
        checkpoint("run:evaluated")

    def _allocate(
        self, claims_file: Path, archive: RunArchive, evaluated: dict[str, int]
    ) -> Allocation:
        as_of = self.request.as_of
        terms = [Terms.of(p, as_of) for p in self.policies]
        groups = {t.group for t in terms if t.group} | {
            p.spec.group for p in self.back_paying if p.spec.group
        }
        others = [
            p for p in self.pset.policies if p.spec.group in groups and p not in self.policies
        ]
        self.known = holdings(
            self.engine,
            sorted({p.id for p in [*self.recorded, *others]}),
            folder=self._snapshots(),
        )
        held = self.known.nonzero()
        current = pl.DataFrame(
            {"policy_id": [t.policy_id for t in terms], "period": [t.period for t in terms]},
            schema={"policy_id": pl.String, "period": pl.String},
        )
        keys = ["policy_id", "period", "entity_id"]
        claims = pl.scan_parquet(claims_file).filter(pl.col("eligible")).collect(engine="streaming")
        # What an upheld objection took away stays refused (`jobs.objections`).
        claims = upheld_claims(self.engine, claims)
        # Keys the ledger holds that are not claimed tonight (to be reduced to 0): usually
        # none; their refused rows are derived from the archive only when there are some.
        lapsed = (
            held.join(
                current, left_on=["policy_id", "benefit_period"], right_on=["policy_id", "period"]
            )
            .select(
                "policy_id",
                pl.col("benefit_period").alias("period"),
                pl.col("entity").alias("entity_id"),
            )
            .unique()
            .join(claims.select(keys), on=keys, how="anti")
        )
        if lapsed.height:
            scans = {t: pl.scan_parquet(f) for t, f in _wide_files(archive).items()}
            refused = decisions_of_wide(scans, self.policies, as_of).filter(~pl.col("eligible"))
            rest = refused.join(lapsed.lazy(), on=keys, how="semi").collect(engine="streaming")
            claims = pl.concat([claims, rest])
        out = allocate_policies(claims, self.policies, others, as_of, held)
        for pid, rows in evaluated.items():
            if pid in out.policies:
                out.policies[pid].evaluated = rows
        if archive.back_pay_claims is None:
            return out
        paying = {p.id for p in self.back_paying}
        past = allocate_back_pay(
            pl.read_parquet(
                _verified(archive.back_pay_claims, "back-pay claims", self.run_id or 0)
            ),
            self.back_paying,
            [p for p in self.pset.policies if p.id not in paying],
            self.known.frame,
        )
        for p in self.back_paying:
            for period, day in back_pay_dates(p, as_of):
                rep = past.policies.get(f"{p.id}@{period.key}")
                wide = archive.back_pay.get(day.isoformat(), {}).get(p.target)
                if rep is not None and wide is not None:
                    rep.evaluated = int(
                        pl.scan_parquet(wide.path).select(pl.len()).collect().item()
                    )
        return Allocation(
            pl.concat([out.entitlements, past.entitlements]), {**out.policies, **past.policies}
        )

    def _entitlements(self, allocation: Allocation, run_id: int) -> pl.DataFrame:
        frame = entitlements(allocation, self.recorded)
        # The account each payee is paid to (the policy's first on file), for explain and
        # the payment file; not posted: the ledger keys on the payee, not the account.
        frame = frame.with_columns(pl.coalesce("payee", "entity").alias("_paid"))
        paid = accounts_paid(
            staged_dir(self.request.store, run_id),
            self.pset,
            self.recorded,
            frame.lazy().select("policy_id", pl.col("_paid").alias("payee")),
        ).collect()
        return frame.join(
            paid.rename({"payee": "_paid"}),
            on=["policy_id", "_paid"],
            how="left",
            maintain_order="left",
        ).drop("_paid")

    # -- post

    def _snapshots(self) -> Path:
        """Where the ledger's holdings are kept between runs (`ledgers.holdings`)."""
        return self.request.store / "holdings"

    def _post(self, run_id: int) -> None:
        run = runs.get_run(self.engine, run_id)
        path = _verified(run.allocation if run else None, "allocation", run_id)
        frame = pl.read_parquet(path)
        with timed(self.progress, "post", self.timings) as timing:
            phase = self.progress.phase("post")
            if run is not None and run.archive is not None and once.scopes(self.pset.policies):
                # Before the grants: a grant never stands without the members it counted.
                phase.status("the members the entitlements counted")
                once.record(
                    self.engine, self.pset, run.as_of, frame, _wide_files(run.archive), run_id
                )
            phase.status(f"{frame.height:,} keys against the ledger")

            def on_chunk(k: int, rows: int) -> None:
                phase.advance(rows)
                checkpoint(f"post:chunk:{k}")

            result = post_entitlements(
                self.engine,
                frame,
                run_id,
                key=posting_key(self.engine, key_file(self.request.store), self.progress.log),
                chunk_size=self.request.chunk_size,
                on_chunk=on_chunk,
                known=self.known,
                keep=self._snapshots(),
            )
            timing.rows = frame.height
            phase.status(
                f"{result.transfers:,} transfers: {result.granted:,} grants, "
                f"{result.adjusted:,} adjustments, {result.reversed:,} reversals"
            )
        runs.mark_posted(self.engine, run_id)
        checkpoint("run:posted")

    # -- summary

    def _summarise(self, run_id: int) -> None:
        with timed(self.progress, "summary", self.timings) as timing:
            # The ledger's head, signed, beside the run's archive (ledgers/checkpoints.py).
            key = posting_key(self.engine, key_file(self.request.store), self.progress.log)
            write_checkpoint(self.engine, run_id, key)
            summary = run_summary(self.engine, run_id)
            timing.rows = len(summary.policies)
        runs.complete(
            self.engine,
            run_id,
            summary=summary.to_json(),
            timings={name: t.to_json() for name, t in self.timings.items()},
        )
        checkpoint("run:completed")

    def _outcome(self, run_id: int) -> RunOutcome:
        run = runs.get_run(self.engine, run_id)
        # The run just completed (or had completed before this command): it has its summary.
        assert run is not None
        assert run.summary is not None
        return RunOutcome(
            run_id=run_id,
            state=run.state,
            as_of=run.as_of,
            summary=RunSummary.from_json(run.summary),
            timings=dict(self.timings),
            peak_rss_mb=peak_rss_mb(),
        )


def run_nightly_on(
    engine: Engine,
    request: RunRequest,
    *,
    catalogue: Catalogue,
    pset: PolicySet,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run the night on an open engine with a loaded policy set (see the module's docstring)."""
    return NightlyRun(engine, request, catalogue, pset, progress).execute()


def run_nightly(
    data: Path,
    as_of: dt.date,
    settings: Settings,
    *,
    policies: list[Path] | None = None,
    catalogue_dir: Path | str | None = None,
    wait: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    evaluate_on: EngineChoice | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """The nightly batch as `disburse run` runs it: load the source catalogue and the policies
    (`policies`: files or folders, default the shipped ones; the catalogues of `catalogue_dir`,
    see `jobs.catalogue_dir`), open the database of `settings` (creating or upgrading its
    schema), run the night into it; the outcome."""
    loaded = load_policy_files(policies, catalogue_dir)
    request = RunRequest(
        data_dir=data,
        as_of=as_of,
        store=settings.store,
        features_file=loaded.where.features,
        wait=wait,
        chunk_size=chunk_size,
        engine=evaluate_on or EngineChoice(),
    )
    with stop_on_signals():
        try:
            with open_engine(settings.db_url, init=True) as engine:
                return run_nightly_on(
                    engine,
                    request,
                    catalogue=loaded.sources,
                    pset=loaded.policies,
                    progress=progress,
                )
        except Stopped as stop:  # while the database was opened or its schema upgraded
            raise interrupted_before_start(stop) from None


__all__ = [
    "RunFault",
    "RunInterrupted",
    "RunLock",
    "RunOutcome",
    "RunRequest",
    "run_lock",
    "run_nightly",
    "run_nightly_on",
]
