"""Imports go one way: disburse -> jobs -> (eligibility, ledgers) -> common.

`eligibility` knows nothing of databases, `ledgers` nothing of rules, `common` nothing
of any of them; and the parts of the rule language a reader or the reference
interpreter needs import no Polars.  Checked from the source (function-level
imports included) and by importing in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("disburse", "jobs", "eligibility", "ledgers", "common")
# What each package may import of the others.
ALLOWED = {
    "disburse": {"disburse", "jobs", "eligibility", "ledgers", "common"},
    "jobs": {"jobs", "eligibility", "ledgers", "common"},
    "eligibility": {"eligibility", "common"},
    "ledgers": {"ledgers", "common"},
    "common": {"common"},
}
# The rule language without a backend: readable, checkable and explainable without Polars.
NO_POLARS = (
    "eligibility.ast",
    "eligibility.functions",
    "eligibility.amounts",
    "eligibility.types",
    "eligibility.parse",
    "eligibility.reference",
    "eligibility.explain",
    "common.errors",
    "common.money",
    "common.periods",
    "common.workdays",
    "common.holidays",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imports(path) - ALLOWED[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imports(path) - ALLOWED[package]
    }
    assert wrong == {}


def test_the_layering_check_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jobs.run import run_nightly\n")
    assert _imports(bad) - ALLOWED["ledgers"] == {"jobs"}


@pytest.mark.parametrize("module", NO_POLARS)
def test_the_language_without_a_backend_imports_no_polars(module: str) -> None:
    code = f"import sys, {module}; print('polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
