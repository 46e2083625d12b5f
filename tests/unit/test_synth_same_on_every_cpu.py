"""The synthetic city is the same bytes on every machine for the same seed: numpy picks
vector code for the CPU it runs on (AVX-512, AVX2, or none), and where the last bit
of a result depends on that choice (float32 exp and power did) a floor of millions of
fen moved with it, so a golden file written on one machine failed on another.  The
city is written here twice: once with numpy's best vector code for this CPU, once
with all of it switched off (NPY_DISABLE_CPU_FEATURES), as on an older CPU."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

WRITE = (
    "import sys; from pathlib import Path; from disburse.synth import generate; "
    "generate(Path(sys.argv[1]), enterprises=600, persons=3000, seed=5, errors=0.02)"
)


def digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.glob("*.parquet")}


def test_the_same_seed_writes_the_same_files_whatever_vector_code_numpy_picks(
    tmp_path: Path,
) -> None:
    here = [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]
    older = {**os.environ, "NPY_DISABLE_CPU_FEATURES": ",".join(here)}
    for name, env in (("best", dict(os.environ)), ("plain", older)):
        subprocess.run([sys.executable, "-c", WRITE, str(tmp_path / name)], env=env, check=True)
    best, plain = digests(tmp_path / "best"), digests(tmp_path / "plain")
    assert len(best) == 14
    assert plain == best
