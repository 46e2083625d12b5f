"""What every part of the generator shares: the seed, the window, the regions."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import DisburseError
from disburse.synth._calendar import Window
from jobs.catalogue import Catalogue

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.integer[Any]]  # any integer width: indices, codes, days
BoolArray = npt.NDArray[np.bool_]


# Rows of a big source generated, held and written at a time: text columns take 16
# bytes a value or more in memory (a 30-million-person register is 4 GB whole).
ROWS_PER_BLOCK = 1 << 21


def blocks(count: int, part: Callable[[slice], Any]) -> Iterator[Any]:
    """`part(rows)` for consecutive slices of `count` rows, ROWS_PER_BLOCK at a time
    (one empty slice when `count` is 0, so that a source always has its columns)."""
    for lo in range(0, max(count, 1), ROWS_PER_BLOCK):
        yield part(slice(lo, lo + ROWS_PER_BLOCK))


class SynthError(DisburseError, ValueError):
    """The generator cannot do what it was asked; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class Context:
    """Parameters of one generation run."""

    seed: int
    window: Window
    region_codes: tuple[str, ...]  # the city's divisions
    region_names: tuple[str, ...]
    # Divisions outside the city where residents may be registered, and their shares.
    home_codes: tuple[str, ...] = ()
    home_shares: tuple[float, ...] = ()

    def rng(self, stream: str) -> np.random.Generator:
        """An independent random stream per named purpose.

        Each source draws from its own stream, so adding a column to one source
        does not change the values of another.
        """
        return np.random.default_rng([self.seed, zlib.crc32(stream.encode())])

    @property
    def region_weights(self) -> FloatArray:
        """Share of the population and of enterprises in each region.

        Catalogue lists put the urban districts first; weights fall with the
        position so that the first districts are the most populous.
        """
        w = 1.0 / (1.0 + 0.15 * np.arange(len(self.region_codes), dtype=np.float64))
        weights: FloatArray = w / w.sum()
        return weights

    @property
    def region_digits(self) -> IntArray:
        """An (r, 6) array of the digit values of each region code."""
        return _digits(self.region_codes)

    @property
    def home_digits(self) -> IntArray:
        """An (h, 6) array of the digit values of each home division outside the city."""
        return _digits(self.home_codes)


def _digits(codes: tuple[str, ...]) -> IntArray:
    return np.array([[int(c) for c in code] for code in codes], dtype=np.int64).reshape(-1, 6)


def city_list(catalogue: Catalogue) -> str | None:
    """The name of the list of the city's divisions: the list enterprises.region_code is
    in (enterprises are registered in the city), or else the list named `regions`."""
    enterprises = catalogue.sources.get("enterprises")
    column = enterprises.columns.get("region_code") if enterprises is not None else None
    if column is not None and column.in_list is not None:
        return column.in_list
    return "regions" if "regions" in catalogue.lists else None


_DRAW_BITS = 16


def draw(
    rng: np.random.Generator, shares: Sequence[float] | FloatArray, n: int
) -> npt.NDArray[np.int16]:
    """n category indices drawn with the given (not necessarily normalised) shares.

    Drawn through a table of 2**16 equally likely slots, each holding the
    category its quantile falls in: one small-table gather per element instead
    of a binary search, at a resolution of 1/65536 per share.
    """
    p = np.asarray(shares, dtype=np.float64)
    cum = np.cumsum(p / p.sum())
    slots = (np.arange(1 << _DRAW_BITS, dtype=np.float64) + 0.5) / (1 << _DRAW_BITS)
    table = np.minimum(np.searchsorted(cum, slots, side="right"), p.shape[0] - 1).astype(np.int16)
    drawn: npt.NDArray[np.int16] = table[rng.integers(0, 1 << _DRAW_BITS, n, dtype=np.uint32)]
    return drawn


def sort_by(key: npt.NDArray[np.integer], values: IntArray) -> IntArray:
    """`values` (non-negative, below 2**27) ordered by `key`, ties by value.

    Key and value are packed into one int64 and sorted as plain integers: far
    faster than a stable argsort, and as deterministic, since no two packed
    numbers are equal.
    """
    if values.shape[0] == 0:
        return values.astype(np.int64)
    k = key.astype(np.int64)
    k -= k.min()
    if int(k.max()) >= 1 << 36 or int(values.max()) >= 1 << 27:
        raise SynthError("too many rows to order in one pass; generate a smaller population")
    packed = (k << 27) | values.astype(np.int64)
    packed.sort()
    ordered: IntArray = packed & ((1 << 27) - 1)
    return ordered


def log_uniform(rng: np.random.Generator, lo: FloatArray, hi: FloatArray) -> IntArray:
    """Integers drawn log-uniformly between lo and hi (inclusive)."""
    u = rng.random(lo.shape[0])
    value = np.exp(np.log(lo) + u * (np.log(hi + 1.0) - np.log(lo)))
    return np.minimum(np.floor(value), hi).astype(np.int64)


def scramble(index: IntArray, modulus: int, offset: int) -> IntArray:
    """A bijection of [0, modulus) that looks random: index * a + offset mod modulus.

    Used to number things uniquely (organisation codes, households) without
    drawing and de-duplicating random numbers.  The multiplier is coprime with
    any power of ten.
    """
    multiplier = 7_368_787 if modulus > 7_368_787 else 7
    return (index.astype(np.int64) * multiplier + offset) % modulus
