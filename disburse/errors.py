"""The errors a person can act on, from every layer, and how the CLI shows them."""

from __future__ import annotations

from disburse.synth import SynthError
from eligibility.problems import ProblemsError
from jobs.errors import JobError
from ledgers.db import LedgerError

USER_ERRORS: tuple[type[Exception], ...] = (ProblemsError, JobError, LedgerError, SynthError)


def render(exc: Exception) -> str:
    """The message a person reads for a user error (no traceback)."""
    if isinstance(exc, ProblemsError | JobError):
        return exc.render()
    return str(exc)
