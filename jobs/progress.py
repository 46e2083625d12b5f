"""How a long job says what it is doing: phases with a size, advanced as work is done.

Every long job (ingest, the nightly run, simulate) takes a `Progress`; the command
line provides one (`disburse.progress`: a bar per phase on a terminal, plain log
lines otherwise), and library callers and tests pass `Silent` (the default).  Each phase also records its seconds,
rows and the process's peak memory so far, for the run's summary.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Protocol


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024, 1)


class TreePeak:
    """While open, the peak of the summed resident memory of this process and all its
    descendants (a cluster engine's worker processes, Spark's JVM), sampled every
    `every` seconds on a thread of its own."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak_bytes = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        """The peak so far, in MiB."""
        return round(self.peak_bytes / 2**20, 1)


@dataclass
class PhaseTiming:
    """One phase of a run: wall seconds, rows handled, and the peak RSS when it ended."""

    seconds: float = 0.0
    rows: int = 0
    peak_rss_mb: float = 0.0
    skipped: str | None = None

    @property
    def rows_per_second(self) -> float:
        return round(self.rows / self.seconds, 1) if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seconds": round(self.seconds, 3),
            "rows": self.rows,
            "rows_per_second": None if self.skipped else self.rows_per_second,
            "peak_rss_mb": self.peak_rss_mb,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


class Phase(Protocol):
    """What a running phase is told: its size once known, work done, a status line."""

    def total(self, n: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def status(self, message: str) -> None: ...


class Progress(Protocol):
    """Where a job reports: phases and single lines."""

    def phase(self, name: str, total: int | None = None) -> Phase: ...

    def done(self, name: str, timing: PhaseTiming) -> None: ...

    def log(self, message: str) -> None: ...


class _NoPhase:
    def total(self, n: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, message: str) -> None:
        pass


class Silent:
    """Reports nothing (tests, library use)."""

    def phase(self, name: str, total: int | None = None) -> Phase:
        return _NoPhase()

    def done(self, name: str, timing: PhaseTiming) -> None:
        pass

    def log(self, message: str) -> None:
        pass


@contextmanager
def timed(progress: Progress, name: str, timings: dict[str, PhaseTiming]) -> Iterator[PhaseTiming]:
    """Time a phase into `timings[name]` (the body sets rows, or skipped) and report it."""
    timing = PhaseTiming()
    started = time.perf_counter()
    yield timing
    timing.seconds = time.perf_counter() - started
    timing.peak_rss_mb = peak_rss_mb()
    timings[name] = timing
    progress.done(name, timing)
