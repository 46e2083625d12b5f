"""The errors a person can act on, from every layer, and how the CLI shows them."""

from __future__ import annotations

from common.errors import DisburseError

USER_ERRORS: tuple[type[Exception], ...] = (DisburseError,)


def render(exc: Exception) -> str:
    """The message a person reads for a user error (no traceback)."""
    if isinstance(exc, DisburseError):
        return exc.render()
    return str(exc)
