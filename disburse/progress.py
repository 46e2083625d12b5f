"""Progress on a terminal: one rich bar per phase; plain log lines when not on a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from jobs.progress import LogProgress, Phase, PhaseTiming, Silent
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


def choose(quiet: bool) -> JobProgress:
    """Bars on a terminal, log lines otherwise, nothing if quiet."""
    if quiet:
        return Silent()
    if sys.stderr.isatty():
        return RichProgress()
    return LogProgress()
