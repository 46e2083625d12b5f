"""Reading the ledger for people: verify it, summarise it, list entries and balances.

The auditor's API in one import; each part has its own module:

| name | module | what |
| --- | --- | --- |
| `verify`, `VerifyResult`, `Check` | `ledgers.verify` (pass: `ledgers.scan`, checks: `ledgers.checks`) | the hash chain, balance invariants, key uniqueness; the first bad entry named |
| `summary`, `Summary` | `ledgers.summary` | per policy and benefit period |
| `entries`, `entries_json_lines`, `entries_csv`, `entries_text` | `ledgers.entries` | transfers in id order, masked |
| `balances`, `Balances` | `ledgers.balances` | per account, with the totals |

Everything printed is deterministic (ordered by id or by name, no timestamps):
the same ledger gives the same bytes.
"""

from __future__ import annotations

from ledgers.balances import Balances, balances
from ledgers.chain import CHAIN_FIELDS
from ledgers.checks import Check
from ledgers.entries import entries, entries_csv, entries_json_lines, entries_text
from ledgers.summary import Summary, summary
from ledgers.verify import VerifyResult, verify

__all__ = [
    "CHAIN_FIELDS",
    "Balances",
    "Check",
    "Summary",
    "VerifyResult",
    "balances",
    "entries",
    "entries_csv",
    "entries_json_lines",
    "entries_text",
    "summary",
    "verify",
]
