"""disburse: pay subsidies to everyone entitled, with no application."""

import os

__version__ = "0.1.0"

# Polars' allocator (jemalloc, configured once when Polars loads, hence here, before
# any import of it; Polars prepends its own dirty_decay_ms:500,muzzy_decay_ms:1000,
# which these settings override).  A batch run allocates and frees buffers of hundreds
# of megabytes at every step, and on a virtual machine the first touch of each 4 KiB
# page is a fault costing more than the copy into it (on the 2-core reference machine:
# 0.25 GB/s into fresh pages, 5.9 GB/s into touched ones).  Transparent huge pages make
# that one fault per 2 MiB; keeping freed pages for ten seconds lets the next step
# reuse them.  Measured: a join and group-by of 10M rows, 4.0 s to 1.9 s; a
# 1M-enterprise ingest, 5-8% faster; evaluate, no change beyond noise.  Whoever sets
# _RJEM_MALLOC_CONF themselves keeps their own setting.
ALLOCATOR_SETTINGS = "thp:always,dirty_decay_ms:10000,muzzy_decay_ms:10000"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_SETTINGS)
