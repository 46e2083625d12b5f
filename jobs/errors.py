"""Errors of the batch that a person can act on."""

from __future__ import annotations


class JobError(Exception):
    """What is wrong, where, and a `fix:` line; rendered without a traceback."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        """The message and, when there is one, an indented fix line."""
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message
