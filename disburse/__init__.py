"""disburse: pay subsidies to everyone entitled, with no application."""

import os

__version__ = "0.1.0"

# Polars' allocator (jemalloc, configured once when Polars loads, hence here, before
# any import of it; Polars prepends its own dirty_decay_ms:500,muzzy_decay_ms:1000,
# which these settings override).  A batch run allocates and frees buffers of hundreds
# of megabytes at every step.  Freed pages are kept for a second, so that the next
# step can reuse them: ten seconds made a 1M-enterprise run about 8% faster, but at 3M
# it held 1.2 GB more at the peak (8.6 GB, past 8 GiB) and ran slower
# (docs/benchmarks.md, "The allocator").  Transparent huge
# pages (thp:always, used until 2026-12) made it worse on the reference machine: the
# kernel zeroes each 2 MiB page at its first touch.  Whoever sets _RJEM_MALLOC_CONF
# themselves keeps their own setting.
ALLOCATOR_SETTINGS = "dirty_decay_ms:1000,muzzy_decay_ms:1000"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_SETTINGS)
