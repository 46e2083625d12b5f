"""disburse: pay subsidies to everyone entitled, with no application."""

import os

__version__ = "0.1.0"

# Polars' allocator (jemalloc, configured once when Polars loads, hence here, before
# any import of it; Polars prepends its own dirty_decay_ms:500,muzzy_decay_ms:1000,
# which these settings override).  A batch run allocates and frees buffers of hundreds
# of megabytes at every step; keeping freed pages for ten seconds lets the next step
# reuse them instead of faulting in and zeroing fresh ones.  Transparent huge pages
# (thp:always, used until 2026-12) made it worse on the reference machine: the kernel
# zeroes each 2 MiB page at its first touch (docs/benchmarks.md, "The allocator").
# Whoever sets
# _RJEM_MALLOC_CONF themselves keeps their own setting.
ALLOCATOR_SETTINGS = "dirty_decay_ms:10000,muzzy_decay_ms:10000"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_SETTINGS)
