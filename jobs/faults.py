"""Faults from outside the engine, stop signals, and crash points for the resume tests.

Faults: a full disk, a read-only file system, a database that refuses or is lost
(`ledgers.db.database_fault`).  `outside_fault` tells them from everything else: a
fault leaves the run open, and once it is mended the same command finishes the run
as if nothing had happened; anything else (bad input) ends the run failed.

Signals: within `stop_on_signals()`, SIGTERM and SIGINT raise `Stopped` where the
main thread is; every transaction open there rolls back, as after a kill, and the
run stays open for the same command to finish.  A second signal ends the process at
once (its default action): the run is as safe as after SIGKILL.

Crash points: `DISBURSE_KILL_AT=<point>` makes the process send itself SIGKILL when
it reaches that point (no cleanup, no `finally`, no flush: what a power cut or the
OOM killer does); `DISBURSE_PAUSE_AT=<point>` makes it send itself SIGSTOP there,
for a test to break something (fill the disk, end its database session) before it
sends SIGCONT.  Points are named by the batch: run:starting (inside the transaction
that records the run), run:started, ingest:staged, run:ingested,
run:decisions-written, run:allocation-written, run:evaluated, post:chunk:<k>,
run:posted, run:completed.  Unset, a checkpoint costs two dictionary lookups.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from jobs.errors import JobError
from ledgers.db import DatabaseFault, database_fault

ENV = "DISBURSE_KILL_AT"
PAUSE_ENV = "DISBURSE_PAUSE_AT"


def checkpoint(point: str) -> None:
    """SIGKILL this process if $DISBURSE_KILL_AT names `point`; SIGSTOP it if
    $DISBURSE_PAUSE_AT does (a test then breaks something and sends SIGCONT)."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == point:
        os.kill(os.getpid(), signal.SIGSTOP)


# --- stop signals ------------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived.  A KeyboardInterrupt, so `except Exception` lets it by
    and psycopg cancels the statement the server is running."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        # The shell's convention for a process ended by a signal: 130, 143.
        self.exit_code = 128 + signum
        super().__init__(self.name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGINT raises `Stopped` in the main thread;
    a second ends the process as its default action does.  Elsewhere than the main
    thread (where Python delivers no signal) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    stopped: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if stopped:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stopped.append(signum)
        raise Stopped(signum)

    for s in STOP_SIGNALS:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- faults from outside -----------------------------------------------------------


class _OutsideFault(JobError):
    """A fault from outside the engine: `what` happened, `remedy` is what to do before the
    same command again, `kind` names it for code (as `ledgers.db.DatabaseFault`)."""

    def __init__(self, kind: str, what: str, remedy: str) -> None:
        self.kind = kind
        self.what = what
        self.remedy = remedy
        super().__init__(what, fix=f"{remedy}, then run the same command again")


class FileFault(_OutsideFault):
    """A file could not be written for a reason outside the engine (the disk is full, the
    file system read-only)."""


class ClusterFault(_OutsideFault):
    """The cluster of the dask or spark engine lost a worker or its connection, for a reason
    outside the engine (a worker killed for its memory, a node gone)."""

    def __init__(self, what: str, remedy: str) -> None:
        super().__init__("lost-worker", what, remedy)


Fault = DatabaseFault | FileFault | ClusterFault
# Polars and other Rust code report an OS error inside their own message.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def os_error(exc: BaseException) -> tuple[int, str | None] | None:
    """The errno (and file name, if known) of the OS error behind `exc`, if any."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno:
            return e.errno, e.filename if isinstance(e.filename, str) else None
        found = _OS_ERROR.search(str(e))
        if found:
            return int(found.group(1)), None
    return None


def file_fault(exc: BaseException, folder: Path | None = None) -> FileFault | None:
    """`exc` as a FileFault if an OS error outside the engine's control is behind it, writing
    under `folder`; None otherwise."""
    found = os_error(exc)
    if found is None:
        return None
    code, name = found
    reason = os.strerror(code)
    place = Path(name).parent if name else folder
    under = f" under {place}" if place else ""
    there = str(place) if place else "the folder it writes to"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return FileFault(
            "disk-full",
            f"the disk is full{under} ({reason})",
            f"free space under {place}" if place else "free space on the disk it writes to",
        )
    if code == errno.EFBIG:
        return FileFault(
            "disk-full",
            f"a file{under} grew past the size this process may write ({reason}: ulimit -f)",
            "raise the file size limit (ulimit -f) for the command",
        )
    if code == errno.EROFS:
        return FileFault(
            "read-only",
            f"the file system{under} is read-only ({reason})",
            f"make {there} writable (or give another --store)",
        )
    if code in (errno.EACCES, errno.EPERM):
        return FileFault(
            "permission",
            f"this user may not open {name or there} ({reason})",
            f"give this user access to {there}",
        )
    if code == errno.EIO:
        return FileFault(
            "io", f"reading or writing{under} failed ({reason})", "check the disk (`dmesg`)"
        )
    return None


def outside_fault(
    exc: BaseException,
    *,
    url: str | None = None,
    folder: Path | None = None,
    writing: bool = False,
) -> Fault | None:
    """The fault from outside the engine behind `exc`: the database's (`url`; `writing`: the
    command writes the ledger) or the file system's (writing under `folder`); None if
    `exc` is no such fault."""
    if isinstance(exc, DatabaseFault | FileFault | ClusterFault):
        return exc
    return database_fault(exc, url, writing=writing) or file_fault(exc, folder)


__all__ = [
    "ENV",
    "PAUSE_ENV",
    "ClusterFault",
    "Fault",
    "FileFault",
    "Stopped",
    "checkpoint",
    "file_fault",
    "os_error",
    "outside_fault",
    "stop_on_signals",
]
