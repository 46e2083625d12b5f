"""Where disburse keeps things: the database URL and the store of staged files.

Each comes from its command-line option, else an environment variable, else a
default in the working directory, so that nothing has to be configured to try
the engine and production sets two variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB_FILE = "disburse.db"
DEFAULT_STORE = "disburse-store"


@dataclass(frozen=True)
class Settings:
    """The resolved database URL and store folder of one command."""

    db_url: str
    store: Path

    @classmethod
    def resolve(cls, db: str | None = None, store: str | None = None) -> Settings:
        """--db, else $DISBURSE_DB, else ./disburse.db; --store, else $DISBURSE_STORE, else ./disburse-store."""
        url = db or os.environ.get("DISBURSE_DB") or f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"
        folder = store or os.environ.get("DISBURSE_STORE") or str(Path.cwd() / DEFAULT_STORE)
        return cls(db_url=url, store=Path(folder))
