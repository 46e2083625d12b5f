"""Benchmark sizes: small by default, a city with DISBURSE_BENCH_FULL=1; synthetic data cached by size."""

from __future__ import annotations

import os
from pathlib import Path

FULL = os.environ.get("DISBURSE_BENCH_FULL") == "1"
CACHE = Path(os.environ.get("DISBURSE_BENCH_CACHE", "/tmp/disburse-bench-cache"))


def city_size() -> tuple[int, int]:
    """(enterprises, persons) for this run."""
    return (1_000_000, 10_000_000) if FULL else (20_000, 100_000)


def synth_city(enterprises: int, persons: int, seed: int = 1) -> Path:
    """A synthetic city's source files, generated once per size, seed and generator (its
    code and catalogue) and then reused."""
    from disburse.synth import generate, generator_fingerprint

    folder = CACHE / f"city-{enterprises}-{persons}-{seed}-g{generator_fingerprint()[:12]}"
    if not (folder / "manifest.json").is_file():
        generate(folder, enterprises=enterprises, persons=persons, seed=seed)
    return folder
