"""The benchmark: `disburse bench` times the whole nightly pipeline on a synthetic city.

Not part of a nightly run, so it lives beside the synthetic population
generator (`disburse.synth`) rather than in the batch (`jobs`):

| module | owns |
| --- | --- |
| `pipeline` | the cached population, a fresh database, two timed nightly runs, the evaluation compared (`bench`) |
| `baselines` | the six enterprise policies written by hand in Polars and in DuckDB SQL, the pipelines to beat |
| `baselines_more` | the other six (the person, household and two more enterprise policies), the same way |
| `events` | the event path: durable-rules decisions alone, and a synthetic day served end to end |
| `policies/` | the fixed policy set the benchmark measures (its README) |
| `result` | `BenchResult`: the report as JSON (`--json`) and as text |
"""

from __future__ import annotations

from disburse.bench.pipeline import BenchRequest, bench
from disburse.bench.result import BenchResult

__all__ = ["BenchRequest", "BenchResult", "bench"]
