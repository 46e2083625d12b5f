"""The population register and family relations.

Ages follow the 2020 census pyramid (with some people over 100 and the last
three years' births); couples are formed by pairing men and women of similar
age; children under 18 are given a mother of plausible age (and her husband as
father), one parent, or a guardian of their grandparents' generation.  Family
members share a household and its region; identity numbers encode the region
of birth, the birth date and sex, unique within each (region, day, sex).
About a third of working-age households are registered outside the city (a few
of the old): their region is a division elsewhere, shared by their children,
and their identity numbers were issued there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from disburse.synth import _tables as T
from disburse.synth._calendar import age_on, date_strings
from disburse.synth._context import BoolArray, Context, IntArray, draw, scramble, sort_by
from disburse.synth._ids import assign_sequence, resident_ids, sequence_numbers
from disburse.synth._text import ascii_series, digit_rows, join, pick

YEAR = 365.2425
CENTENARIAN_GROUP = len(T.AGE_GROUP_MILLIONS) - 1
MIN_CENTENARIANS = 3  # so that small samples still exercise the top age tier
MAX_YEARS = 113  # the oldest age drawn
KEY_SHIFT = 20  # region << KEY_SHIFT | birth day: a key that sorts by region, then age
FloatArray32 = npt.NDArray[np.float32]
AgeArray = npt.NDArray[np.int16]


@dataclass(slots=True)
class Population:
    """The register as arrays (one element per person).  Its two frames, the register
    and the relations, are built from them on demand (`persons_frame`, `relations_frame`),
    one at a time, so that the builder never holds both with all its arrays: at 30
    million persons the builder peaked at 10 GB holding them."""

    person_id: pl.Series
    birth_day: IntArray
    male: BoolArray
    alive: BoolArray
    region: npt.NDArray[np.int16]  # household registration: ctx.region_codes, then ctx.home_codes
    age: AgeArray  # completed years on the day before as_of
    household: IntArray  # each person's household: the index of the person who founded it
    household_offset: int  # scrambles household numbers (the same in every source)
    region_codes: tuple[str, ...]  # ctx.region_codes + ctx.home_codes, as `region` indexes them
    name_index: npt.NDArray[np.uint32]  # each person's row of the table of names
    died: npt.NDArray[np.int32]  # day of death where not alive
    # The relations, ordered by person then related person: who, the related person and
    # the kind (an index into RELATION_KINDS).
    who: npt.NDArray[np.int32]
    other: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int8]

    @property
    def n(self) -> int:
        """Number of persons."""
        return int(self.birth_day.shape[0])

    @property
    def related(self) -> IntArray:
        """Every person index that appears in relations."""
        return np.concatenate([self.who, self.other])

    @property
    def relation_count(self) -> int:
        """Number of relations."""
        return int(self.who.shape[0])

    def persons_frame(self, rows: slice = slice(None)) -> pl.DataFrame:
        """The register, one row per person: all of it, or the persons `rows`."""
        dead = ~self.alive[rows]
        return pl.DataFrame(
            [
                self.person_id[rows],
                _name_table()[0]
                .gather(pl.Series(self.name_index[rows], dtype=pl.UInt32))
                .alias("name"),
                date_strings("birth_on", self.birth_day[rows]),
                pick("sex", ["F", "M"], self.male[rows]),
                pick("region_code", self.region_codes, self.region[rows]),
                pick("status", ["alive", "deceased"], dead),
                date_strings("died_on", self.died[rows], dead),
            ]
        )

    def relations_frame(self, rows: slice = slice(None)) -> pl.DataFrame:
        """The relations (related_person_id is person_id's parent, guardian or spouse):
        all of them, or the relations `rows`."""
        who = self.who[rows]
        return pl.DataFrame(
            [
                self.person_id.gather(pl.Series(who, dtype=pl.UInt32)),
                self.person_id.gather(pl.Series(self.other[rows], dtype=pl.UInt32)).alias(
                    "related_person_id"
                ),
                pick("relation", RELATION_KINDS, self.kind[rows]),
                _household_ids(self.household[who], self.household_offset),
            ]
        )


RELATION_KINDS = ["parent", "guardian", "spouse"]


def by_age(bands: tuple[tuple[int, float], ...], age: AgeArray) -> FloatArray32:
    """The value of the band (lower bound, value) each age falls in; 0 below the first."""
    table = np.zeros(MAX_YEARS + 2, dtype=np.float32)
    for low, value in bands:
        table[low:] = value
    return table[age]


def _cells(ctx: Context, rng: np.random.Generator, n: int) -> tuple[IntArray, IntArray, int, int]:
    """Persons as (region, birth day, sex) cells: each person's cell and rank within it.

    Cell counts are drawn at once from a multinomial over region shares and
    the age pyramid; persons then come out ordered by cell, so the rank that
    keeps identity numbers unique is a subtraction, not a sort.  The register
    is thus ordered like identity numbers (until those of residents registered
    elsewhere are reissued): region, then birth date, then sex.
    Returns cells, ranks, the first birth day of the range and its length.
    """
    today = ctx.window.today
    span = int(MAX_YEARS * YEAR)
    first_day = today - span + 1
    age_years = (today - np.arange(first_day, today + 1, dtype=np.int64)) / YEAR  # oldest first
    group = np.minimum(age_years // 5, CENTENARIAN_GROUP).astype(np.int64)
    shares = np.asarray(T.AGE_GROUP_MILLIONS, dtype=np.float64)
    shares /= shares.sum()
    density = shares[group] / (5 * YEAR)
    top = group == CENTENARIAN_GROUP
    # Over 100 the number alive falls by about half every year and a bit.
    density[top] = shares[-1] * np.exp(-(age_years[top] - 100) / 1.6) / (1.6 * YEAR)
    male_share = np.asarray(T.MALE_SHARE)[group]
    weights = ctx.region_weights
    sex = np.stack([1 - male_share, male_share], axis=1)
    p = (weights[:, None, None] * density[None, :, None] * sex[None, :, :]).reshape(-1)
    centenarian = np.broadcast_to(top[None, :, None], (weights.shape[0], span, 2)).reshape(-1)
    # Centenarians are drawn apart, so that even a small sample has a few.
    p_top = float(p[centenarian].sum())
    k_top = int(rng.binomial(n, p_top))
    if n >= 100:
        k_top = max(k_top, MIN_CENTENARIANS)
    rest = ~centenarian
    if n >= p.shape[0] // 4:
        counts = np.zeros(p.shape[0], dtype=np.int64)
        counts[centenarian] = rng.multinomial(k_top, p[centenarian] / p_top)
        counts[rest] = rng.multinomial(n - k_top, p[rest] / p[rest].sum())
        cell = np.repeat(np.arange(p.shape[0], dtype=np.int32), counts)
    else:  # a small sample: drawing each person beats a multinomial over a million cells
        cells = []
        for group_mask, k in ((centenarian, k_top), (rest, n - k_top)):
            members = np.flatnonzero(group_mask)
            cum = np.cumsum(p[members])
            pick = np.searchsorted(cum, rng.random(k) * cum[-1], side="right")
            cells.append(members[np.minimum(pick, members.shape[0] - 1)])
        cell = np.sort(np.concatenate(cells)).astype(np.int32)
        counts = np.bincount(cell, minlength=p.shape[0])
    # int32 throughout: a million cells and a rank below 499 (people per cell).
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    rank = (np.arange(n, dtype=np.int64) - starts[cell]).astype(np.int32)
    return cell, rank, first_day, span


def _match(
    rng: np.random.Generator,
    pool: IntArray,
    pool_key: IntArray,
    target_key: IntArray,
    child_key: IntArray,
    gap_years: tuple[float, float],
) -> IntArray:
    """For each target key, a pool member whose key is near it (or -1 if none is plausible).

    Keys are region << KEY_SHIFT | birth day, so only people of one region are
    near each other.  Pool members are sorted by key and the nearest is taken
    with a small random jitter, so that the same person is not picked for
    every child born on one day.  A pick from another region, or whose age
    gap to the child is outside `gap_years`, is refused.
    """
    if pool.shape[0] == 0 or target_key.shape[0] == 0:
        return np.full(target_key.shape[0], -1, dtype=np.int64)
    order = sort_by(pool_key, np.arange(pool.shape[0], dtype=np.int64))
    sorted_key = pool_key[order]
    pos = np.searchsorted(sorted_key, target_key) + rng.integers(-3, 4, target_key.shape[0])
    pos = np.clip(pos, 0, pool.shape[0] - 1)
    chosen = sorted_key[pos]
    gap = child_key - chosen  # in days, when the region is the same
    ok = (chosen >> KEY_SHIFT == child_key >> KEY_SHIFT) & (gap >= gap_years[0] * YEAR)
    ok &= gap <= gap_years[1] * YEAR
    return np.where(ok, pool[order[pos]], -1)


def _couples(
    rng: np.random.Generator, birth: IntArray, male: BoolArray, married: BoolArray
) -> tuple[IntArray, IntArray]:
    """(husband, wife) index pairs; husbands about two years older on average."""
    men = np.flatnonzero(married & male)
    women = np.flatnonzero(married & ~male)
    k = min(men.shape[0], women.shape[0])
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    spread = 1.5 * YEAR
    key_m = birth[men] + rng.normal(0.0, spread, men.shape[0]).astype(np.int64)
    key_w = birth[women] - int(2 * YEAR) + rng.normal(0.0, spread, women.shape[0]).astype(np.int64)
    men_by_age = sort_by(key_m, men)
    women_by_age = sort_by(key_w, women)
    # Pair the same quantiles of the two age distributions.
    i = np.arange(k, dtype=np.int64)
    return men_by_age[i * men.shape[0] // k], women_by_age[i * women.shape[0] // k]


def _household_ids(hh: IntArray, offset: int) -> pl.Series:
    """'H' and ten digits: a scrambled household number, unique per household."""
    rows = np.ascontiguousarray(digit_rows(scramble(hh, 10**10, offset), 12))
    rows[:, 1] = ord("H")  # the number has ten digits, so the first two are zeros
    return ascii_series("household_id", rows[:, 1:])


def _name_table() -> tuple[pl.Series, int]:
    """Every possible name, surname-major, then sex, then given name; and the given-name count.

    Per surname and sex there are `g` one-character given names, then all
    g * g pairs (a shorter pool is padded with its first character).  The
    table holds a few hundred thousand short strings, so a name column of any
    length is then one gather.
    """
    g = max(len(T.GIVEN_MALE), len(T.GIVEN_FEMALE))
    first = np.repeat(np.arange(g), g)
    second = np.tile(np.arange(g), g)
    given = []
    for pool in (T.GIVEN_MALE, T.GIVEN_FEMALE):
        chars = pl.Series("c", list(pool.ljust(g, pool[0])), dtype=pl.String)
        pairs = join("c", [chars.gather(first), chars.gather(second)])
        given.append(pl.concat([chars, pairs]))
    per_surname = pl.concat(given)
    surnames = pl.Series("s", [*T.SURNAMES, *T.COMPOUND_SURNAMES], dtype=pl.String)
    k = per_surname.len()
    table = join(
        "name",
        [
            surnames.gather(np.repeat(np.arange(surnames.len()), k)),
            per_surname.gather(np.tile(np.arange(k), surnames.len())),
        ],
    )
    return table, g


def _name_index(
    rng: np.random.Generator, male: BoolArray, surname: IntArray
) -> npt.NDArray[np.uint32]:
    """Each person's row of the table of all names (`_name_table`): their surname and a
    one- or two-character given name."""
    n = male.shape[0]
    _table, g = _name_table()
    # 32-bit arithmetic: the table has well under 2**31 names.
    size = np.where(male, np.float32(len(T.GIVEN_MALE)), np.float32(len(T.GIVEN_FEMALE)))
    first = (rng.random(n, dtype=np.float32) * size).astype(np.int32)  # >= 0: truncation floors
    second = (rng.random(n, dtype=np.float32) * size).astype(np.int32)
    two = rng.random(n, dtype=np.float32) < T.TWO_CHARACTER_GIVEN_SHARE
    pair = first * g
    pair += second
    pair += g
    index = np.where(two, pair, first)
    del pair, first, second
    index += (surname.astype(np.int32) * 2 + ~male) * (g + g * g)
    return index.astype(np.uint32)


def _surnames(rng: np.random.Generator, n: int) -> IntArray:
    # Surname frequencies fall off roughly as 1/rank (Wang and Li are ~7% each).
    ranks = np.arange(len(T.SURNAMES), dtype=np.float64)
    surname = draw(rng, 1.0 / (ranks + 3.0), n).astype(np.int64)
    compound = np.flatnonzero(rng.random(n, dtype=np.float32) < T.COMPOUND_SURNAME_SHARE)
    extra = rng.integers(0, len(T.COMPOUND_SURNAMES), compound.shape[0])
    surname[compound] = len(T.SURNAMES) + extra
    return surname


def _registered_elsewhere(ctx: Context, age: AgeArray) -> npt.NDArray[np.int16]:
    """Per person, an index into ctx.home_codes where their household is registered, or -1
    for the city.

    Drawn by age (T.HOME_ELSEWHERE_BY_AGE) from a random stream of its own, so that the
    rest of the register is the same whatever the share.
    """
    n = age.shape[0]
    home = np.full(n, -1, dtype=np.int16)
    if not ctx.home_codes:
        return home
    rng = ctx.rng("persons:registered elsewhere")
    chosen = np.flatnonzero(rng.random(n, dtype=np.float32) < by_age(T.HOME_ELSEWHERE_BY_AGE, age))
    home[chosen] = draw(rng, ctx.home_shares, chosen.shape[0])
    return home


def _issued_at_home(
    ctx: Context,
    person_id: pl.Series,
    region: npt.NDArray[np.int16],
    birth: IntArray,
    male: BoolArray,
) -> pl.Series:
    """Identity numbers of those registered elsewhere, issued under their home division.

    An identity number carries the division where it was first issued: for a migrant,
    or a migrant's child registered with the parents, that is the home county, not a
    district of the city.  Sequence numbers are unique per home division, day and sex.
    """
    at = np.flatnonzero(region >= len(ctx.region_codes))
    if at.shape[0] == 0:
        return person_id
    home = region[at] - len(ctx.region_codes)
    sequence = assign_sequence(home, birth[at], male[at])
    ids = resident_ids("person_id", ctx.home_digits, home, birth[at], sequence)
    return person_id.scatter(at, ids)


def build_population(ctx: Context, n: int) -> Population:
    """The population register of n persons and their family relations."""
    rng = ctx.rng("persons")
    today = ctx.window.today

    cell, rank, first_day, span = _cells(ctx, rng, n)
    male = (cell & 1).astype(bool)
    birth = (cell >> 1) % span
    birth += first_day  # int32 day numbers: the cell range fits comfortably
    id_region = cell // (2 * span)
    sequence = sequence_numbers(cell, rank, male)
    del cell, rank
    person_id = resident_ids("person_id", ctx.region_digits, id_region, birth, sequence)
    del sequence
    age = age_on(birth, today)
    group = np.minimum(age // 5, CENTENARIAN_GROUP)
    dead = rng.random(n, dtype=np.float32) < np.asarray(T.DECEASED_SHARE, dtype=np.float32)[group]
    del group
    # The first few centenarians stay alive: the top tier of an age-tiered
    # allowance then has cases in any sample.
    dead[np.flatnonzero(age >= 100)[:MIN_CENTENARIANS]] = False
    # Deaths of the last four years, not yet purged from the register.
    died = np.zeros(n, dtype=np.int64)
    dead_idx = np.flatnonzero(dead)
    died_from = np.maximum(birth[dead_idx], today - 4 * 365)
    died[dead_idx] = died_from + np.floor(
        rng.random(dead_idx.shape[0]) * (today - died_from + 1)
    ).astype(np.int64)
    alive = ~dead

    # Couples; everyone else starts in a household of their own.
    married = alive & (age >= 22)
    married &= rng.random(n, dtype=np.float32) < by_age(T.MARRIED_BY_AGE, age)
    husband, wife = _couples(rng, birth, male, married)
    del married
    spouse = np.full(n, -1, dtype=np.int64)
    spouse[husband], spouse[wife] = wife, husband
    hh = np.arange(n, dtype=np.int64)
    hh[wife] = husband

    # A household lives in one region: mostly the region its head was born in
    # (their identity number's); a wife moves to her husband's.
    region = id_region.astype(np.int16)
    moved = np.flatnonzero(rng.random(n, dtype=np.float32) >= 0.85)
    region[moved] = draw(rng, ctx.region_weights, moved.shape[0])
    region[wife] = region[husband]

    # Children under 18 get a mother (and her husband), one parent, or a
    # guardian, living in the region where the child was born.
    kids = np.flatnonzero(alive & (age < 18))
    kid_key = (id_region[kids] << KEY_SHIFT) + (birth[kids] - first_day)
    del id_region
    key = (region.astype(np.int64) << KEY_SHIFT) + (birth - first_day)
    parent_age = alive & (age >= 20) & (age <= 62)
    married_women = np.flatnonzero(parent_age & ~male & (spouse >= 0))
    single_women = np.flatnonzero(parent_age & ~male & (spouse < 0))
    single_men = np.flatnonzero(parent_age & male & (spouse < 0))
    elders = np.flatnonzero(alive & (age >= 45) & (age <= 85))
    del parent_age
    mode = draw(rng, (0.80, 0.11, 0.03, 0.06), kids.shape[0])  # both, mother, father, guardian
    mother = np.full(kids.shape[0], -1, dtype=np.int64)
    father = np.full(kids.shape[0], -1, dtype=np.int64)
    guardian = np.full(kids.shape[0], -1, dtype=np.int64)
    plans = (
        (married_women, mother, (22.0, 38.0), (18.0, 50.0)),
        (single_women, mother, (22.0, 38.0), (18.0, 50.0)),
        (single_men, father, (24.0, 40.0), (18.0, 55.0)),
        (elders, guardian, (48.0, 65.0), (40.0, 80.0)),
    )
    for m, (pool, out, target_years, gap_years) in enumerate(plans):
        sel = np.flatnonzero(mode == m)
        years = rng.uniform(target_years[0], target_years[1], sel.shape[0])
        target = kid_key[sel] - np.floor(years * YEAR).astype(np.int64)
        out[sel] = _match(rng, pool, key[pool], target, kid_key[sel], gap_years)
    del key
    both = (mode == 0) & (mother >= 0)
    father[both] = spouse[mother[both]]
    father_ok = (father >= 0) & (birth[kids] - birth[np.maximum(father, 0)] >= 18 * YEAR)
    father = np.where(father_ok, father, -1)
    carer = np.where(mother >= 0, mother, np.where(father >= 0, father, guardian))
    cared = carer >= 0

    # Some households live here but are registered elsewhere (migrants, 外来人口);
    # decided once families are formed, so that a child shares the carer's registration.
    home = _registered_elsewhere(ctx, age)
    elsewhere = home >= 0
    region[elsewhere] = len(ctx.region_codes) + home[elsewhere]
    region[wife] = region[husband]
    del home, elsewhere

    hh[kids[cared]] = hh[carer[cared]]
    region[kids[cared]] = region[carer[cared]]
    person_id = _issued_at_home(ctx, person_id, region, birth, male)

    # Children carry the father's surname (sometimes the mother's), or the
    # guardian's; wives keep their own.
    surname = _surnames(rng, n)
    from_mother = (father < 0) | (rng.random(kids.shape[0]) < 0.1)
    lineage = np.where(from_mother & (mother >= 0), mother, np.where(father >= 0, father, guardian))
    has_lineage = lineage >= 0
    surname[kids[has_lineage]] = surname[lineage[has_lineage]]
    name_index = _name_index(rng, male, surname)
    del surname

    household_offset = int(rng.integers(0, 10**10))
    has_mother, has_father, has_guardian = mother >= 0, father >= 0, guardian >= 0
    who = np.concatenate([kids[has_mother], kids[has_father], kids[has_guardian], husband, wife])
    other = np.concatenate(
        [mother[has_mother], father[has_father], guardian[has_guardian], wife, husband]
    )
    kind = np.concatenate(
        [
            np.zeros(int(has_mother.sum()) + int(has_father.sum()), dtype=np.int64),
            np.ones(int(has_guardian.sum()), dtype=np.int64),
            np.full(2 * husband.shape[0], 2, dtype=np.int64),
        ]
    )
    del kids, mother, father, guardian, husband, wife
    # Ordered by person, then related person: (who, other, kind) packed in one
    # integer sorts in one pass.
    packed = (who << 29) | (other << 2) | kind
    del who, other, kind
    packed.sort()
    return Population(
        person_id=person_id,
        birth_day=birth,
        male=male,
        alive=alive,
        region=region,
        age=age,
        household=hh,
        household_offset=household_offset,
        region_codes=ctx.region_codes + ctx.home_codes,
        name_index=name_index,
        died=died.astype(np.int32),
        who=(packed >> 29).astype(np.int32),
        other=((packed >> 2) & ((1 << 27) - 1)).astype(np.int32),
        kind=(packed & 3).astype(np.int8),
    )


@dataclass(slots=True)
class Households:
    """The city's household registers (户) and who is registered in each."""

    frame: pl.DataFrame  # household_id, region_code
    members: pl.DataFrame  # household_id, person_id, role
    person: IntArray  # the person index of each member row


def build_households(ctx: Context, pop: Population) -> Households:
    """Each living person registered in the city belongs to one household: the one their
    family founded (a couple and the children they care for, or a person alone).  Its head
    is the founder while alive, else its eldest member; its region is the head's."""
    local = pop.alive & (pop.region >= 0) & (pop.region < len(ctx.region_codes))
    person = np.flatnonzero(local)
    hh = pop.household[person]
    founder = person == hh
    # Per household: the founder if living, else the eldest living member.
    order = np.lexsort((pop.birth_day[person], ~founder, hh))
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = hh[order][1:] != hh[order][:-1]
    head = np.zeros(person.shape[0], dtype=bool)
    head[order[first]] = True
    heads = person[head]
    frame = pl.DataFrame(
        [
            _household_ids(pop.household[heads], pop.household_offset),
            pick("region_code", ctx.region_codes, pop.region[heads]),
        ]
    ).sort("household_id")
    members = pl.DataFrame(
        [
            _household_ids(hh, pop.household_offset),
            pop.person_id.gather(pl.Series(person, dtype=pl.UInt32)),
            pick("role", ["member", "head"], head.astype(np.int64)),
        ]
    )
    return Households(frame=frame, members=members, person=person)
