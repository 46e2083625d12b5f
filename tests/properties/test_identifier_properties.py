"""Property tests: every generated identifier validates; every single-character corruption is caught."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from common import identifiers as ids

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


@given(
    st.lists(st.one_of(uscc_body, resident_body, st.text(max_size=20), st.none()), max_size=30),
    st.integers(0, 17),
)
def test_identifier_fields_agree_with_scalar(bodies: list[str | None], pos: int) -> None:
    """Ingest's one-pass kernel: status by the scalar rules, and resident codes that sort as text."""
    values: list[str | None] = []
    for b in bodies:
        if b is not None and len(b) == 17 and all(c in ids.USCC_VALUE for c in b):
            code = b + ids.uscc_check_char(b)
            values += [code, code[:pos] + chr(ord(code[pos]) ^ 1) + code[pos + 1 :]]
            if b.isdigit():
                number = b + ids.resident_check_char(b)
                values += [number, number[:pos] + chr(ord(number[pos]) ^ 1) + number[pos + 1 :]]
        else:
            values.append(b)
    series = pl.Series("v", values, dtype=pl.String)

    def status(v: str, valid: bool, shaped: bool) -> int:
        return ids.ID_VALID if valid else ids.ID_WRONG_CHECK if shaped else ids.ID_MALFORMED

    def uscc_shaped(v: str) -> bool:
        return len(v) == 18 and all(c in ids.USCC_VALUE for c in v)

    def resident_shaped(v: str) -> bool:
        return len(v) == 18 and v[:17].isascii() and v[:17].isdigit() and v[17] in "0123456789X"

    cases = {
        "uscc": lambda v: status(v, ids.is_valid_uscc(v), uscc_shaped(v)),
        "resident_id": lambda v: status(v, ids.is_valid_resident_id(v), resident_shaped(v)),
        "uscc_or_resident_id": lambda v: status(
            v,
            ids.is_valid_uscc(v) or ids.is_valid_resident_id(v),
            uscc_shaped(v) or resident_shaped(v),
        ),
    }
    for kind, expected in cases.items():
        fields = ids.identifier_fields(series, kind).struct.unnest()
        assert fields[ids.STATUS_FIELD].to_list() == [
            None if v is None else expected(v) for v in values
        ], kind
        codes = fields[ids.CODE_FIELD].to_list()
        if kind == "uscc":
            assert codes == [None] * len(values)
            continue
        assert codes == [
            ids.resident_code_of(v) if v is not None and ids.is_valid_resident_id(v) else None
            for v in values
        ]
    coded = sorted(v for v in values if v is not None and ids.is_valid_resident_id(v))
    assert [ids.resident_code_of(v) for v in coded] == sorted(
        ids.resident_code_of(v) for v in coded
    )
