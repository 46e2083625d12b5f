"""The ledger key the tests post and verify with (a fixed one: tests compare hashes)."""

from __future__ import annotations

from ledgers.keys import LedgerKey

KEY = LedgerKey.from_secret(bytes(range(32)), "the tests' ledger key")
OTHER_KEY = LedgerKey.from_secret(bytes(range(1, 33)), "another key")
