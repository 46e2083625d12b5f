"""docs/policies.md shows the function registry and the error codes as they are in the code."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from common.errors import codes_table
from eligibility.functions import functions_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


@pytest.mark.parametrize(
    ("name", "table"), [("functions", functions_table), ("codes", codes_table)]
)
def test_docs_table_matches_the_registry(
    name: str, table: Callable[[], str], update_golden: bool
) -> None:
    text = DOC.read_text()
    block = re.compile(rf"(<!-- {name}: .*? -->\n)(.*?)(<!-- end {name} -->)", re.S)
    assert block.search(text), f"docs/policies.md has no generated {name} table"
    want = table() + "\n"
    if update_golden:
        DOC.write_text(block.sub(lambda m: m.group(1) + want + m.group(3), text))
        text = DOC.read_text()
    match = block.search(text)
    assert match is not None
    assert match.group(2) == want, "run pytest --update-golden to regenerate it"
