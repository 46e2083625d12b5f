"""Where the shipped data (catalogue, policies) lives."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def policies_dir() -> Path:
    """The policies folder: $DISBURSE_POLICIES, else the checkout's, else the installed copy."""
    env = os.environ.get("DISBURSE_POLICIES")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "policies"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "disburse" / "policies"


def holidays_path() -> Path:
    """The working-day calendar: holidays.yaml in the policies folder (`policies_dir`)."""
    return policies_dir() / "holidays.yaml"
