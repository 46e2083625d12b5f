"""Check characters: known published examples, and the vectorised forms agree with the scalar ones."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from common import identifiers as ids


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("91350100M000100Y43", True),  # the example printed in GB 32100-2015 commentary
        ("91350100M000100Y44", False),
        ("91350100M000100Y4", False),
        ("91350100M000100YI3", False),  # I is not in the alphabet
    ],
    ids=["valid", "wrong-check", "short", "bad-alphabet"],
)
def test_uscc_examples(code: str, valid: bool) -> None:
    assert ids.is_valid_uscc(code) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),  # the example in GB 11643-1999
        ("110105194912310021", False),
        ("11010519491231002x", False),
        ("1101051949123100", False),
    ],
    ids=["valid", "wrong-check", "lowercase-x", "short"],
)
def test_resident_id_examples(number: str, valid: bool) -> None:
    assert ids.is_valid_resident_id(number) is valid


def test_org_code_check() -> None:
    # The organisation code inside 91350100M000100Y43 is M000100Y with check character 4.
    assert ids.org_code_check_char("M000100Y") == "4"
    assert ids.org_code_check_char("D2143569") == "X"  # weighted sum 199, 11 - 199 % 11 = 10


def test_numpy_and_polars_agree_with_scalar() -> None:
    rng = np.random.default_rng(7)
    uscc = ids.ascii_rows_to_series("c", ids.uscc_bytes(rng.integers(0, 31, (200, 17))))
    rid = ids.ascii_rows_to_series("p", ids.resident_id_bytes(rng.integers(0, 10, (200, 17))))
    assert all(ids.is_valid_uscc(c) for c in uscc)
    assert all(ids.is_valid_resident_id(p) for p in rid)
    # Corrupt every other check character and compare the Polars verdict with the scalar one.
    corrupt_c = [
        c[:17] + ("0" if c[17] != "0" else "1") if i % 2 else c for i, c in enumerate(uscc)
    ]
    corrupt_p = [p[:17] + ("0" if p[17] != "0" else "1") if i % 2 else p for i, p in enumerate(rid)]
    df = pl.DataFrame({"c": corrupt_c, "p": corrupt_p}).select(
        ids.uscc_valid_expr(pl.col("c")).alias("c"),
        ids.resident_id_valid_expr(pl.col("p")).alias("p"),
    )
    assert df["c"].to_list() == [ids.is_valid_uscc(c) for c in corrupt_c]
    assert df["p"].to_list() == [ids.is_valid_resident_id(p) for p in corrupt_p]
    assert df["c"].sum() == 100
    assert df["p"].sum() == 100
