"""`TreePeak` counts a run's child processes (a cluster's workers), not only its own."""

from __future__ import annotations

import subprocess
import sys

import psutil

from jobs.progress import TreePeak

CHILD = "import time; held = bytearray(300 * 2**20); held[::4096] = b'x' * len(held[::4096]); time.sleep(1.5)"


def test_a_child_process_memory_is_in_the_peak() -> None:
    own = psutil.Process().memory_info().rss / 2**20
    with TreePeak(every=0.05) as tree:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    # The child held 300 MiB of touched pages beside this process's own.
    assert own + 250 <= tree.mb < own + 1000
