"""Errors for people: every problem names the file, line and column, a stable
code, what is wrong in the reader's words, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong in a file a person wrote, positioned at 1-based line and column."""

    file: str
    line: int
    col: int
    code: str
    message: str
    fix: str = ""

    def render(self) -> str:
        """`file:line:col: CODE message` and, when there is one, an indented `fix:` line."""
        head = f"{self.file}:{self.line}:{self.col}: {self.code} {self.message}"
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class ProblemsError(Exception):
    """Raised with every problem found in one or more files, sorted by position."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one block each."""
        return "\n".join(p.render() for p in self.problems)


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names that look most like `name` (for a 'did you mean' hint)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def did_you_mean(name: str, known: Sequence[str], what: str) -> str:
    """A fix line: a close name if there is one, else the allowed values."""
    close = close_names(name, known)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(sorted(known)[:12])
    more = ", ..." if len(known) > 12 else ""
    return f"{what} are: {shown}{more}"
