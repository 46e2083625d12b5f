"""Valid national identifiers, built row-wise in NumPy from their parts.

The check characters come from the kernels in `common.identifiers`, which the
ingest checks against; here we only assemble the parts and keep every code
unique.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from common.identifiers import (
    ORG_ALPHABET,
    RESIDENT_CHECK,
    RESIDENT_WEIGHTS,
    USCC_VALUE,
    org_code_values,
    uscc_bytes,
)
from disburse.synth._calendar import civil_from_days
from disburse.synth._context import IntArray, SynthError, sort_by
from disburse.synth._text import ascii_series

# Organisation-code characters (GB 11714) as credit-code values (GB 32100);
# the letters I, O, S, V and Z are not in the credit-code alphabet.
_ORG_TO_USCC = np.array([USCC_VALUE.get(c, -1) for c in ORG_ALPHABET], dtype=np.int64)

# A person's sequence number (digits 15-17) is 2k+1 for men and 2k+2 for women,
# k < 499, so that digit 17 is odd for men (GB 11643) and never 000.
MAX_PER_DAY_AND_SEX = 499


def _digits(values: IntArray, width: int) -> IntArray:
    out = np.empty((values.shape[0], width), dtype=np.int64)
    v = values.astype(np.int64)
    for position in range(width - 1, -1, -1):
        out[:, position] = v % 10
        v = v // 10
    return out


def credit_codes(
    name: str,
    authority: npt.NDArray[np.str_] | list[str],
    authority_index: IntArray,
    region_digits: IntArray,
    body: IntArray,
) -> pl.Series:
    """Unified social credit codes (GB 32100-2015).

    `authority` holds two-character registration authority and type codes (e.g.
    "91"), chosen per row by `authority_index`; `region_digits` is (n, 6);
    `body` is a number below 10**8, unique per row within one authority and
    region, that becomes the GB 11714 organisation code with its own check.
    """
    n = body.shape[0]
    auth = np.array([[USCC_VALUE[c] for c in a] for a in authority], dtype=np.int64)
    org_body = _digits(body, 8)
    first17 = np.empty((n, 17), dtype=np.int64)
    first17[:, 0:2] = auth[authority_index]
    first17[:, 2:8] = region_digits
    first17[:, 8:16] = org_body
    first17[:, 16] = _ORG_TO_USCC[org_code_values(org_body)]
    return ascii_series(name, uscc_bytes(first17))


def sequence_numbers(
    group: npt.NDArray[np.integer], rank: npt.NDArray[np.integer], male: npt.NDArray[np.bool_]
) -> IntArray:
    """Sequence numbers (digits 15-17) from each person's rank within their group.

    A group is the people of one region, birthday and sex; ranks 0, 1, ... are
    spread over the group's 499 numbers by a group-dependent affine map, so the
    numbers look arbitrary but never repeat within the group.
    """
    if rank.shape[0] and int(rank.max()) >= MAX_PER_DAY_AND_SEX:
        raise SynthError(
            f"more than {MAX_PER_DAY_AND_SEX} people of one sex born on one day in one region"
            " cannot have distinct identity numbers; use fewer persons or more regions"
        )
    # (group * 2654435761) mod 499, computed in 32 bits from the residues.
    shift = group % MAX_PER_DAY_AND_SEX
    shift *= 2_654_435_761 % MAX_PER_DAY_AND_SEX
    shift %= MAX_PER_DAY_AND_SEX
    k = rank * 37
    k += shift
    k %= MAX_PER_DAY_AND_SEX
    k *= 2
    k += 2 - male  # 2k+1 for men, 2k+2 for women
    return k


def assign_sequence(
    region: npt.NDArray[np.integer], birth_day: IntArray, male: npt.NDArray[np.bool_]
) -> IntArray:
    """Sequence numbers unique among people of one region, birthday and sex, in any order."""
    n = region.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    b = birth_day.astype(np.int64)
    group = (region.astype(np.int64) * (int(b.max() - b.min()) + 1) + (b - b.min())) * 2 + male
    order = sort_by(group, np.arange(n, dtype=np.int64))
    sorted_group = group[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start_pos
    return sequence_numbers(group, rank, male)


def _weighted_check(digits: npt.NDArray[np.integer], weights: tuple[int, ...]) -> IntArray:
    return digits.astype(np.int64) @ np.asarray(weights, dtype=np.int64)


def _words(table: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.uint16]]:
    """The columns of a byte table (even width) as 16-bit words, one array per word."""
    words = np.ascontiguousarray(table).view("<u2")  # little-endian: byte 0 is the low byte
    return [np.ascontiguousarray(words[:, j]) for j in range(words.shape[1])]


def resident_ids(
    name: str,
    region_digits: IntArray,
    region: npt.NDArray[np.integer],
    birth_day: IntArray,
    sequence: IntArray,
) -> pl.Series:
    """Resident identity numbers (GB 11643-1999): region, birth date, sequence, check.

    `region_digits` is the (r, 6) table of region codes and `region` the row
    of each person.  The three parts each take few distinct values (regions,
    days, sequence numbers), so their digits and their shares of the ISO 7064
    weighted sum are computed per distinct value and gathered: the check
    character is the one `common.identifiers.resident_id_bytes` computes.  The
    18 bytes are written as nine 16-bit words (6 + 8 + 3 + 1 bytes fall on word
    boundaries), one gather per word.
    """
    n = birth_day.shape[0]
    if n == 0:
        return pl.Series(name, [], dtype=pl.String)
    lo = int(birth_day.min())
    days = np.arange(lo, int(birth_day.max()) + 1, dtype=np.int64)
    year, month, day = civil_from_days(days)
    date_digits = _digits(year * 10_000 + month * 100 + day, 8)
    seq_digits = _digits(np.arange(1000, dtype=np.int64), 3)
    weights = RESIDENT_WEIGHTS
    at_day = np.subtract(birth_day, lo, dtype=np.int32)
    # The weights sum to 100, so the weighted sum is at most 900: 16 bits hold it.
    total = _weighted_check(region_digits, weights[0:6]).astype(np.int16)[region]
    total += _weighted_check(date_digits, weights[6:14]).astype(np.int16)[at_day]
    total += _weighted_check(seq_digits, weights[14:17]).astype(np.int16)[sequence]
    total %= 11
    check = np.frombuffer(RESIDENT_CHECK.encode(), dtype=np.uint8)[total]
    zero = ord("0")
    seq_bytes = np.zeros((1000, 4), dtype=np.uint8)  # last byte: room for the check character
    seq_bytes[:, :3] = seq_digits + zero
    rows = np.empty((n, 18), dtype=np.uint8)
    out = rows.view("<u2")
    for j, word in enumerate(_words((region_digits + zero).astype(np.uint8))):
        out[:, j] = word[region]
    for j, word in enumerate(_words((date_digits + zero).astype(np.uint8))):
        out[:, 3 + j] = word[at_day]
    seq_words = _words(seq_bytes)
    out[:, 7] = seq_words[0][sequence]
    out[:, 8] = seq_words[1][sequence] | (check.astype(np.uint16) << 8)
    return ascii_series(name, rows)
