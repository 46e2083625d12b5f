"""The command line's `jobs.progress.Progress`: one rich bar per phase on a terminal, plain
timestamped log lines otherwise (a log file, a pipe), nothing when quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from jobs.progress import Phase, PhaseTiming, Silent
from jobs.progress import Progress as JobProgress


class _BarPhase:
    def __init__(self, bars: Progress, name: str, total: int | None) -> None:
        self.bars = bars
        self.task = bars.add_task(name, total=total, status="")

    def total(self, n: int) -> None:
        self.bars.update(self.task, total=n)

    def advance(self, n: int = 1) -> None:
        self.bars.advance(self.task, n)

    def status(self, message: str) -> None:
        self.bars.update(self.task, status=message)


class RichProgress:
    """A bar per phase on stderr, finished phases with their time, rows/s and peak memory."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
        )
        self.bars.start()
        self.phases: dict[str, _BarPhase] = {}

    def phase(self, name: str, total: int | None = None) -> Phase:
        phase = _BarPhase(self.bars, name, total)
        self.phases[name] = phase
        return phase

    def done(self, name: str, timing: PhaseTiming) -> None:
        if name in self.phases:
            self.bars.remove_task(self.phases.pop(name).task)
        if timing.skipped:
            self.console.print(f"  {name:<9} {timing.seconds:6.1f} s  {timing.skipped}")
        else:
            self.console.print(
                f"  {name:<9} {timing.seconds:6.1f} s  {timing.rows:>12,} rows "
                f"{timing.rows_per_second:>14,.0f}/s  peak {timing.peak_rss_mb:>8,.0f} MiB"
            )

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def close(self) -> None:
        self.bars.stop()


class _LogPhase:
    def __init__(self, owner: LogProgress, name: str) -> None:
        self.owner, self.name = owner, name

    def total(self, n: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, message: str) -> None:
        self.owner.log(f"{self.name}: {message}")


@dataclass
class LogProgress:
    """Plain timestamped lines on stderr: what a log file or a pipe wants."""

    write: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    def phase(self, name: str, total: int | None = None) -> Phase:
        self.log(f"{name}: started")
        return _LogPhase(self, name)

    def done(self, name: str, timing: PhaseTiming) -> None:
        if timing.skipped:
            self.log(f"{name}: {timing.skipped} ({timing.seconds:.1f} s)")
            return
        self.log(
            f"{name}: done in {timing.seconds:.1f} s, {timing.rows:,} rows "
            f"({timing.rows_per_second:,.0f}/s), peak memory {timing.peak_rss_mb:,.0f} MiB"
        )

    def log(self, message: str) -> None:
        self.write(f"[{time.strftime('%H:%M:%S')}] {message}")


def choose(quiet: bool) -> JobProgress:
    """Bars on a terminal, log lines otherwise, nothing if quiet."""
    if quiet:
        return Silent()
    if sys.stderr.isatty():
        return RichProgress()
    return LogProgress()


@contextmanager
def terminal_progress(quiet: bool) -> Iterator[JobProgress]:
    """`choose(quiet)` for the length of a command: the bars stop at the end."""
    progress = choose(quiet)
    try:
        yield progress
    finally:
        if isinstance(progress, RichProgress):
            progress.close()
