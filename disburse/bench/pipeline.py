"""The benchmark's pipeline: the whole nightly run on a synthetic city, timed per phase.

1. A synthetic population (cached by its parameters and the generator's fingerprint
   under $DISBURSE_BENCH_CACHE, default <tmp>/disburse-bench-cache), generated in a separate process so the
   benchmark's own peak memory is the pipeline's.
2. A fresh database: a new SQLite file, or a new database on the PostgreSQL
   server given (dropped afterwards).
3. A first nightly run (everything is new) and a second one with nothing
   changed (nothing to post): per-phase seconds, rows per second, peak RSS.
4. The compiled evaluation of the baselined policies over the run's staged sources,
   timed against the same policies written by hand in Polars (`baseline_ratio` =
   compiled / hand-written) and in DuckDB SQL (`duckdb_ratio` = compiled / DuckDB),
   in this process, after the runs: a discarded warm-up of each, then rounds that
   run the three in turn (`compare_evaluation`); the ratios are the medians of the
   rounds' ratios, with their spread, and whether all three computed the same
   decision table.
5. The machine: CPUs, memory, the load before and after, the libraries' versions.

`bench` returns a `BenchResult` (`disburse.bench.result`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from disburse.bench.baselines import POLICY_IDS, handwritten_duckdb, handwritten_polars
from disburse.bench.baselines_more import (
    MORE_POLICY_IDS,
    handwritten_duckdb_more,
    handwritten_polars_more,
)
from disburse.bench.events import durable_speed, events_end_to_end
from disburse.bench.result import (
    BenchResult,
    EvalRound,
    Evaluation,
    FinanceDay,
    Machine,
    Population,
    RunTimes,
    Step,
)
from eligibility import PolicySet
from jobs.catalogue import Catalogue
from jobs.engines import EngineChoice
from jobs.errors import JobError
from jobs.evaluate import evaluate
from jobs.ingest import staged_dir
from jobs.policies import features_path, load_policies
from jobs.progress import Progress, Silent, TreePeak, peak_rss_mb
from jobs.run import RunRequest, run_nightly_on
from ledgers.db import init_schema, make_engine

POLICIES = Path(__file__).resolve().parent / "policies"  # the fixed set measured (README.md)
SYNTH_AS_OF = dt.date(2026, 1, 1)  # the months synthesised end in December 2025
RUN_AS_OF = dt.date(2026, 3, 15)  # all twelve baselines hold on this date


@dataclass
class BenchRequest:
    """The population and where to run it."""

    enterprises: int
    persons: int
    months: int = 12
    seed: int = 1
    db_url: str | None = None  # None: a fresh SQLite file
    rounds: int = 5
    finance: bool = False  # also the finance day through the ledger (`FinanceDay`)
    # Also decide this many entities of each kind with durable-rules, and serve this many
    # events end to end (`disburse.bench.events`).
    events: int = 0
    events_batch: int = 2000  # the timed serve's batch
    baselines: bool = True  # the compiled evaluation against the hand-written peers
    engine: EngineChoice = field(default_factory=EngineChoice)  # the runs' evaluation


def cache_root() -> Path:
    """Where synthetic populations are kept between benchmarks."""
    env = os.environ.get("DISBURSE_BENCH_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "disburse-bench-cache"


def cached_population(req: BenchRequest, progress: Progress) -> tuple[Path, float | None]:
    """The population's folder, generated (in a child process) on first use; its synth seconds.

    Keyed by the parameters and by the generator's fingerprint (its code and the
    catalogue): a changed generator makes a new city rather than reusing an old one."""
    from disburse.synth import generator_fingerprint

    key = f"e{req.enterprises}-p{req.persons}-m{req.months}-s{req.seed}"
    folder = cache_root() / f"city-{key}-g{generator_fingerprint()[:12]}"
    if (folder / "manifest.json").is_file():
        return folder, None
    work = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    progress.log(f"synthesising {req.enterprises:,} enterprises and {req.persons:,} persons")
    started = time.perf_counter()
    cmd = [
        sys.executable, "-m", "disburse.cli", "synth",
        "--enterprises", str(req.enterprises), "--persons", str(req.persons),
        "--seed", str(req.seed), "--months", str(req.months),
        "--as-of", SYNTH_AS_OF.isoformat(), "--out", str(work),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise JobError(f"synthesising the population failed:\n{done.stderr.strip()}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return folder, time.perf_counter() - started


class FreshDatabase:
    """A new, empty database for one benchmark, removed afterwards."""

    def __init__(self, server_url: str | None, scratch: Path) -> None:
        self.admin_url = None
        if server_url is None or server_url.startswith("sqlite"):
            self.url = f"sqlite:///{scratch / 'bench.db'}"
            return
        url = make_url(server_url)
        name = f"disburse_bench_{uuid.uuid4().hex[:10]}"
        self.admin_url = url.set(database=url.database or "postgres")
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.name = name
        self.url = url.set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin_url is None:
            return
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


BASELINED = (*POLICY_IDS, *MORE_POLICY_IDS)  # every policy of the bench's set


def _in_policy_order(*parts: pl.DataFrame) -> pl.DataFrame:
    """Decision tables of disjoint policy sets, each in policy then entity order, as one
    in that order (as the compiled evaluation gives it)."""
    return pl.concat(parts).sort("policy_id", maintain_order=True)


def _digest(frame: pl.DataFrame) -> tuple[int, str, str]:
    """A decision table's rows, columns and types, and a sha256 of its rows' hashes in
    order: two tables with the same digest are equal, row for row."""
    hashes = frame.hash_rows(seed=0).to_numpy()
    return frame.height, repr(frame.schema), hashlib.sha256(hashes.tobytes()).hexdigest()


def compare_evaluation(
    staged: Path, pset: PolicySet, as_of: dt.date, rounds: int = 5
) -> Evaluation:
    """Compiled evaluation of the baselined policies against the hand-written ones: a
    warm-up call of each engine (discarded; its results compared), then `rounds`
    rounds running the engines in turn, the order rotating each round so that none
    always runs first (on a cold cache) or last (on a warm one)."""
    measured = PolicySet(pset.catalogue, [p for p in pset.policies if p.id in BASELINED])
    engines: dict[str, Callable[[], pl.DataFrame]] = {
        "compiled_s": lambda: evaluate(staged, measured, as_of),
        "polars_s": lambda: _in_policy_order(
            handwritten_polars(staged, as_of), handwritten_polars_more(staged, as_of)
        ),
    }
    note = None
    try:
        import duckdb  # noqa: F401 - the peer of the benchmark, a dev dependency
    except ImportError:
        note = "duckdb is not installed (pip install -e '.[dev]')"
    else:
        engines["duckdb_s"] = lambda: _in_policy_order(
            handwritten_duckdb(staged, as_of), handwritten_duckdb_more(staged, as_of)
        )
    # The warm-up; each result is kept as a digest only: three decision tables of a
    # province at once would not fit in memory.
    first = {name: _digest(run()) for name, run in engines.items()}
    names = list(engines)
    timed = []
    for k in range(rounds):
        seconds = {}
        for name in names[k % len(names) :] + names[: k % len(names)]:
            started = time.perf_counter()
            engines[name]()
            seconds[name] = round(time.perf_counter() - started, 4)
        timed.append(EvalRound(**seconds))
    compiled = first["compiled_s"]
    return Evaluation(
        policies=sorted(BASELINED),
        rows=compiled[0],
        rounds=timed,
        same_results_polars=compiled == first["polars_s"],
        same_results_duckdb=compiled == first["duckdb_s"] if "duckdb_s" in first else None,
        duckdb_note=note,
    )


def machine(load_before: tuple[float, float, float]) -> Machine:
    """This machine: CPUs, memory, the load before the benchmark and now, the versions
    of the libraries that do the work."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = None
    return Machine(
        cpus=os.cpu_count(),
        memory_gib=None if memory is None else round(memory, 1),
        load_before=load_before,
        load_after=os.getloadavg(),
        python=platform.python_version(),
        versions={p: of(p) for p in ("polars", "duckdb", "sqlalchemy", "psycopg", "durable-rules")},
    )


PAY_DAY = RUN_AS_OF + dt.timedelta(days=14)  # past every shipped notice of the night


def finance_day(
    engine: Engine, pset: PolicySet, run_id: int, scratch: Path, say: Progress
) -> FinanceDay:
    """The first night's grants published, exported in one pain.001 and answered by a
    simulated bank reply (2% returned), each step timed with its peak memory growth."""
    from jobs.bankfiles.bench import measured
    from jobs.pay import Debtor, export_payments, import_reply, simulate_reply
    from jobs.publish import publish
    from ledgers.keys import key_file, posting_key

    key = posting_key(engine, key_file(scratch / "store"))
    debtor = Debtor("Municipal Finance Bureau", "310066000000000001", "011")
    say.log("finance day: publish")
    published, s1, m1 = measured(
        lambda: publish(
            engine, run_id, scratch / "notice.html", published_on=RUN_AS_OF + dt.timedelta(days=1)
        )
    )
    say.log("finance day: export")
    out = scratch / "pay.xml"
    exported, s2, m2 = measured(
        lambda: export_payments(engine, pset, PAY_DAY, out, fmt="pain.001", debtor=debtor, key=key)
    )
    reply = scratch / "reply.xml"
    simulate_reply(engine, pset, reply, debtor=debtor, key=key, seed=1, return_rate=0.02)
    say.log("finance day: import")
    applied, s3, m3 = measured(lambda: import_reply(engine, reply, key))
    a = applied.applied
    return FinanceDay(
        publish=Step(round(s1, 3), published.entitlements, round(m1, 1)),
        export=Step(round(s2, 3), exported.instructions, round(m2, 1)),
        reply=Step(round(s3, 3), a.settled + a.rejected, round(m3, 1)),
        settled_fen=a.settled_fen,
        returned=a.rejected,
    )


def bench_policies(catalogue: Catalogue) -> PolicySet:
    """The fixed policy set the benchmark measures (`POLICIES`)."""
    return load_policies(catalogue, [POLICIES])


def bench(
    req: BenchRequest,
    *,
    catalogue: Catalogue,
    progress: Progress | None = None,
) -> BenchResult:
    """Run the benchmark: a first and a second nightly run, then the evaluation compared."""
    pset = bench_policies(catalogue)
    say = progress or Silent()
    load_before = os.getloadavg()
    data, synth_s = cached_population(req, say)
    scratch = Path(tempfile.mkdtemp(prefix="disburse-bench-"))
    db = FreshDatabase(req.db_url, scratch)
    try:
        engine = make_engine(db.url)
        init_schema(engine)
        request = RunRequest(
            data_dir=data,
            as_of=RUN_AS_OF,
            store=scratch / "store",
            features_file=features_path([POLICIES]),
            engine=req.engine,
        )
        runs: list[RunTimes] = []
        for label in ("first_run", "second_run"):
            say.log(f"{label.replace('_', ' ')}")
            started = time.perf_counter()
            with TreePeak() as tree:
                outcome = run_nightly_on(
                    engine, request, catalogue=catalogue, pset=pset, progress=say
                )
            wall = time.perf_counter() - started
            runs.append(
                RunTimes(
                    run_id=outcome.run_id,
                    seconds=round(wall, 3),
                    phases=dict(outcome.timings),
                    transfers=outcome.summary.totals.transfers,
                    entitled=outcome.summary.totals.entitled,
                    peak_rss_mb=peak_rss_mb(),
                    tree_peak_mb=tree.mb,
                )
            )
        first_id = runs[0].run_id
        finance = finance_day(engine, pset, first_id, scratch, say) if req.finance else None
        engine.dispose()
        evaluation = None
        if req.baselines:
            say.log("compiled evaluation against the hand-written baselines")
            evaluation = compare_evaluation(
                staged_dir(request.store, first_id), pset, RUN_AS_OF, req.rounds
            )
        events, end_to_end = None, None
        if req.events:
            say.log("durable-rules decisions against the reference interpreter")
            events = durable_speed(
                staged_dir(request.store, first_id), pset, RUN_AS_OF, req.events, req.rounds
            )
            say.log("events end to end: the inbox, the serve, the ledger")
            end_to_end = events_end_to_end(
                db.url,
                request.store,
                data,
                catalogue=catalogue,
                pset=pset,
                as_of=RUN_AS_OF,
                count=req.events,
                batch=req.events_batch,
            )
        rows = sum(
            int(pl.scan_parquet(f).select(pl.len()).collect().item())
            for f in data.glob("*.parquet")
        )
        return BenchResult(
            population=Population(
                enterprises=req.enterprises,
                persons=req.persons,
                months=req.months,
                seed=req.seed,
                source_rows=rows,
                synth_seconds=None if synth_s is None else round(synth_s, 3),
                cached=synth_s is None,
            ),
            database="postgresql" if db.admin_url is not None else "sqlite",
            engine=req.engine.name,
            active_policies=sorted(p.id for p in pset.active(RUN_AS_OF)),
            first_run=runs[0],
            second_run=runs[1],
            evaluation=evaluation,
            peak_rss_mb=peak_rss_mb(),
            machine=machine(load_before),
            finance=finance,
            events=events,
            events_end_to_end=end_to_end,
        )
    finally:
        db.drop()
        shutil.rmtree(scratch, ignore_errors=True)
