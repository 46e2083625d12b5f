"""The vectorised forms agree with their one-row references: canonical content, masking."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgers.chain import (
    CHAIN_FIELDS,
    GENESIS,
    KEYED_FIELDS,
    PERSONAL_FIELDS,
    canonical_content,
    chain,
    content_expr,
    keyed_content,
    stored_content_expr,
    with_hashes,
)
from ledgers.masking import is_resident_id, is_resident_id_expr, mask_entity, mask_entity_expr
from tests import minicity
from tests.keys import KEY

TEXT_FIELDS = [f for f in CHAIN_FIELDS if f not in ("transfer_id", "amount_fen", "run_id")]
texts = st.one_of(st.none(), st.text(max_size=12))  # any unicode, ',', ':', '-', empty
rows = st.fixed_dictionaries(
    {
        "transfer_id": st.integers(1, 2**62),
        "amount_fen": st.integers(-(2**62), 2**62),
        "run_id": st.integers(1, 2**31),
        **dict.fromkeys(TEXT_FIELDS, texts),
    }
)
SCHEMA = dict.fromkeys(CHAIN_FIELDS, pl.String) | {
    "transfer_id": pl.Int64,
    "amount_fen": pl.Int64,
    "run_id": pl.Int64,
}


@settings(max_examples=100, deadline=None)
@given(st.lists(rows, min_size=1, max_size=5))
def test_polars_content_and_chain_match_the_reference(batch: list[dict[str, object]]) -> None:
    frame = pl.DataFrame(batch, schema=SCHEMA)
    contents = frame.select(content_expr()).to_series().to_list()
    assert contents == [canonical_content([r[f] for f in CHAIN_FIELDS]) for r in batch]
    hashed = with_hashes(frame, GENESIS, KEY)
    h = GENESIS
    for row, got_mac, got_prev, got in zip(
        batch,
        hashed["personal_mac"],
        hashed["hash"].shift(1).fill_null(GENESIS),
        hashed["hash"],
        strict=True,
    ):
        mac = hmac.digest(
            KEY.personal, canonical_content([row[f] for f in PERSONAL_FIELDS]).encode(), "sha256"
        ).hex()
        assert got_mac == mac
        assert got_prev == h
        h = hashlib.sha256(
            (h + keyed_content([{**row, "personal_mac": mac}[f] for f in KEYED_FIELDS])).encode()
        ).hexdigest()
        assert got == h
    assert hashed["prev_hash"].to_list() == hashed["hash"].shift(1).fill_null(GENESIS).to_list()
    # What verify recomputes from a stored row: version 2 with a digest, version 1 without.
    stored = hashed.select(stored_content_expr()).to_series().to_list()
    assert chain(stored, GENESIS)[-1] == h
    unkeyed = hashed.with_columns(personal_mac=pl.lit(None, pl.String))
    assert unkeyed.select(stored_content_expr()).to_series().to_list() == contents
    assert chain(contents, GENESIS)[-1] != h


@settings(deadline=None)
@given(st.lists(texts, min_size=2, max_size=2), st.lists(texts, min_size=2, max_size=2))
def test_different_fields_never_share_content(a: list[str | None], b: list[str | None]) -> None:
    if a != b:
        assert canonical_content(a) != canonical_content(b)


ids = st.one_of(
    st.sampled_from(minicity.person_ids(20, seed=3) + minicity.credit_codes(20, seed=3)),
    st.text(alphabet="0123456789X", min_size=17, max_size=19),
    st.text(max_size=20),
    st.none(),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(ids, max_size=8))
def test_masking_expression_matches_the_reference(values: list[str | None]) -> None:
    series = pl.Series("v", values, dtype=pl.String)
    frame = series.to_frame()
    assert frame.select(is_resident_id_expr(pl.col("v"))).to_series().to_list() == [
        is_resident_id(v) for v in values
    ]
    assert frame.select(mask_entity_expr(pl.col("v"))).to_series().to_list() == [
        mask_entity(v) for v in values
    ]


def test_residents_are_masked_and_enterprises_are_not() -> None:
    for pid in minicity.person_ids(50, seed=1):
        assert is_resident_id(pid)
        assert mask_entity(pid) == pid[:6] + "*" * 10 + pid[-2:]
    for code in minicity.credit_codes(50, seed=1):
        assert not is_resident_id(code)
        assert mask_entity(code) == code


def test_accounts_keep_their_last_four_digits_only_when_long_enough() -> None:
    from ledgers.masking import mask_account, mask_account_address

    assert mask_account("6228480012345678") == "*" * 12 + "5678"
    assert mask_account("1234567") == "*" * 7  # too short to show a quarter of it
    assert mask_account(None) is None
    pid = minicity.person_ids(1)[0]
    assert mask_account_address(f"payable:{pid}") == f"payable:{mask_entity(pid)}"
    assert mask_account_address("budget:p:2026") == "budget:p:2026"
