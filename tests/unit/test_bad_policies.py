"""One broken policy file per error code, each with the exact message a person reads.

The expected messages live beside the files (`.expected`); `pytest --update-golden`
rewrites them after a deliberate change of wording.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.errors import Code
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
    assert result.exit_code == (0 if Code(code).warning else 1)  # a warning accepts the file
    assert "Traceback" not in result.output
    assert f": {code} " in result.output, result.output
    assert "\n  fix: " in result.output
    expected = path.with_suffix(".expected")
    if update_golden:
        expected.write_text(result.output)
    assert result.output == expected.read_text()


# Codes a single policy file cannot show: no policy files at all (a folder), and the
# codes of choosing a policy (given on the command line, not in a file).
NOT_IN_A_FILE = {Code.NO_POLICY_FILES, Code.UNKNOWN_POLICY, Code.OTHER_POLICY}


def test_every_error_code_has_a_broken_file() -> None:
    codes = {c for c in Code if c.scope in ("file", "policy", "run")} - NOT_IN_A_FILE
    covered = {p.stem.split("_")[0] for p in FILES}
    assert sorted(codes - covered) == []
