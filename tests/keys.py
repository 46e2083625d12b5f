"""The ledger key the tests post and verify with (a fixed one: tests compare hashes)."""

from __future__ import annotations

from pathlib import Path

from ledgers.keys import LedgerKey

KEY = LedgerKey.from_secret(bytes(range(32)), "the tests' ledger key")
OTHER_KEY = LedgerKey.from_secret(bytes(range(1, 33)), "another key")


def shared_key_file(folder: Path) -> Path:
    """A key file holding `KEY` in `folder` (made once): runs whose stores differ but that
    read it through $DISBURSE_LEDGER_KEY_FILE chain the same hashes."""
    path = folder / "tests-ledger.key"
    if not path.exists():
        path.write_text(KEY.secret.hex() + "\n")
    return path
