"""Thousands of broken copies of the shipped policies: none ends in a traceback, a hang
or a memory blow-up; every refusal is positioned with a fix; and a copy that passes
`policy check` evaluates over a city without error.

The copies are made by `tests/policy_mutants.py` from a fixed seed, so a failure
reproduces: `python -m tests.policy_mutants --seed S --count N --out F` and look for the
named copy.  Under CI=true 2,000 copies are checked; a local run checks 300
($DISBURSE_FUZZ_COUNT overrides, $DISBURSE_FUZZ_SEED picks another seed).  They run in
a child process whose memory is capped at 4 GiB, each stopped after 5 seconds of CPU
(or 50 of the clock: a machine busy with other work makes no mutant a hang).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("DISBURSE_FUZZ_SEED", "20261204"))
COUNT = int(
    os.environ.get("DISBURSE_FUZZ_COUNT", "2000" if os.environ.get("CI") == "true" else "300")
)
MEMORY = 4 * 2**30


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


@pytest.mark.slow
def test_broken_policies_are_refused_with_positions_never_crash(tmp_path: Path) -> None:
    out = tmp_path / "outcomes.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.policy_mutants",
            "--seed",
            str(SEED),
            "--count",
            str(COUNT),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        preexec_fn=_cap_memory,
        capture_output=True,
        text=True,
        timeout=60 + COUNT * 6,
    )
    outcomes = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(outcomes) == COUNT
    counts = Counter(o["status"] for o in outcomes)
    bad = [o for o in outcomes if o["status"] not in ("passed", "refused")]
    print(f"seed {SEED}: {dict(counts)}")
    assert bad == [], "\n\n".join(f"{o['name']}: {o['status']}\n{o['detail']}" for o in bad[:5])
    assert counts["refused"] > COUNT / 2  # the copies are broken: most must be refused
