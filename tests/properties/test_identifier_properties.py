"""Property tests: every generated identifier validates; every single-character corruption is caught."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from jobs import identifiers as ids

uscc_body = st.text(alphabet=ids.USCC_ALPHABET, min_size=17, max_size=17)
resident_body = st.text(alphabet="0123456789", min_size=17, max_size=17)


@given(uscc_body)
def test_generated_uscc_validates(body: str) -> None:
    code = body + ids.uscc_check_char(body)
    assert ids.is_valid_uscc(code)
    assert pl.select(ids.uscc_valid_expr(pl.lit(code))).item()


@given(uscc_body, st.integers(0, 17), st.sampled_from(ids.USCC_ALPHABET))
def test_uscc_single_substitution_caught(body: str, pos: int, char: str) -> None:
    code = body + ids.uscc_check_char(body)
    if code[pos] == char:
        return
    bad = code[:pos] + char + code[pos + 1 :]
    assert not ids.is_valid_uscc(bad)
    assert not pl.select(ids.uscc_valid_expr(pl.lit(bad))).item()


@given(resident_body)
def test_generated_resident_id_validates(body: str) -> None:
    number = body + ids.resident_check_char(body)
    assert ids.is_valid_resident_id(number)
    assert pl.select(ids.resident_id_valid_expr(pl.lit(number))).item()


@given(resident_body, st.integers(0, 17), st.sampled_from("0123456789X"))
def test_resident_single_substitution_caught(body: str, pos: int, char: str) -> None:
    number = body + ids.resident_check_char(body)
    if number[pos] == char or (pos < 17 and char == "X"):
        return  # X is only a check character; elsewhere it is a malformed number, not a check failure
    bad = number[:pos] + char + number[pos + 1 :]
    assert not ids.is_valid_resident_id(bad)
    assert not pl.select(ids.resident_id_valid_expr(pl.lit(bad))).item()
