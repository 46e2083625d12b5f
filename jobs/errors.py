"""Errors of the batch that a person can act on."""

from __future__ import annotations

from common.errors import DisburseError


class JobError(DisburseError):
    """What is wrong, where, and a `fix:` line; rendered without a traceback."""
