"""The errors a person can act on, from every layer, and how the CLI shows them."""

from __future__ import annotations

from common.errors import DisburseError
from jobs.faults import outside_fault

USER_ERRORS: tuple[type[Exception], ...] = (DisburseError,)


def user_error(exc: BaseException) -> DisburseError | None:
    """`exc` as the error a person reads: a DisburseError as it is; a fault from outside (the
    database refused the login or was lost, the disk is full) as one saying what to do;
    None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, DisburseError):
        return exc
    return outside_fault(exc)


def exit_code(exc: BaseException) -> int:
    """The exit status for a user error: its own (an interrupted run: 128 + the signal) or 1."""
    code = getattr(exc, "exit_code", 1)
    return code if isinstance(code, int) and code > 0 else 1


def render(exc: Exception) -> str:
    """The message a person reads for a user error (no traceback)."""
    if isinstance(exc, DisburseError):
        return exc.render()
    return str(exc)
