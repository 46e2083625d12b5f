"""Crash points for the resume tests: the process kills itself, for real, where it is told.

`DISBURSE_KILL_AT=<point>` makes the process send itself SIGKILL when it reaches
that point (no cleanup, no `finally`, no flush: what a power cut or the OOM
killer does).  Points are named by the batch: run:started, ingest:staged, run:ingested,
run:decisions-written, run:allocation-written, run:evaluated, post:chunk:<k>,
run:posted, run:completed.  Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "DISBURSE_KILL_AT"


def checkpoint(point: str) -> None:
    """SIGKILL this process if $DISBURSE_KILL_AT names `point`."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
