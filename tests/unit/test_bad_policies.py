"""One broken policy file per error code, each with the exact message a person reads.

The expected messages live beside the files (`.expected`); `pytest --update-golden`
rewrites them after a deliberate change of wording.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from disburse.cli import main

HERE = Path(__file__).resolve().parents[1] / "bad_policies"
ROOT = HERE.parents[1]
FILES = sorted(HERE.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_bad_policy_message(path: Path, update_golden: bool) -> None:
    code = path.stem.split("_")[0]
    cwd = os.getcwd()
    os.chdir(ROOT)  # messages name the file as given, relative to the checkout
    try:
        result = CliRunner().invoke(main, ["policy", "check", str(path.relative_to(ROOT))])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f": {code} " in result.output, result.output
    assert "\n  fix: " in result.output
    expected = path.with_suffix(".expected")
    if update_golden:
        expected.write_text(result.output)
    assert result.output == expected.read_text()


def test_every_error_code_has_a_broken_file() -> None:
    import re

    from eligibility import check

    doc = check.__doc__ or ""
    codes = set(re.findall(r"E\d{3}", doc)) - {"E000"}  # E000: a file that cannot be read
    covered = {p.stem.split("_")[0] for p in FILES}
    assert codes <= covered, sorted(codes - covered)
